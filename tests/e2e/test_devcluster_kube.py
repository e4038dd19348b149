"""The devcluster's Kubernetes endpoint: x509 authentication, RBAC, API shapes, real kubectl and the Python
kubernetes client."""

from __future__ import annotations

import base64
import ssl
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from kubectl_teleport import pki
from kubectl_teleport.devcluster import store
from kubectl_teleport.devcluster.ca import CertAuthority, issue_kube_cert
from tests.devcluster_fixture import DevCluster, host_ca_pem, join_bot, kube_credentials, tls_client

TABLE_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
                "g=meta.k8s.io,application/json")
UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def direct_cert(dc: DevCluster, user: str, groups: list[str], cluster: str = "example-k8s-cluster",
                hours: float = 1, ca: CertAuthority | None = None) -> tuple[str, str]:
    """A Kubernetes client cert signed straight by the state's user CA (or `ca`), valid for `hours` from now."""
    if ca is None:
        with store.opened(dc.state_dir) as conn:
            ca = CertAuthority.from_pem(*store.get_ca(conn, "user"))
    key = pki.generate_key()
    now = pki.utcnow()
    start = now if hours > 0 else now + timedelta(hours=hours * 2)
    cert = issue_kube_cert(ca, key.public_key(), user, groups, cluster, dc.cluster_name, start,
                           start + timedelta(hours=abs(hours)))
    return pki.cert_pem(cert), pki.private_key_pem(key)


def kube(dc: DevCluster, tmp: Path, cred: tuple[str, str] | None) -> httpx.Client:
    return tls_client(dc.kube_server, host_ca_pem(dc), tmp, *(cred or ()))


@pytest.fixture
def alice(devcluster: DevCluster, tmp_path: Path) -> tuple[str, str]:
    """The seed's credentials as issued through the API: user alice, group example."""
    cert, key, _ = kube_credentials(devcluster, tmp_path, join_bot(devcluster, tmp_path))
    return cert, key


def test_discovery_and_reads(devcluster: DevCluster, tmp_path: Path, alice: tuple[str, str]) -> None:
    with kube(devcluster, tmp_path, alice) as c:
        assert c.get("/version").json()["gitVersion"] == "v1.37.1-devcluster"
        api = c.get("/api", headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                                               "application/json"})
        assert api.headers["content-type"] == "application/json" and api.json()["kind"] == "APIVersions"
        groups = c.get("/apis").json()
        assert groups["kind"] == "APIGroupList"
        assert {g["name"] for g in groups["groups"]} == {"apps", "authentication.k8s.io"}
        v1 = {r["name"]: r for r in c.get("/api/v1").json()["resources"]}
        assert set(v1) == {"namespaces", "pods", "secrets"} and v1["pods"]["namespaced"] is True
        assert v1["secrets"]["verbs"] == ["create", "delete", "get", "list", "patch"]
        assert [r["name"] for r in c.get("/apis/apps/v1").json()["resources"]] == ["deployments"]
        pods = c.get("/api/v1/namespaces/demo/pods")
        assert pods.json()["kind"] == "PodList"
        names = [p["metadata"]["name"] for p in pods.json()["items"]]
        assert len(names) == 3 and "toolbox" in names
        assert sum(n.startswith("web-") for n in names) == 2
        assert c.get("/api/v1/namespaces/demo/pods?labelSelector=app%3Dweb").json()["items"][0]["metadata"][
            "labels"]["app"] == "web"
        pod = c.get("/api/v1/namespaces/demo/pods/toolbox").json()
        assert (pod["kind"], pod["apiVersion"], pod["metadata"]["name"]) == ("Pod", "v1", "toolbox")
        deploy = c.get("/apis/apps/v1/namespaces/demo/deployments/web").json()
        assert deploy["kind"] == "Deployment" and deploy["spec"]["replicas"] == 2
        missing = c.get("/api/v1/namespaces/demo/pods/nope")
        assert missing.status_code == 404 and missing.json()["reason"] == "NotFound"
        assert missing.json()["message"] == 'pods "nope" not found'
        assert c.get("/api/v1/nonsense").status_code == 404
        assert c.delete("/api/v1/namespaces/demo/pods/toolbox").status_code == 405


