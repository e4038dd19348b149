"""The auth service's TLS listener: terminates TLS for the grpcio server behind it and tells it who the peer is.

grpcio's Python API can require a client certificate or not ask for one, but not ask and verify *when presented*
(`require_client_auth=False` means "do not request"), and Teleport's auth port needs exactly that: GetClusterCACert
without a certificate, GenerateUserCerts with the bot's. So this small asyncio front does the TLS (server
certificate from the host CA, ALPN `h2`, client certificates verified against the user CA when presented, their
validity judged on the cluster's clock) and relays the plaintext HTTP/2 to grpcio on loopback. HTTP/2 and gRPC
stay grpcio's. Each relayed connection's verified certificate is kept by its loopback source port, which the
gRPC handlers read back from `context.peer()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from datetime import datetime

from cryptography import x509

from .. import pki

HANDSHAKE_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
CHUNK = 64 * 1024


def _log(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class TLSFront:
    """Listens on `address` with `context` and relays each connection to `backend`; `start()`, then `close()`."""

    def __init__(self, address: tuple[str, int], backend: tuple[str, int], context: ssl.SSLContext,
                 now: Callable[[], datetime], name: str = "auth", log: Callable[[str], None] = _log) -> None:
        self.backend = backend
        self.context = context
        self.now = now
        self.name = name
        self.log = log
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._sock = socket.create_server(address, family=family, backlog=256)
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self._peers: dict[int, x509.Certificate | None] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(self._loop_error)
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"{name}-tls", daemon=True)

    def start(self) -> TLSFront:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start_server(), self._loop).result(10)
        return self

    async def _start_server(self) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._handle, sock=self._sock, ssl=self.context,
                                          ssl_handshake_timeout=HANDSHAKE_TIMEOUT, limit=CHUNK)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._sock.close()

    def peer_for(self, grpc_peer: str) -> x509.Certificate | None:
        """The verified client certificate of the connection grpcio names `ipv4:127.0.0.1:PORT` (None if none)."""
        port = grpc_peer.rsplit(":", 1)[-1]
        if not port.isdigit():
            return None
        with self._lock:
            return self._peers.get(int(port))

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        err = context.get("exception")
        reason = getattr(err, "reason", None) or (type(err).__name__ if err else context.get("message", "error"))
        self.log(f"{self.name}: connection failed: {reason}")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_addr = writer.get_extra_info("peername") or ("?", 0)
        up_writer: asyncio.StreamWriter | None = None
        port = None
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            cert = x509.load_der_x509_certificate(der) if der else None
            if cert is not None:
                now = self.now()
                if now >= pki.not_after(cert) or now < pki.not_before(cert):
                    self.log(f"{self.name}: connection from {peer_addr[0]} refused: the client certificate is "
                             "not valid now")
                    return
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.backend), CONNECT_TIMEOUT)
            port = up_writer.get_extra_info("sockname")[1]
            with self._lock:
                self._peers[port] = cert
            _done, pending = await asyncio.wait(
                [asyncio.ensure_future(_pipe(reader, up_writer)), asyncio.ensure_future(_pipe(up_reader, writer))],
                return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as err:
            self.log(f"{self.name}: connection from {peer_addr[0]} failed: "
                     f"{getattr(err, 'strerror', None) or type(err).__name__}")
        finally:
            if port is not None:
                with self._lock:
                    self._peers.pop(port, None)
            for w in (up_writer, writer):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until EOF or an error (either ends the whole relay)."""
    with contextlib.suppress(OSError, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        while chunk := await src.read(CHUNK):
            dst.write(chunk)
            await dst.drain()
