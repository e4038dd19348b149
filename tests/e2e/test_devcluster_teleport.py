"""The devcluster as a Teleport stand-in, driven by independent clients in every mode (16/legacy, 17/legacy,
17/balanced-v1, 18/balanced-v1): httpx for the web API, grpcio channels for the direct auth port, stdlib `ssl`
(+ h2 for one unary call) for the proxy's ClientHello routes, and the real kubectl for the kube route.

Nothing here uses the plugin's issuer: these clients are written from the wire facts, so they check the server.
"""

from __future__ import annotations

import base64
import datetime
import json
import socket
import ssl
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID
from google.protobuf import empty_pb2
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded, TrailersReceived

from kubectl_teleport import pki
from kubectl_teleport.proto import teleport_auth_pb2 as pb
from tests.devcluster_fixture import DevCluster, start_devcluster

MODES = [("16", "legacy"), ("17", "legacy"), ("17", "balanced-v1"), ("18", "balanced-v1")]
ROLE = "machine-id-kube-role"
KUBE = "example-k8s-cluster"
GENERATE = "/proto.AuthService/GenerateUserCerts"
CLUSTER_CA = "/proto.AuthService/GetClusterCACert"
PING = "/proto.AuthService/Ping"
OID = {name: x509.ObjectIdentifier(f"1.3.9999.{arc}") for name, arc in (
    ("kube_users", "1.1"), ("kube_groups", "1.2"), ("kube_cluster", "1.3"), ("cluster", "1.7"),
    ("renewable", "1.13"), ("generation", "1.14"), ("impersonator", "2.7"), ("disallow_reissue", "2.9"),
    ("bot", "2.18"), ("bot_instance", "2.20"))}


# --- an independent client --------------------------------------------------------------------------------


@dataclass
class Keys:
    """One key in the encodings Teleport expects: TLS PEM (PKCS#1 RSA or PKIX), SSH authorized_keys line."""

    private_pem: bytes
    tls_pem: bytes
    ssh_line: bytes

    @classmethod
    def for_suite(cls, suite: str) -> Keys:
        key = rsa.generate_private_key(65537, 2048) if suite == "legacy" else ec.generate_private_key(ec.SECP256R1())
        pub = key.public_key()
        if suite == "legacy":
            tls = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
            fmt = serialization.PrivateFormat.TraditionalOpenSSL
        else:
            tls = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            fmt = serialization.PrivateFormat.PKCS8
        return cls(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()), tls,
                   pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n")


@dataclass
class Identity:
    cert_pem: bytes
    keys: Keys
    certs: dict

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def attr(cert: x509.Certificate, name: str) -> list[str]:
    oid = OID[name] if name in OID else name
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def major(dc: DevCluster) -> int:
    return int(dc.teleport_version.split(".")[0])


def cluster_sni(dc: DevCluster) -> str:
    return dc.cluster_name.encode().hex() + ".teleport.cluster.local"


def web(dc: DevCluster) -> httpx.Client:
    """The proxy's web API, trusted through the web CA (as SSL_CERT_FILE would make it)."""
    return httpx.Client(base_url=f"https://{dc.teleport_proxy}", timeout=15,
                        verify=ssl.create_default_context(cafile=dc.web_ca_file))


def add_bot(dc: DevCluster, name: str, roles: str = ROLE) -> dict:
    return json.loads(dc.admin("bots", "add", name, "--roles", roles, "--format", "json").stdout)


