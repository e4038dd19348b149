"""Units of the Teleport client: key encodings per suite (checked with cryptography's own parsers), Go JSON,
`/webapi/find` parsing, UserCertsRequest per server version, and the error mapping tables."""

from __future__ import annotations

import base64
import datetime
import re
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from kubectl_teleport import errors, pki
from kubectl_teleport.issuer import auth, certs, grpc, http, teleport, webapi
from kubectl_teleport.proto import teleport_auth_pb2 as pb

UTC = datetime.timezone.utc
CLUSTER = "tele.example.com"


# --- keys ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("suite", "kind"), [
    ("", rsa.RSAPrivateKey), ("legacy", rsa.RSAPrivateKey), ("balanced-v1", ec.EllipticCurvePrivateKey),
    ("fips-v1", ec.EllipticCurvePrivateKey), ("hsm-v1", ec.EllipticCurvePrivateKey),
    ("balanced-v2", ec.EllipticCurvePrivateKey),  # a suite from the future: P-256, accepted by every suite after legacy
])
def test_key_per_suite_and_its_encodings(suite: str, kind: type) -> None:
    key = pki.key_for_suite(suite)
    assert isinstance(key, kind)
    tls_pem, ssh_line, priv_pem = pki.tls_public_key_pem(key), pki.ssh_public_key_line(key), pki.private_key_pem(key)
    if kind is rsa.RSAPrivateKey:
        assert key.key_size == 2048 and key.public_key().public_numbers().e == 65537
        assert tls_pem.startswith("-----BEGIN RSA PUBLIC KEY-----\n")  # PKCS#1
        der = serialization.load_pem_public_key(tls_pem.encode()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
        assert der == key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
        assert priv_pem.startswith("-----BEGIN RSA PRIVATE KEY-----\n") and ssh_line.startswith("ssh-rsa ")
    else:
        assert isinstance(key.curve, ec.SECP256R1)
        assert tls_pem.startswith("-----BEGIN PUBLIC KEY-----\n")  # PKIX
        assert priv_pem.startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS#8
        assert ssh_line.startswith("ecdsa-sha2-nistp256 ")
    assert ssh_line.endswith("\n") and ssh_line.count("\n") == 1 and len(ssh_line.split()) == 2
    for parsed in (serialization.load_pem_public_key(tls_pem.encode()),
                   serialization.load_ssh_public_key(ssh_line.encode()),
                   serialization.load_pem_private_key(priv_pem.encode(), None).public_key(),
                   pki.load_tls_public_key(tls_pem), pki.load_ssh_public_key(ssh_line),
                   pki.load_private_key(priv_pem)):
        assert pki.public_keys_equal(parsed, key)


def test_load_private_key_accepts_every_teleport_form_and_nothing_else() -> None:
    ec_key = pki.generate_key()
    sec1 = ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    assert sec1.startswith(b"-----BEGIN EC PRIVATE KEY") and pki.public_keys_equal(pki.load_private_key(sec1), ec_key)
    rsa_key = pki.key_for_suite("legacy")
    pkcs8 = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    assert pki.public_keys_equal(pki.load_private_key(pkcs8), rsa_key)
    small = rsa.generate_private_key(65537, 1024)
    for bad in (ed25519.Ed25519PrivateKey.generate(), small):
        pem = bad.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        with pytest.raises(ValueError):
            pki.load_private_key(pem)
    with pytest.raises(ValueError):  # the devcluster's protocol input stays P-256 only
        pki.load_public_key(pki.public_key_pem(rsa_key))


def test_identity_of_reads_bot_attributes(tmp_path: Path) -> None:
    from tests.teleport_fakes import Cluster, Pki

    c = Cluster(Pki.create(tmp_path))
    cert = pki.load_cert(c.issue(pki.generate_key().public_key(), expires=datetime.datetime.now(UTC)
                                 + datetime.timedelta(hours=1), generation=3, roles=["bot-robot"]))
    ident = pki.identity_of(cert)
    assert (ident.generation, ident.bot_name, ident.bot_instance_id) == (3, "robot", c.instance_id)
    assert ident.renewable and not ident.disallow_reissue and ident.impersonator is None


# --- Go JSON -------------------------------------------------------------------------------------------------


def test_join_body_follows_go_json() -> None:
    key = pki.key_for_suite("balanced-v1")
    body = webapi.join_body("tok", key, datetime.datetime(2030, 5, 6, 7, 8, 9, 123456,
                                                          tzinfo=datetime.timezone(datetime.timedelta(hours=2))))
    assert set(body) == {"token", "role", "public_tls_key", "public_ssh_key", "expires"}
    assert body["role"] == "Bot" and body["expires"] == "2030-05-06T05:08:09Z"
    wanted = {"public_tls_key": pki.tls_public_key_pem(key), "public_ssh_key": pki.ssh_public_key_line(key)}
    for name, want in wanted.items():
        value = body[name]
        assert re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", value) and len(value) % 4 == 0  # std alphabet, padded
        assert base64.b64decode(value, validate=True).decode() == want


def test_certs_from_json_and_from_proto() -> None:
    from tests.teleport_fakes import make_ca

    ca = pki.cert_pem(make_ca("c")[0])
    b64 = base64.b64encode
    got = certs.from_json({"tls": b64(ca.encode()).decode(), "tls_ca_certs": [b64(ca.encode()).decode()],
                           "extra": 1}, "x")  # unknown fields ignored, ssh and ssh_ca_certs omitted
    assert got == certs.Certs(tls=ca, ssh="", tls_ca_certs=[ca], ssh_ca_certs=[])
    msg = pb.Certs.FromString(pb.Certs(tls=ca.encode(), ssh=b"ssh-cert\n", tls_ca_certs=[ca.encode()],
                                       ssh_ca_certs=[b"a\n", b"b\n"]).SerializeToString())
    assert certs.from_message(msg, "x") == certs.Certs(ca, "ssh-cert\n", [ca], ["a\n", "b\n"])
    for bad in ({}, {"tls": "-_-_"}, {"tls": b64(b"not a cert").decode()}, {"tls": 5},
                {"tls": b64(ca.encode()).decode(), "tls_ca_certs": "x"}, []):
        with pytest.raises(errors.Unavailable):
            certs.from_json(bad, "x")


# --- discovery -------------------------------------------------------------------------------------------------


def find_answer(**auth_fields: object) -> dict:
    return {"auth": {"type": "local", **auth_fields},
            "proxy": {"kube": {"enabled": True, "public_addr": "kube.example.com:3026", "listen_addr": "0.0.0.0:3026"},
                      "ssh": {"public_addr": "tele.example.com:443", "ssh_public_addr": "tele.example.com:3023"},
                      "tls_routing_enabled": True},
            "server_version": "17.4.2", "min_client_version": "16.0.0-aa", "cluster_name": CLUSTER}


@pytest.mark.parametrize(("auth_fields", "suite"), [
    ({"signature_algorithm_suite": "balanced-v1"}, "balanced-v1"), ({}, ""),
    ({"signature_algorithm_suite": 1}, "legacy"), ({"signature_algorithm_suite": 4}, "hsm-v1"),
    ({"signature_algorithm_suite": "Balanced-V2"}, "balanced-v2"), ({"signature_algorithm_suite": None}, ""),
])
def test_parse_find(auth_fields: dict, suite: str) -> None:
    d = webapi.parse_find("tele.example.com:443", find_answer(**auth_fields))
    assert d.suite == suite and d.cluster_name == CLUSTER and d.tls_routing and d.server_major == 17
    assert (d.web_public_addr, d.ssh_public_addr) == ("tele.example.com:443", "tele.example.com:3023")
    assert (d.kube_enabled, d.kube_public_addr, d.kube_listen_addr) == (True, "kube.example.com:3026", "0.0.0.0:3026")


def test_parse_find_needs_a_cluster_name() -> None:
    with pytest.raises(errors.Unavailable, match="names no cluster"):
        webapi.parse_find("p:443", {"proxy": {}})
    d = webapi.parse_find("p:443", {"cluster_name": "c", "proxy": "nonsense"})
    assert not d.tls_routing and d.suite == "" and d.server_major is None


@pytest.mark.parametrize(("version", "major"), [("17.4.2", 17), ("v16.0.0-dev.1", 16), ("18", 18), ("", None),
                                                 ("dev", None), ("123456.1", None)])
def test_version_major(version: str, major: int | None) -> None:
    assert teleport.version_major(version) == major


# --- join errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "message"), [
    ({"error": {"message": "token expired or not found"}}, "token expired or not found"),
    ({"error": "plain"}, "plain"), ({"message": "old trace"}, "old trace"), (None, "HTTP 403"),
    ({"error": {"message": "two\nlines  here."}}, "two lines here"),
])
def test_error_message(body: object, message: str) -> None:
    assert webapi.error_message(body, 403) == message


