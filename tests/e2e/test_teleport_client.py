"""The Teleport client library (issuer/webapi, auth, teleport) against the fakes in tests/teleport_fakes.py: a
real HTTPS web API, a real grpcio AuthService behind Teleport-like TLS, and a proxy routing by ALPN on one port.

Covers discovery through the system trust store, the pinned join (no token before the pin matches), the /v1
fallback, join refusals (never retried), renewal and Kubernetes certificates for v16 and v17+ servers (key fields,
the "ssh: no key found" fallback), locks and generation mismatches, trailers-only errors, the direct auth route,
a proxy without TLS routing, an HTTPS_PROXY tunnel, a wrong host CA and a hanging auth service."""

from __future__ import annotations

import datetime
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faults import TcpFaultProxy
from kubectl_teleport import errors, pki
from kubectl_teleport.issuer import auth, http, teleport, webapi
from tests import teleport_fakes as fakes

UTC = datetime.timezone.utc
pytest.importorskip("grpc")


@pytest.fixture
def tp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[fakes.Teleport]:
    t = fakes.start(tmp_path / "teleport")
    monkeypatch.setenv("SSL_CERT_FILE", str(t.cluster.pki.web_ca_file))  # the web CA as a "system" root
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    yield t
    t.close()


def deadline(seconds: float = 10.0) -> http.Deadline:
    return http.Deadline(seconds)


def pin_of(t: fakes.Teleport) -> str:
    return pki.spki_pin(t.cluster.pki.host_ca[0])


def joined(t: fakes.Teleport, tmp_path: Path, **kwargs: object) -> tuple[teleport.Joined, Path]:
    """Join with a fresh token and write the identity as the plugin stores it (a text line, cert, key)."""
    token = t.add_token()
    result = teleport.join_bot(t.address, token, pins=[pin_of(t)], deadline=deadline(), **kwargs)  # type: ignore[arg-type]
    ident = tmp_path / "identity.pem"
    ident.write_text(f"received-at: {int(time.time())}\n{result.certs.tls}{result.key_pem}")
    ident.chmod(0o600)
    return result, ident


def target_of(t: fakes.Teleport, result: teleport.Joined, ident: Path, **kwargs: object) -> teleport.AuthTarget:
    return teleport.AuthTarget(result.route, result.host_ca_pems, ident, result.discovery.server_major,
                               **kwargs)  # type: ignore[arg-type]


# --- discovery -------------------------------------------------------------------------------------------------


def test_find_through_the_system_trust_store(tp: fakes.Teleport) -> None:
    found = teleport.discover(tp.address, insecure=False, deadline=deadline())
    assert (found.cluster_name, found.server_version, found.server_major) == (fakes.CLUSTER, "17.1.2", 17)
    assert found.tls_routing and found.suite == "balanced-v1" and found.kube_enabled
    assert found.web_public_addr == tp.address and found.kube_listen_addr == "0.0.0.0:3026"


def test_find_refuses_a_web_certificate_the_trust_store_does_not_hold(tp: fakes.Teleport,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(Path(__file__)))  # no certificate in it
    with pytest.raises(errors.TrustError, match=r"trust store.*--insecure"):
        teleport.discover(tp.address, insecure=False, deadline=deadline())
    assert teleport.discover(tp.address, insecure=True, deadline=deadline()).cluster_name == fakes.CLUSTER


# --- the join --------------------------------------------------------------------------------------------------


def test_pinned_join_v17_balanced(tp: fakes.Teleport, tmp_path: Path) -> None:
    result, _ = joined(tp, tmp_path)
    key = pki.load_private_key(result.key_pem)
    assert isinstance(key, pki.ec.EllipticCurvePrivateKey) and result.key_pem.startswith("-----BEGIN PRIVATE KEY")
    ident = pki.identity_of(pki.load_cert(result.certs.tls))
    assert (ident.username, ident.generation, ident.renewable) == ("bot-robot", 1, True)
    assert result.host_ca_pems == [tp.cluster.pki.host_ca_pem] and result.pinned
    assert result.certs.tls_ca_certs == [tp.cluster.pki.user_ca_pem, tp.cluster.pki.host_ca_pem]
    # the CA was fetched (over the auth route, no client certificate) before the token went out
    order = [w for w, _ in tp.cluster.events if w in ("grpc", "join")]
    assert order == ["grpc", "join"] and tp.cluster.seen("grpc")[0] == ("GetClusterCACert", False)
    assert tp.proxy.routed[0] == "web" and "auth" in tp.proxy.routed
    body = tp.cluster.seen("join")[0]
    assert set(body) == {"token", "role", "public_tls_key", "public_ssh_key", "expires"} and body["role"] == "Bot"


