"""`--destination kubernetes-secret://NAMESPACE/NAME` on login and start, against the devcluster's Secrets API:
a dry run before the token is spent, the file set written and read back by the real kubectl, kept renewed by
`start`, recorded in config.json, emptied by `logout`."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from kubectl_teleport import pki
from kubectl_teleport.config import Destination
from kubectl_teleport.outputs import destination
from kubectl_teleport.store.datadir import DataDir
from tests.e2e.test_kube_secret import grant_secrets
from tests.plugin_helpers import (
    KUBE_CLUSTER,
    cert_of,
    credentials,
    join_args,
    kubectl_run,
    login,
    make_due,
    plugin,
    web_trust,
)

URL = "kubernetes-secret://demo/robot-secret"


def get(kubectl, kubeconfig: Path, home: Path, path: str) -> subprocess.CompletedProcess:
    return kubectl_run(kubectl, kubeconfig, home, "get", "secret", "robot-secret", "-n", "demo", "-o",
                       f"jsonpath={path}")


def key_of(kubectl, kubeconfig: Path, home: Path, key: str) -> bytes:
    out = get(kubectl, kubeconfig, home, "{.data." + key.replace(".", "\\.") + "}")
    assert out.returncode == 0, out.stderr
    return base64.b64decode(out.stdout)


def test_secret_destination_login_start_logout(devcluster, kubectl, tmp_path):
    # the Kubernetes API access of the writer: another bot's static kubeconfig (user alice), as in-cluster config
    admin_data, admin_dest = tmp_path / "admin", tmp_path / "admin-out"
    login(devcluster, admin_data, "--destination", str(admin_dest), "--static")
    kube = admin_dest / "kubeconfig.yaml"
    env = {"KUBECONFIG": str(kube)}
    home, data = tmp_path / "home", tmp_path / "bot"

    # no rolebinding for Secrets: the login stops before the join; the token stays unused
    bot = devcluster.add_bot("secret-bot")
    args = [*join_args(bot), "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data), "--destination", URL]
    denied = plugin("login", *args, env={**web_trust(devcluster), **env})
    assert denied.returncode == 5, denied.stderr  # AccessDenied
    assert 'cannot patch resource "secrets"' in denied.stderr and "Traceback" not in denied.stderr
    assert not (data / "identity.pem").exists()
    assert get(kubectl, kube, home, "{.type}").returncode != 0  # the dry run wrote nothing

    grant_secrets(devcluster)
    out = login(devcluster, data, "--destination", URL, bot=bot, env=env)  # the same token: it was not spent
    assert URL in out.stdout
    assert DataDir(data).load_config().destinations == [Destination(URL, True, KUBE_CLUSTER)]
    assert get(kubectl, kube, home, "{.type}").stdout == "Opaque"
    managers = get(kubectl, kube, home, "{.metadata.managedFields[*].manager}").stdout
    assert managers == "kubectl-teleport"
    served = cert_of(credentials(data).stdout)
    assert key_of(kubectl, kube, home, "tlscert").decode() == served
    keys = json.loads(get(kubectl, kube, home, "{.data}").stdout)
    assert set(keys) == set(destination.FILES)  # tbot's file set; never the bot's renewable identity
    key = pki.load_private_key(key_of(kubectl, kube, home, "key"))
    assert pki.public_keys_equal(pki.load_cert(served).public_key(), key)
    # the Secret's kubeconfig.yaml is static: a pod reading the Secret reaches the cluster with it alone
    static = tmp_path / "from-secret.yaml"
    static.write_bytes(key_of(kubectl, kube, home, "kubeconfig.yaml"))
    who = kubectl_run(kubectl, static, home, "auth", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == "alice"

    # the daemon keeps it renewed; an unchanged Secret is not rewritten
    version = get(kubectl, kube, home, "{.metadata.resourceVersion}").stdout
    same = plugin("start", "--oneshot", "--data-dir", str(data), env=env)
    assert same.returncode == 0, same.stderr
    assert get(kubectl, kube, home, "{.metadata.resourceVersion}").stdout == version
    make_due(data)
    renewed = plugin("start", "--oneshot", "--data-dir", str(data), env=env)
    assert renewed.returncode == 0, renewed.stderr
    new_cert = key_of(kubectl, kube, home, "tlscert").decode()
    assert new_cert != served and new_cert == cert_of(credentials(data).stdout)

    # logout takes our keys out; the Secret (and what others put there) stays: deleting it is the admin's call
    theirs = tmp_path / "theirs.yaml"
    theirs.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: robot-secret, namespace: demo}\n"
                      "data: {note: " + base64.b64encode(b"kept").decode() + "}\n")
    other = kubectl_run(kubectl, kube, home, "apply", "--server-side", "--field-manager", "someone-else",
                        "--validate=false", "-f", str(theirs))
    assert other.returncode == 0, other.stderr
    gone = plugin("logout", "--data-dir", str(data), env=env)
    assert gone.returncode == 0, gone.stderr
    assert f"Removed the credentials from Secret {URL}" in gone.stdout
    assert json.loads(get(kubectl, kube, home, "{.data}").stdout) == {"note": base64.b64encode(b"kept").decode()}
