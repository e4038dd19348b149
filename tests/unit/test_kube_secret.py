"""The Secret destination's parts: the URL, the cluster access (in-cluster from a fake service-account dir, or a
kubeconfig), the apply body, and the requests against an in-process fake Kubernetes API (headers, TLS server
name, typed errors, bounded time)."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from kubectl_teleport import pki
from kubectl_teleport.devcluster.ca import create_ca, issue_kube_cert, issue_serving_cert
from kubectl_teleport.errors import AccessDenied, TrustError, Unavailable, UsageError
from kubectl_teleport.outputs import kube_secret as ks

REF = ks.SecretRef("bots", "robot-out")


# the URL --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "env", "want"), [
    ("kubernetes-secret://bots/robot-out", {}, ("bots", "robot-out")),
    ("kubernetes-secret://robot-out", {"POD_NAMESPACE": "ci"}, ("ci", "robot-out")),
    ("kubernetes-secret:///robot.out", {"POD_NAMESPACE": "ci"}, ("ci", "robot.out")),
    ("kubernetes-secret://bots/robot-out", {"POD_NAMESPACE": "ci"}, ("bots", "robot-out")),  # explicit wins
])
def test_parse_url(url: str, env: dict, want: tuple[str, str]) -> None:
    ref = ks.parse_url(url, env)
    assert (ref.namespace, ref.name) == want
    assert str(ref) == f"kubernetes-secret://{want[0]}/{want[1]}"
    assert ref.path == f"/api/v1/namespaces/{want[0]}/secrets/{want[1]}"
    assert ks.is_secret_url(url) and not ks.is_secret_url("/var/run/out")


@pytest.mark.parametrize(("url", "says"), [
    ("kubernetes-secret://robot", "names no namespace and $POD_NAMESPACE is not set"),
    ("kubernetes-secret:/bots/robot", "use kubernetes-secret://NAMESPACE/NAME"),
    ("kubernetes-secret://", "use kubernetes-secret://NAMESPACE/NAME"),
    ("kubernetes-secret://a/b/c", "use kubernetes-secret://NAMESPACE/NAME"),
    ("kubernetes-secret://bots/robot/", "use kubernetes-secret://NAMESPACE/NAME"),
    ("kubernetes-secret://bots/robot?x=1", "use kubernetes-secret://NAMESPACE/NAME"),
    ("kubernetes-secret://Bots/robot", "namespace 'Bots' is not a valid namespace name"),
    ("kubernetes-secret://bots/Robot_1", "'Robot_1' is not a valid Secret name"),
    ("kubernetes-secret://bots/", "'' is not a valid Secret name"),
    ("kubernetes-secret://" + "n" * 64 + "/robot", "is not a valid namespace name"),
    ("kubernetes-secret://bots/" + "r" * 254, "is not a valid Secret name"),
])
def test_parse_url_refuses_with_one_line(url: str, says: str) -> None:
    with pytest.raises(UsageError) as exc:
        ks.parse_url(url, {})
    assert says in str(exc.value) and "\n" not in str(exc.value) and exc.value.code == 2


def test_labels_are_checked_like_kubernetes() -> None:
    assert ks.check_labels({"app.kubernetes.io/name": "robot", "tier": ""}) == {"app.kubernetes.io/name": "robot",
                                                                                 "tier": ""}
    for bad in ({"bad key": "x"}, {"k": "has space"}, {"k": "x" * 64}, {"Bad_Prefix/k": "x"}):
        with pytest.raises(UsageError):
            ks.check_labels(bad)


# cluster access -------------------------------------------------------------------------------------------------

@pytest.fixture
def sa_dir(tmp_path: Path) -> Path:
    d = tmp_path / "serviceaccount"
    d.mkdir()
    (d / "token").write_text("token-one\n")
    (d / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n")
    (d / "namespace").write_text("bots")
    return d


IN_POD = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def test_in_cluster_config_reads_the_service_account_and_rereads_the_rotated_token(sa_dir: Path) -> None:
    access = ks.load_in_cluster(IN_POD, sa_dir)
    assert access.server == "https://10.96.0.1:443" and access.source == "the pod's service account"
    assert access.ca_pem.startswith("-----BEGIN CERTIFICATE-----") and access.tls_server_name is None
    assert access.bearer() == "token-one"
    (sa_dir / "token").write_text("token-two")  # the kubelet rotates bound tokens
    assert access.bearer() == "token-two"
    assert "token-two" not in repr(access) and "CA" not in repr(access).replace("ClusterAccess", "")
    v6 = ks.load_in_cluster({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}, sa_dir)
    assert v6.server == "https://[fd00::1]:6443"


@pytest.mark.parametrize(("env", "remove", "says"), [
    ({}, None, "KUBECONFIG is not set and this is not a pod"),
    ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, None, "KUBERNETES_SERVICE_PORT are unset"),
    ({**IN_POD, "KUBERNETES_SERVICE_PORT": "https"}, None, "is not a port number"),
    (IN_POD, "token", "no service account token at"),
    (IN_POD, "ca.crt", "cannot read the cluster CA"),
])
def test_in_cluster_config_problems_are_usage_errors(sa_dir: Path, env: dict, remove: str | None,
                                                     says: str) -> None:
    if remove:
        (sa_dir / remove).unlink()
    with pytest.raises(UsageError) as exc:
        ks.load_in_cluster(env, sa_dir)
    assert says in str(exc.value)


def test_kubeconfig_takes_precedence_over_the_pod(sa_dir: Path, tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc", user={"token": "from-kubeconfig"})
    access = ks.load_access({**IN_POD, "KUBECONFIG": str(path)}, sa_dir)
    assert access.server == "https://kube.example:6443" and access.bearer() == "from-kubeconfig"
    assert "from-kubeconfig" not in repr(access)
    assert ks.load_access(IN_POD, sa_dir).server == "https://10.96.0.1:443"


def write_kubeconfig(path: Path, *, cluster: dict | None = None, user: dict | None = None,
                     current: str = "c") -> Path:
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": current,
           "clusters": [{"name": "k", "cluster": {"server": "https://kube.example:6443",
                                                  "certificate-authority-data": base64.b64encode(b"CA").decode(),
                                                  **(cluster or {})}}],
           "users": [{"name": "u", "user": user or {}}],
           "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kubeconfig_with_embedded_client_certificate(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc", cluster={"tls-server-name": "kube.internal"},
                            user={"client-certificate-data": base64.b64encode(b"CERT").decode(),
                                  "client-key-data": base64.b64encode(b"KEY").decode()})
    access = ks.load_kubeconfig(str(path))
    assert (access.ca_pem, access.cert_pem, access.key_pem) == ("CA", b"CERT", b"KEY")
    assert access.tls_server_name == "kube.internal" and access.bearer() is None
    assert access.source == f"kubeconfig {path} (context c)"


def test_kubeconfig_files_are_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    d = tmp_path / "conf"
    path = write_kubeconfig(d / "kc", cluster={"certificate-authority-data": None, "certificate-authority": "ca.pem"},
                            user={"client-certificate": "c.pem", "client-key": "k.pem", "tokenFile": "tok"})
    for name, text in (("ca.pem", "CA2"), ("c.pem", "C2"), ("k.pem", "K2"), ("tok", "file-token\n")):
        (d / name).write_text(text)
    access = ks.load_kubeconfig(str(path))
    assert (access.ca_pem, access.cert_pem, access.key_pem, access.bearer()) == ("CA2", b"C2", b"K2", "file-token")


def test_kubeconfig_lists_merge_first_wins_and_skip_missing_files(tmp_path: Path) -> None:
    first = write_kubeconfig(tmp_path / "a", user={"token": "first"})
    second = write_kubeconfig(tmp_path / "b", user={"token": "second"}, current="other")
    paths = ":".join([str(tmp_path / "missing"), str(first), str(second)])
    assert ks.load_kubeconfig(paths).bearer() == "first"


@pytest.mark.parametrize(("cluster", "user", "current", "says"), [
    ({}, {"exec": {"command": "kubectl-teleport"}}, "c", "runs an exec or auth-provider plugin"),
    ({}, {"auth-provider": {"name": "gcp"}}, "c", "runs an exec or auth-provider plugin"),
    ({"insecure-skip-tls-verify": True}, {}, "c", "insecure-skip-tls-verify is set"),
    ({"server": "http://kube.example"}, {}, "c", "is not an https:// URL"),
    ({"proxy-url": "http://proxy:3128"}, {}, "c", "proxy-url is not supported"),
    ({}, {"username": "a", "password": "b"}, "c", "basic authentication is not supported"),
    ({}, {"client-certificate-data": base64.b64encode(b"C").decode()}, "c", "without its key"),
    ({}, {}, "", "has no current-context"),
    ({}, {}, "nope", "has no context 'nope'"),
    ({"certificate-authority-data": "!!"}, {}, "c", "certificate-authority-data is not valid base64"),
    ({"certificate-authority-data": None, "certificate-authority": "/nonexistent/ca"}, {}, "c",
     "cannot read certificate-authority /nonexistent/ca"),
])
def test_kubeconfig_problems_are_one_line_usage_errors(tmp_path: Path, cluster: dict, user: dict, current: str,
                                                       says: str) -> None:
    path = write_kubeconfig(tmp_path / "kc", cluster=cluster, user=user, current=current)
    with pytest.raises(UsageError) as exc:
        ks.load_kubeconfig(str(path))
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_kubeconfig_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="names no readable file"):
        ks.load_kubeconfig(str(tmp_path / "missing"))
    (tmp_path / "list").write_text("- a\n")
    with pytest.raises(UsageError, match="is not a kubeconfig"):
        ks.load_kubeconfig(str(tmp_path / "list"))


# the apply body -------------------------------------------------------------------------------------------------

def test_apply_body_is_an_opaque_secret_of_the_files() -> None:
    files = {"tlscert": b"CERT", "key": b"\x00KEY", "kubeconfig.yaml": b"apiVersion: v1\n"}
    body = ks.apply_body(REF, files, {"app": "robot"}, resource_version="42")
    assert body == {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": "robot-out", "namespace": "bots", "labels": {"app": "robot"},
                                 "resourceVersion": "42"},
                    "data": {"key": "AEtFWQ==", "kubeconfig.yaml": "YXBpVmVyc2lvbjogdjEK", "tlscert": "Q0VSVA=="}}
    assert list(body["data"]) == sorted(files)
    assert "labels" not in ks.apply_body(REF, files)["metadata"]
    assert "resourceVersion" not in ks.apply_body(REF, files)["metadata"]
    assert set(ks.FILES) >= {"identity", "tlscert", "key", "key.pub", "key-cert.pub", "teleport-host-ca.crt",
                             "teleport-user-ca.crt", "kubeconfig.yaml"}


def test_apply_body_refuses_bad_keys_and_oversized_data() -> None:
    with pytest.raises(UsageError, match="cannot be a Secret key"):
        ks.apply_body(REF, {"sub/dir": b"x"})
    with pytest.raises(UsageError, match="more than a Secret may"):
        ks.apply_body(REF, {"a": b"x" * (ks.MAX_SECRET + 1)})
    with pytest.raises(TypeError):
        ks.apply_body(REF, {"a": "text"})  # type: ignore[dict-item]


# requests against a fake Kubernetes API -----------------------------------------------------------------------------

class FakeKube:
    """An HTTPS server that records requests and answers with `answers[(method, path)]` = (status, body)."""

    def __init__(self, tmp: Path, hosts: list[str], loopback: bool = True) -> None:
        now = pki.utcnow()
        self.ca = create_ca("host", "fake", now)
        key = pki.generate_key()
        cert = issue_serving_cert(self.ca, key.public_key(), "kube", hosts, now, loopback=loopback)
        (tmp / "srv.pem").write_text(pki.cert_pem(cert) + pki.private_key_pem(key))
        self.requests: list[dict] = []
        self.answers: dict[tuple[str, str], tuple[int, object]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                url = urlsplit(self.path)
                fake.requests.append({"method": self.command, "path": url.path, "query": parse_qs(url.query),
                                      "headers": dict(self.headers), "body": self.rfile.read(length)})
                status, body = fake.answers.get((self.command, url.path), (404, {"kind": "Status",
                                                                                  "reason": "NotFound"}))
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_DELETE = do_POST = _any

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(tmp / "srv.pem"))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"

    def access(self, **kw: object) -> ks.ClusterAccess:
        return ks.ClusterAccess(self.url, "test kubeconfig", ca_pem=self.ca.cert_pem, **kw)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeKube]:
    f = FakeKube(tmp_path, ["kube.example"])
    yield f
    f.close()


def secret_answer(rv: str, data: dict[str, bytes]) -> dict:
    return {"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
            "metadata": {"name": REF.name, "namespace": REF.namespace, "uid": "u-1", "resourceVersion": rv,
                         "labels": {"app": "robot"}},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def test_write_sends_one_server_side_apply_with_the_token(fake: FakeKube, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    fake.answers[("PATCH", REF.path)] = (201, secret_answer("7", {"tlscert": b"C"}))
    info = ks.write_files(REF, {"tlscert": b"C"}, access=fake.access(token_file=token), labels={"app": "robot"})
    assert (info.resource_version, info.uid, info.created) == ("7", "u-1", True)
    [req] = fake.requests
    assert req["method"] == "PATCH" and req["path"] == REF.path
    assert req["headers"]["Content-Type"] == "application/apply-patch+yaml"
    assert req["headers"]["Authorization"] == "Bearer sa-token"
    assert req["headers"]["User-Agent"].startswith("kubectl-teleport/")
    assert req["query"] == {"fieldManager": ["kubectl-teleport"], "fieldValidation": ["Strict"]}
    sent = yaml.safe_load(req["body"])  # JSON is YAML
    assert sent == ks.apply_body(REF, {"tlscert": b"C"}, {"app": "robot"})
    ks.write_files(REF, {"tlscert": b"C"}, access=fake.access(), force=True, dry_run=True)
    assert fake.requests[-1]["query"]["force"] == ["true"] and fake.requests[-1]["query"]["dryRun"] == ["All"]
    assert "Authorization" not in fake.requests[-1]["headers"]


def test_create_is_a_post_that_never_overwrites(fake: FakeKube) -> None:
    collection = f"/api/v1/namespaces/{REF.namespace}/secrets"
    fake.answers[("POST", collection)] = (201, secret_answer("4", {"identity.pem": b"I"}))
    info = ks.create_secret(REF, {"identity.pem": b"I"}, access=fake.access(), annotations={"example.dev/bot": "b"})
    assert (info.created, info.resource_version) == (True, "4")
    [req] = fake.requests
    assert (req["method"], req["path"]) == ("POST", collection)
    assert req["query"] == {"fieldManager": ["kubectl-teleport"], "fieldValidation": ["Strict"]}
    assert json.loads(req["body"]) == ks.apply_body(REF, {"identity.pem": b"I"},
                                                    annotations={"example.dev/bot": "b"})
    assert json.loads(req["body"])["metadata"]["annotations"] == {"example.dev/bot": "b"}
    fake.answers[("POST", collection)] = (409, {"kind": "Status", "reason": "AlreadyExists",
                                                "message": 'secrets "robot-out" already exists'})
    with pytest.raises(ks.SecretConflict, match="another writer created it first"):
        ks.create_secret(REF, {"identity.pem": b"I"}, access=fake.access())
    with pytest.raises(UsageError, match="invalid Secret annotation"):
        ks.apply_body(REF, {}, annotations={"bad key": "x"})


def test_read_and_delete(fake: FakeKube) -> None:
    assert ks.read_secret(REF, access=fake.access()) is None  # 404 NotFound
    fake.answers[("GET", REF.path)] = (200, secret_answer("9", {"key": b"\x00K", "tlscert": b"C"}))
    info = ks.read_secret(REF, access=fake.access())
    assert info.data == {"key": b"\x00K", "tlscert": b"C"} and info.resource_version == "9"
    assert info.labels == {"app": "robot"} and "\\x00K" not in repr(info)  # data stays out of the repr
    assert ks.delete_secret(REF, access=fake.access()) is False
    fake.answers[("DELETE", REF.path)] = (200, {"kind": "Status", "status": "Success"})
    assert ks.delete_secret(REF, access=fake.access(), resource_version="9") is True
    assert json.loads(fake.requests[-1]["body"])["preconditions"] == {"resourceVersion": "9"}


@pytest.mark.parametrize(("status", "body", "error", "says"), [
    (403, {"kind": "Status", "reason": "Forbidden", "message": 'secrets "robot-out" is forbidden: User "x" cannot '
                                                               'patch resource "secrets"'},
     AccessDenied, 'cannot patch resource "secrets"; grant get, create and patch on secrets in namespace bots'),
    (401, {"kind": "Status", "reason": "Unauthorized", "message": "Unauthorized"}, AccessDenied,
     "did not accept the credentials of test kubeconfig"),
    (409, {"kind": "Status", "reason": "Conflict", "message": 'Apply failed with 1 conflict: conflict with "tbot": '
                                                              ".data.tlscert"},
     ks.SecretConflict, "another field manager set these keys"),
    (409, {"kind": "Status", "reason": "Conflict", "message": 'Operation cannot be fulfilled on secrets "robot-out": '
                                                              "the object has been modified"},
     ks.SecretConflict, "another writer changed it since it was read"),
    (404, {"kind": "Status", "reason": "NotFound", "message": 'namespaces "bots" not found'}, UsageError,
     "check the namespace in kubernetes-secret://bots/robot-out"),
    (422, {"kind": "Status", "reason": "Invalid", "message": "Secret is invalid"}, UsageError,
     "refused the request: Secret is invalid"),
    (500, {"kind": "Status", "reason": "InternalError", "message": "etcd\nis down"}, Unavailable,
     "answered HTTP 500: etcd; try again later"),
    (502, b"<html>bad gateway</html>", Unavailable, "answered HTTP 502 without a JSON object"),
])
def test_failures_are_typed_one_line_errors(fake: FakeKube, status: int, body: object, error: type,
                                            says: str) -> None:
    fake.answers[("PATCH", REF.path)] = (status, body)
    with pytest.raises(error) as exc:
        ks.write_files(REF, {"tlscert": b"SECRET-BYTES"}, access=fake.access())
    assert says in str(exc.value) and "\n" not in str(exc.value)
    assert "SECRET-BYTES" not in str(exc.value) and base64.b64encode(b"SECRET-BYTES").decode() not in str(exc.value)


def test_tls_is_verified_and_the_tls_server_name_is_used(tmp_path: Path) -> None:
    named = FakeKube(tmp_path, ["kube.internal"], loopback=False)  # its certificate names kube.internal only
    try:
        named.answers[("GET", REF.path)] = (200, secret_answer("1", {}))
        with pytest.raises(TrustError, match="does not verify against the CA of test kubeconfig"):
            ks.read_secret(REF, access=named.access())
        assert ks.read_secret(REF, access=named.access(tls_server_name="kube.internal")).resource_version == "1"
        other = create_ca("host", "other", pki.utcnow())
        with pytest.raises(TrustError):
            ks.read_secret(REF, access=ks.ClusterAccess(named.url, "x", ca_pem=other.cert_pem,
                                                        tls_server_name="kube.internal"))
    finally:
        named.close()


def test_a_client_certificate_is_presented_from_memory(fake: FakeKube) -> None:
    now = pki.utcnow()
    key = pki.generate_key()
    cert = issue_kube_cert(fake.ca, key.public_key(), "alice", ["example"], "k", "fake", now,
                           now + timedelta(hours=1))
    fake.server.socket.context.verify_mode = ssl.CERT_OPTIONAL
    fake.server.socket.context.load_verify_locations(cadata=fake.ca.cert_pem)
    fake.answers[("GET", REF.path)] = (200, secret_answer("1", {}))
    access = fake.access(cert_pem=pki.cert_pem(cert).encode(), key_pem=pki.private_key_pem(key).encode())
    assert ks.read_secret(REF, access=access) is not None
    with pytest.raises(UsageError, match="do not load"):
        ks.read_secret(REF, access=fake.access(cert_pem=b"junk", key_pem=b"junk"))


def test_a_silent_server_costs_the_timeout_not_more() -> None:
    with socket.socket() as listener:  # accepts TCP (the backlog), never speaks TLS
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        access = ks.ClusterAccess(f"https://127.0.0.1:{listener.getsockname()[1]}", "x")
        start = time.monotonic()
        with pytest.raises(Unavailable, match=r"did not answer within 0.5 s"):
            ks.read_secret(REF, access=access, timeout=0.5)
        assert time.monotonic() - start < 3


def test_an_unreachable_server_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(Unavailable, match="cannot reach the Kubernetes API"):
        ks.read_secret(REF, access=ks.ClusterAccess(f"https://127.0.0.1:{port}", "x"), timeout=2)


def test_publish_resolves_url_and_access_from_the_environment(fake: FakeKube, tmp_path: Path) -> None:
    kc = write_kubeconfig(tmp_path / "kc", cluster={"server": fake.url, "certificate-authority-data":
                                                    base64.b64encode(fake.ca.cert_pem.encode()).decode()},
                          user={"token": "t"})
    fake.answers[("PATCH", "/api/v1/namespaces/ci/secrets/out")] = (200, secret_answer("3", {}))
    info = ks.publish("kubernetes-secret://out", {"tlscert": b"C"}, environ={"POD_NAMESPACE": "ci",
                                                                              "KUBECONFIG": str(kc)})
    assert info.resource_version == "3" and not info.created
    assert fake.requests[-1]["headers"]["Authorization"] == "Bearer t"