def test_join_v16_uses_rsa_and_one_key_for_both(tp: fakes.Teleport, tmp_path: Path) -> None:
    tp.cluster.version = 16  # no suite; the server takes the TLS key from the SSH key
    result, _ = joined(tp, tmp_path)
    key = pki.load_private_key(result.key_pem)
    assert isinstance(key, pki.rsa.RSAPrivateKey) and key.key_size == 2048
    assert result.key_pem.startswith("-----BEGIN RSA PRIVATE KEY")
    assert pki.public_keys_equal(pki.load_cert(result.certs.tls).public_key(), key)


def test_pin_mismatch_sends_no_token(tp: fakes.Teleport) -> None:
    token = tp.add_token()
    with pytest.raises(errors.TrustError, match=r"does not match --ca-pin.*the token was not sent"):
        teleport.join_bot(tp.address, token, pins=["sha256:" + "0" * 64], deadline=deadline())
    assert tp.cluster.seen("join") == [] and token in tp.cluster.tokens


def test_join_falls_back_to_the_v1_path_on_404(tp: fakes.Teleport, tmp_path: Path) -> None:
    tp.cluster.only_v1_join = True
    joined(tp, tmp_path)
    posts = [p for m, p in tp.cluster.seen("http") if m == "POST"]
    assert posts == ["/webapi/host/credentials", "/v1/webapi/host/credentials"]


def test_a_refused_token_is_one_line_without_the_token(tp: fakes.Teleport) -> None:
    token = "not-a-real-token-0123456789"
    with pytest.raises(errors.IdentityRejected) as exc:
        teleport.join_bot(tp.address, token, pins=[pin_of(tp)], deadline=deadline())
    text = str(exc.value)
    assert "new join token" in text and token not in text and "\n" not in text
    assert len(tp.cluster.seen("join")) == 1


def test_a_failed_join_is_never_retried(tp: fakes.Teleport) -> None:
    tp.cluster.fail_join = (503, {"error": {"message": "backend unavailable"}})
    with pytest.raises(errors.Unavailable, match="may have been used"):
        teleport.join_bot(tp.address, tp.add_token(), deadline=deadline())
    assert len(tp.cluster.seen("join")) == 1


def test_unpinned_join_checks_the_host_ca_against_the_join_answer(tp: fakes.Teleport, tmp_path: Path) -> None:
    result = teleport.join_bot(tp.address, tp.add_token(), deadline=deadline())
    assert result.host_ca_pems == [tp.cluster.pki.host_ca_pem] and not result.pinned


def test_a_proxy_without_tls_routing_fails_before_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = fakes.start(tmp_path / "t", route_auth=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(t.cluster.pki.web_ca_file))
    try:
        with pytest.raises(errors.Unavailable, match="--auth-server"):
            teleport.join_bot(t.address, t.add_token(), deadline=deadline())
        assert t.cluster.seen("join") == []
        # the same cluster through its auth server's own address works
        result = teleport.join_bot(t.address, t.add_token(), pins=[pin_of(t)], auth_server=t.front.address,
                                   deadline=deadline())
        assert result.route.alpn == ("h2",) and result.route.port == t.front.port
    finally:
        t.close()


# --- renewal and Kubernetes certificates ------------------------------------------------------------------------


def _renew(t: fakes.Teleport, target: teleport.AuthTarget, suite: str = "balanced-v1",
           before: object = None) -> tuple[object, teleport.Certs]:
    key = pki.key_for_suite(suite)
    certs = teleport.renew_identity(target, username="bot-robot", key=key,
                                    expires=datetime.datetime.now(UTC) + datetime.timedelta(hours=1),
                                    deadline=deadline(), before_request=before)  # type: ignore[arg-type]
    return key, certs


def test_renewal_v17_sends_fields_22_and_23_and_bumps_the_generation(tp: fakes.Teleport, tmp_path: Path) -> None:
    result, ident = joined(tp, tmp_path)
    target = target_of(tp, result, ident)

    def before() -> None:
        tp.cluster.marker.append("in flight")  # what the plugin records before the request leaves

    _, certs = _renew(tp, target, before=before)
    name, req, marker = tp.cluster.seen("grpc")[-1]
    assert name == "GenerateUserCerts" and marker == ["in flight"]
    assert not req.public_key and req.ssh_public_key and req.tls_public_key and req.username == "bot-robot"
    assert not req.role_requests and not req.use_role_requests
    assert pki.identity_of(pki.load_cert(certs.tls)).generation == 2 and target.key_fields == teleport.KEY_FIELDS_SPLIT


