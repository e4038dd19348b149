"""A gRPC fault server in place of Teleport's auth service (loopback only, bounded, threads).

`GrpcFaultServer` terminates TLS with a certificate for `*.teleport.cluster.local` signed by the devcluster's host
CA (read from its state dir), or by another CA (`other_ca=True`), negotiates `h2` whatever ALPN the client offers
first (as the proxy's `teleport-auth@` route would hand it to auth), and answers every unary call with a fault:

| fault | what the client sees |
|---|---|
| `unavailable`, `internal`, `permission-denied`, `invalid-argument` | a trailers-only reply with that status |
| `http-503` | HTTP status 503 and no gRPC status |
| `not-grpc` | HTTP 200 with an HTML body |
| `rst` | RST_STREAM once the request has arrived |
| `goaway` | GOAWAY once the request has arrived |
| `huge` | a response message announcing 8 MiB |
| `garbage` | status OK with a message that is not the expected protobuf |
| `reset` | response headers, then a TCP reset |
| `hang` | the request is read, nothing is ever answered |
| `no-h2` | TLS negotiates `http/1.1`: not an auth route (a proxy without TLS routing, an L7 load balancer) |

It counts calls per `:path` (`calls`).
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import struct
import tempfile
import threading
from collections import Counter
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from h2.connection import H2Connection
from h2.errors import ErrorCodes

from harness.faults import _other_ca, host_ca
from kubectl_teleport import pki

STATUS = {"unavailable": 14, "internal": 13, "permission-denied": 7, "invalid-argument": 3}
HUGE = 8 << 20


def _auth_cert(ca_cert: x509.Certificate, ca_key: object, directory: Path) -> tuple[str, str]:
    key = pki.generate_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auth")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("teleport.cluster.local"),
                                                        x509.DNSName("*.teleport.cluster.local")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    cert_file, key_file = directory / "auth.crt", directory / "auth.key"
    cert_file.write_text(pki.cert_pem(cert))
    key_file.write_text(pki.private_key_pem(key))
    key_file.chmod(0o600)
    return str(cert_file), str(key_file)


class GrpcFaultServer:
    """A TLS + HTTP/2 server answering every gRPC call with `fault` (see the module doc)."""

    def __init__(self, fault: str, *, state_dir: Path | None = None, other_ca: bool = False) -> None:
        self.fault = fault
        self.calls: Counter[str] = Counter()
        self._tmp = tempfile.TemporaryDirectory(prefix="grpcfault-")
        ca_cert, ca_key = _other_ca() if other_ca or state_dir is None else host_ca(state_dir)
        cert_file, key_file = _auth_cert(ca_cert, ca_key, Path(self._tmp.name))
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert_file, key_file)
        self._ctx.set_alpn_protocols(["http/1.1"] if fault == "no-h2" else ["h2"])
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> GrpcFaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()
        self._listener.close()
        self._tmp.cleanup()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._socks.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        from h2.config import H2Configuration
        from h2.events import RequestReceived, StreamEnded

        try:
            sock.settimeout(10)
            tls = self._ctx.wrap_socket(sock, server_side=True)
            self._socks.append(tls)
            if self.fault == "no-h2":
                tls.recv(1)  # the client gives up after the handshake
                return
            conn = H2Connection(H2Configuration(client_side=False, header_encoding=None))
            conn.initiate_connection()
            tls.sendall(conn.data_to_send())
            path = b""
            while not self._stop.is_set():
                data = tls.recv(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, RequestReceived):
                        path = dict(event.headers).get(b":path", b"")
                    elif isinstance(event, StreamEnded):
                        self.calls[path.decode()] += 1
                        self._answer(tls, conn, event.stream_id)
                tls.sendall(conn.data_to_send())
        except Exception:
            pass

    def _answer(self, tls: ssl.SSLSocket, c: H2Connection, stream: int) -> None:
        fault = self.fault
        grpc_headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
        if fault in STATUS:
            c.send_headers(stream, [*grpc_headers, (b"grpc-status", str(STATUS[fault]).encode()),
                                    (b"grpc-message", b"injected%20fault")], end_stream=True)
        elif fault == "http-503":
            c.send_headers(stream, [(b":status", b"503"), (b"content-type", b"text/plain")], end_stream=True)
        elif fault == "not-grpc":
            c.send_headers(stream, [(b":status", b"200"), (b"content-type", b"text/html")])
            c.send_data(stream, b"<html>Bad Gateway</html>", end_stream=True)
        elif fault == "rst":
            c.reset_stream(stream, ErrorCodes.INTERNAL_ERROR)
        elif fault == "goaway":
            c.close_connection(ErrorCodes.INTERNAL_ERROR, b"injected")
        elif fault == "huge":
            c.send_headers(stream, grpc_headers)
            c.send_data(stream, b"\x00" + struct.pack(">I", HUGE) + b"\x00" * 1000)
        elif fault == "garbage":
            c.send_headers(stream, grpc_headers)
            c.send_data(stream, b"\x00" + struct.pack(">I", 3) + b"\xff\xff\xff")
            c.send_headers(stream, [(b"grpc-status", b"0")], end_stream=True)
        elif fault == "reset":
            c.send_headers(stream, grpc_headers)
            tls.sendall(c.data_to_send())
            with contextlib.suppress(OSError):
                tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            tls.close()
            raise OSError("reset")
        elif fault == "hang":
            self._stop.wait(30)
            raise OSError("hung")
        else:
            raise AssertionError(f"unknown fault {fault!r}")