@pytest.mark.parametrize(("status", "error", "words"), [
    (400, errors.IdentityRejected, "new join token"), (401, errors.IdentityRejected, "new join token"),
    (403, errors.IdentityRejected, "new join token"), (404, errors.Unavailable, "Teleport proxy"),
    (429, errors.Unavailable, "same token"), (500, errors.Unavailable, "may have been used"),
    (502, errors.Unavailable, "may have been used"),
])
def test_join_error_table(status: int, error: type, words: str) -> None:
    err = webapi.join_error("joining c", status, webapi.redact('key "/tokens/s3cret" is not found', "s3cret"))
    assert type(err) is error and words in str(err) and "s3cret" not in str(err)


# --- UserCertsRequest per server version ----------------------------------------------------------------------


def numbers(req: pb.UserCertsRequest) -> set[int]:
    decoded = pb.UserCertsRequest.FromString(req.SerializeToString())  # what goes on the wire, read back
    return {f.number for f, _ in decoded.ListFields()}


EXPIRES = datetime.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


@pytest.mark.parametrize(("major", "fields"), [(15, {1}), (16, {1}), (17, {22, 23}), (18, {22, 23}), (None, {22, 23})])
def test_renewal_request_per_version(major: int | None, fields: set[int]) -> None:
    key = pki.key_for_suite("legacy" if major and major < 17 else "balanced-v1")
    req = teleport.user_certs_request(username="bot-robot", expires=EXPIRES, key=key,
                                      key_fields=teleport.key_fields_for(major))
    assert numbers(req) == {2, 3} | fields
    if 1 in fields:
        assert req.public_key == pki.ssh_public_key_line(key).encode()
    else:
        assert req.ssh_public_key == pki.ssh_public_key_line(key).encode()
        assert req.tls_public_key == pki.tls_public_key_pem(key).encode()
    assert (req.expires.seconds, req.expires.nanos) == (int(EXPIRES.timestamp()), 678000000)


