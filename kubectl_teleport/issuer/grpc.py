"""Unary gRPC calls over HTTP/2 on TLS, built on `h2` and the stdlib `ssl`: how we reach Teleport's auth service.

grpcio cannot offer a custom ALPN list, and Teleport's proxy routes auth traffic by ALPN
(`teleport-auth@<hex(cluster)>.teleport.cluster.local`, then `h2`), so this is a small client of our own.

What it does:
- One call per connection: TCP connect (or a socket the caller already connected, e.g. through an HTTPS proxy's
  CONNECT tunnel), TLS with the caller's `SSLContext` (verification, client certificate) plus the given ALPN list
  and SNI, and the negotiated protocol must be `h2`.
- HTTP/2 client preface and settings (push disabled; h2 acknowledges the server's settings and pings), one
  stream: `:method POST`, `:scheme https`, `:path`, `:authority`, `content-type: application/grpc`,
  `te: trailers`, `grpc-timeout` from what is left of the deadline, and a user-agent. No `version` metadata:
  Teleport lets a client that reports no version in, and rejects one it cannot parse.
- Flow control both ways: the request waits for window updates if it is bigger than the server's window, and
  every response byte is acknowledged so the server can send up to `max_response`.
- The 5-byte gRPC message framing: exactly one uncompressed response message, at most `max_response` bytes.
- The status from the trailers, or from the first HEADERS in a trailers-only reply; `grpc-message` is
  percent-decoded (UTF-8). A non-OK status raises `GrpcError`.
- One deadline for the whole call (connect, handshake, request, response): every socket operation gets the time
  that is left as its timeout, and running out raises `DeadlineExceeded` (name resolution is not bounded).

What fails as a `TransportError` (the call may be retried; `request_sent` says whether the server may have seen
the request, which matters for calls that change server state such as a bot renewal):
- connection and TLS errors (`TLSVerifyError` when the server's certificate does not verify; the
  `ssl.SSLCertVerificationError` is its `__cause__`), no `h2` in ALPN, HTTP/2 protocol errors, RST_STREAM,
  the connection closing early, and a GOAWAY before the reply is complete: even a graceful one, because h2
  accepts no frame after a GOAWAY (python-hyper/h2#1181); with one call per connection that is rare;
- `ProtocolError`: a reply that is not gRPC (`:status` other than 200, another content-type, no grpc-status)
  or a message this client does not take (compressed, too large, none or several).

Deliberately not handled: compression (we never send `grpc-accept-encoding`, so servers do not compress),
streaming calls, connection reuse, request metadata beyond the fixed headers, and HTTP/1.1 upgrades for L7 load
balancers (a caller can do those on the socket and pass it in).

Import cost: standard library only at import time (no ssl/socket either); h2 is imported inside `call`.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: keep this module's import free of typing
if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Callable

    from h2.connection import H2Connection

GRPC_STATUS_NAMES: dict[int, str] = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}

TELEPORT_API_DOMAIN = "teleport.cluster.local"
_ALPN_AUTH_PREFIX = "teleport-auth@"
_RECV_SIZE = 65536
_USER_AGENT = "kubectl-teleport-grpc"


class CallError(Exception):
    """Any failed call: a gRPC status from the server, or a transport problem."""


class GrpcError(CallError):
    """The server answered with a non-OK grpc-status."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(f"{name} ({code}): {message}" if message else f"{name} ({code})")
        self.code = code
        self.name = name
        self.message = message


