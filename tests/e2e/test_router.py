"""The single-port TLS router with real TLS clients and servers on loopback.

Three TLS backends ("auth" requires a client certificate, "kube", "web"), each with its own serving certificate
from a throwaway CA, sit behind one Router. Clients verify the backend's certificate for the name they asked
for, and each backend answers with its name and what it saw (client certificate, SNI, ALPN), so a test knows
which backend it reached and that TLS ran end to end through the router.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import hashlib
import http.client
import ipaddress
import json
import select
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubectl_teleport.devcluster.router import Router

CLUSTER = "devcluster"
AUTH_SNI = f"{CLUSTER.encode().hex()}.teleport.cluster.local"
AUTH_ALPN = f"teleport-auth@{AUTH_SNI}"
KUBE_SNI = "kube-teleport-proxy-alpn.example.com"
IO_TIMEOUT = 10.0  # a bound on every client wait: a hang fails the test instead of stalling the suite
BACKEND_IDLE_TIMEOUT = 3 * IO_TIMEOUT  # longer than any client wait: an EOF a client sees comes from the router
HELLO_TIMEOUT = 0.5


# --- a throwaway PKI ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_pem: str
    files: dict[str, tuple[str, str]]  # name -> (cert file, key file)


def _issue(ca_key: ec.EllipticCurvePrivateKey | None, issuer: x509.Name | None, cn: str, sans: list[x509.GeneralName],
           client: bool = False, ca: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                      content_commitment=False, key_encipherment=False,
                                                      data_encipherment=False, key_agreement=False,
                                                      encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key or key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a serving certificate per backend and a bot client certificate, as PEM files."""
    ca_cert, ca_key = _issue(None, None, "router-test CA", [], ca=True)
    wanted = {
        "auth": ("auth", [x509.DNSName("teleport.cluster.local"), x509.DNSName("*.teleport.cluster.local")], False),
        "kube": ("kube", [x509.DNSName(KUBE_SNI)], False),
        "web": ("web", [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], False),
        "bot": ("bot-robot", [], True),
    }
    directory = tmp_path_factory.mktemp("pki")
    files = {}
    for name, (cn, sans, client) in wanted.items():
        cert, key = _issue(ca_key, ca_cert.subject, cn, sans, client=client)
        cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        files[name] = (str(cert_file), str(key_file))
    return Pki(ca_cert.public_bytes(serialization.Encoding.PEM).decode(), files)


# --- backends ----------------------------------------------------------------------------------------------


class TLSBackend(socketserver.ThreadingTCPServer):
    """A TLS server that answers one HTTP request with JSON: its name, the client's CN, the SNI and the ALPN."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, name: str, context: ssl.SSLContext) -> None:
        self.name = name
        self.context = context
        self.seen = threading.local()
        context.sni_callback = self._sni
        super().__init__(("127.0.0.1", 0), _BackendHandler)
        self.address = self.server_address[:2]

    def _sni(self, _sock: object, server_name: str | None, _ctx: object) -> None:
        self.seen.sni = server_name  # the callback runs in the handshaking (handler) thread


class _BackendHandler(socketserver.BaseRequestHandler):
    server: TLSBackend

    def handle(self) -> None:
        self.request.settimeout(BACKEND_IDLE_TIMEOUT)
        self.server.seen.sni = None
        try:
            tls = self.server.context.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with tls, contextlib.suppress(ssl.SSLError, OSError):
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                request += chunk
            peer = tls.getpeercert()
            subject = dict(item[0] for item in peer["subject"]) if peer else {}
            body = json.dumps({"backend": self.server.name, "client_cn": subject.get("commonName"),
                               "sni": self.server.seen.sni, "alpn": tls.selected_alpn_protocol(),
                               "path": request.split(b" ")[1].decode()}).encode()
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


class RawBackend(socketserver.ThreadingTCPServer):
    """A plain TCP server that reads to EOF (the client's half-close) and answers with the bytes' length and hash."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RawHandler)
        self.address = self.server_address[:2]


class _RawHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(BACKEND_IDLE_TIMEOUT)
        digest, size = hashlib.sha256(), 0
        while chunk := self.request.recv(65536):
            digest.update(chunk)
            size += len(chunk)
        self.request.sendall(f"{size} {digest.hexdigest()}".encode())


@contextlib.contextmanager
def serving(server: socketserver.TCPServer) -> Iterator[socketserver.TCPServer]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(IO_TIMEOUT)


def backend_context(pki: Pki, name: str, alpn: list[str], require_client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pki.files[name])
    ctx.set_alpn_protocols(alpn)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=pki.ca_pem)
    return ctx


@dataclass
class Cluster:
    router: Router
    log: list[str]
    backends: dict[str, TLSBackend]