def test_kube_request_fields() -> None:
    req = teleport.user_certs_request(username="bot-robot", expires=EXPIRES, key=pki.generate_key(),
                                      key_fields=teleport.KEY_FIELDS_SPLIT, roles=["a", "b"],
                                      route_to_cluster=CLUSTER, kubernetes_cluster="prod")
    assert numbers(req) == {2, 3, 5, 7, 12, 14, 22, 23}
    assert list(req.role_requests) == ["a", "b"] and req.use_role_requests and req.usage == 0


def test_kube_expiry_is_capped_by_the_identity_and_24h() -> None:
    now = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    later = now + datetime.timedelta(hours=48)
    assert teleport.kube_expiry(now, 3600, later) == now + datetime.timedelta(hours=1)
    assert teleport.kube_expiry(now, 3 * 86400, later) == now + datetime.timedelta(hours=24)
    assert teleport.kube_expiry(now, 3600, now + datetime.timedelta(minutes=5)) == now + datetime.timedelta(minutes=5)


# --- routes ----------------------------------------------------------------------------------------------------


def test_routes() -> None:
    r = auth.route_via_proxy("tele.example.com:443", CLUSTER)
    sni = CLUSTER.encode().hex() + ".teleport.cluster.local"
    assert (r.host, r.port, r.sni) == ("tele.example.com", 443, sni)
    assert r.alpn == ("teleport-auth@" + sni, "h2")
    d = auth.route_direct("[::1]:3025", CLUSTER)
    assert (d.host, d.port, d.alpn, d.sni, d.address) == ("::1", 3025, ("h2",), sni, "[::1]:3025")
    assert auth.route_for("p:443", CLUSTER, None).alpn[0].startswith("teleport-auth@")
    with pytest.raises(ValueError):
        auth.split_host_port("no-port")


