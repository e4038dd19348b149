"""A Teleport-style single-port TLS router: one listener, routed by the ClientHello, TLS never terminated.

Like Teleport's proxy with TLS routing (lib/srv/alpnproxy/proxy.go), each connection's ClientHello is read
without terminating TLS and decides the backend: SNI `kube-teleport-proxy-alpn.*` → "kube", an ALPN protocol
`teleport-auth@…` → "auth", anything else → "web". The bytes read are replayed to the backend and the two
sockets are spliced, so TLS (and mTLS) runs end to end between the client and the backend.

Standard library only. Failures log one line on stderr (route, client address, reason), never stream bytes.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

MAX_HELLO_BYTES = 64 * 1024  # the most the router buffers while waiting for a complete ClientHello
HELLO_TIMEOUT = 10.0  # seconds a client has to send its whole ClientHello
CONNECT_TIMEOUT = 5.0  # seconds to connect to a backend
MAX_CONNECTIONS = 512
_RECORD_HEADER = 5
_MAX_FRAGMENT = 1 << 14  # TLSPlaintext.length limit (RFC 8446 §5.1)
_HANDSHAKE, _CLIENT_HELLO = 22, 1
_EXT_SNI, _EXT_ALPN = 0, 16
# How a peer may end a spliced stream (a reset after its close_notify, say): both sides are cut, nothing logged.
_ORDINARY_ENDS = {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ECONNABORTED}


class NotClientHello(ValueError):
    """The bytes are not (the start of) a well-formed TLS ClientHello."""


class HelloTooLarge(NotClientHello):
    """The ClientHello would need more than the buffering limit."""


class NoRoute(LookupError):
    """No routing rule matched the ClientHello."""


@dataclass
class ClientHello:
    """What routing needs from a ClientHello: the server name and the offered ALPN protocols (GREASE dropped)."""

    sni: str | None = None
    alpn: list[str] = field(default_factory=list)


class _Reader:
    """Bounds-checked big-endian reads over a byte string; truncation raises NotClientHello."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise NotClientHello(f"truncated {self.what}")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, len_bytes: int) -> _Reader:
        return _Reader(self.take(self.uint(len_bytes)), self.what)

    def done(self) -> bool:
        return self.pos == len(self.data)


def _is_grease(value: bytes) -> bool:
    """RFC 8701 GREASE ALPN identifiers: two equal bytes of the form 0x?A."""
    return len(value) == 2 and value[0] == value[1] and value[0] & 0x0F == 0x0A


class HelloReader:
    """Reads a connection's first bytes, fed as they arrive, until they hold a complete ClientHello.

    Linear in the bytes fed (a client trickling tiny TCP segments or TLS records costs no re-parsing).
    """

    def __init__(self, max_size: int = MAX_HELLO_BYTES) -> None:
        self.max_size = max_size
        self._total = 0
        self._pending = bytearray()  # bytes of the record not yet complete
        self._message = bytearray()  # the handshake message, reassembled from complete records

    def feed(self, chunk: bytes) -> ClientHello | None:
        """The ClientHello once complete, None while more bytes are needed; NotClientHello/HelloTooLarge else."""
        self._total += len(chunk)
        self._pending += chunk
        while True:
            header = bytes(self._pending[:_RECORD_HEADER])
            if len(header) >= 1 and header[0] != _HANDSHAKE:
                raise NotClientHello("not a TLS handshake record")
            if len(header) >= 2 and header[1] != 3:
                raise NotClientHello("not a TLS record version")
            if len(header) < _RECORD_HEADER:
                break
            length = int.from_bytes(header[3:5], "big")
            if length == 0 or length > _MAX_FRAGMENT:
                raise NotClientHello(f"invalid TLS record length {length}")
            if len(self._message) < 4:  # check the handshake header as soon as its bytes arrive
                head = self._message + self._pending[_RECORD_HEADER:_RECORD_HEADER + min(length, 4)]
                self._check_head(bytes(head[:4]))
            if len(self._pending) < _RECORD_HEADER + length:
                break
            self._message += self._pending[_RECORD_HEADER:_RECORD_HEADER + length]
            del self._pending[:_RECORD_HEADER + length]
            if len(self._message) >= 4:
                end = 4 + int.from_bytes(self._message[1:4], "big")
                if len(self._message) >= end:
                    return _parse_body(bytes(self._message[4:end]))
        if self._total >= self.max_size:
            raise HelloTooLarge(f"no complete ClientHello in the first {self.max_size} bytes")
        return None

    def _check_head(self, head: bytes) -> None:
        if len(head) >= 1 and head[0] != _CLIENT_HELLO:
            raise NotClientHello("first handshake message is not a ClientHello")
        if len(head) == 4 and int.from_bytes(head[1:4], "big") + 4 + _RECORD_HEADER > self.max_size:
            raise HelloTooLarge(f"ClientHello of {int.from_bytes(head[1:4], 'big')} bytes is over the "
                                f"{self.max_size}-byte limit")


