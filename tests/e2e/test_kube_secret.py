"""The Secret destination against the devcluster: a bot's static kubeconfig writes its files into a Secret with
server-side apply, the real kubectl reads them back, a renewal updates them, and RBAC, conflicts and
preconditions answer as Kubernetes does. Also the devcluster's Secrets through the real kubectl alone."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from kubectl_teleport.errors import AccessDenied
from kubectl_teleport.outputs import kube_secret as ks
from tests.plugin_helpers import cert_of, credentials, kubectl_run, login, make_due

REF = ks.SecretRef("demo", "robot-out")
LABELS = {"app.kubernetes.io/managed-by": "kubectl-teleport"}


def grant_secrets(devcluster, verbs: str = "get,list,create,patch,delete") -> None:
    """The seed's kube user for the bot's role is `alice` (seed.py): let her use Secrets in `demo`."""
    devcluster.admin("rolebindings", "add", "-n", "demo", "--resources", "secrets", "--verbs", verbs, "--user",
                     "alice")


@pytest.fixture
def bot(devcluster, tmp_path: Path) -> dict:
    """A logged-in bot with a static destination: its kubeconfig authenticates with an embedded certificate."""
    data, dest = tmp_path / "bot", tmp_path / "dest"
    login(devcluster, data, "--destination", str(dest), "--static")
    kubeconfig = dest / "kubeconfig.yaml"
    files = {name: (dest / name).read_bytes() for name in ks.FILES if (dest / name).is_file()}
    assert {"tlscert", "key", "kubeconfig.yaml"} <= set(files)
    return {"data": data, "kubeconfig": kubeconfig, "files": files, "access": ks.load_kubeconfig(str(kubeconfig))}


def jsonpath(kubectl, bot: dict, home: Path, path: str, name: str = REF.name) -> str:
    out = kubectl_run(kubectl, bot["kubeconfig"], home, "get", "secret", name, "-n", "demo", "-o",
                      f"jsonpath={path}")
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_secret_destination_written_read_by_kubectl_renewed_and_denied(devcluster, kubectl, bot,
                                                                       tmp_path: Path) -> None:
    home, access = tmp_path / "home", bot["access"]
    with pytest.raises(AccessDenied) as denied:  # no rolebinding for secrets yet
        ks.write_files(REF, bot["files"], access=access)
    assert str(denied.value) == (f'writing Secret {REF}: secrets "robot-out" is forbidden: User "alice" cannot '
                                 'patch resource "secrets" in API group "" in the namespace "demo"; grant get, '
                                 "create and patch on secrets in namespace demo (a Role and RoleBinding)")
    with pytest.raises(AccessDenied, match='cannot get resource "secrets"'):
        ks.read_secret(REF, access=access)
    grant_secrets(devcluster, "get,patch")  # patch alone cannot create (as in Kubernetes)
    with pytest.raises(AccessDenied, match='cannot create resource "secrets"'):
        ks.write_files(REF, bot["files"], access=access)
    grant_secrets(devcluster)

    assert ks.write_files(REF, bot["files"], access=access, dry_run=True).created  # the check a login makes
    assert ks.read_secret(REF, access=access) is None  # ... which wrote nothing
    first = ks.write_files(REF, bot["files"], access=access, labels=LABELS)
    assert first.created and first.resource_version
    assert base64.b64decode(jsonpath(kubectl, bot, home, "{.data.tlscert}")) == bot["files"]["tlscert"]
    assert base64.b64decode(jsonpath(kubectl, bot, home, "{.data.kubeconfig\\.yaml}")) == \
        bot["files"]["kubeconfig.yaml"]
    assert jsonpath(kubectl, bot, home, "{.type}") == "Opaque"
    assert json.loads(jsonpath(kubectl, bot, home, "{.metadata.labels}")) == LABELS
    assert jsonpath(kubectl, bot, home, "{.metadata.managedFields[*].manager}") == "kubectl-teleport"

    # A renewal: a new certificate and key; a file no longer written (identity) leaves the Secret.
    make_due(bot["data"])
    out = credentials(bot["data"])
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)["status"]
    renewed = {**bot["files"], "tlscert": cert_of(out.stdout).encode(), "key": status["clientKeyData"].encode()}
    renewed.pop("identity", None)
    assert renewed["tlscert"] != bot["files"]["tlscert"]
    second = ks.write_files(REF, renewed, access=access, labels=LABELS)
    assert not second.created and int(second.resource_version) > int(first.resource_version)
    assert base64.b64decode(jsonpath(kubectl, bot, home, "{.data.tlscert}")) == renewed["tlscert"]
    assert jsonpath(kubectl, bot, home, "{.data.identity}") == ""
    read = ks.read_secret(REF, access=access)
    assert read.data == renewed and read.resource_version == second.resource_version and read.uid == first.uid
    again = ks.write_files(REF, renewed, access=access, labels=LABELS)
    assert again.resource_version == second.resource_version  # nothing changed: nothing written

    # One writer: a write conditional on a version someone else moved on is refused.
    with pytest.raises(ks.SecretConflict, match=r"the object has been modified.*another writer changed it"):
        ks.write_files(REF, renewed, access=access, resource_version=first.resource_version)
    assert ks.write_files(REF, {**renewed, "key.pub": b"ssh"}, access=access,
                          resource_version=second.resource_version).resource_version != second.resource_version

    # Another manager takes a key over with kubectl; ours conflicts, then `force` takes it back.
    manifest = tmp_path / "other.yaml"
    manifest.write_text(f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {REF.name}\n  namespace: demo\n"
                        "stringData:\n  tlscert: not-a-cert\n")
    out = kubectl_run(kubectl, bot["kubeconfig"], home, "apply", "--server-side", "-f", str(manifest))
    assert out.returncode == 1 and 'conflict with "kubectl-teleport": .data.tlscert' in out.stderr
    out = kubectl_run(kubectl, bot["kubeconfig"], home, "apply", "--server-side", "--force-conflicts", "-f",
                      str(manifest))
    assert out.returncode == 0 and "secret/robot-out serverside-applied" in out.stdout, out.stderr
    with pytest.raises(ks.SecretConflict, match=r'conflict with "kubectl": \.data\.tlscert'):
        ks.write_files(REF, renewed, access=access)
    ks.write_files(REF, renewed, access=access, force=True)
    assert base64.b64decode(jsonpath(kubectl, bot, home, "{.data.tlscert}")) == renewed["tlscert"]

    out = kubectl_run(kubectl, bot["kubeconfig"], home, "delete", "secret", REF.name, "-n", "demo")
    assert out.returncode == 0 and 'secret "robot-out" deleted' in out.stdout, out.stderr
    assert ks.read_secret(REF, access=access) is None
    assert ks.delete_secret(REF, access=access) is False
    forbidden = ks.SecretRef("kube-system", "robot-out")  # the binding is for `demo` only
    with pytest.raises(AccessDenied, match='cannot patch resource "secrets" in API group "" in the namespace '
                                           '"kube-system"'):
        ks.write_files(forbidden, renewed, access=access)
    assert devcluster.stats()["kube_forbidden"] >= 4


def test_devcluster_secrets_through_kubectl(devcluster, kubectl, bot, tmp_path: Path) -> None:
    home, kc = tmp_path / "home", bot["kubeconfig"]
    grant_secrets(devcluster)
    out = kubectl_run(kubectl, kc, home, "create", "secret", "generic", "made", "-n", "demo",
                      "--from-literal=user=robot", "--from-literal=pass=s3cret")  # protobuf on the wire
    assert out.returncode == 0 and "secret/made created" in out.stdout, out.stderr
    out = kubectl_run(kubectl, kc, home, "create", "secret", "generic", "made", "-n", "demo", "--from-literal=a=b")
    assert out.returncode == 1 and 'secrets "made" already exists' in out.stderr
    out = kubectl_run(kubectl, kc, home, "get", "secrets", "-n", "demo")
    assert out.returncode == 0 and out.stdout.split("\n")[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert out.stdout.split("\n")[1].split()[:3] == ["made", "Opaque", "2"]
    made = ks.read_secret(ks.SecretRef("demo", "made"), access=bot["access"])
    assert made.data == {"user": b"robot", "pass": b"s3cret"}
    out = kubectl_run(kubectl, kc, home, "get", "secret", "made", "-n", "demo", "-o",
                      "jsonpath={.metadata.managedFields[0].manager} {.metadata.managedFields[0].operation}")
    assert out.stdout == "kubectl-create Update"
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: bad\n  namespace: demo\n"
                   "data:\n  'no spaces': YQ==\n")
    out = kubectl_run(kubectl, kc, home, "apply", "--server-side", "-f", str(bad))
    assert out.returncode == 1 and 'Secret "bad" is invalid: data[no spaces]: Invalid value' in out.stderr
    dry = tmp_path / "dry.yaml"
    dry.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: dry\n  namespace: demo\n"
                   "stringData:\n  a: b\n")
    out = kubectl_run(kubectl, kc, home, "apply", "--server-side", "--dry-run=server", "-f", str(dry))
    assert out.returncode == 0 and "secret/dry serverside-applied (server dry run)" in out.stdout, out.stderr
    assert ks.read_secret(ks.SecretRef("demo", "dry"), access=bot["access"]) is None
    out = kubectl_run(kubectl, kc, home, "get", "secret", "nope", "-n", "demo")
    assert out.returncode == 1 and 'secrets "nope" not found' in out.stderr
    out = kubectl_run(kubectl, kc, home, "get", "secrets", "-A")
    assert out.returncode == 1 and 'User "alice" cannot list resource "secrets" in API group "" at the cluster ' \
        "scope" in out.stderr
    out = kubectl_run(kubectl, kc, home, "delete", "secret", "made", "-n", "demo")
    assert out.returncode == 0, out.stderr
