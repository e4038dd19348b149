"""TLS HTTP/1.1 plumbing shared by the proxy's web API and the Kubernetes endpoint.

The TLS handshake runs in the connection's own thread (a slow client cannot stall `accept`), bodies are capped,
every answer has a Content-Length (keep-alive), and the access log holds method, path and status only: never a
query string, header, body, token, key or certificate.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509

MAX_BODY = 64 * 1024
IDLE_TIMEOUT = 60.0
# OpenSSL's X509_V_FLAG_NO_CHECK_TIME: the chain is verified at the TLS layer, validity times by the
# application, so an expired client certificate gets a 401 answer (as from kube-apiserver), not a TLS alert.
X509_V_FLAG_NO_CHECK_TIME = 0x200000


class BodyTooLarge(Exception):
    """The request body exceeds MAX_BODY."""


class BadBody(Exception):
    """The request body is missing, not JSON or not a JSON object."""


def server_context(cert_file: str, key_file: str, client_ca_pem: str) -> ssl.SSLContext:
    """TLS >= 1.2 server context; asks for a client certificate and verifies its chain against the user CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cadata=client_ca_pem)
    ctx.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
    return ctx


class TLSServer(ThreadingHTTPServer):
    """A threading HTTP server that speaks TLS; `app` is whatever the handlers need."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    clock_offset = 0.0  # seconds added to the machine's clock (the `Date` header follows the cluster's clock)

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext,
                 app: Any, name: str) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.context = context
        self.app = app
        self.name = name
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One quiet line instead of a traceback (a failed handshake or a client gone away)."""
        err = sys.exc_info()[1]
        if isinstance(err, (ssl.SSLError, ConnectionError, TimeoutError, OSError)):
            reason = getattr(err, "reason", None) or type(err).__name__
            sys.stderr.write(f"{self.name}: connection from {client_address[0]} failed: {reason}\n")
        else:
            sys.stderr.write(f"{self.name}: internal error: {type(err).__name__}\n")
        sys.stderr.flush()


class TLSHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive over TLS; JSON helpers; quiet, secret-free logging."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: TLSServer

    def setup(self) -> None:
        self._consumed = False
        self.request.settimeout(self.timeout)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle + delayed-ACK stalls
        self.request.do_handshake()
        super().setup()

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header, on the cluster's clock."""
        return super().date_time_string(time.time() + self.server.clock_offset if timestamp is None else timestamp)

    def log_message(self, format: str, *args: Any) -> None:
        """Suppress the default log (it would print the raw request line)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        sys.stderr.write(f"{self.server.name}: {self.command} {path} {code}\n")

    def peer_cert(self) -> x509.Certificate | None:
        """The client's certificate (already chain-verified by TLS), or None."""
        der = self.request.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der) if der else None

    def read_body(self) -> bytes:
        """The request body, at most MAX_BODY bytes; needs a Content-Length (no chunked uploads)."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise BadBody("chunked request bodies are not supported; send a Content-Length")
        raw = self.headers.get("Content-Length", "0").strip()
        if not raw.isdigit():
            self.close_connection = True
            raise BadBody("invalid Content-Length")
        length = int(raw)
        self._consumed = True
        if length > MAX_BODY:
            self.close_connection = True  # the unread body must not be parsed as the next request
            raise BodyTooLarge(f"request body of {length} bytes is over the {MAX_BODY // 1024} KiB limit")
        return self.rfile.read(length) if length else b""

    def body_consumed(self) -> bool:
        """True when the body was read (or there is none), so the connection can be kept alive."""
        return getattr(self, "_consumed", False) or self.headers.get("Content-Length", "0").strip() in ("", "0")

    def read_json(self) -> dict[str, Any]:
        """The request body as a JSON object."""
        data = self.read_body()
        try:
            body = json.loads(data.decode("utf-8")) if data else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BadBody("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadBody("the request body must be a JSON object")
        return body

    def send_json(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