def parse_client_hello(data: bytes, max_size: int = MAX_HELLO_BYTES) -> ClientHello | None:
    """Parse the ClientHello at the start of a connection's bytes (bytes after it are ignored).

    Returns None while more bytes are needed (the hello may span several TLS records and TCP reads); raises
    NotClientHello for anything else, and HelloTooLarge when completing it would take more than `max_size` bytes.
    """
    return HelloReader(max_size).feed(data)


def _parse_body(body: bytes) -> ClientHello:
    """The ClientHello body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2): SNI and ALPN from its extensions."""
    r = _Reader(body, "ClientHello")
    r.take(2 + 32)  # legacy_version, random
    r.vector(1)  # legacy_session_id
    r.vector(2)  # cipher_suites
    r.vector(1)  # legacy_compression_methods
    hello = ClientHello()
    if r.done():
        return hello  # no extensions at all (a pre-TLS 1.2 style hello)
    extensions = r.vector(2)
    if not r.done():
        raise NotClientHello("bytes after the ClientHello extensions")
    seen: set[int] = set()
    while not extensions.done():
        ext_type, ext = extensions.uint(2), extensions.vector(2)
        if ext_type in seen:
            raise NotClientHello(f"duplicate TLS extension {ext_type}")
        seen.add(ext_type)
        if ext_type == _EXT_SNI:
            hello.sni = _parse_sni(ext.vector(2))
        elif ext_type == _EXT_ALPN:
            names = ext.vector(2)
            while not names.done():
                name = names.vector(1).data
                if not name:
                    raise NotClientHello("empty ALPN protocol name")
                if not _is_grease(name):
                    hello.alpn.append(name.decode("latin-1"))
    return hello


def _parse_sni(names: _Reader) -> str | None:
    """The first host_name entry of a server_name_list (RFC 6066 §3)."""
    while not names.done():
        name_type, name = names.uint(1), names.vector(2).data
        if name_type == 0:
            try:
                return name.decode("ascii")
            except UnicodeDecodeError:
                raise NotClientHello("SNI host name is not ASCII") from None
    return None


@dataclass(frozen=True)
class Rule:
    """Route to `route` when every given condition holds (a rule with none matches everything).

    `sni_prefix` compares case-insensitively (DNS names); `alpn_prefix` matches any offered ALPN protocol.
    """

    route: str
    sni_prefix: str | None = None
    alpn_prefix: str | None = None

    def matches(self, hello: ClientHello) -> bool:
        if self.sni_prefix is not None and not (hello.sni or "").lower().startswith(self.sni_prefix.lower()):
            return False
        return self.alpn_prefix is None or any(p.startswith(self.alpn_prefix) for p in hello.alpn)


KUBE_SNI_PREFIX = "kube-teleport-proxy-alpn."
AUTH_ALPN_PREFIX = "teleport-auth@"
# First match wins. Kube's SNI comes before the ALPN rules, as in Teleport (getHandlerDescBaseOnClientHelloMsg).
DEFAULT_ROUTES: tuple[Rule, ...] = (
    Rule("kube", sni_prefix=KUBE_SNI_PREFIX),
    Rule("auth", alpn_prefix=AUTH_ALPN_PREFIX),
    Rule("web"),
)


def choose_route(hello: ClientHello, routes: Sequence[Rule] = DEFAULT_ROUTES) -> str:
    """The route name of the first rule that matches; NoRoute when none does."""
    for rule in routes:
        if rule.matches(hello):
            return rule.route
    raise NoRoute("no routing rule matches")


RouteOverride = Callable[[ClientHello, str], str]
Address = tuple[str, int]


