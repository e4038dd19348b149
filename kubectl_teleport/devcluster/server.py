"""`start`: serve the Kubernetes endpoint and the Teleport side (the proxy's one TLS port and the auth gRPC
service, see teleport_side) over TLS until SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from .. import pki
from . import files, store
from .bootstrap import initialise
from .ca import KUBE_TLS_SERVER_NAME, CertAuthority, issue_serving_cert
from .httpbase import TLSServer, server_context
from .kubeapi import KubeApiHandler, KubeApp
from .seed import seed_demo
from .teleport_side import kube_proxy_sans, start_teleport_side
from .versions import Profile

RUN_DIR = "run"


class ListenError(Exception):
    """An address could not be bound."""


class MissingDependency(Exception):
    """A library the Teleport side needs (grpcio) is not installed."""


def parse_hostport(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[v6]:PORT` → (host, port); ValueError with a clear message otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"invalid address {text!r}: use HOST:PORT (port 0 picks a free port)")
    return host, int(port)


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def advertised_host(host: str) -> str:
    """The host clients should use: a wildcard listen address is advertised as loopback."""
    try:
        if ipaddress.ip_address(host).is_unspecified:
            return "127.0.0.1" if "." in host else "::1"
    except ValueError:
        pass
    return host


@dataclass
class ServingConfig:
    state_dir: Path
    kube_listen: tuple[str, int]
    cluster_name: str | None
    ready_file: Path | None
    seed: bool
    clock_offset: float = 0.0  # seconds this cluster's clock runs ahead of the machine's (tests of clock skew)
    proxy_listen: tuple[str, int] = ("127.0.0.1", 3080)
    auth_listen: tuple[str, int] = ("127.0.0.1", 0)
    profile: Profile = field(default_factory=Profile)

    def now(self) -> datetime:
        return pki.utcnow() + timedelta(seconds=self.clock_offset)


def _serving_files(state_dir: Path, name: str, host_ca: CertAuthority, hosts: list[str],
                   now: datetime) -> tuple[str, str]:
    """A fresh serving key and certificate for this run (NotBefore backdated a minute, as Teleport does),
    written 0600 under the state dir's run/."""
    run = files.ensure_dir(state_dir / RUN_DIR)
    key = pki.generate_key()
    cert = issue_serving_cert(host_ca, key.public_key(), name, hosts, now)
    cert_file, key_file = run / f"{name}.crt", run / f"{name}.key"
    files.write_file(key_file, pki.private_key_pem(key).encode())
    files.write_file(cert_file, pki.cert_pem(cert).encode())
    return str(cert_file), str(key_file)


def _bind(address: tuple[str, int], handler: type, ctx: object, app: object, name: str) -> TLSServer:
    try:
        return TLSServer(address, handler, ctx, app, name)  # type: ignore[arg-type]
    except OSError as e:
        raise ListenError(f"cannot listen on {format_hostport(*address)}: {e.strerror or e}") from None


def serve(cfg: ServingConfig) -> int:
    """Initialise if needed, serve both endpoints, write the ready file, wait for a signal; returns 0."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cluster, _ = initialise(cfg.state_dir, cfg.cluster_name)
    if cfg.ready_file is not None:
        with contextlib.suppress(FileNotFoundError):
            cfg.ready_file.unlink()
    with store.opened(cfg.state_dir) as conn:
        if cfg.seed:
            seed_demo(conn, cfg.now())
        host_ca = CertAuthority.from_pem(*store.get_ca(conn, "host"))
        user_ca_pem = store.get_ca(conn, "user")[0]

    kube_files = _serving_files(cfg.state_dir, "kube", host_ca,
                                [cfg.kube_listen[0], advertised_host(cfg.kube_listen[0]), KUBE_TLS_SERVER_NAME,
                                 *kube_proxy_sans(cfg.proxy_listen[0])], cfg.now())
    kube_app = KubeApp(cfg.state_dir, now=cfg.now)
    kube = _bind(cfg.kube_listen, KubeApiHandler, server_context(*kube_files, user_ca_pem), kube_app, "kube")
    kube.clock_offset = cfg.clock_offset
    kube_addr = format_hostport(advertised_host(cfg.kube_listen[0]), kube.server_address[1])
    kube_app.address = kube_addr
    with store.opened(cfg.state_dir) as conn, store.transaction(conn):
        store.set_setting(conn, "kube_server", f"https://{kube_addr}")
    try:
        teleport = start_teleport_side(cfg.state_dir, cfg.profile, cfg.proxy_listen, cfg.auth_listen,
                                       (advertised_host(cfg.kube_listen[0]), kube.server_address[1]), kube_addr,
                                       cfg.now, cfg.clock_offset)
    except (OSError, ImportError) as e:
        kube.server_close()
        if isinstance(e, ImportError):
            raise MissingDependency(f"the devcluster needs {e.name or 'grpcio'} for its Teleport side: install "
                                    "kubectl-teleport with the devcluster extra (./install.sh does)") from None
        raise ListenError(f"cannot listen on {format_hostport(*cfg.proxy_listen)} or "
                          f"{format_hostport(*cfg.auth_listen)}: {e.strerror or e}") from None

    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, name=s.name, daemon=True)
               for s in (kube,)]
    for t in threads:
        t.start()
    pin = pki.spki_pin(host_ca.cert)
    if cfg.ready_file is not None:
        # "proxy" and "teleport_proxy" both name the Teleport proxy (the older key kept for its readers)
        ready = {"proxy": teleport.teleport_proxy, "kube_server": f"https://{kube_addr}", "cluster_name": cluster,
                 "ca_pin": pin,
                 "user_ca_pem": user_ca_pem, "pid": os.getpid(),
                 "teleport_proxy": teleport.teleport_proxy, "auth_server": teleport.auth_server,
                 "host_ca_pem": host_ca.cert_pem, "web_ca_file": str(teleport.web_ca_file),
                 "teleport_version": cfg.profile.version, "suite": cfg.profile.suite,
                 "tls_routing": cfg.profile.tls_routing}
        files.write_file(cfg.ready_file, json.dumps(ready, indent=2).encode() + b"\n", mode=0o644)
    routing = "TLS routing" if cfg.profile.tls_routing else "no TLS routing"
    print(f"devcluster {cluster}: Teleport {cfg.profile.version} ({cfg.profile.suite}): proxy "
          f"{teleport.teleport_proxy} ({routing}), auth {teleport.auth_server}, "
          f"Kubernetes https://{kube_addr}, CA pin {pin}, web CA {teleport.web_ca_file}",
          flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        # in parallel: each shutdown waits up to a poll interval for its serving loop
        stoppers = [threading.Thread(target=f) for f in (teleport.close, kube.shutdown)]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        kube.server_close()
        if cfg.ready_file is not None:
            with contextlib.suppress(FileNotFoundError):
                cfg.ready_file.unlink()
    print(f"devcluster {cluster}: stopped", file=sys.stderr, flush=True)
    return 0