@pytest.fixture(scope="module")
def backends(pki: Pki) -> Iterator[dict[str, TLSBackend]]:
    """auth (mTLS, negotiates h2 as Teleport's auth does), kube and web."""
    servers = {
        "auth": TLSBackend("auth", backend_context(pki, "auth", ["h2"], require_client_cert=True)),
        "kube": TLSBackend("kube", backend_context(pki, "kube", ["http/1.1"])),
        "web": TLSBackend("web", backend_context(pki, "web", ["http/1.1"])),
    }
    with contextlib.ExitStack() as stack:
        for server in servers.values():
            stack.enter_context(serving(server))
        yield servers


@pytest.fixture
def cluster(backends: dict[str, TLSBackend]) -> Iterator[Cluster]:
    log: list[str] = []
    addresses = {name: server.address for name, server in backends.items()}
    with Router(("127.0.0.1", 0), addresses, hello_timeout=HELLO_TIMEOUT, log=log.append) as router:
        yield Cluster(router, log, backends)


# --- clients -----------------------------------------------------------------------------------------------


def client_context(pki: Pki, alpn: list[str] | None = None, client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=pki.ca_pem)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if client_cert:
        ctx.load_cert_chain(*pki.files["bot"])
    return ctx


def tls_get(address: tuple[str, int], ctx: ssl.SSLContext, server_name: str, path: str = "/") -> dict[str, object]:
    """GET `path` over TLS to `address` with SNI `server_name` (verified against the backend's certificate)."""
    with socket.create_connection(address, timeout=IO_TIMEOUT) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return json.loads(body)


def auth_get(cluster: Cluster, pki: Pki) -> dict[str, object]:
    """The auth API as tsh reaches it over TLS routing: ALPN teleport-auth@<hex>, SNI <hex>.teleport.cluster.local."""
    return tls_get(cluster.router.address, client_context(pki, [AUTH_ALPN, "h2"], client_cert=True), AUTH_SNI)


def kube_get(cluster: Cluster, pki: Pki) -> dict[str, object]:
    return tls_get(cluster.router.address, client_context(pki, ["h2", "http/1.1"]), KUBE_SNI, "/api")