def test_renewal_v16_sends_field_1_with_an_rsa_identity(tp: fakes.Teleport, tmp_path: Path) -> None:
    tp.cluster.version = 16
    result, ident = joined(tp, tmp_path)
    target = target_of(tp, result, ident)
    _, certs = _renew(tp, target, suite="")
    calls = [d for d in tp.cluster.seen("grpc") if d[0] == "GenerateUserCerts"]
    assert len(calls) == 1  # straight to field 1: no "ssh: no key found" round trip
    req = calls[0][1]
    assert req.public_key.startswith(b"ssh-rsa ") and not req.ssh_public_key and not req.tls_public_key
    assert pki.identity_of(pki.load_cert(certs.tls)).generation == 2


def test_a_server_older_than_it_says_gets_field_1_once(tp: fakes.Teleport, tmp_path: Path) -> None:
    result, ident = joined(tp, tmp_path)
    tp.cluster.version = 16  # upgraded... back: it now answers "ssh: no key found" to fields 22/23
    target = target_of(tp, result, ident)
    _renew(tp, target)
    calls = [d for d in tp.cluster.seen("grpc") if d[0] == "GenerateUserCerts"]
    assert len(calls) == 2 and calls[0][1].ssh_public_key and calls[1][1].public_key
    assert target.key_fields == teleport.KEY_FIELDS_LEGACY and tp.cluster.generation == 2


def test_kube_certificate_impersonates_without_moving_the_generation(tp: fakes.Teleport, tmp_path: Path) -> None:
    result, ident = joined(tp, tmp_path)
    target = target_of(tp, result, ident)
    identity_cert = pki.load_cert(result.certs.tls)
    key = pki.key_for_suite("balanced-v1")
    far = datetime.datetime.now(UTC) + datetime.timedelta(hours=30)
    expires = teleport.kube_expiry(datetime.datetime.now(UTC), 86400 * 2, identity_cert.not_valid_after_utc)
    assert expires == identity_cert.not_valid_after_utc < far
    certs = teleport.kube_certificate(target, username="bot-robot", key=key, expires=expires, roles=["kube-access"],
                                      cluster_name=fakes.CLUSTER, kube_cluster="prod", deadline=deadline())
    req = tp.cluster.seen("grpc")[-1][1]
    assert list(req.role_requests) == ["kube-access"] and req.use_role_requests
    assert (req.route_to_cluster, req.kubernetes_cluster) == (fakes.CLUSTER, "prod")
    ident = pki.identity_of(pki.load_cert(certs.tls))
    assert ident.kube_cluster == "prod" and ident.impersonator == "bot-robot" and ident.disallow_reissue
    assert ident.generation is None and tp.cluster.generation == 1


def test_unknown_kube_cluster_and_role(tp: fakes.Teleport, tmp_path: Path) -> None:
    result, ident = joined(tp, tmp_path)
    target = target_of(tp, result, ident)
    exp = datetime.datetime.now(UTC) + datetime.timedelta(minutes=30)
    with pytest.raises(errors.AccessDenied, match=r"not registered.*kube ls"):
        teleport.kube_certificate(target, username="bot-robot", key=pki.generate_key(), expires=exp,
                                  roles=["kube-access"], cluster_name=fakes.CLUSTER, kube_cluster="nope",
                                  deadline=deadline())
    with pytest.raises(errors.AccessDenied, match=r"impersonate.*--role"):
        teleport.kube_certificate(target, username="bot-robot", key=pki.generate_key(), expires=exp,
                                  roles=["admin"], cluster_name=fakes.CLUSTER, kube_cluster="prod",
                                  deadline=deadline())


def test_replayed_renewal_locks_the_bot_and_says_how_to_recover(tp: fakes.Teleport, tmp_path: Path) -> None:
    result, ident = joined(tp, tmp_path)
    target = target_of(tp, result, ident)
    _renew(tp, target)  # the server commits generation 2; the answer is "lost" (not saved in `ident`)
    with pytest.raises(errors.IdentityRejected) as exc:
        _renew(tp, target)  # the same generation-1 certificate again
    text = str(exc.value)
    assert "generation mismatch" in text and "tctl rm lock/" in text and "new join token" in text
    assert not auth.was_ambiguous(exc.value)
    with pytest.raises(errors.IdentityRejected, match=r"locked.*tctl rm lock/"):
        teleport.kube_certificate(target, username="bot-robot", key=pki.generate_key(),
                                  expires=datetime.datetime.now(UTC) + datetime.timedelta(minutes=5),
                                  roles=["kube-access"], cluster_name=fakes.CLUSTER, kube_cluster="prod",
                                  deadline=deadline())