def test_tunnel_refuses_a_proxy_url_it_cannot_speak() -> None:
    with pytest.raises(errors.Unavailable, match="http:// proxy URL"):
        auth.tunnel("https://proxy.example:3128", "tele.example.com:443", 1.0)


def test_auth_context_needs_a_host_ca() -> None:
    with pytest.raises(errors.TrustError):
        auth.auth_context([], None)


# --- the gRPC error table -----------------------------------------------------------------------------------------

ROUTE = auth.route_via_proxy("127.0.0.1:9", CLUSTER)


@pytest.mark.parametrize(("code", "message", "kind", "error", "words", "ambiguous"), [
    (7, "renewable cert generation mismatch: stored=3, presented=2", auth.RENEW, errors.IdentityRejected,
     "generation mismatch.*tctl rm lock/.*new join token", False),
    (7, 'lock targeting User:"bot-robot" is in force', auth.KUBE, errors.IdentityRejected,
     "bot is locked.*tctl rm lock/", False),
    (7, "access denied to perform action", auth.RENEW, errors.IdentityRejected, "log in again", False),
    (7, 'lock targeting User:"bot-robot" is in force', auth.PING_KIND, errors.IdentityRejected,
     "bot is locked.*tctl rm lock/", False),
    (7, "bot-robot: user not found", auth.PING_KIND, errors.IdentityRejected, "refused the bot identity", False),
    (7, "user bot-robot may not impersonate role admin", auth.KUBE, errors.AccessDenied, "--role", False),
    (16, "expired certificate", auth.KUBE, errors.IdentityRejected, "log in again", False),
    (3, 'kubernetes cluster "x" is not registered', auth.KUBE, errors.AccessDenied, "check the name", False),
    (5, 'role "x" is not found', auth.KUBE, errors.AccessDenied, "check the name", False),
    (3, "bad expires", auth.RENEW, errors.Unavailable, "INVALID_ARGUMENT", False),
    (12, "unknown service", auth.CA, errors.Unavailable, "v15 or later", False),
    (14, "auth backend down", auth.RENEW, errors.Unavailable, "try again", True),
    (4, "deadline", auth.RENEW, errors.Unavailable, "try again", True),
    (2, "ssh: no key found", auth.RENEW, errors.Unavailable, "no key found", False),
    (2, "panic", auth.RENEW, errors.Unavailable, "UNKNOWN", True),
    (13, "internal", auth.KUBE, errors.Unavailable, "INTERNAL", True),
    (8, "rate limited", auth.RENEW, errors.Unavailable, "RESOURCE_EXHAUSTED", False),
    (7, 'access denied to perform action "read" on "role"', auth.ROLE, errors.AccessDenied,
     'doing it failed: access denied to perform action "read" on "role"$', False),
    (5, "role bot-robot is not found", auth.ROLE, errors.AccessDenied, "is not found$", False),
    (7, 'lock targeting User:"bot-robot" is in force', auth.ROLE, errors.IdentityRejected, "bot is locked", False),
    (12, "unknown method GetRole", auth.ROLE, errors.Unavailable, "v15 or later", False),
])
def test_status_table(code: int, message: str, kind: str, error: type, words: str, ambiguous: bool) -> None:
    err = auth.map_error(grpc.GrpcError(code, grpc.GRPC_STATUS_NAMES[code], message), "doing it", ROUTE, kind)
    assert type(err) is error and re.search(words, str(err)) and "\n" not in str(err)
    assert err.request_sent and auth.was_ambiguous(err) is ambiguous and err.grpc_code == code
    assert auth.is_no_key_found(err) is (message == "ssh: no key found")


