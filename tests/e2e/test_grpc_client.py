"""The h2 + ssl unary gRPC client (kubectl_teleport.issuer.grpc) against a real grpcio server over mTLS, and
against scripted TLS/HTTP/2 servers for what grpcio never sends (RST_STREAM, GOAWAY, bad framing, silence)."""

from __future__ import annotations

import datetime
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from h2 import events as h2events
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes

from kubectl_teleport.issuer import grpc as client
from kubectl_teleport.proto import teleport_auth_pb2 as pb

REPO = Path(__file__).resolve().parents[2]
CLUSTER = "example.teleport.sh"
GENERATE = "/proto.AuthService/GenerateUserCerts"
CA_CERT = "/proto.AuthService/GetClusterCACert"
PING = "/proto.AuthService/Ping"
DENIED = "renewable cert generation mismatch — ü"  # non-ASCII: percent-encoded on the wire
BIG = 200 * 1024  # more than HTTP/2's default 64 KiB windows


# --- PKI: a host CA for the auth server (SANs teleport.cluster.local, *.teleport.cluster.local), a user CA for
# the bot's client certificate, and a rogue CA nobody trusts.


@dataclass
class Pki:
    ca_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes
    server_cert_file: Path
    server_key_file: Path
    user_ca_pem: bytes
    client_cert_file: Path
    client_key_file: Path
    rogue_ca_pem: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(cn: str, key: Any, issuer: x509.Certificate | None, issuer_key: Any, *, ca: bool = False,
          sans: tuple[str, ...] = (), client_auth: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client_auth else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, user_ca_key, rogue_key = _key(), _key(), _key()
    ca = _cert("host CA", ca_key, None, ca_key, ca=True)
    user_ca = _cert("user CA", user_ca_key, None, user_ca_key, ca=True)
    rogue = _cert("rogue CA", rogue_key, None, rogue_key, ca=True)
    server_key, client_key = _key(), _key()
    server = _cert("auth", server_key, ca, ca_key, sans=("teleport.cluster.local", "*.teleport.cluster.local"))
    bot = _cert("bot-test", client_key, user_ca, user_ca_key, client_auth=True)
    files = {"server.crt": _pem(server), "server.key": _pem(server_key), "bot.crt": _pem(bot),
             "bot.key": _pem(client_key)}
    for name, data in files.items():
        (d / name).write_bytes(data)
        (d / name).chmod(0o600)
    return Pki(ca_pem=_pem(ca), server_cert_pem=_pem(server), server_key_pem=_pem(server_key),
               server_cert_file=d / "server.crt", server_key_file=d / "server.key", user_ca_pem=_pem(user_ca),
               client_cert_file=d / "bot.crt", client_key_file=d / "bot.key", rogue_ca_pem=_pem(rogue))


def client_context(pki: Pki, *, trust: bytes | None = None, with_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=(trust or pki.ca_pem).decode())
    if with_cert:
        ctx.load_cert_chain(pki.client_cert_file, pki.client_key_file)
    return ctx


def do_call(pki: Pki, port: int, method: str, request: bytes, *, deadline: float = 10.0,
            ctx: ssl.SSLContext | None = None, **kwargs: Any) -> bytes:
    """One call the way the plugin will make it through a proxy's TLS routing (ALPN teleport-auth@…, h2)."""
    alpn, sni = client.alpn_auth(CLUSTER)
    kwargs.setdefault("alpn", alpn)
    return client.call("127.0.0.1", port, method, request, ssl_context=ctx or client_context(pki),
                       server_hostname=sni, deadline_seconds=deadline, **kwargs)


# --- a real grpcio server with generic (bytes in, bytes out) handlers: no generated grpc stubs.


class AuthFake:
    """Handlers for the three AuthService methods; records what each call saw."""

    def __init__(self, grpc: Any, pki: Pki) -> None:
        self.grpc = grpc
        self.pki = pki
        self.seen: list[dict[str, Any]] = []

    def _record(self, method: str, request: bytes, context: Any) -> None:
        self.seen.append({"method": method, "request": request, "remaining": context.time_remaining(),
                          "metadata": [(m.key, m.value) for m in context.invocation_metadata()]})

    def generate_user_certs(self, request: bytes, context: Any) -> bytes:
        self._record("GenerateUserCerts", request, context)
        req = pb.UserCertsRequest.FromString(request)
        if req.username == "deny":  # abort before anything is sent: a trailers-only reply
            context.abort(self.grpc.StatusCode.PERMISSION_DENIED, DENIED)
        if req.username == "deny-after-headers":  # headers first, then the status in real trailers
            context.send_initial_metadata((("x-probe", "1"),))
            context.abort(self.grpc.StatusCode.PERMISSION_DENIED, DENIED)
        if req.username == "echo":  # large request and large reply: flow control both ways
            return pb.Certs(ssh=req.public_key, tls=bytes(range(256)) * (BIG // 256)).SerializeToString()
        return pb.Certs(ssh=b"ssh-cert " + req.username.encode(), tls=b"tls for " + req.kubernetes_cluster.encode(),
                        tls_ca_certs=[self.pki.user_ca_pem, self.pki.ca_pem],
                        ssh_ca_certs=[b"user-ca", b"host-ca"]).SerializeToString()

    def get_cluster_ca_cert(self, request: bytes, context: Any) -> bytes:
        self._record("GetClusterCACert", request, context)
        return pb.GetClusterCACertResponse(tls_ca=self.pki.ca_pem).SerializeToString()

    def ping(self, request: bytes, context: Any) -> bytes:
        self._record("Ping", request, context)
        return pb.PingResponse(cluster_name=CLUSTER, server_version="17.4.2",
                               proxy_public_addr="proxy.example:443").SerializeToString()


@dataclass
class GrpcServer:
    port: int
    fake: AuthFake
    grpc: Any


@pytest.fixture(scope="module")
def auth(pki: Pki) -> Iterator[GrpcServer]:
    grpc = pytest.importorskip("grpc")
    fake = AuthFake(grpc, pki)
    handlers = {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in {
        "GenerateUserCerts": fake.generate_user_certs,
        "GetClusterCACert": fake.get_cluster_ca_cert,
        "Ping": fake.ping,
    }.items()}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("proto.AuthService", handlers),))
    creds = grpc.ssl_server_credentials([(pki.server_key_pem, pki.server_cert_pem)],
                                        root_certificates=pki.user_ca_pem, require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    yield GrpcServer(port, fake, grpc)
    server.stop(grace=None)


def kube_request(username: str = "bot-test", **fields: Any) -> pb.UserCertsRequest:
    req = pb.UserCertsRequest(username=username, role_requests=["kube-access"], use_role_requests=True,
                              route_to_cluster=CLUSTER, kubernetes_cluster="prod", ssh_public_key=b"ssh-ed25519 AAAA\n",
                              tls_public_key=b"-----BEGIN PUBLIC KEY-----\n", **fields)
    req.expires.FromDatetime(datetime.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.timezone.utc))
    return req


def test_generate_user_certs_round_trip(pki: Pki, auth: GrpcServer) -> None:
    req = kube_request()
    certs = pb.Certs.FromString(do_call(pki, auth.port, GENERATE, req.SerializeToString()))
    assert certs.ssh == b"ssh-cert bot-test"
    assert certs.tls == b"tls for prod"
    assert list(certs.tls_ca_certs) == [pki.user_ca_pem, pki.ca_pem]
    assert list(certs.ssh_ca_certs) == [b"user-ca", b"host-ca"]
    assert pb.UserCertsRequest.FromString(auth.fake.seen[-1]["request"]) == req


def test_get_cluster_ca_cert_and_ping(pki: Pki, auth: GrpcServer) -> None:
    ca = pb.GetClusterCACertResponse.FromString(do_call(pki, auth.port, CA_CERT, b""))  # google.protobuf.Empty
    assert ca.tls_ca == pki.ca_pem
    ping = pb.PingResponse.FromString(do_call(pki, auth.port, PING, pb.PingRequest().SerializeToString()))
    assert (ping.cluster_name, ping.server_version, ping.proxy_public_addr) == (CLUSTER, "17.4.2",
                                                                                 "proxy.example:443")


@pytest.mark.parametrize("username", ["deny-after-headers", "deny"], ids=["headers-then-trailers", "trailers-only"])
def test_error_status_with_percent_encoded_message(pki: Pki, auth: GrpcServer, username: str) -> None:
    with pytest.raises(client.GrpcError) as caught:
        do_call(pki, auth.port, GENERATE, kube_request(username).SerializeToString())
    assert (caught.value.code, caught.value.name, caught.value.message) == (7, "PERMISSION_DENIED", DENIED)
    assert str(caught.value) == f"PERMISSION_DENIED (7): {DENIED}"


def test_unknown_method_is_unimplemented(pki: Pki, auth: GrpcServer) -> None:
    with pytest.raises(client.GrpcError) as caught:
        do_call(pki, auth.port, "/proto.AuthService/GetRole", b"")
    assert (caught.value.code, caught.value.name) == (12, "UNIMPLEMENTED")


def test_teleport_auth_alpn_and_plain_h2_both_negotiate_h2(pki: Pki, auth: GrpcServer) -> None:
    alpn, sni = client.alpn_auth(CLUSTER)
    assert alpn == [f"teleport-auth@{CLUSTER.encode().hex()}.teleport.cluster.local", "h2"]
    assert sni == f"{CLUSTER.encode().hex()}.teleport.cluster.local"  # matches the SAN *.teleport.cluster.local
    ping = pb.PingRequest().SerializeToString()
    # grpcio does not know teleport-auth@… and picks h2 (the call would fail with "not h2" otherwise).
    assert pb.PingResponse.FromString(do_call(pki, auth.port, PING, ping, alpn=alpn)).cluster_name == CLUSTER
    # The direct auth port (no proxy) takes plain h2.
    assert pb.PingResponse.FromString(do_call(pki, auth.port, PING, ping, alpn=["h2"])).cluster_name == CLUSTER


def test_no_version_metadata_is_sent_and_timeout_is(pki: Pki, auth: GrpcServer) -> None:
    do_call(pki, auth.port, PING, b"", deadline=5.0)
    seen = auth.fake.seen[-1]
    keys = {key for key, _ in seen["metadata"]}
    assert "version" not in keys, seen["metadata"]
    assert seen["remaining"] is not None and 2.0 < seen["remaining"] <= 5.0  # our grpc-timeout reached the server

    # Control: the capture does show a `version` header when a client sends one (grpcio's own client here).
    grpc = auth.grpc
    creds = grpc.ssl_channel_credentials(pki.ca_pem, pki.client_key_file.read_bytes(),
                                         pki.client_cert_file.read_bytes())
    options = (("grpc.ssl_target_name_override", client.alpn_auth(CLUSTER)[1]),)
    with grpc.secure_channel(f"127.0.0.1:{auth.port}", creds, options=options) as channel:
        channel.unary_unary(PING)(b"", metadata=(("version", "17.4.2"),), timeout=10)
    assert ("version", "17.4.2") in auth.fake.seen[-1]["metadata"]


def test_large_request_and_response_use_flow_control(pki: Pki, auth: GrpcServer) -> None:
    key = bytes(range(251)) * (300 * 1024 // 251)  # ~300 KiB up: more than the server's initial window
    certs = pb.Certs.FromString(do_call(pki, auth.port, GENERATE, kube_request("echo", public_key=key)
                                        .SerializeToString()))
    assert certs.ssh == key
    assert certs.tls == bytes(range(256)) * (BIG // 256)  # 200 KiB down: needs our WINDOW_UPDATEs


def test_response_larger_than_max_response_is_refused(pki: Pki, auth: GrpcServer) -> None:
    with pytest.raises(client.ProtocolError, match="more than the limit of 65536"):
        do_call(pki, auth.port, GENERATE, kube_request("echo").SerializeToString(), max_response=65536)


def test_server_certificate_from_another_ca_fails_verification(pki: Pki, auth: GrpcServer) -> None:
    with pytest.raises(client.TLSVerifyError) as caught:
        do_call(pki, auth.port, PING, b"", ctx=client_context(pki, trust=pki.rogue_ca_pem))
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert not caught.value.request_sent


def test_client_without_certificate_is_rejected(pki: Pki, auth: GrpcServer) -> None:
    with pytest.raises(client.TransportError) as caught:
        do_call(pki, auth.port, PING, b"", ctx=client_context(pki, with_cert=False))
    assert not isinstance(caught.value, (client.TLSVerifyError, client.DeadlineExceeded))


def test_already_connected_socket(pki: Pki, auth: GrpcServer) -> None:
    sock = socket.create_connection(("127.0.0.1", auth.port))  # e.g. a CONNECT tunnel the caller opened
    reply = do_call(pki, auth.port, PING, b"", sock=sock)
    assert pb.PingResponse.FromString(reply).cluster_name == CLUSTER
    assert sock.fileno() == -1  # the call owns the socket and closed it


# --- scripted servers: one connection each, a script decides what the server does.


class Scripted:
    """A loopback listener that runs `script(sock)` on the first connection (TLS with ALPN h2 unless `tls` is
    None) in a thread."""

    def __init__(self, script: Callable[[socket.socket], None], tls: ssl.SSLContext | None) -> None:
        self.script = script
        self.tls = tls
        self.stop = threading.Event()
        self.error: Exception | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            raw, _ = self.listener.accept()
        except OSError:
            return
        raw.settimeout(10)
        try:
            sock = self.tls.wrap_socket(raw, server_side=True) if self.tls else raw
            with sock:
                self.script(sock)
        except Exception as exc:  # the client went away or broke the protocol: the test checks the client side
            self.error = exc
        finally:
            raw.close()

    def close(self) -> None:
        self.stop.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept()
        except OSError:
            pass
        self.listener.close()
        self.thread.join(10)


@pytest.fixture
def scripted(pki: Pki) -> Iterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def start(script: Callable[[socket.socket], None], *, tls: bool = True,
              alpn: list[str] | None = None) -> Scripted:
        ctx = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(pki.server_cert_file, pki.server_key_file)
            if alpn != []:
                ctx.set_alpn_protocols(alpn or ["h2"])
        servers.append(Scripted(script, ctx))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def h2_server(respond: Callable[[H2Connection, int, socket.socket], None],
              received: bytearray | None = None) -> Callable[[socket.socket], None]:
    """A script: HTTP/2 server side (h2's default 64 KiB windows) that reads one request into `received`, then
    lets `respond` answer it, then drains."""

    def script(sock: socket.socket) -> None:
        conn = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    if received is not None:
                        received.extend(event.data)
                if isinstance(event, h2events.StreamEnded):
                    sock.sendall(conn.data_to_send())
                    respond(conn, event.stream_id, sock)
                    sock.sendall(conn.data_to_send())
                    while sock.recv(65536):  # until the client hangs up
                        pass
                    return
            sock.sendall(conn.data_to_send())

    return script


GRPC_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]


def frame(message: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(message)) + message


def ok_trailers(conn: H2Connection, sid: int) -> None:
    conn.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)


def reply_reset(conn: H2Connection, sid: int, sock: socket.socket) -> None:
    conn.reset_stream(sid, ErrorCodes.CANCEL)


def reply_goaway(conn: H2Connection, sid: int, sock: socket.socket) -> None:
    conn.close_connection(error_code=ErrorCodes.INTERNAL_ERROR, additional_data=b"auth restarting")


def reply_graceful_goaway(conn: H2Connection, sid: int, sock: socket.socket) -> None:
    conn.send_headers(sid, GRPC_HEADERS)
    conn.close_connection(last_stream_id=sid)  # NO_ERROR, our stream still allowed: h2 cannot read on after it


def reply_http_503(conn: H2Connection, sid: int, sock: socket.socket) -> None:
    conn.send_headers(sid, [(b":status", b"503"), (b"content-type", b"text/plain")])
    conn.send_data(sid, b"upstream unavailable", end_stream=True)


def reply_html(conn: H2Connection, sid: int, sock: socket.socket) -> None:
    conn.send_headers(sid, [(b":status", b"200"), (b"content-type", b"text/html")])
    conn.send_data(sid, b"<html></html>", end_stream=True)


def reply_compressed(conn: H2Connection, sid: int, sock: socket.socket) -> None:
    conn.send_headers(sid, [*GRPC_HEADERS, (b"grpc-encoding", b"gzip")])
    conn.send_data(sid, frame(b"\x1f\x8b...", flag=1))
    ok_trailers(conn, sid)


def reply_declares_2mib(conn: H2Connection, sid: int, sock: socket.socket) -> None:
    conn.send_headers(sid, GRPC_HEADERS)
    conn.send_data(sid, struct.pack(">BI", 0, 2 << 20))  # only the prefix: the client must not wait for the rest


def reply_two_messages(conn: H2Connection, sid: int, sock: socket.socket) -> None:
    conn.send_headers(sid, GRPC_HEADERS)
    conn.send_data(sid, frame(b"\x0a\x01a") + frame(b"\x0a\x01b"))
    ok_trailers(conn, sid)


def reply_no_status(conn: H2Connection, sid: int, sock: socket.socket) -> None:
    conn.send_headers(sid, GRPC_HEADERS)
    conn.send_data(sid, frame(b""), end_stream=True)


def reply_ok_without_message(conn: H2Connection, sid: int, sock: socket.socket) -> None:
    conn.send_headers(sid, GRPC_HEADERS)
    ok_trailers(conn, sid)


def reply_trailers_only(conn: H2Connection, sid: int, sock: socket.socket) -> None:
    # Hand-made trailers-only reply; grpc-message percent-encoded as the spec says ("%" itself as %25, a
    # malformed escape left alone).
    conn.send_headers(sid, [*GRPC_HEADERS, (b"grpc-status", b"16"), (b"grpc-message", b"bad cert: %C3%BC 100%25 %zz")],
                      end_stream=True)


def reply_ok(conn: H2Connection, sid: int, sock: socket.socket) -> None:
    conn.send_headers(sid, GRPC_HEADERS)
    conn.send_data(sid, frame(pb.PingResponse(cluster_name="scripted").SerializeToString()))
    ok_trailers(conn, sid)


@pytest.mark.parametrize(("respond", "error", "text"), [
    (reply_reset, client.TransportError, "RST_STREAM CANCEL"),
    (reply_goaway, client.TransportError, "GOAWAY INTERNAL_ERROR: auth restarting"),
    (reply_graceful_goaway, client.TransportError, "GOAWAY NO_ERROR); the server is shutting down, retry"),
    (reply_http_503, client.ProtocolError, "HTTP status 503 instead of a gRPC reply"),
    (reply_html, client.ProtocolError, "content-type b'text/html' is not gRPC"),
    (reply_compressed, client.ProtocolError, "compressed"),
    (reply_declares_2mib, client.ProtocolError, "2097152 bytes, more than the limit of 1048576"),
    (reply_two_messages, client.ProtocolError, "more than one message"),
    (reply_no_status, client.ProtocolError, "without a grpc-status"),
    (reply_ok_without_message, client.ProtocolError, "status OK but no message"),
], ids=lambda value: getattr(value, "__name__", None))
def test_bad_replies(pki: Pki, scripted: Callable[..., Scripted], respond: Callable[..., None],
                     error: type[Exception], text: str) -> None:
    server = scripted(h2_server(respond))
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")) as caught:
        do_call(pki, server.port, PING, b"")
    assert type(caught.value) is error
    assert caught.value.request_sent  # type: ignore[attr-defined]


def test_scripted_ok_and_trailers_only(pki: Pki, scripted: Callable[..., Scripted]) -> None:
    server = scripted(h2_server(reply_ok))
    assert pb.PingResponse.FromString(do_call(pki, server.port, PING, b"")).cluster_name == "scripted"
    server = scripted(h2_server(reply_trailers_only))
    with pytest.raises(client.GrpcError) as caught:
        do_call(pki, server.port, PING, b"")
    assert (caught.value.code, caught.value.name, caught.value.message) == (16, "UNAUTHENTICATED",
                                                                            "bad cert: ü 100% %zz")


def test_request_larger_than_the_servers_window_waits_for_window_updates(
        pki: Pki, scripted: Callable[..., Scripted]) -> None:
    received = bytearray()
    server = scripted(h2_server(reply_ok, received))
    request = kube_request(public_key=b"k" * (256 * 1024)).SerializeToString()  # four times the 64 KiB window
    assert pb.PingResponse.FromString(do_call(pki, server.port, GENERATE, request)).cluster_name == "scripted"
    assert bytes(received) == frame(request)


def test_reset_mid_call_is_a_transport_error(pki: Pki, scripted: Callable[..., Scripted]) -> None:
    def reset(conn: H2Connection, sid: int, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # TCP RST, no TLS close_notify, no HTTP/2 goodbye

    server = scripted(h2_server(reset))
    with pytest.raises(client.TransportError) as caught:
        do_call(pki, server.port, PING, b"")
    assert type(caught.value) is client.TransportError
    assert caught.value.request_sent


def _timed(fn: Callable[[], object]) -> tuple[BaseException, float]:
    start = time.monotonic()
    with pytest.raises(client.DeadlineExceeded) as caught:
        fn()
    return caught.value, time.monotonic() - start


def test_silent_tcp_server_hits_the_deadline(pki: Pki, scripted: Callable[..., Scripted]) -> None:
    server = scripted(lambda sock: server.stop.wait(10), tls=False)  # accepts, never answers the ClientHello
    exc, elapsed = _timed(lambda: do_call(pki, server.port, PING, b"", deadline=1.0))
    assert 0.95 <= elapsed < 1.5
    assert not exc.request_sent  # type: ignore[attr-defined]
    assert str(exc) == f"the call to 127.0.0.1:{server.port} took longer than its 1 s deadline"


def test_server_that_never_replies_hits_the_deadline(pki: Pki, scripted: Callable[..., Scripted]) -> None:
    server = scripted(h2_server(lambda conn, sid, sock: server.stop.wait(10)))  # TLS and HTTP/2 fine, no reply
    exc, elapsed = _timed(lambda: do_call(pki, server.port, PING, b"", deadline=1.0))
    assert 0.95 <= elapsed < 1.5
    assert exc.request_sent  # type: ignore[attr-defined]


@pytest.mark.parametrize(("server_alpn", "negotiated"), [(["http/1.1"], "ALPN 'http/1.1'"), ([], "no ALPN")])
def test_alpn_other_than_h2_is_refused(pki: Pki, scripted: Callable[..., Scripted], server_alpn: list[str],
                                       negotiated: str) -> None:
    server = scripted(lambda sock: server.stop.wait(10), alpn=server_alpn)
    with pytest.raises(client.TransportError, match=f"negotiated {negotiated}, not h2"):
        do_call(pki, server.port, PING, b"", alpn=["h2", "http/1.1"])


def test_connection_refused(pki: Pki) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(client.TransportError, match="refused") as caught:
        do_call(pki, port, PING, b"")
    assert not caught.value.request_sent


# --- helpers that need no server.


def test_alpn_auth_encodes_the_cluster_name() -> None:
    assert client.alpn_auth("root") == (["teleport-auth@726f6f74.teleport.cluster.local", "h2"],
                                        "726f6f74.teleport.cluster.local")
    with pytest.raises(ValueError, match="too long"):
        client.alpn_auth("x" * 120)


@pytest.mark.parametrize(("seconds", "header"), [(1.0, "1000m"), (0.0001, "1m"), (0.0, "1m"), (2.5004, "2501m"),
                                                 (200_000.0, "200000S")])
def test_grpc_timeout(seconds: float, header: str) -> None:
    assert client.grpc_timeout(seconds) == header


@pytest.mark.parametrize(("raw", "text"), [
    (b"plain", "plain"),
    (b"%E2%80%94 %c3%bc", "— ü"),
    (b"100%25", "100%"),
    (b"bad %zz and %4", "bad %zz and %4"),
    (b"%FF", "\ufffd"),
])
def test_percent_decode(raw: bytes, text: str) -> None:
    assert client.percent_decode(raw) == text


def test_status_names_cover_every_code() -> None:
    assert client.GRPC_STATUS_NAMES[0] == "OK"
    assert client.GRPC_STATUS_NAMES[16] == "UNAUTHENTICATED"
    assert sorted(client.GRPC_STATUS_NAMES) == list(range(17))


def test_import_is_cheap() -> None:
    """Importing the client loads nothing heavy (no h2, ssl, socket or typing): only `call` does."""
    code = ("import sys, kubectl_teleport.issuer\n"
            "before = set(sys.modules)\n"
            "import kubectl_teleport.issuer.grpc\n"
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert set(out.stdout.split()) - {"__future__"} == {"kubectl_teleport.issuer.grpc"}


def test_method_must_be_a_full_name(pki: Pki) -> None:
    with pytest.raises(ValueError, match="full name"):
        client.call("127.0.0.1", 1, "Ping", b"", ssl_context=client_context(pki), server_hostname="x",
                    alpn=["h2"], deadline_seconds=1)