@pytest.mark.parametrize(("code", "message", "error", "ambiguous"), [
    (14, "connection to backend lost", errors.Unavailable, True),
    (4, "context deadline exceeded", errors.Unavailable, True),
    (8, "rate limit exceeded", errors.Unavailable, False),
    (16, "certificate expired", errors.IdentityRejected, False),
    (12, "unknown method", errors.Unavailable, False),
])
def test_trailers_only_statuses_are_mapped(tp: fakes.Teleport, tmp_path: Path, code: int, message: str,
                                           error: type, ambiguous: bool) -> None:
    result, ident = joined(tp, tmp_path)
    tp.cluster.renew_abort = (code, message)  # grpcio aborts before any message: status in the first HEADERS
    with pytest.raises(error) as exc:
        _renew(tp, target_of(tp, result, ident))
    assert message in str(exc.value) and auth.was_ambiguous(exc.value) is ambiguous
    assert exc.value.request_sent


def test_auth_certificate_from_another_ca_is_a_trust_error(tp: fakes.Teleport, tmp_path: Path) -> None:
    result, ident = joined(tp, tmp_path)
    other = fakes.make_ca("someone else")[0]
    target = teleport.AuthTarget(result.route, [pki.cert_pem(other)], ident, 17)
    with pytest.raises(errors.TrustError, match="does not chain to the cluster's host CA"):
        _renew(tp, target)
    assert tp.cluster.generation == 1


def test_direct_auth_server_route(tp: fakes.Teleport, tmp_path: Path) -> None:
    result, ident = joined(tp, tmp_path, auth_server=tp.front.address)
    assert result.route.alpn == ("h2",) and result.route.sni.endswith(".teleport.cluster.local")
    _renew(tp, target_of(tp, result, ident))
    assert tp.cluster.generation == 2 and "auth" not in tp.proxy.routed


def test_auth_calls_go_through_https_proxy(tp: fakes.Teleport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, ident = joined(tp, tmp_path)
    targets: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        client, _ = listener.accept()
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(1024)
        target = head.split(b" ")[1].decode()
        targets.append(target)
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        t = threading.Thread(target=fakes._pump, args=(upstream, client), daemon=True)
        t.start()
        fakes._pump(client, upstream)
        t.join(5)

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    _renew(tp, target_of(tp, result, ident))
    listener.close()
    assert targets == [tp.address] and tp.cluster.generation == 2


def test_a_hanging_auth_service_is_bounded_by_the_deadline(tp: fakes.Teleport, tmp_path: Path) -> None:
    result, ident = joined(tp, tmp_path)
    with TcpFaultProxy(tp.front.address, mode="hang") as hang:
        target = teleport.AuthTarget(auth.route_direct(hang.address, fakes.CLUSTER), result.host_ca_pems, ident, 17)
        started = time.monotonic()
        with pytest.raises(errors.Unavailable, match="did not answer in time"):
            teleport.renew_identity(target, username="bot-robot", key=pki.generate_key(),
                                    expires=datetime.datetime.now(UTC), deadline=http.Deadline(0.5))
        assert time.monotonic() - started < 3


def test_webapi_join_body_is_go_json(tp: fakes.Teleport) -> None:
    key = pki.key_for_suite("legacy")
    body = webapi.join_body("t", key, datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert body["expires"] == "2030-01-02T03:04:05Z"
    assert tp.cluster.join(dict(body, token="unknown"))[0] == 403  # the fake parses what we send


def test_a_renewal_answer_is_awaited_beyond_the_budget(tp: fakes.Teleport, tmp_path: Path) -> None:
    """The budget bounds connecting and sending; once the renewal left, its answer gets `answer_wait`."""
    result, ident = joined(tp, tmp_path)
    target = target_of(tp, result, ident)
    tp.cluster.delay = 1.0
    key = pki.key_for_suite("balanced-v1")
    expires = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
    with pytest.raises(errors.Unavailable) as exc:  # no extra wait: the answer is lost, the renewal in doubt
        teleport.renew_identity(target, username="bot-robot", key=key, expires=expires, deadline=http.Deadline(0.5),
                                answer_wait=0)
    assert auth.was_ambiguous(exc.value) and exc.value.request_sent
    time.sleep(tp.cluster.delay)  # (the server did commit it: a replay would now lock; so join afresh)
    result, ident = joined(tp, tmp_path)
    target = target_of(tp, result, ident)
    started = time.monotonic()
    certs = teleport.renew_identity(target, username="bot-robot", key=key, expires=expires,
                                    deadline=http.Deadline(0.5), answer_wait=5)
    assert 0.9 < time.monotonic() - started < 5
    assert pki.public_keys_equal(pki.load_cert(certs.tls).public_key(), key)
