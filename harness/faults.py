"""Fault injection between the plugin and a devcluster (loopback only, bounded, threads).

- `TcpFaultProxy`: a TCP relay in front of the real proxy or auth service (TLS passes through untouched, so mTLS works):
  `pass` relays, `hang` accepts and never answers, `drip` relays the server's bytes one at a time.
- `TlsFaultServer`: terminates TLS itself with a serving certificate signed by the devcluster's host CA (read
  from its state dir), or by another CA (`other_ca=True`), and answers each request with a fault: an HTTP
  status with a protocol error, a non-JSON body, a body far larger than the client may read, a chosen JSON
  object (wrong types), a reset in the middle of the answer, or `forward` (relay to the real server; requests
  without a client certificate only). It counts requests per (method, path).
- `closed_port()`: an address where nothing listens (connection refused).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from kubectl_teleport import pki

MAX_CONNECTIONS = 64
HUGE_BODY = 8 << 20  # 8 MiB, eight times what the client may read


def closed_port() -> str:
    """HOST:PORT of a loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


def _rst_close(sock: socket.socket) -> None:
    """Close with a TCP RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class TcpFaultProxy:
    """A TCP relay to `upstream` ("host:port") with a fault `mode`: pass, hang or drip."""

    def __init__(self, upstream: str, mode: str = "pass", drip_interval: float = 0.05) -> None:
        assert mode in ("pass", "hang", "drip")
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.mode = mode
        self.drip_interval = drip_interval
        self.connections = 0
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> TcpFaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.close()
        self._listener.close()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._socks.append(sock)
        return sock

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            if self.connections > MAX_CONNECTIONS:
                _rst_close(client)
                continue
            self._track(client)
            if self.mode == "hang":
                continue  # accepted, never read from or answered; closed on exit
            try:
                server = self._track(socket.create_connection(self.upstream, timeout=5))
            except OSError:
                _rst_close(client)
                continue
            for src, dst, drip in ((client, server, False), (server, client, self.mode == "drip")):
                threading.Thread(target=self._pump, args=(src, dst, drip), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, drip: bool) -> None:
        try:
            src.settimeout(0.5)
            while not self._stop.is_set():
                try:
                    data = src.recv(1 if drip else 65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                dst.sendall(data)
                if drip:
                    self._stop.wait(self.drip_interval)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


def _serving_cert(ca_cert: x509.Certificate, ca_key, directory: Path) -> tuple[str, str]:
    key = pki.generate_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "faultproxy")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_file, key_file = directory / "fault.crt", directory / "fault.key"
    cert_file.write_text(pki.cert_pem(cert))
    key_file.write_text(pki.private_key_pem(key))
    return str(cert_file), str(key_file)


def _other_ca() -> tuple[x509.Certificate, object]:
    key = pki.generate_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def host_ca(state_dir: Path) -> tuple[x509.Certificate, object]:
    """The devcluster's host CA certificate and key, from its state dir."""
    from kubectl_teleport.devcluster import store

    with store.opened(state_dir) as conn:
        cert_pem, key_pem = store.get_ca(conn, "host")
    return pki.load_cert(cert_pem), pki.load_private_key(key_pem)


class TlsFaultServer:
    """An HTTPS server answering with faults. `faults` maps "METHOD /path" (or "*") to a fault:
    "status:503", "nonjson", "huge", "reset", "json:{...}", "hang" or "forward"."""

    def __init__(self, faults: dict[str, str], *, state_dir: Path | None = None, upstream: str | None = None,
                 other_ca: bool = False) -> None:
        self.faults = dict(faults)
        self.upstream = upstream
        self.requests: Counter[str] = Counter()
        self._tmp = tempfile.TemporaryDirectory(prefix="faultproxy-")
        ca_cert, ca_key = _other_ca() if other_ca or state_dir is None else host_ca(state_dir)
        self.ca_pem = pki.cert_pem(ca_cert)
        cert_file, key_file = _serving_cert(ca_cert, ca_key, Path(self._tmp.name))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        self._stop = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def log_message(self, *_a: object) -> None:
                pass

            def do_GET(self) -> None:
                owner._handle(self)

            do_POST = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)

    def __enter__(self) -> TlsFaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._tmp.cleanup()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        key = f"{h.command} {h.path}"
        self.requests[key] += 1
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(min(length, 1 << 16)) if length else b""
        fault = self.faults.get(key, self.faults.get("*", "status:500"))
        try:
            if fault == "forward":
                self._forward(h, body)
            elif fault.startswith("status:"):
                code = int(fault.split(":", 1)[1])
                self._send(h, code, json.dumps({"error": {"code": "internal", "message": "injected fault"}})
                           .encode())
            elif fault == "nonjson":
                self._send(h, 200, b"<html><body>Bad Gateway</body></html>", "text/html")
            elif fault.startswith("json:"):
                self._send(h, 200, fault[5:].encode())
            elif fault == "huge":
                h.send_response(200)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", str(HUGE_BODY))
                h.end_headers()
                chunk = b"[" * 65536
                for _ in range(HUGE_BODY // len(chunk)):
                    h.wfile.write(chunk)
            elif fault == "reset":
                h.send_response(200)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", "4096")
                h.end_headers()
                h.wfile.write(b'{"tls_cert": "-----BEGIN CERT')
                h.wfile.flush()
                _rst_close(h.connection)
                h.close_connection = True
            elif fault == "hang":
                self._stop.wait(30)
                h.close_connection = True
            else:
                raise AssertionError(f"unknown fault {fault!r}")
        except OSError:
            h.close_connection = True

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str = "application/json") -> None:
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        assert self.upstream is not None
        ctx = ssl.create_default_context(cadata=self.ca_pem)
        ctx.check_hostname = False
        with httpx.Client(verify=ctx, timeout=10) as c:
            resp = c.request(h.command, f"https://{self.upstream}{h.path}", content=body or None,
                             headers={"Content-Type": "application/json"} if body else None)
        self._send(h, resp.status_code, resp.content, resp.headers.get("Content-Type", "application/json"))


def wait_until(predicate, timeout: float = 5.0) -> bool:
    """Poll `predicate` (bounded); True once it holds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