def _verify_error(code: int) -> grpc.TLSVerifyError:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_code = code
    err = grpc.TLSVerifyError("TLS with x: the server's certificate did not verify")
    err.__cause__ = cause
    return err


def test_transport_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "server_clock_offset", lambda proxy, timeout=3.0: 600.0)
    skew = auth.map_error(_verify_error(9), "renewing", ROUTE, auth.RENEW)
    assert isinstance(skew, errors.TrustError) and "10m0s behind" in str(skew) and not skew.request_sent
    wrong = auth.map_error(_verify_error(20), "renewing", ROUTE, auth.RENEW)
    assert isinstance(wrong, errors.TrustError) and "host CA" in str(wrong)
    alpn = auth.map_error(grpc.TransportError("TLS with x negotiated no ALPN, not h2 (offered a, h2): ..."),
                          "renewing", ROUTE, auth.RENEW)
    assert isinstance(alpn, errors.Unavailable) and "--auth-server" in str(alpn) and not auth.was_ambiguous(alpn)
    for sent in (False, True):
        lost = auth.map_error(grpc.TransportError("x closed the connection", request_sent=sent), "r", ROUTE,
                              auth.RENEW)
        late = auth.map_error(grpc.DeadlineExceeded("took too long", request_sent=sent), "r", ROUTE, auth.RENEW)
        for err in (lost, late):
            assert isinstance(err, errors.Unavailable) and auth.was_ambiguous(err) is sent


def test_tunnel_to_an_unreachable_proxy_is_one_line() -> None:
    with pytest.raises(errors.Unavailable, match=r"cannot reach .* through the HTTP proxy"):
        auth.tunnel("http://127.0.0.1:9", "tele.example.com:443", 2.0)


@pytest.mark.parametrize(("proxy", "routing", "kube", "expected"), [
    ("tele.example.com:443", True, {}, ("https://tele.example.com:443", "kube-teleport-proxy-alpn.tele.example.com")),
    ("127.0.0.1:3080", True, {}, ("https://127.0.0.1:3080", "kube-teleport-proxy-alpn.teleport.cluster.local")),
    ("localhost:3080", True, {}, ("https://localhost:3080", "kube-teleport-proxy-alpn.teleport.cluster.local")),
    ("[::1]:443", True, {}, ("https://[::1]:443", "kube-teleport-proxy-alpn.teleport.cluster.local")),
    ("tele.example.com:3080", False, {"kube_public_addr": "kube.example.com:3026"},
     ("https://kube.example.com:3026", "")),
    ("tele.example.com:3080", False, {"kube_public_addr": "kube.example.com"}, ("https://kube.example.com:3026", "")),
    ("tele.example.com:3080", False, {"web_public_addr": "web.example.com:443", "kube_listen_addr": "0.0.0.0:3027"},
     ("https://web.example.com:3027", "")),
    ("tele.example.com:3080", False, {}, ("https://tele.example.com:3026", "")),
])
def test_kube_endpoint(proxy: str, routing: bool, kube: dict, expected: tuple[str, str]) -> None:
    found = webapi.Discovery(proxy=proxy, cluster_name=CLUSTER, server_version="17.1.0", tls_routing=routing,
                             suite="", **kube)
    assert teleport.kube_endpoint(proxy, found) == expected


