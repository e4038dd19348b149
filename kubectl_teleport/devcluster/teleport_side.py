"""The Teleport side of the devcluster: the proxy's one TLS port and the auth service behind it.

With TLS routing (the default), `router.Router` on the proxy port sends each connection by its ClientHello:
ALPN `teleport-auth@...` → the auth service (TLS forwarded, mTLS end to end), SNI `kube-teleport-proxy-alpn.*` →
the Kubernetes endpoint, anything else → the web API (HTTPS with the web CA's certificate). Without TLS routing
the proxy port is the web API itself. The auth service's own port (`--auth-listen`) is always open.
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import pki
from . import files, store
from .ca import CertAuthority, issue_serving_cert
from .httpbase import TLSServer
from .router import KUBE_SNI_PREFIX, Router
from .teleport_rules import TeleportAuthority
from .tlsfront import TLSFront
from .versions import Profile
from .webapi import WebApiHandler, WebApp

API_DOMAIN = "teleport.cluster.local"
AUTH_SANS = [API_DOMAIN, f"*.{API_DOMAIN}"]
WEB_CA_FILE = "web-ca.pem"


def kube_proxy_sans(proxy_host: str) -> list[str]:
    """The kube route's server names: the API-domain one, and `kube-teleport-proxy-alpn.<host>` for a DNS host."""
    names = [KUBE_SNI_PREFIX + API_DOMAIN]
    host = proxy_host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host and host != "localhost":
            names.append(KUBE_SNI_PREFIX + host)
    return names


def connect_host(host: str) -> str:
    """Where to connect to reach a listener bound to `host` (a wildcard is reached on loopback)."""
    try:
        if ipaddress.ip_address(host.strip("[]")).is_unspecified:
            return "127.0.0.1" if "." in host else "::1"
    except ValueError:
        pass
    return host


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _serving_context(state_dir: Path, name: str, ca: CertAuthority, hosts: list[str], now: datetime,
                     loopback: bool = True) -> ssl.SSLContext:
    """A TLS server context with a fresh key and a certificate from `ca` (files 0600 under run/)."""
    run = files.ensure_dir(state_dir / "run")
    key = pki.generate_key()
    cert = issue_serving_cert(ca, key.public_key(), name, hosts, now, loopback=loopback)
    cert_file, key_file = run / f"{name}.crt", run / f"{name}.key"
    files.write_file(key_file, pki.private_key_pem(key).encode())
    files.write_file(cert_file, pki.cert_pem(cert).encode())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


@dataclass
class TeleportSide:
    """The running proxy and auth service; `close()` stops them."""

    teleport_proxy: str
    auth_server: str
    web_ca_file: Path
    authority: TeleportAuthority
    _closers: list[Callable[[], Any]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                close()
        self._closers.clear()


def start_teleport_side(state_dir: Path, profile: Profile, proxy_listen: tuple[str, int],
                        auth_listen: tuple[str, int], kube_backend: tuple[str, int], kube_addr: str,
                        now: Callable[[], datetime], clock_offset: float = 0.0) -> TeleportSide:
    """Bind and start everything; OSError (nothing left running) when an address cannot be bound."""
    import grpc  # noqa: F401 - fail here, before binding anything, when grpcio is missing

    from .authgrpc import build_server

    with store.opened(state_dir) as conn:
        host_ca = CertAuthority.from_pem(*store.get_ca(conn, "host"))
        user_ca_pem = store.get_ca(conn, "user")[0]
        web_ca = CertAuthority.from_pem(*store.get_ca(conn, "web"))
    authority = TeleportAuthority(state_dir, profile, now=now)
    closers: list[Callable[[], Any]] = []
    try:
        # the auth service: grpcio on loopback, the TLS front on --auth-listen
        front_holder: list[TLSFront] = []
        server, grpc_port = build_server(authority, lambda peer: front_holder[0].peer_for(peer))
        closers.append(lambda: server.stop(grace=None))
        auth_ctx = _serving_context(state_dir, "auth-grpc", host_ca, AUTH_SANS, now(), loopback=False)
        auth_ctx.verify_mode = ssl.CERT_OPTIONAL
        auth_ctx.load_verify_locations(cadata=user_ca_pem)
        auth_ctx.verify_flags |= 0x200000  # X509_V_FLAG_NO_CHECK_TIME: validity is judged on the cluster's clock
        auth_ctx.set_alpn_protocols(["h2"])
        front = TLSFront(auth_listen, ("127.0.0.1", grpc_port), auth_ctx, now).start()
        front_holder.append(front)
        closers.append(front.close)
        auth_server = _fmt(connect_host(auth_listen[0]), front.address[1])

        # the web API: on its own loopback port behind the router, or on the proxy port itself
        web_hosts = [proxy_listen[0], connect_host(proxy_listen[0])]
        web_ctx = _serving_context(state_dir, "web", web_ca, web_hosts, now())
        web_ctx.set_alpn_protocols(["http/1.1"])
        app = WebApp(authority, kube_addr=kube_addr)
        web_address = ("127.0.0.1", 0) if profile.tls_routing else proxy_listen
        web = TLSServer(web_address, WebApiHandler, web_ctx, app, "web")
        web.clock_offset = clock_offset
        closers.append(web.server_close)
        if profile.tls_routing:
            router = Router(proxy_listen, {"auth": (connect_host(auth_listen[0]), front.address[1]),
                                           "kube": kube_backend, "web": ("127.0.0.1", web.server_address[1])})
            proxy_port = router.address[1]
            closers.append(router.close)
        else:
            router, proxy_port = None, web.server_address[1]
        proxy = _fmt(connect_host(proxy_listen[0]), proxy_port)
        app.proxy_addr = authority.proxy_public_addr = proxy

        thread = threading.Thread(target=web.serve_forever, kwargs={"poll_interval": 0.2}, name="web", daemon=True)
        thread.start()
        closers.append(web.shutdown)  # closers run last-first: shutdown, then the router, then server_close
        if router is not None:
            router.start()

        web_ca_file = files.ensure_dir(state_dir / "run") / WEB_CA_FILE
        files.write_file(web_ca_file, web_ca.cert_pem.encode(), mode=0o644)
        with store.opened(state_dir) as conn, store.transaction(conn):
            for key, value in (("teleport_proxy", proxy), ("auth_server", auth_server),
                               ("web_ca_file", str(web_ca_file)), ("teleport_version", profile.version),
                               ("suite", profile.suite), ("tls_routing", "true" if profile.tls_routing else "false")):
                store.set_setting(conn, key, value)
    except BaseException:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                close()
        raise
    return TeleportSide(proxy, auth_server, web_ca_file, authority, closers)