class TransportError(CallError):
    """The call did not complete: connection, TLS, HTTP/2 or framing problem.

    `request_sent` is True once any of the request message was handed to the socket: the server may have acted.
    """

    def __init__(self, message: str, *, request_sent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.request_sent = request_sent


class TLSVerifyError(TransportError):
    """The server's certificate did not verify (chain or name); the ssl error is the `__cause__`."""


class ProtocolError(TransportError):
    """The reply was not a gRPC reply this client accepts (HTTP status, content-type, framing, size)."""


class DeadlineExceeded(TransportError):
    """The whole call took longer than its deadline."""


def alpn_auth(cluster_name: str) -> tuple[list[str], str]:
    """ALPN list and SNI that reach the auth service of `cluster_name` through a Teleport proxy's TLS routing.

    The proxy forwards the raw TLS stream to auth, whose certificate covers `*.teleport.cluster.local`.
    """
    sni = f"{cluster_name.encode().hex()}.{TELEPORT_API_DOMAIN}"
    protocol = _ALPN_AUTH_PREFIX + sni
    if len(protocol.encode()) > 255:
        raise ValueError(f"cluster name {cluster_name!r} is too long for an ALPN protocol name")
    return [protocol, "h2"], sni


def grpc_timeout(seconds: float) -> str:
    """The `grpc-timeout` header value for `seconds` (rounded up; at most 8 digits, as the spec requires)."""
    millis = max(1, -int(-seconds * 1000 // 1))  # rounded up: -floor(-x) is ceil(x)
    if millis <= 99_999_999:
        return f"{millis}m"
    return f"{min(99_999_999, -(-millis // 1000))}S"


def percent_decode(raw: bytes) -> str:
    """Decode a `grpc-message` value: %XX escapes to bytes, then UTF-8; malformed escapes stay as they are."""
    if b"%" not in raw:
        return raw.decode("utf-8", "replace")
    out = bytearray()
    i = 0
    hexdigits = b"0123456789abcdefABCDEF"
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw) and raw[i + 1] in hexdigits and raw[i + 2] in hexdigits:
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def call(
    host: str,
    port: int,
    method: str,
    request: bytes,
    *,
    ssl_context: ssl.SSLContext,
    server_hostname: str,
    alpn: list[str],
    deadline_seconds: float,
    max_response: int = 1 << 20,
    sock: socket.socket | None = None,
    before_request: Callable[[], None] | None = None,
    answer_wait: float = 0.0,
) -> bytes:
    """Make one unary gRPC call and return the serialized response message.

    `method` is the full name (`/proto.AuthService/Ping`). `ssl_context` carries verification and the client
    certificate; its ALPN protocols are set to `alpn` (one context per call, or the same list every time).
    `server_hostname` is the SNI, the name checked in the server's certificate and the `:authority`. With `sock`
    (already connected, e.g. a CONNECT tunnel) `host`/`port` only name the server in errors; the call owns and
    closes the socket either way. `before_request` runs once the connection is up (TLS verified, `h2`
    negotiated) and before any byte of the request is sent: a caller whose request changes server state can
    record there that it is about to leave (an exception from it aborts the call, nothing sent).
    `answer_wait`: once the whole request has been sent, wait at least this many seconds more for the answer,
    whatever is left of the deadline (for a call whose lost answer costs more than a late one).

    Raises `GrpcError` for a non-OK status, `TransportError` (or its subclasses `TLSVerifyError`,
    `ProtocolError`, `DeadlineExceeded`) when the call did not complete.
    """
    import socket
    import ssl

    if not method.startswith("/"):
        raise ValueError(f"gRPC method must be a full name like /package.Service/Method, not {method!r}")
    where = f"{host}:{port}"
    wire = _Wire(deadline_seconds, where)
    try:
        if sock is None:
            sock = socket.create_connection((host, port), timeout=wire.remaining())
        ssl_context.set_alpn_protocols(alpn)
        tls = ssl_context.wrap_socket(sock, server_hostname=server_hostname, do_handshake_on_connect=False)
    except BaseException as exc:
        if sock is not None:
            sock.close()
        if isinstance(exc, OSError):
            raise wire.translate(exc) from exc
        raise
    try:
        try:
            tls.settimeout(wire.remaining())
            tls.do_handshake()
        except ssl.SSLCertVerificationError as exc:
            raise TLSVerifyError(f"TLS with {where}: the server's certificate did not verify: "
                                 f"{exc.verify_message or exc.reason}") from exc
        except OSError as exc:
            raise wire.translate(exc) from exc
        selected = tls.selected_alpn_protocol()
        if selected != "h2":
            offered = ", ".join(alpn)
            raise TransportError(f"TLS with {where} negotiated {'ALPN ' + repr(selected) if selected else 'no ALPN'}"
                                 f", not h2 (offered {offered}): not a gRPC endpoint, or a proxy that does not route"
                                 " this ALPN")
        wire.sock = tls
        if before_request is not None:
            before_request()
        try:
            return _exchange(wire, method, request, server_hostname, max_response, answer_wait)
        except CallError:
            raise
        except Exception as exc:
            translated = wire.translate(exc)
            if translated is exc:
                raise
            raise translated from exc
    finally:
        tls.close()


class _Wire:
    """The TLS socket under one deadline: every send and recv gets the time that is left as its timeout."""

    def __init__(self, seconds: float, where: str) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.where = where
        self.sock: ssl.SSLSocket | None = None
        self.request_sent = False

    def extend(self, seconds: float) -> None:
        """Allow at least `seconds` from now (never shortens the deadline)."""
        new = time.monotonic() + seconds
        if new > self.deadline:
            self.seconds += new - self.deadline
            self.deadline = new

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.timed_out()
        return left

    def timed_out(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"the call to {self.where} took longer than its {self.seconds:g} s deadline",
                                request_sent=self.request_sent)

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        view = memoryview(data)
        while view:
            self.sock.settimeout(self.remaining())
            view = view[self.sock.send(view) :]

    def recv(self) -> bytes:
        assert self.sock is not None
        self.sock.settimeout(self.remaining())
        data = self.sock.recv(_RECV_SIZE)
        if not data:
            raise TransportError(f"{self.where} closed the connection before the reply ended",
                                 request_sent=self.request_sent)
        return data

    def translate(self, exc: BaseException) -> BaseException:
        """Map a socket, TLS or h2 exception to ours; anything else comes back unchanged."""
        import ssl

        from h2.exceptions import ProtocolError as H2ProtocolError

        sent = self.request_sent
        if isinstance(exc, CallError):
            return exc
        if isinstance(exc, TimeoutError):
            return self.timed_out()
        if isinstance(exc, ssl.SSLError):
            return TransportError(f"TLS with {self.where} failed: {exc.reason or exc}", request_sent=sent)
        if isinstance(exc, OSError):
            return TransportError(f"connection to {self.where} failed: {exc.strerror or exc}", request_sent=sent)
        if isinstance(exc, H2ProtocolError):
            return TransportError(f"HTTP/2 protocol error with {self.where}: {exc}", request_sent=sent)
        return exc


def _exchange(wire: _Wire, method: str, request: bytes, authority: str, max_response: int,
              answer_wait: float = 0.0) -> bytes:
    """Run the HTTP/2 side of the call on `wire`: preface, request stream, response, status."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.settings import SettingCodes, Settings

    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.local_settings = Settings(client=True, initial_values={SettingCodes.ENABLE_PUSH: 0})
    conn.initiate_connection()
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(stream_id, [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":path", method.encode()),
        (b":authority", authority.encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (b"grpc-timeout", grpc_timeout(max(wire.remaining(), answer_wait)).encode()),
        (b"user-agent", _USER_AGENT.encode()),
    ])
    wire.send(conn.data_to_send())
    pending = memoryview(len(request).to_bytes(5, "big") + request)  # flag 0 (uncompressed), length, message
    reply = _Reply(wire.where, stream_id, max_response)
    while not reply.ended:
        pending = _send_body(conn, stream_id, pending, wire)
        wire.send(conn.data_to_send())
        if not pending and answer_wait:
            wire.extend(answer_wait)
            answer_wait = 0.0
        for event in conn.receive_data(wire.recv()):
            reply.handle(event, conn)
        wire.send(conn.data_to_send())  # settings and ping acks, window updates
    try:
        conn.close_connection()
        wire.send(conn.data_to_send())
    except (OSError, CallError):
        pass  # the reply is complete; a polite GOAWAY that does not go out changes nothing
    return reply.result()


def _send_body(conn: H2Connection, stream_id: int, pending: memoryview, wire: _Wire) -> memoryview:
    """Queue as much of the request as the peer's flow-control window and frame size allow."""
    while pending:
        size = min(len(pending), conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
        if size <= 0:
            break  # wait for a WINDOW_UPDATE
        conn.send_data(stream_id, bytes(pending[:size]), end_stream=size == len(pending))
        wire.request_sent = True
        pending = pending[size:]
    return pending


class _Reply:
    """The response stream as h2 events arrive: headers, one framed message, trailers."""

    def __init__(self, where: str, stream_id: int, max_response: int) -> None:
        self.where = where
        self.stream_id = stream_id
        self.max_response = max_response
        self.body = bytearray()
        self.trailers: dict[bytes, bytes] | None = None
        self.ended = False

    def fail(self, message: str, cls: type[TransportError] = ProtocolError) -> TransportError:
        return cls(f"{self.where}: {message}", request_sent=True)

    def handle(self, event: object, conn: H2Connection) -> None:
        from h2 import events

        if getattr(event, "stream_id", self.stream_id) not in (self.stream_id, 0):
            return  # pushes are disabled; nothing else should arrive on other streams
        if isinstance(event, events.ResponseReceived):
            headers = dict(event.headers)
            status = headers.get(b":status", b"")
            if status != b"200":
                detail = percent_decode(headers.get(b"grpc-message", b""))
                raise self.fail(f"HTTP status {status.decode(errors='replace')} instead of a gRPC reply"
                                + (f" ({detail})" if detail else ""))
            trailers_only = event.stream_ended is not None and b"grpc-status" in headers
            content_type = headers.get(b"content-type")
            if not trailers_only and not (content_type or b"").startswith(b"application/grpc"):
                raise self.fail(f"content-type {content_type!r} is not gRPC")
            if trailers_only:
                self.trailers = headers
        elif isinstance(event, events.DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            self.body += event.data
            self.check_body()
        elif isinstance(event, events.TrailersReceived):
            self.trailers = dict(event.headers)
        elif isinstance(event, events.StreamEnded):
            self.ended = True
        elif isinstance(event, events.StreamReset):
            if not self.ended:
                raise self.fail(f"the server reset the call (RST_STREAM {_error_name(event.error_code)})",
                                TransportError)
        elif isinstance(event, events.ConnectionTerminated):
            # Even a graceful GOAWAY (NO_ERROR, our stream still allowed) ends the call: h2 refuses every frame
            # after a GOAWAY (python-hyper/h2#1181), so the rest of the reply could not be read.
            if not self.ended:
                debug = (event.additional_data or b"").decode(errors="replace")
                hint = "; the server is shutting down, retry" if event.error_code == 0 else ""
                raise self.fail(f"the server closed the connection (GOAWAY {_error_name(event.error_code)}"
                                + (f": {debug}" if debug else "") + f"){hint}", TransportError)

    def check_body(self) -> None:
        """Refuse a compressed or oversized message as soon as its 5-byte prefix shows it."""
        if len(self.body) < 5:
            return
        if self.body[0] != 0:
            raise self.fail("the reply message is compressed (flag 1); this client accepts only uncompressed ones"
                            if self.body[0] == 1 else f"the reply message has an unknown flag {self.body[0]}")
        length = int.from_bytes(self.body[1:5], "big")
        if length > self.max_response:
            raise self.fail(f"the reply message is {length} bytes, more than the limit of {self.max_response}")
        if len(self.body) > 5 + length:
            raise self.fail("the reply holds more than one message for a unary call")

    def result(self) -> bytes:
        """The response message, or the error the trailers carry."""
        if self.trailers is None or b"grpc-status" not in self.trailers:
            raise self.fail("the reply ended without a grpc-status")
        raw_status = self.trailers[b"grpc-status"]
        if not raw_status.isdigit():
            raise self.fail(f"grpc-status {raw_status!r} is not a number")
        code = int(raw_status)
        if code != 0:
            message = percent_decode(self.trailers.get(b"grpc-message", b""))
            raise GrpcError(code, GRPC_STATUS_NAMES.get(code, "UNKNOWN"), message)
        if len(self.body) < 5:
            raise self.fail("the reply has status OK but no message")
        length = int.from_bytes(self.body[1:5], "big")
        if len(self.body) != 5 + length:
            raise self.fail(f"the reply message is truncated ({len(self.body) - 5} of {length} bytes)")
        return bytes(self.body[5:])


def _error_name(code: int | None) -> str:
    """An HTTP/2 error code's name (e.g. CANCEL), or its number if unknown."""
    from h2.errors import ErrorCodes

    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)