def test_tables_for_kubectl_get(devcluster: DevCluster, tmp_path: Path, alice: tuple[str, str]) -> None:
    with kube(devcluster, tmp_path, alice) as c:
        table = c.get("/api/v1/namespaces/demo/pods", headers={"Accept": TABLE_ACCEPT}).json()
        assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
        cols = [col["name"] for col in table["columnDefinitions"] if col["priority"] == 0]
        assert cols == ["Name", "Ready", "Status", "Restarts", "Age"]
        row = next(r for r in table["rows"] if r["cells"][0] == "toolbox")
        assert row["cells"][1:4] == ["1/1", "Running", "0"]
        assert row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["metadata"]["name"] == "toolbox"
        dtable = c.get("/apis/apps/v1/namespaces/demo/deployments", headers={"Accept": TABLE_ACCEPT}).json()
        assert [col["name"] for col in dtable["columnDefinitions"] if col["priority"] == 0] == [
            "Name", "Ready", "Up-to-date", "Available", "Age"]
        assert dtable["rows"][0]["cells"][:4] == ["web", "2/2", 2, 2]


def test_rbac_denials_have_kube_apiserver_shape(devcluster: DevCluster, tmp_path: Path,
                                                alice: tuple[str, str]) -> None:
    with kube(devcluster, tmp_path, alice) as c:
        pods = c.get("/api/v1/namespaces/secret/pods")
        assert pods.status_code == 403
        assert pods.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "message": 'pods is forbidden: User "alice" cannot list resource "pods" in API '
                                          'group "" in the namespace "secret"',
                               "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403}
        deploy = c.get("/apis/apps/v1/namespaces/kube-system/deployments").json()
        assert deploy["message"] == ('deployments.apps is forbidden: User "alice" cannot list resource '
                                     '"deployments" in API group "apps" in the namespace "kube-system"')
        assert deploy["details"] == {"group": "apps", "kind": "deployments"}
        ns = c.get("/api/v1/namespaces")
        assert ns.status_code == 403 and ns.json()["message"].endswith("at the cluster scope")
    assert devcluster.stats()["kube_forbidden"] == 3


def test_rbac_by_group_by_user_and_live_admin_changes(devcluster: DevCluster, tmp_path: Path) -> None:
    by_group = direct_cert(devcluster, "bob", ["example"])
    by_user = direct_cert(devcluster, "alice", [])
    nobody = direct_cert(devcluster, "carol", ["others"])
    path = "/api/v1/namespaces/demo/pods"
    with kube(devcluster, tmp_path, by_group) as c:
        assert c.get(path).status_code == 200
    with kube(devcluster, tmp_path, by_user) as c:
        assert c.get(path).status_code == 200
    with kube(devcluster, tmp_path, nobody) as c:
        assert c.get(path).status_code == 403
        devcluster.admin("rolebindings", "add", "--cluster-wide", "--verbs", "list", "--resources",
                         "pods,namespaces", "--group", "others")
        assert c.get(path).status_code == 200  # the running server sees admin changes at once
        assert c.get("/api/v1/pods").status_code == 200
        assert len(c.get("/api/v1/namespaces").json()["items"]) == 3
        assert c.get(path + "/toolbox").status_code == 403  # list only, not get


def test_whoami(devcluster: DevCluster, tmp_path: Path, alice: tuple[str, str]) -> None:
    with kube(devcluster, tmp_path, alice) as c:
        resp = c.post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                      json={"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1"})
    assert resp.status_code == 201
    info = resp.json()["status"]["userInfo"]
    assert info["username"] == "alice" and info["groups"] == ["example", "system:authenticated"]