def post_join(dc: DevCluster, token: str, keys: Keys) -> httpx.Response:
    body = {"token": token, "role": "Bot", "public_tls_key": base64.b64encode(keys.tls_pem).decode(),
            "public_ssh_key": base64.b64encode(keys.ssh_line).decode(),
            "expires": (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime(
                "%Y-%m-%dT%H:%M:%SZ")}
    with web(dc) as c:
        return c.post("/webapi/host/credentials", json=body)


def join(dc: DevCluster, name: str) -> Identity:
    keys = Keys.for_suite(dc.suite)
    resp = post_join(dc, add_bot(dc, name)["token"], keys)
    assert resp.status_code == 200, resp.text
    certs = resp.json()
    return Identity(base64.b64decode(certs["tls"]), keys, certs)


def certs_request(dc: DevCluster, ident: Identity, keys: Keys, **fields: object) -> pb.UserCertsRequest:
    """A UserCertsRequest with the key fields the server's version reads (field 1 before 17, 22+23 from 17)."""
    key_fields = {"public_key": keys.ssh_line} if major(dc) < 17 else \
        {"ssh_public_key": keys.ssh_line, "tls_public_key": keys.tls_pem}
    req = pb.UserCertsRequest(username=ident.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
                              **{**key_fields, **fields})
    req.expires.FromDatetime(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=30))
    return req


def channel(dc: DevCluster, ident: Identity | None = None) -> grpc.Channel:
    """grpcio to the auth service's own port (--auth-server), server name = the encoded cluster name."""
    creds = grpc.ssl_channel_credentials(dc.host_ca_pem.encode(), *((ident.keys.private_pem, ident.cert_pem)
                                                                     if ident else ()))
    return grpc.secure_channel(dc.auth_server, creds, options=[("grpc.ssl_target_name_override", cluster_sni(dc))])


def generate(dc: DevCluster, ident: Identity, req: pb.UserCertsRequest) -> pb.Certs:
    with channel(dc, ident) as ch:
        call = ch.unary_unary(GENERATE, request_serializer=pb.UserCertsRequest.SerializeToString,
                              response_deserializer=pb.Certs.FromString)
        return call(req, timeout=15)


def generate_error(dc: DevCluster, ident: Identity, req: pb.UserCertsRequest,
                   metadata: tuple = ()) -> grpc.RpcError:
    with channel(dc, ident) as ch, pytest.raises(grpc.RpcError) as info:
        ch.unary_unary(GENERATE, request_serializer=pb.UserCertsRequest.SerializeToString,
                       response_deserializer=pb.Certs.FromString)(req, timeout=15, metadata=metadata)
    return info.value


def renew(dc: DevCluster, ident: Identity) -> Identity:
    keys = Keys.for_suite(dc.suite)
    certs = generate(dc, ident, certs_request(dc, ident, keys))
    return Identity(certs.tls, keys, {})


def kube_cert(dc: DevCluster, ident: Identity, cluster: str = KUBE) -> Identity:
    keys = Keys.for_suite(dc.suite)
    certs = generate(dc, ident, certs_request(dc, ident, keys, role_requests=[ROLE], use_role_requests=True,
                                              route_to_cluster=dc.cluster_name, kubernetes_cluster=cluster))
    return Identity(certs.tls, keys, {})


def hello(address: str, *, sni: str, alpn: list[str] | None = None, cafile: str | None = None,
          cadata: str | None = None, check_name: bool = True) -> tuple[x509.Certificate, str | None]:
    """A TLS handshake to `address`: (the server's certificate, the negotiated ALPN protocol)."""
    ctx = ssl.create_default_context(cafile=cafile, cadata=cadata)
    ctx.check_hostname = check_name
    if alpn:
        ctx.set_alpn_protocols(alpn)
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)), tls.selected_alpn_protocol()