def wait_closed(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes; a reset counts as closed. Fails on a hang (IO_TIMEOUT)."""
    received = b""
    sock.settimeout(IO_TIMEOUT)
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


# --- routing -----------------------------------------------------------------------------------------------


def test_auth_route_runs_mtls_end_to_end(cluster: Cluster, pki: Pki) -> None:
    answer = auth_get(cluster, pki)
    assert answer == {"backend": "auth", "client_cn": "bot-robot", "sni": AUTH_SNI, "alpn": "h2", "path": "/"}


def test_auth_route_without_client_certificate_is_refused_by_auth(cluster: Cluster, pki: Pki) -> None:
    """The router does not terminate TLS: auth itself demands the client certificate."""
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_get(cluster.router.address, client_context(pki, [AUTH_ALPN, "h2"]), AUTH_SNI)


def test_kube_route(cluster: Cluster, pki: Pki) -> None:
    answer = kube_get(cluster, pki)
    assert answer == {"backend": "kube", "client_cn": None, "sni": KUBE_SNI, "alpn": "http/1.1", "path": "/api"}


def test_plain_https_reaches_web(cluster: Cluster, pki: Pki) -> None:
    host, port = cluster.router.address
    conn = http.client.HTTPSConnection(host, port, timeout=IO_TIMEOUT, context=client_context(pki))
    try:
        conn.request("GET", "/webapi/find")
        response = conn.getresponse()
        answer = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200
    assert answer == {"backend": "web", "client_cn": None, "sni": None, "alpn": None, "path": "/webapi/find"}
    by_name = tls_get(cluster.router.address, client_context(pki, ["h2", "http/1.1"]), "localhost", "/webapi/ping")
    assert by_name["backend"] == "web" and by_name["sni"] == "localhost"


def test_concurrent_connections_route_correctly(cluster: Cluster, pki: Pki) -> None:
    kinds = ["auth", "kube", "web", "auth", "kube"] * 4
    start = threading.Barrier(len(kinds), timeout=IO_TIMEOUT)
    host, port = cluster.router.address

    def one(kind: str) -> object:
        start.wait()
        if kind == "auth":
            return auth_get(cluster, pki)["backend"], "bot-robot"
        if kind == "kube":
            return kube_get(cluster, pki)["backend"], None
        return tls_get((host, port), client_context(pki), "localhost")["backend"], None

    with concurrent.futures.ThreadPoolExecutor(len(kinds)) as pool:
        results = list(pool.map(one, kinds))
    assert [backend for backend, _ in results] == kinds
    cluster.router.close()
    assert cluster.log == []


# --- failures ----------------------------------------------------------------------------------------------


def test_silent_client_is_dropped_after_the_hello_timeout(cluster: Cluster) -> None:
    started = time.monotonic()
    with socket.create_connection(cluster.router.address, timeout=IO_TIMEOUT) as sock:
        assert wait_closed(sock) == b""
    assert time.monotonic() - started >= HELLO_TIMEOUT
    assert len(cluster.log) == 1
    assert "failed: no complete ClientHello in time" in cluster.log[0]
    assert cluster.log[0].startswith("router: - connection from 127.0.0.1:")


def test_partial_hello_is_dropped_after_the_hello_timeout(cluster: Cluster, pki: Pki) -> None:
    """A slow client that sends part of its hello and stalls gets the same bound (the deadline is for the whole
    hello, not per read)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with pytest.raises(ssl.SSLWantReadError):
        client_context(pki).wrap_bio(incoming, outgoing, server_hostname="localhost").do_handshake()
    hello = outgoing.read()
    started = time.monotonic()
    with socket.create_connection(cluster.router.address, timeout=IO_TIMEOUT) as sock:
        sock.sendall(hello[:100])
        assert wait_closed(sock) == b""
    assert time.monotonic() - started >= HELLO_TIMEOUT
    assert ["no complete ClientHello in time" in line for line in cluster.log] == [True]


def test_trickling_client_is_dropped_at_the_overall_deadline(cluster: Cluster, pki: Pki) -> None:
    """One byte every quarter of the timeout never lets a read time out: only a deadline for the whole hello
    drops it."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with pytest.raises(ssl.SSLWantReadError):
        client_context(pki).wrap_bio(incoming, outgoing, server_hostname="localhost").do_handshake()
    hello = outgoing.read()
    with socket.create_connection(cluster.router.address, timeout=IO_TIMEOUT) as sock:
        for i in range(int(IO_TIMEOUT / (HELLO_TIMEOUT / 4))):
            with contextlib.suppress(OSError):
                sock.sendall(hello[i:i + 1])
            readable, _, _ = select.select([sock], [], [], HELLO_TIMEOUT / 4)
            if readable:
                break
        else:
            pytest.fail("the router kept a trickling client past its hello timeout")
        assert wait_closed(sock) == b""
    assert ["no complete ClientHello in time" in line for line in cluster.log] == [True]


def test_non_tls_client_is_closed_at_once_and_logged_without_its_bytes(cluster: Cluster) -> None:
    with socket.create_connection(cluster.router.address, timeout=IO_TIMEOUT) as sock:
        sock.sendall(b"GET /secret-token HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_closed(sock) == b""
    assert len(cluster.log) == 1
    assert "not a TLS handshake record" in cluster.log[0]
    assert "secret" not in cluster.log[0] and "GET" not in cluster.log[0]


def test_backend_down_gives_a_closed_connection(backends: dict[str, TLSBackend], pki: Pki) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[:2]  # nothing listens here once the probe is closed
    log: list[str] = []
    addresses = {"auth": backends["auth"].address, "kube": dead, "web": backends["web"].address}
    with Router(("127.0.0.1", 0), addresses, log=log.append) as router:
        started = time.monotonic()
        with pytest.raises((ssl.SSLError, ConnectionError)) as caught:
            tls_get(router.address, client_context(pki, ["h2"]), KUBE_SNI)
        assert not isinstance(caught.value, TimeoutError)
        assert time.monotonic() - started < IO_TIMEOUT
        assert tls_get(router.address, client_context(pki), "localhost")["backend"] == "web"  # others still work
    assert len(log) == 1
    assert log[0].startswith("router: kube connection from 127.0.0.1:")
    assert f"backend 127.0.0.1:{dead[1]} unreachable" in log[0]


def test_connections_over_the_limit_are_closed(backends: dict[str, TLSBackend]) -> None:
    log: list[str] = []
    with Router(("127.0.0.1", 0), {"web": backends["web"].address}, max_connections=1, log=log.append) as router, \
            socket.create_connection(router.address, timeout=IO_TIMEOUT) as _held, \
            socket.create_connection(router.address, timeout=IO_TIMEOUT) as second:
        assert wait_closed(second) == b""  # `_held` was accepted before it and holds the only slot
        assert len(log) == 1 and "refused: over 1 connections" in log[0]


def test_route_without_backend_is_closed(backends: dict[str, TLSBackend], pki: Pki) -> None:
    log: list[str] = []
    with Router(("127.0.0.1", 0), {"web": backends["web"].address}, log=log.append) as router:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_get(router.address, client_context(pki, [AUTH_ALPN], client_cert=True), AUTH_SNI)
    assert len(log) == 1 and "router: auth connection" in log[0] and "no backend for this route" in log[0]


def test_route_override_hook(backends: dict[str, TLSBackend], pki: Pki) -> None:
    """The hook a later "L7 load balancer" mode can use: here every kube connection is sent to web."""
    seen: list[tuple[str | None, str]] = []

    def override(hello: object, route: str) -> str:
        seen.append((getattr(hello, "sni", None), route))
        return "web" if route == "kube" else route

    addresses = {name: server.address for name, server in backends.items()}
    with Router(("127.0.0.1", 0), addresses, route_override=override) as router:
        ctx = client_context(pki, ["h2"])
        ctx.check_hostname = False  # the web certificate is not valid for the kube name
        assert tls_get(router.address, ctx, KUBE_SNI)["backend"] == "web"
        assert auth_get(Cluster(router, [], backends), pki)["backend"] == "auth"
    assert seen == [(KUBE_SNI, "kube"), (AUTH_SNI, "auth")]


# --- the byte stream ---------------------------------------------------------------------------------------


def test_replay_is_exact_and_half_close_propagates(pki: Pki) -> None:
    """The router replays the buffered hello and then splices 4 MiB; the client's half-close reaches the backend,
    whose answer still comes back."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with pytest.raises(ssl.SSLWantReadError):
        client_context(pki, ["h2"]).wrap_bio(incoming, outgoing, server_hostname="localhost").do_handshake()
    payload = outgoing.read() + bytes(range(256)) * (4 * 4096)
    with serving(RawBackend()) as raw, Router(("127.0.0.1", 0), {"web": raw.address}) as router:
        with socket.create_connection(router.address, timeout=IO_TIMEOUT) as sock:
            for i in range(0, len(payload), 1000):  # in many small writes, the hello cut at odd places
                sock.sendall(payload[i:i + 1000])
            sock.shutdown(socket.SHUT_WR)
            answer = wait_closed(sock)
    assert answer.decode() == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"


def test_close_cuts_open_connections_and_stops_listening(cluster: Cluster, pki: Pki) -> None:
    ctx = client_context(pki, [AUTH_ALPN, "h2"], client_cert=True)
    address = cluster.router.address
    with socket.create_connection(address, timeout=IO_TIMEOUT) as silent, \
            socket.create_connection(address, timeout=IO_TIMEOUT) as raw, \
            ctx.wrap_socket(raw, server_hostname=AUTH_SNI) as tls:
        assert tls.selected_alpn_protocol() == "h2"  # spliced to auth, handshake done, request not yet sent
        # `silent` was accepted before `raw` (one accept loop, in order): both are the router's now.
        cluster.router.close(timeout=IO_TIMEOUT)
        assert [t.name for t in threading.enumerate() if t.name.startswith("router-")] == []
        assert wait_closed(silent) == b""
        tls.settimeout(IO_TIMEOUT / 2)  # well before the backend's own idle timeout
        with contextlib.suppress(ssl.SSLError):
            assert tls.recv(1) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=IO_TIMEOUT).close()
    assert cluster.log == []  # connections cut by close() are not failures
    cluster.router.close()  # idempotent


