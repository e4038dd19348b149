"""Several Kubernetes clusters per identity: `kube ls`, repeated `login --kube-cluster`, one context and one
cache per cluster."""

from __future__ import annotations

import json

import yaml

from kubectl_teleport import errors, pki
from tests.plugin_helpers import KUBE_CLUSTER, cert_of, credentials, kubectl_run, login, make_due, plugin

SECOND = "second-cluster"
DEV_ONLY_ROLE = """\
kind: role
version: v5
metadata:
  name: dev-only
spec:
  allow:
    kubernetes_labels:
      env: dev
    kubernetes_groups: [example]
    kubernetes_users: [alice]
"""


def test_kube_ls_shows_each_cluster_with_what_teleport_put_in_its_certificate(devcluster, tmp_path):
    role = tmp_path / "role.yaml"
    role.write_text(DEV_ONLY_ROLE)
    devcluster.admin("create", "-f", str(role))
    devcluster.admin("kube", "add", SECOND, "--labels", "env=dev")
    devcluster.admin("kube", "add", "prod-cluster", "--labels", "env=prod")
    data = tmp_path / "bot"
    login(devcluster, data, bot=devcluster.add_bot("devbot", roles="dev-only"))
    assert credentials(data, SECOND).returncode == 0  # issued on first use: the role grants env=dev
    denied = credentials(data, "prod-cluster")
    assert denied.returncode == errors.ACCESS_DENIED, denied.stderr  # not granted: Teleport refuses
    text = plugin("kube", "ls", "--data-dir", str(data))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert lines[0].startswith(f"Teleport cluster {devcluster.cluster_name} ") and "generation 1" in lines[0]
    assert "version 17." in lines[0] and "bot devbot" in lines[0]
    rows = [line.split() for line in lines[1:4]]
    assert rows[0] == ["NAME", "LABELS", "SET", "UP", "ROLES", "USERS", "GROUPS", "CERTIFICATE", "VALID", "UNTIL"]
    assert sorted(r[:6] for r in rows[1:]) == [[KUBE_CLUSTER, "env=dev", "yes", "dev-only", "alice", "example"],
                                               [SECOND, "env=dev", "yes", "dev-only", "alice", "example"]]
    assert "prod-cluster" not in text.stdout  # set up nowhere and not granted: Teleport does not list it
    report = json.loads(plugin("kube", "ls", "--data-dir", str(data), "-o", "json").stdout)
    assert {c["name"] for c in report["clusters"]} == {KUBE_CLUSTER, SECOND}
    assert report["teleport"]["roles"] == ["dev-only"] and report["teleport"]["bot_instance_id"]


def test_login_with_several_clusters_gives_each_its_context_and_cache(devcluster, kubectl, tmp_path):
    devcluster.admin("kube", "add", SECOND, "--labels", "env=dev")
    data = tmp_path / "bot"
    out = login(devcluster, data, "--kube-cluster", SECOND)
    assert f"Kubernetes cluster {KUBE_CLUSTER}:" in out.stdout and f"Kubernetes cluster {SECOND}:" in out.stdout
    kubeconfig = data / "kubeconfig.yaml"
    doc = yaml.safe_load(kubeconfig.read_text())
    contexts = {c["name"]: c["context"] for c in doc["contexts"]}
    names = {n: f"{devcluster.cluster_name}-{n}" for n in (KUBE_CLUSTER, SECOND)}
    assert set(contexts) == set(names.values())
    assert doc["current-context"] == names[KUBE_CLUSTER]
    users = {u["name"]: u["user"]["exec"]["args"] for u in doc["users"]}
    for cluster, context in names.items():
        assert users[contexts[context]["user"]][-2:] == ["--kube-cluster", cluster]
        assert (data / "kube" / f"{cluster}.cred").is_file()
        cert = pki.load_cert(cert_of(credentials(data, cluster).stdout))
        assert pki.identity_of(cert).kube_cluster == cluster
        who = kubectl_run(kubectl, kubeconfig, tmp_path, "--context", context, "auth", "whoami", "-o", "json")
        assert who.returncode == 0, who.stderr
        assert json.loads(who.stdout)["status"]["userInfo"]["username"] == "alice"
    # one cluster's renewal leaves the other's cache byte-identical
    other = (data / "kube" / f"{SECOND}.cred").read_bytes()
    first = cert_of(credentials(data, KUBE_CLUSTER).stdout)
    before = devcluster.stats()["kube_certs_issued"]
    make_due(data, KUBE_CLUSTER)
    assert cert_of(credentials(data, KUBE_CLUSTER).stdout) != first
    assert devcluster.stats()["kube_certs_issued"] == before + 1
    assert (data / "kube" / f"{SECOND}.cred").read_bytes() == other


def test_status_and_logout_cover_every_cluster(devcluster, tmp_path):
    devcluster.admin("kube", "add", SECOND, "--labels", "env=dev")
    data = tmp_path / "bot"
    login(devcluster, data, "--kube-cluster", SECOND)
    status = json.loads(plugin("status", "--data-dir", str(data), "-o", "json").stdout)
    assert {c["name"] for c in status["kube_clusters"]} == {KUBE_CLUSTER, SECOND}
    assert all(c["cached"] for c in status["kube_clusters"])
    assert plugin("logout", "--data-dir", str(data)).returncode == 0
    assert sorted(p.name for p in data.iterdir()) == ["lock"]  # only the lock file stays