def test_unauthorized_shapes(devcluster: DevCluster, tmp_path: Path) -> None:
    ident = join_bot(devcluster, tmp_path)
    with store.opened(devcluster.state_dir) as conn:
        user_ca = CertAuthority.from_pem(*store.get_ca(conn, "user"))
    devcluster.admin("kube", "add", "gone")
    cases = {
        "no cert": None,
        "bot identity, not a kube cert": (ident.cert_pem, ident.key_pem),
        "expired": direct_cert(devcluster, "alice", ["example"], hours=-1, ca=user_ca),
        "unknown cluster": direct_cert(devcluster, "alice", ["example"], cluster="nope", ca=user_ca),
        "removed cluster": direct_cert(devcluster, "alice", ["example"], cluster="gone", ca=user_ca),
    }
    devcluster.admin("kube", "rm", "gone")
    for what, cred in cases.items():
        with kube(devcluster, tmp_path, cred) as c:
            resp = c.get("/api/v1/namespaces/demo/pods")
        assert resp.status_code == 401, what
        assert resp.json() == UNAUTHORIZED, what
    assert devcluster.stats()["kube_unauthorized"] == len(cases)


def test_cert_from_another_ca_is_refused(devcluster: DevCluster, tmp_path: Path) -> None:
    """Python's ssl cannot request a client cert without verifying it, so a foreign CA fails the handshake."""
    from kubectl_teleport.devcluster.ca import create_ca

    foreign = direct_cert(devcluster, "alice", ["example"], ca=create_ca("user", "devcluster", pki.utcnow()))
    with kube(devcluster, tmp_path, foreign) as c, pytest.raises((httpx.ConnectError, httpx.ReadError,
                                                                  httpx.RemoteProtocolError, ssl.SSLError)):
        c.get("/api/v1/namespaces/demo/pods")
    assert devcluster.process.poll() is None


def _kubeconfig(dc: DevCluster, tmp: Path, cred: tuple[str, str]) -> Path:
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    path = tmp / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: dc
  cluster:
    server: {dc.kube_server}
    certificate-authority-data: {b64(host_ca_pem(dc))}
    tls-server-name: kube.teleport.cluster.local
users:
- name: u
  user:
    client-certificate-data: {b64(cred[0])}
    client-key-data: {b64(cred[1])}
contexts:
- name: dc
  context: {{cluster: dc, user: u, namespace: demo}}
current-context: dc
""")
    return path


def test_real_kubectl(devcluster: DevCluster, tmp_path: Path, alice: tuple[str, str], kubectl: Path) -> None:
    config = _kubeconfig(devcluster, tmp_path, alice)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(kubectl), "--kubeconfig", str(config), "--cache-dir", str(tmp_path / "cache"),
                               *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})

    pods = run("get", "pods")
    assert pods.returncode == 0, pods.stderr
    lines = pods.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert len(lines) == 4 and any(line.startswith("toolbox ") for line in lines)
    deploy = run("get", "deployments")
    assert deploy.returncode == 0 and deploy.stdout.splitlines()[1].split()[:4] == ["web", "2/2", "2", "2"]
    whoami = run("auth", "whoami")
    assert whoami.returncode == 0, whoami.stderr
    assert "alice" in whoami.stdout and "[example system:authenticated]" in whoami.stdout
    denied = run("get", "pods", "-n", "secret")
    assert denied.returncode == 1
    assert ('Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API '
            'group "" in the namespace "secret"') in denied.stderr


def test_python_kubernetes_client(devcluster: DevCluster, tmp_path: Path, alice: tuple[str, str]) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    api_client = kubernetes.config.new_client_from_config(str(_kubeconfig(devcluster, tmp_path, alice)))
    try:
        pods = kubernetes.client.CoreV1Api(api_client).list_namespaced_pod("demo")
        assert sorted(p.metadata.name for p in pods.items)[0] == "toolbox"
        deploys = kubernetes.client.AppsV1Api(api_client).list_namespaced_deployment("demo")
        assert [d.metadata.name for d in deploys.items] == ["web"]
        with pytest.raises(kubernetes.client.ApiException) as err:
            kubernetes.client.CoreV1Api(api_client).list_namespaced_pod("secret")
        assert err.value.status == 403
    finally:
        api_client.close()