class ResettingBackend(socketserver.ThreadingTCPServer):
    """Reads the first bytes of a connection, then resets it (TCP RST)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ResettingHandler)
        self.address = self.server_address[:2]


class _ResettingHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(BACKEND_IDLE_TIMEOUT)
        self.request.recv(65536)
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.request.close()  # now, before socketserver's own shutdown(SHUT_WR) could send a FIN first


def test_backend_reset_closes_the_client_side(pki: Pki) -> None:
    """An error on one side cuts both: the client, still free to send, is not left hanging."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with pytest.raises(ssl.SSLWantReadError):
        client_context(pki).wrap_bio(incoming, outgoing, server_hostname="localhost").do_handshake()
    with serving(ResettingBackend()) as backend, Router(("127.0.0.1", 0), {"web": backend.address}) as router, \
            socket.create_connection(router.address, timeout=IO_TIMEOUT) as sock:
        sock.sendall(outgoing.read())
        assert wait_closed(sock) == b""


def test_ipv6_listener(backends: dict[str, TLSBackend], pki: Pki) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        router = Router(("::1", 0), {"web": backends["web"].address})
    except OSError:
        pytest.skip("no IPv6 loopback")
    with router:
        assert router.address[0] == "::1"
        assert tls_get(router.address, client_context(pki), "localhost")["backend"] == "web"


def test_module_uses_only_the_standard_library() -> None:
    """The devcluster router must not depend on the plugin package or third-party libraries."""
    source = Path(__file__).resolve().parents[2] / "kubectl_teleport" / "devcluster" / "router.py"
    imports = [line.split()[1] for line in source.read_text().splitlines() if line.startswith(("import ", "from "))]
    assert imports and all(name.split(".")[0] in sys.stdlib_module_names for name in imports), imports
