"""tbot-style file outputs (`--destination DIR` on login and start): layout, modes, renewal, real kubectl."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import yaml

from kubectl_teleport import errors, pki
from kubectl_teleport.config import Destination
from kubectl_teleport.outputs import destination
from kubectl_teleport.store.datadir import DataDir
from tests.plugin_helpers import KUBE_CLUSTER, cert_of, credentials, kubectl_run, login, make_due, plugin

FILES = destination.FILES
SECOND = "second-cluster"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_pair(directory: Path) -> pki.Identity:
    cert = pki.load_cert((directory / "tlscert").read_text())
    key = pki.load_private_key((directory / "key").read_text())
    assert pki.public_keys_equal(cert.public_key(), key.public_key())
    ident = (directory / "identity").read_text()
    assert pki.public_keys_equal(pki.load_private_key(ident).public_key(), cert.public_key())
    assert pki.load_certs(ident)[0] == cert
    assert pki.load_certs((directory / "teleport-host-ca.crt").read_text())
    return pki.identity_of(cert)


def test_static_destination_works_with_kubectl_and_is_private(devcluster, kubectl, tmp_path):
    data, dest = tmp_path / "bot", tmp_path / "out"
    out = login(devcluster, data, "--destination", str(dest), "--static")
    assert str(dest) in out.stdout
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES)
    assert mode(dest) == 0o700 and all(mode(dest / f) == 0o600 for f in FILES)
    who = assert_pair(dest)
    assert who.username == "bot-robot" and who.kube_users == ["alice"] and who.kube_cluster == KUBE_CLUSTER
    doc = yaml.safe_load((dest / "kubeconfig.yaml").read_text())
    user = doc["users"][0]["user"]
    assert "exec" not in user
    assert base64.b64decode(user["client-certificate-data"]).decode() == (dest / "tlscert").read_text()
    assert doc["current-context"] == f"{devcluster.cluster_name}-{KUBE_CLUSTER}"
    pods = kubectl_run(kubectl, dest / "kubeconfig.yaml", tmp_path, "get", "pods", "-n", "demo", "-o", "name")
    assert pods.returncode == 0, pods.stderr
    assert pods.stdout.startswith("pod/")
    whoami = kubectl_run(kubectl, dest / "kubeconfig.yaml", tmp_path, "auth", "whoami", "-o", "json")
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == "alice"
    # the destination is recorded, so `start` keeps it updated without the flag
    cfg = DataDir(data).load_config()
    assert cfg.destinations == [Destination(str(dest), True, KUBE_CLUSTER)]


def test_exec_destination_reads_the_identity_cache(devcluster, kubectl, tmp_path):
    data, dest = tmp_path / "bot", tmp_path / "out"
    login(devcluster, data, "--destination", str(dest))
    doc = yaml.safe_load((dest / "kubeconfig.yaml").read_text())
    exec_ = doc["users"][0]["user"]["exec"]
    assert exec_["args"] == ["credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER]
    assert Path(exec_["command"]).is_absolute()
    pods = kubectl_run(kubectl, dest / "kubeconfig.yaml", tmp_path, "get", "pods", "-n", "demo")
    assert pods.returncode == 0, pods.stderr
    # the files hold the very certificate kubectl gets from the cache
    assert (dest / "tlscert").read_text() == cert_of(credentials(data).stdout)


def test_start_keeps_destination_files_renewed(devcluster, kubectl, tmp_path):
    data, dest = tmp_path / "bot", tmp_path / "out"
    login(devcluster, data)
    first = plugin("start", "--oneshot", "--data-dir", str(data), "--destination", str(dest), "--static")
    assert first.returncode == 0, first.stderr
    old_cert = (dest / "tlscert").read_text()
    assert old_cert == cert_of(credentials(data).stdout)
    make_due(data)
    again = plugin("start", "--oneshot", "--data-dir", str(data))  # no flag: the recorded destination
    assert again.returncode == 0, again.stderr
    assert f"updated {dest}" in again.stderr
    new_cert = (dest / "tlscert").read_text()
    assert new_cert != old_cert and new_cert == cert_of(credentials(data).stdout)
    assert_pair(dest)
    assert all(mode(dest / f) == 0o600 for f in FILES)
    pods = kubectl_run(kubectl, dest / "kubeconfig.yaml", tmp_path, "get", "pods", "-n", "demo")
    assert pods.returncode == 0, pods.stderr
    # unchanged certificates leave the files untouched (no rewrite, same inode)
    inode = (dest / "tlscert").stat().st_ino
    assert plugin("start", "--oneshot", "--data-dir", str(data)).returncode == 0
    assert (dest / "tlscert").stat().st_ino == inode


def test_several_clusters_layout(devcluster, kubectl, tmp_path):
    devcluster.admin("kube", "add", SECOND, "--labels", "env=dev")
    data, dest = tmp_path / "bot", tmp_path / "out"
    login(devcluster, data, "--kube-cluster", SECOND, "--destination", str(dest), "--static")
    assert assert_pair(dest).kube_cluster == KUBE_CLUSTER  # the first --kube-cluster owns the top level
    for name in (KUBE_CLUSTER, SECOND):
        sub = dest / "clusters" / name
        assert assert_pair(sub).kube_cluster == name
        assert mode(sub) == 0o700 and all(mode(sub / f) == 0o600 for f in FILES)
        sub_doc = yaml.safe_load((sub / "kubeconfig.yaml").read_text())
        assert [c["name"] for c in sub_doc["contexts"]] == [f"{devcluster.cluster_name}-{name}"]
    doc = yaml.safe_load((dest / "kubeconfig.yaml").read_text())
    contexts = [c["name"] for c in doc["contexts"]]
    assert contexts == [f"{devcluster.cluster_name}-{KUBE_CLUSTER}", f"{devcluster.cluster_name}-{SECOND}"]
    who = kubectl_run(kubectl, dest / "kubeconfig.yaml", tmp_path, "--context", contexts[1], "auth", "whoami",
                      "-o", "json")
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == "alice"


def test_bad_destinations_are_refused(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    static_only = plugin("login", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER, "--static")
    assert static_only.returncode == errors.USAGE and static_only.stderr.count("\n") == 1
    inside = plugin("login", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER, "--destination",
                    str(data / "out"))
    assert inside.returncode == errors.USAGE and "inside the data dir" in inside.stderr
    link = tmp_path / "link"
    (tmp_path / "real").mkdir()
    link.symlink_to(tmp_path / "real")
    linked = plugin("start", "--oneshot", "--data-dir", str(data), "--destination", str(link))
    assert linked.returncode == errors.UNSAFE_STATE and linked.stderr.count("\n") == 1
    assert list((tmp_path / "real").iterdir()) == []


def test_logout_removes_destination_files(devcluster, tmp_path):
    data, dest = tmp_path / "bot", tmp_path / "out"
    login(devcluster, data, "--destination", str(dest))
    out = plugin("logout", "--data-dir", str(data))
    assert out.returncode == 0, out.stderr
    assert not dest.exists()