def test_date_header_gives_the_clock_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubectl_teleport import clock

    monkeypatch.setattr(clock, "now", lambda: 1_800_000_000.0)
    assert webapi._offset("Fri, 15 Jan 2027 08:10:00 GMT") == 1_800_000_000 - 1_800_000_000 + (
        datetime.datetime(2027, 1, 15, 8, 10, tzinfo=UTC).timestamp() - 1_800_000_000)
    assert webapi._offset(None) == webapi._offset("not a date") == 0.0


# --- what login stores -------------------------------------------------------------------------------------------


def test_config_keeps_the_teleport_fields_and_reads_configs_without_them() -> None:
    from kubectl_teleport.config import Config

    cfg = Config(proxy="tele.example.com:443", cluster_name=CLUSTER, bot="robot", ca_pems=["host"],
                 auth_server="auth:3025", tls_routing=False, server_version="16.4.0", suite="", roles=["a", "b"],
                 tls_ca_pems=["user", "host"], ssh_ca_certs=["ssh-ca\n"])
    assert Config.from_json(cfg.to_json()) == cfg
    old = Config.from_json(b'{"proxy":"p:1","cluster_name":"c","bot":"b","ca_pems":["x"],"version":1}')
    assert (old.roles, old.auth_server, old.tls_routing, old.suite) == ([], "", True, "")
    for bad in (b'{"proxy":"p","cluster_name":"c","bot":"b","ca_pems":[],"roles":"a"}',
                b'{"proxy":"p","cluster_name":"c","bot":"b","ca_pems":[],"tls_routing":"yes"}'):
        with pytest.raises(ValueError):
            Config.from_json(bad)


def test_identity_file_keeps_the_ssh_certificate_and_loads_with_openssl(tmp_path: Path) -> None:
    from kubectl_teleport.store import identity
    from kubectl_teleport.store.datadir import DataDir
    from tests.teleport_fakes import Cluster, Pki

    c = Cluster(Pki.create(tmp_path / "pki"))
    key = pki.key_for_suite("legacy")
    cert = c.issue(key.public_key(), expires=datetime.datetime.now(UTC) + datetime.timedelta(hours=1), generation=1,
                   roles=["bot-robot"])
    dd = DataDir(tmp_path / "bot")
    dd.create()
    line = "ssh-rsa-cert-v01@openssh.com AAAAB3NzaC1yc2EtY2VydC12MDFAb3BlbnNzaC5jb20AAAAg\n"
    saved = identity.save(dd, cert, pki.private_key_pem(key), ssh_cert=line)
    loaded = identity.load(dd)
    assert loaded.ssh_cert == saved.ssh_cert == line and loaded.bot == "robot" and loaded.generation == 1
    assert loaded.bot_instance_id == c.instance_id and loaded.username == "bot-robot"
    text = dd.identity_path.read_text()
    assert text.startswith("received-at: ") and "ssh-cert: ssh-rsa-cert-v01@openssh.com " in text
    ssl.create_default_context().load_cert_chain(str(dd.identity_path))  # the file is the client certificate
    assert identity.save(dd, cert, pki.private_key_pem(key), ssh_cert="bad\nline").ssh_cert == ""


def test_renewal_record_reads_older_records_as_sent(tmp_path: Path) -> None:
    import json

    from kubectl_teleport.store import identity
    from kubectl_teleport.store.datadir import PENDING, DataDir

    dd = DataDir(tmp_path / "bot")
    dd.create()
    key = pki.private_key_pem(pki.generate_key())
    dd.write(PENDING, json.dumps({"key_pem": key, "for_generation": 3}).encode())
    assert identity.load_pending(dd) == identity.Pending(key, 3, 0.0, sent=True)
    identity.save_pending(dd, identity.Pending(key, 4, 12.5, sent=False))
    assert identity.load_pending(dd) == identity.Pending(key, 4, 12.5, sent=False)
    dd.write(PENDING, json.dumps({"key_pem": key, "for_generation": 3, "sent": "yes"}).encode())
    assert identity.load_pending(dd) is None and not dd.pending_path.exists()