def routed_unary(dc: DevCluster, path: str, message: bytes, ident: Identity | None = None,
                 verify: bool = True) -> tuple[int, bytes]:
    """One unary gRPC call through the proxy's ALPN auth route with h2 + ssl: (grpc-status, response message)."""
    ctx = ssl.create_default_context(cadata=dc.host_ca_pem) if verify else ssl._create_unverified_context()
    ctx.set_alpn_protocols([f"teleport-auth@{cluster_sni(dc)}", "h2"])
    if ident is not None:
        with tempfile.TemporaryDirectory() as tmp:
            pem = Path(tmp) / "client.pem"
            pem.write_bytes(ident.cert_pem + ident.keys.private_pem)
            ctx.load_cert_chain(pem)
    host, port = dc.teleport_proxy.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=cluster_sni(dc)) as tls:
        assert tls.selected_alpn_protocol() == "h2"
        conn = H2Connection(H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "POST"), (":scheme", "https"), (":path", path),
                              (":authority", cluster_sni(dc)), ("content-type", "application/grpc"),
                              ("te", "trailers")])
        conn.send_data(1, struct.pack(">?I", False, len(message)) + message, end_stream=True)
        tls.sendall(conn.data_to_send())
        body, status, ended = b"", None, False
        while not ended:
            data = tls.recv(65536)
            assert data, "the server closed the connection"
            for event in conn.receive_data(data):
                if isinstance(event, DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, (ResponseReceived, TrailersReceived)):
                    headers = dict(event.headers)
                    status = headers.get(b"grpc-status", status)
                elif isinstance(event, StreamEnded):
                    ended = True
            tls.sendall(conn.data_to_send())
    return int(status), body[5:]


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=MODES, ids=[f"{v}-{s}" for v, s in MODES])
def dc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    version, suite = request.param
    cluster = start_devcluster(tmp_path_factory.mktemp(f"tp-{version}-{suite}"), "--teleport-version", version,
                               "--suite", suite)
    yield cluster
    cluster.stop()


# --- every mode ------------------------------------------------------------------------------------------


def test_find_and_ping_describe_the_cluster(dc: DevCluster) -> None:
    with web(dc) as c:
        find, ping, v1 = c.get("/webapi/find"), c.get("/webapi/ping"), c.get("/v1/webapi/find")
        missing = c.get("/webapi/nothing")
    assert find.status_code == ping.status_code == v1.status_code == 200
    body = find.json()
    assert body["cluster_name"] == dc.cluster_name and body["server_version"] == dc.teleport_version
    assert body["proxy"]["tls_routing_enabled"] is True
    assert body["proxy"]["kube"] == {"enabled": True, "public_addr": dc.teleport_proxy,
                                     "listen_addr": dc.teleport_proxy}
    if major(dc) >= 17:
        assert body["auth"]["signature_algorithm_suite"] == dc.suite
    else:
        assert "signature_algorithm_suite" not in body["auth"]
    assert ping.json()["server_version"] == dc.teleport_version and v1.json() == body
    assert missing.status_code == 404 and set(missing.json()) == {"error"}


