"""`kubectl-teleport login`: pin the CA, join with the one-time token, store the identity, issue the first
Kubernetes certificates and write the kubeconfig.

Everything local is checked before the token is spent: the flags, the kubeconfig (parsed, and its directory
written to), and room in the data dir for the identity and every certificate (reserved, then filled).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from .. import clock, fmt, pki, policy
from ..config import Config, KubeCluster, KubeconfigEntry
from ..errors import NotLoggedIn, PluginError, TrustError, UsageError
from ..issuer import http, renewal
from ..outputs import kubeconfig
from ..store import identity
from ..store.datadir import CONFIG, DataDir, check_cluster_name, resolve
from ..store.files import Reservation

ENV_TOKEN = "KUBECTL_TELEPORT_TOKEN"  # noqa: S105 (the variable's name, not a token)
LOCK_WAIT = 60.0


@dataclass
class LoginRequest:
    """What the user asked for (validated by `validate`)."""

    proxy: str | None
    token: str | None
    ca_pins: list[str]
    kube_clusters: list[str]
    kube_user: str | None = None
    data_dir: str | None = None
    kubeconfig: str | None = None
    merge: bool = False
    context: str | None = None
    ttl: str | None = None
    timeout: float = http.DEFAULT_DEADLINE
    destination: str | None = None
    static: bool = False


def check_proxy(proxy: str) -> str:
    """HOST:PORT, nothing else (no scheme, no path)."""
    host, sep, port = proxy.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in proxy:
        raise UsageError(f"bad --proxy {proxy[:80]!r}: give HOST:PORT, e.g. teleport.example.com:443")
    return proxy


def fetch_pinned_ca(proxy: str, pins: list[str], deadline: http.Deadline) -> tuple[str, list[str]]:
    """Fetch the cluster CA without verifying TLS and check it against the pins before anything else is sent."""
    with http.Client(proxy, None, deadline=deadline) as client:
        resp = client.call("fetching the cluster CA", "GET", "/cluster/ca")
    http.expect(resp, "fetching the cluster CA", ca_pems=list, cluster_name=str)
    try:
        certs = [pki.load_cert(p) for p in resp["ca_pems"] if isinstance(p, str)]
    except ValueError:
        certs = []
    if not certs or len(certs) != len(resp["ca_pems"]):
        raise TrustError(f"{proxy} sent no usable CA certificate; check --proxy")
    if not pki.pins_match(certs, pins):
        actual = ", ".join(pki.spki_pin(c) for c in certs)
        raise TrustError(f"the CA of {proxy} does not match --ca-pin: expected {', '.join(pins)}, the server "
                          f"has {actual}; the token was not sent. Check the pin and the proxy address")
    return resp["cluster_name"], [pki.cert_pem(c) for c in certs]


def _join(req: LoginRequest, proxy: str, pins: list[str], ttl: int,
          deadline: http.Deadline) -> tuple[Config, str, str]:
    cluster_name, ca_pems = fetch_pinned_ca(proxy, pins, deadline)
    key_pem = pki.private_key_pem(pki.generate_key())
    with http.Client(proxy, ca_pems, deadline=deadline) as client:
        ping = client.call("contacting the proxy", "GET", "/ping")
        kube = ping.get("kube") if isinstance(ping.get("kube"), dict) else {}
        joined = client.call("joining the cluster", "POST", "/join", {
            "token": req.token, "role": "Bot", "join_method": "token",
            "public_tls_key": pki.public_key_pem(pki.load_private_key(key_pem)), "ttl_seconds": ttl,
        }, retry=False)
    http.expect(joined, "joining the cluster", tls_cert=str, bot=str)
    cfg = Config(proxy=proxy, cluster_name=str(ping.get("cluster_name") or cluster_name), bot=joined["bot"],
                 ca_pems=ca_pems, kube_server=str(kube.get("server") or ""),
                 kube_tls_server_name=str(kube.get("tls_server_name") or ""), ttl_seconds=ttl)
    return cfg, joined["tls_cert"], key_pem


def _replace_identity(dd: DataDir, cfg: Config, cert_pem: str, key_pem: str, room: Reservation) -> None:
    """Swap in a new identity cleanly: old pending key and cached certificates go."""
    if dd.has_config():
        try:
            old_cfg = dd.load_config()
            cfg.kubeconfigs, cfg.destinations = old_cfg.kubeconfigs, old_cfg.destinations
        except PluginError:
            pass
    identity.clear_pending(dd)
    dd.remove_entries()
    identity.save(dd, cert_pem, key_pem, room)
    dd.save_config(cfg)


def _kubeconfig_target(req: LoginRequest, dd: DataDir) -> tuple[Path, bool]:
    if req.merge and req.kubeconfig:
        raise UsageError("--merge and --kubeconfig exclude each other: choose one")
    if req.merge:
        return kubeconfig.default_path(), False
    if req.kubeconfig:
        return Path(req.kubeconfig).expanduser().absolute(), False
    return dd.kubeconfig_path, True


def validate(req: LoginRequest) -> tuple[list[str], int]:
    """Check flags before any network traffic; returns the normalised pins and the TTL in seconds."""
    if not req.kube_clusters:
        raise UsageError("give at least one --kube-cluster NAME (see `kubectl-teleport kube ls`)")
    for name in req.kube_clusters:
        check_cluster_name(name)
    if req.context and len(req.kube_clusters) > 1:
        raise UsageError("--context names one context: use it with a single --kube-cluster")
    try:
        pins = [pki.normalize_pin(p) for p in req.ca_pins]
        ttl = fmt.parse_duration(req.ttl) if req.ttl else 3600
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if req.token and not pins:
        raise UsageError("--ca-pin is required with --token (it is printed by `bots add`): the token is only "
                         "sent to a cluster whose CA matches the pin")
    if req.token and not req.proxy:
        raise UsageError("--proxy HOST:PORT is required with --token")
    if req.proxy:
        check_proxy(req.proxy)
    if req.static and not req.destination:
        raise UsageError("--static applies to --destination DIR: give both")
    if not policy.MIN_TTL <= ttl <= policy.MAX_TTL:
        raise UsageError("--ttl must be between 1m and 24h: shorter certificates would be renewed on almost every "
                         "kubectl call")
    return pins, ttl


def login(req: LoginRequest) -> list[str]:
    """Run a login; returns the lines to print."""
    req.token = req.token or os.environ.get(ENV_TOKEN) or None
    pins, ttl = validate(req)
    dd = resolve(req.data_dir, req.proxy)
    fresh_dir = not dd.exists()
    if not fresh_dir:
        dd.check()
    target, standalone = _kubeconfig_target(req, dd)
    if not standalone:
        kubeconfig.preflight(target)  # the standalone one lives in the data dir, whose room is reserved below
    if not req.token and not dd.has_config():
        raise NotLoggedIn(f"no identity in {dd.root} yet: log in with --token, --ca-pin and --proxy first")
    deadline = http.Deadline(req.timeout)
    out: list[str] = []
    lock = dd.acquire(LOCK_WAIT)
    rooms: list[Reservation] = []
    try:
        dd.remove_stale_temps()
        # room for everything this login writes, before the token is spent or anything is issued
        entry_rooms = [dd.reserve_entry(name) for name in req.kube_clusters]
        rooms += entry_rooms
        config_room = dd.reserve(CONFIG)
        rooms.append(config_room)
        if req.token:
            assert req.proxy is not None
            id_room = identity.reserve(dd)
            rooms.append(id_room)
            cfg, cert_pem, key_pem = _join(req, req.proxy, pins, ttl, deadline)
            config_room.discard()
            _replace_identity(dd, cfg, cert_pem, key_pem, id_room)
        else:
            cfg = dd.load_config()
            if req.proxy and req.proxy != cfg.proxy:
                raise UsageError(f"{dd.root} belongs to {cfg.proxy}, not {req.proxy}: log in with a token to "
                                 "switch, or choose another --data-dir")
            if req.ttl:
                cfg.ttl_seconds = ttl
        notes: list[str] = []
        ident = renewal.current_identity(dd, cfg, clock.now(), deadline, notes=notes)
        out.append(f"Logged in to {cfg.cluster_name} at {cfg.proxy} as bot {cfg.bot!r} (identity generation "
                   f"{ident.generation}, valid until {fmt.rfc3339(ident.not_after)}).")
        out += [f"Warning: {n}" for n in notes]
        for name, room in zip(req.kube_clusters, entry_rooms, strict=True):
            entry, resp = renewal.issue_kube_cert(dd, cfg, name, deadline, req.kube_user, room)
            context = req.context or f"{cfg.cluster_name}-{name}"
            kube_ca = [p for p in resp.get("kube_ca_certs") or [] if isinstance(p, str)] or cfg.ca_pems
            server = str(resp.get("server") or cfg.kube_server)
            tls_name = str(resp.get("tls_server_name") or cfg.kube_tls_server_name or "")
            user = resp.get("kubernetes_user")
            cfg.kube_clusters[name] = KubeCluster(kube_user=req.kube_user or (user if isinstance(user, str) else None),
                                                  server=server, tls_server_name=tls_name, ca_pems=kube_ca)
            kubeconfig.merge(target, context, kubeconfig.cluster_entry(server, kube_ca, tls_name),
                             kubeconfig.exec_user(dd.root, name))
            record = KubeconfigEntry(str(target), context, name, standalone)
            cfg.kubeconfigs = [k for k in cfg.kubeconfigs if (k.path, k.name) != (record.path, record.name)]
            cfg.kubeconfigs.append(record)
            groups = ", ".join(resp.get("kubernetes_groups") or []) or "none"
            out.append(f"Kubernetes cluster {name}: context {context}, user {user} (groups: {groups}), "
                       f"certificate valid until {fmt.rfc3339(entry.not_after)}.")
        config_room.discard()
        dd.save_config(cfg)
        if req.destination:
            from ..outputs.destination import write_destination

            out.extend(write_destination(dd, cfg, Path(req.destination), static=req.static,
                                         default=req.kube_clusters[0]))
        if cfg.destinations:
            from ..outputs.destination import refresh

            out.extend(f"Updated the credential files in {path}" for path in refresh(dd, cfg))
    except BaseException:
        if fresh_dir and not dd.has_config():
            _remove_fresh_dir(dd, rooms)  # a failed first login leaves nothing behind
        raise
    finally:
        for room in rooms:
            room.discard()
        lock.release()
    out.append(f"Wrote kubeconfig {target}")
    if standalone or target != kubeconfig.default_path():
        out.append(f"Use it: export KUBECONFIG={target}   (or: kubectl --kubeconfig {target} get pods)")
    return out


def _remove_fresh_dir(dd: DataDir, rooms: list[Reservation]) -> None:
    """Undo the directory a failed first login made (it holds nothing but reservations and the lock)."""
    for room in rooms:
        room.discard()
    for path in (dd.kube_dir, dd.lock_path, dd.root):
        try:
            os.rmdir(path) if path != dd.lock_path else os.unlink(path)
        except OSError:
            pass


def run(args: argparse.Namespace) -> int:
    """`kubectl-teleport login`."""
    for line in login(LoginRequest(
            proxy=args.proxy, token=args.token, ca_pins=args.ca_pin, kube_clusters=args.kube_cluster,
            kube_user=args.kube_user, data_dir=args.data_dir, kubeconfig=args.kubeconfig, merge=args.merge,
            context=args.context, ttl=args.ttl, timeout=args.timeout, destination=args.destination,
            static=args.static)):
        print(line)
    return 0