def _stderr_log(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class Router:
    """Listens on `address` and splices each connection to `backends[route]`; `start()`, then `close()`.

    `route_override(hello, route)` may return another route name (e.g. to emulate an L7 load balancer).
    """

    def __init__(self, address: Address, backends: Mapping[str, Address], *, routes: Sequence[Rule] = DEFAULT_ROUTES,
                 route_override: RouteOverride | None = None, hello_timeout: float = HELLO_TIMEOUT,
                 connect_timeout: float = CONNECT_TIMEOUT, max_hello: int = MAX_HELLO_BYTES,
                 max_connections: int = MAX_CONNECTIONS, log: Callable[[str], None] = _stderr_log) -> None:
        self.backends = dict(backends)
        self.routes = tuple(routes)
        self.route_override = route_override
        self.hello_timeout = hello_timeout
        self.connect_timeout = connect_timeout
        self.max_hello = max_hello
        self.log = log
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._listener = socket.create_server(address, family=family, backlog=128)
        self._listener.setblocking(False)
        self.address: Address = self._listener.getsockname()[:2]
        self._wake_r, self._wake_w = socket.socketpair()
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._closed = False
        self._accept_thread = threading.Thread(target=self._accept_loop, name="router-accept", daemon=True)

    def start(self) -> Router:
        self._accept_thread.start()
        return self

    def __enter__(self) -> Router:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, cut every open connection and wait (bounded) for the connection threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            socks, threads = list(self._socks), list(self._threads)
        self._wake_w.send(b"x")
        if self._accept_thread.is_alive():
            self._accept_thread.join(timeout)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while all(key.fileobj is self._listener for key, _ in selector.select()):
                self._accept()

    def _accept(self) -> None:
        try:
            client, peer = self._listener.accept()
        except OSError:
            return  # e.g. the client reset before accept (the listener is non-blocking)
        client.setblocking(True)
        if not self._slots.acquire(blocking=False):
            self.log(f"router: - connection from {_fmt(peer)} refused: over {self.max_connections} connections")
            client.close()
            return
        thread = threading.Thread(target=self._serve, args=(client, peer), name="router-conn", daemon=True)
        if self._track(client, thread):
            thread.start()
        else:
            client.close()
            self._slots.release()

    def _track(self, sock: socket.socket, thread: threading.Thread | None = None) -> bool:
        """Register a socket (and thread) so close() can cut it; False once the router is closed."""
        with self._lock:
            if self._closed:
                return False
            self._socks.add(sock)
            if thread is not None:
                self._threads.add(thread)
            return True

    def _serve(self, client: socket.socket, peer: Address) -> None:
        route, backend = "-", None
        try:
            hello, buffered = self._read_hello(client)
            route = choose_route(hello, self.routes)
            if self.route_override is not None:
                route = self.route_override(hello, route)
            address = self.backends.get(route)
            if address is None:
                raise NoRoute("no backend for this route")
            try:
                backend = socket.create_connection(address, timeout=self.connect_timeout)
            except OSError as err:
                raise ConnectionError(f"backend {_fmt(address)} unreachable: {_reason(err)}") from None
            if not self._track(backend):
                return
            for sock in (client, backend):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            backend.sendall(buffered)
            self._splice(client, backend)
        except (OSError, ValueError, LookupError) as err:
            if not self._closed:
                self.log(f"router: {route} connection from {_fmt(peer)} failed: {_reason(err)}")
        finally:
            with self._lock:
                self._socks.difference_update((client, backend))
                self._threads.discard(threading.current_thread())
            for sock in (client, backend):
                if sock is not None:
                    sock.close()
            self._slots.release()

    def _read_hello(self, client: socket.socket) -> tuple[ClientHello, bytes]:
        """Buffer bytes until they hold a complete ClientHello, within the hello timeout and size limit."""
        deadline = time.monotonic() + self.hello_timeout
        reader, buffered = HelloReader(self.max_hello), bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete ClientHello in time")
            client.settimeout(remaining)
            try:
                chunk = client.recv(max(1, self.max_hello - len(buffered)))
            except TimeoutError:
                raise TimeoutError("no complete ClientHello in time") from None
            if not chunk:
                raise ConnectionError("client closed before sending a ClientHello")
            buffered += chunk
            hello = reader.feed(chunk)
            if hello is not None:
                return hello, bytes(buffered)

    def _splice(self, client: socket.socket, backend: socket.socket) -> None:
        """Copy both ways until both sides have finished; an error on either cuts both."""
        errors: list[OSError] = []
        upstream = threading.Thread(target=_pump, args=(client, backend, errors), name="router-pump", daemon=True)
        upstream.start()
        _pump(backend, client, errors)
        upstream.join()
        failures = [err for err in errors if err.errno not in _ORDINARY_ENDS]
        if failures:
            raise failures[0]


def _pump(src: socket.socket, dst: socket.socket, errors: list[OSError]) -> None:
    """Copy src → dst; at src's EOF half-close dst; on an error cut both sockets so the other pump ends too."""
    try:
        while chunk := src.recv(64 * 1024):
            dst.sendall(chunk)
        dst.shutdown(socket.SHUT_WR)
    except OSError as err:
        errors.append(err)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _fmt(address: Address) -> str:
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(err: BaseException) -> str:
    """A short reason: the message of our own errors, the OS error name otherwise (never stream bytes)."""
    if isinstance(err, OSError) and err.errno is not None:
        return err.strerror or type(err).__name__
    return str(err) or type(err).__name__