def test_join_spends_the_token_once(dc: DevCluster) -> None:
    token = add_bot(dc, "joiner")["token"]
    keys = Keys.for_suite(dc.suite)
    first = post_join(dc, token, keys)
    assert first.status_code == 200, first.text
    certs = first.json()
    cert = x509.load_pem_x509_certificate(base64.b64decode(certs["tls"]))
    assert attr(cert, NameOID.COMMON_NAME) == ["bot-joiner"] and attr(cert, NameOID.ORGANIZATION_NAME) == \
        ["bot-joiner"]
    assert attr(cert, "cluster") == [dc.cluster_name] and attr(cert, "renewable") == ["true"]
    assert attr(cert, "generation") == ["1"] and attr(cert, "bot") == ["joiner"]
    assert len(attr(cert, "bot_instance")) == 1  # every default version is past 16.2
    assert pki.public_key_der(cert.public_key()) == serialization.load_pem_public_key(keys.tls_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert [base64.b64decode(c).decode() for c in certs["tls_ca_certs"]] == [dc.user_ca_pem, dc.host_ca_pem]
    ssh_cert = serialization.load_ssh_public_identity(base64.b64decode(certs["ssh"]))
    assert ssh_cert.key_id == b"bot-joiner"
    assert len(certs["ssh_ca_certs"]) == 2
    again = post_join(dc, token, Keys.for_suite(dc.suite))
    assert again.status_code == 403 and "already used" in again.json()["error"]["message"]


def test_renewal_bumps_the_generation_and_a_stale_one_locks_the_bot(dc: DevCluster) -> None:
    gen1 = join(dc, "renewer")
    gen2 = renew(dc, gen1)
    assert attr(gen2.cert, "generation") == ["2"] and attr(gen2.cert, "renewable") == ["true"]
    assert attr(gen2.cert, "bot_instance") == attr(gen1.cert, "bot_instance")
    before = dc.stats()
    err = generate_error(dc, gen1, certs_request(dc, gen1, Keys.for_suite(dc.suite)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == "renewable cert generation mismatch"
    locked = generate_error(dc, gen2, certs_request(dc, gen2, Keys.for_suite(dc.suite)))  # everything is denied
    assert locked.code() == grpc.StatusCode.PERMISSION_DENIED and "lock" in locked.details()
    after = dc.stats()
    assert after["bots_locked"] == before["bots_locked"] + 1
    assert after["generation_mismatches"] == before["generation_mismatches"] + 1
    locks = json.loads(dc.admin("locks", "ls", "--format", "json").stdout)
    assert [x["bot"] for x in locks if x["bot"] == "renewer"] == ["renewer"]


def test_kube_certificate_is_impersonated_and_works_through_the_router(dc: DevCluster, kubectl: Path,
                                                                       tmp_path: Path) -> None:
    bot = join(dc, "kuber")
    kube = kube_cert(dc, bot)
    cert = kube.cert
    assert attr(cert, "kube_cluster") == [KUBE] and attr(cert, "kube_users") == ["alice"]
    assert attr(cert, "kube_groups") == ["example"] and attr(cert, NameOID.ORGANIZATION_NAME) == [ROLE]
    assert attr(cert, "impersonator") == ["bot-kuber"] and attr(cert, "disallow_reissue") == ["true"]
    assert attr(cert, "renewable") == [] and attr(cert, "generation") == []
    # impersonation never moves the generation: the bot identity still renews from generation 1
    assert attr(renew(dc, bot).cert, "generation") == ["2"]
    # a disallow-reissue certificate gets nothing more
    denied = generate_error(dc, kube, certs_request(dc, kube, Keys.for_suite(dc.suite)))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED

    for name, data in (("ca.crt", dc.host_ca_pem.encode()), ("tls.crt", kube.cert_pem),
                       ("tls.key", kube.keys.private_pem)):
        (tmp_path / name).write_bytes(data)
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "tp",
              "clusters": [{"name": "tp", "cluster": {"server": f"https://{dc.teleport_proxy}",
                                                      "tls-server-name":
                                                          "kube-teleport-proxy-alpn.teleport.cluster.local",
                                                      "certificate-authority": str(tmp_path / "ca.crt")}}],
              "users": [{"name": "bot", "user": {"client-certificate": str(tmp_path / "tls.crt"),
                                                 "client-key": str(tmp_path / "tls.key")}}],
              "contexts": [{"name": "tp", "context": {"cluster": "tp", "user": "bot"}}]}
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    out = subprocess.run([str(kubectl), "--kubeconfig", str(tmp_path / "kubeconfig"), "--cache-dir",
                          str(tmp_path / "cache"), "get", "pods", "-n", "demo", "-o", "name"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pod/toolbox" in out.stdout.split()
    who = subprocess.run([str(kubectl), "--kubeconfig", str(tmp_path / "kubeconfig"), "--cache-dir",
                          str(tmp_path / "cache"), "auth", "whoami", "-o", "json"],
                         capture_output=True, text=True, timeout=60)
    assert who.returncode == 0, who.stderr
    info = json.loads(who.stdout)["status"]["userInfo"]
    assert info["username"] == "alice" and "example" in info["groups"]


def test_unknown_kube_cluster_is_invalid_argument(dc: DevCluster) -> None:
    bot = join(dc, "lost")
    req = certs_request(dc, bot, Keys.for_suite(dc.suite), role_requests=[ROLE], use_role_requests=True,
                        kubernetes_cluster="no-such-cluster")
    err = generate_error(dc, bot, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "no-such-cluster" in err.details()


def test_key_fields_follow_the_version(dc: DevCluster) -> None:
    bot = join(dc, "keyed")
    keys = Keys.for_suite(dc.suite)
    only_new = certs_request(dc, bot, keys, role_requests=[ROLE], use_role_requests=True)
    only_new.ClearField("public_key")
    only_new.ssh_public_key, only_new.tls_public_key = keys.ssh_line, keys.tls_pem
    only_old = certs_request(dc, bot, keys, role_requests=[ROLE], use_role_requests=True)
    for name in ("ssh_public_key", "tls_public_key"):
        only_old.ClearField(name)
    only_old.public_key = keys.ssh_line
    if major(dc) < 17:
        err = generate_error(dc, bot, only_new)
        assert err.code() == grpc.StatusCode.UNKNOWN and err.details() == "ssh: no key found"
        assert generate(dc, bot, only_old).tls
    else:
        err = generate_error(dc, bot, only_old)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert generate(dc, bot, only_new).tls


def test_the_suite_decides_the_key_algorithm(dc: DevCluster) -> None:
    other = Keys.for_suite("balanced-v1" if dc.suite == "legacy" else "legacy")
    resp = post_join(dc, add_bot(dc, "wrong-key")["token"], other)
    assert resp.status_code == 400 and "requires" in resp.json()["error"]["message"]


def test_host_ca_from_get_cluster_ca_cert_matches_the_pin(dc: DevCluster) -> None:
    # through the proxy's auth route, unverified and without a client certificate, as a pinned login starts
    status, body = routed_unary(dc, CLUSTER_CA, b"", verify=False)
    assert status == 0
    ca = x509.load_pem_x509_certificate(pb.GetClusterCACertResponse.FromString(body).tls_ca)
    assert pki.spki_pin(ca) == dc.ca_pin == add_bot(dc, "pinned")["ca_pins"][0]
    # and on the auth service's own port with grpcio
    with channel(dc) as ch:
        direct = ch.unary_unary(CLUSTER_CA, request_serializer=empty_pb2.Empty.SerializeToString,
                                response_deserializer=pb.GetClusterCACertResponse.FromString)(empty_pb2.Empty())
    assert pki.spki_pin(x509.load_pem_x509_certificate(direct.tls_ca)) == dc.ca_pin


def test_renewal_through_the_routed_auth_port_with_mtls(dc: DevCluster) -> None:
    bot = join(dc, "routed")
    status, body = routed_unary(dc, GENERATE, certs_request(dc, bot, Keys.for_suite(dc.suite))
                                .SerializeToString(), ident=bot)
    assert status == 0
    cert = x509.load_pem_x509_certificate(pb.Certs.FromString(body).tls)
    assert attr(cert, "generation") == ["2"]
    status, _ = routed_unary(dc, GENERATE, certs_request(dc, bot, Keys.for_suite(dc.suite)).SerializeToString())
    assert status == grpc.StatusCode.PERMISSION_DENIED.value[0]  # no client certificate: access denied


# --- mode-independent ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    cluster = start_devcluster(tmp_path_factory.mktemp("tp-default"))
    yield cluster
    cluster.stop()


def test_the_proxy_routes_by_client_hello(default_dc: DevCluster) -> None:
    dc = default_dc
    auth, proto = hello(dc.teleport_proxy, sni=cluster_sni(dc), alpn=[f"teleport-auth@{cluster_sni(dc)}", "h2"],
                        cadata=dc.host_ca_pem)
    assert proto == "h2"
    assert auth.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(
        x509.DNSName) == ["teleport.cluster.local", "*.teleport.cluster.local"]
    kube, _ = hello(dc.teleport_proxy, sni="kube-teleport-proxy-alpn.teleport.cluster.local", cadata=dc.host_ca_pem)
    assert kube.issuer == pki.load_cert(dc.host_ca_pem).subject and kube != auth
    page, proto = hello(dc.teleport_proxy, sni="localhost", alpn=["http/1.1"], cafile=dc.web_ca_file)
    assert page.issuer == pki.load_cert(Path(dc.web_ca_file).read_text()).subject and proto == "http/1.1"
    assert Path(dc.web_ca_file).read_text() not in (dc.host_ca_pem, dc.user_ca_pem)


def test_version_metadata_present_but_unparseable_is_rejected(default_dc: DevCluster) -> None:
    dc = default_dc
    bot = join(dc, "versioned")
    req = certs_request(dc, bot, Keys.for_suite(dc.suite), role_requests=[ROLE], use_role_requests=True)
    err = generate_error(dc, bot, req, metadata=(("version", "not-a-version"),))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    with channel(dc, bot) as ch:
        ok = ch.unary_unary(GENERATE, request_serializer=pb.UserCertsRequest.SerializeToString,
                            response_deserializer=pb.Certs.FromString)(req, metadata=(("version", "17.0.0"),))
    assert ok.tls


def test_an_admin_lock_denies_everything_until_removed(default_dc: DevCluster) -> None:
    dc = default_dc
    bot = join(dc, "locked")
    dc.admin("locks", "add", "locked")
    kube_req = certs_request(dc, bot, Keys.for_suite(dc.suite), role_requests=[ROLE], use_role_requests=True,
                             kubernetes_cluster=KUBE)
    assert generate_error(dc, bot, kube_req).code() == grpc.StatusCode.PERMISSION_DENIED
    resp = post_join(dc, add_bot(dc, "locked")["token"], Keys.for_suite(dc.suite))
    assert resp.status_code == 403 and "lock" in resp.json()["error"]["message"]
    for method, message, reply in ((PING, pb.PingRequest(), pb.PingResponse),
                                   (CLUSTER_CA, empty_pb2.Empty(), pb.GetClusterCACertResponse)):
        with channel(dc, bot) as ch, pytest.raises(grpc.RpcError) as info:  # Teleport's authorizer: every call
            ch.unary_unary(method, request_serializer=type(message).SerializeToString,
                           response_deserializer=reply.FromString)(message, timeout=15)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert 'lock targeting User:"bot-locked" is in force' in info.value.details()
        with channel(dc) as ch:  # an anonymous caller is no bot: answered
            assert ch.unary_unary(method, request_serializer=type(message).SerializeToString,
                                  response_deserializer=reply.FromString)(message, timeout=15)
    dc.admin("locks", "rm", "locked")
    assert generate(dc, bot, kube_req).tls
    with channel(dc, bot) as ch:
        ping = ch.unary_unary(PING, request_serializer=pb.PingRequest.SerializeToString,
                              response_deserializer=pb.PingResponse.FromString)(pb.PingRequest(), timeout=15)
    assert ping.cluster_name


def test_without_tls_routing_the_proxy_is_a_plain_web_port(tmp_path: Path) -> None:
    dc = start_devcluster(tmp_path / "plain", "--no-tls-routing", seed=True)
    try:
        with web(dc) as c:
            body = c.get("/webapi/find").json()
        assert body["proxy"]["tls_routing_enabled"] is False
        assert body["proxy"]["kube"]["public_addr"] == dc.kube_server.removeprefix("https://")
        # an auth ALPN on the proxy port reaches the web API, not auth
        page, _ = hello(dc.teleport_proxy, sni=cluster_sni(dc), alpn=[f"teleport-auth@{cluster_sni(dc)}", "h2"],
                        cafile=dc.web_ca_file, check_name=False)
        assert page.issuer == pki.load_cert(Path(dc.web_ca_file).read_text()).subject
        bot = join(dc, "plain")
        assert attr(renew(dc, bot).cert, "generation") == ["2"]  # the auth port still works
    finally:
        dc.stop()
