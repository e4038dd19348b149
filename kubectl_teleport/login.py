"""`kubectl-teleport login`: pin the CA, join with the one-time token, store the identity, issue the first
Kubernetes certificates and write the kubeconfig."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import api, clock, datadir, durations, fsutil, identity, kubeconfig, locking, pki, renewal
from .datadir import Config, DataDir, KubeconfigEntry
from .errors import NOT_LOGGED_IN, TRUST, USAGE, PluginError

ENV_TOKEN = "KUBECTL_TELEPORT_TOKEN"  # noqa: S105 (the variable's name, not a token)


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
    timeout: float = api.DEFAULT_DEADLINE
    destination: str | None = None
    static: bool = False


def check_proxy(proxy: str) -> str:
    """HOST:PORT, nothing else (no scheme, no path)."""
    host, sep, port = proxy.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in proxy:
        raise PluginError(f"bad --proxy {proxy[:80]!r}: give HOST:PORT, e.g. teleport.example.com:443", USAGE)
    return proxy


def fetch_pinned_ca(proxy: str, pins: list[str], deadline: api.Deadline) -> tuple[str, list[str]]:
    """Fetch the cluster CA without verifying TLS and check it against the pins before anything else is sent."""
    with api.Client(proxy, None, deadline=deadline) as client:
        resp = client.call("fetching the cluster CA", "GET", "/cluster/ca")
    api.expect(resp, "fetching the cluster CA", ca_pems=list, cluster_name=str)
    try:
        certs = [pki.load_cert(p) for p in resp["ca_pems"] if isinstance(p, str)]
    except ValueError:
        certs = []
    if not certs or len(certs) != len(resp["ca_pems"]):
        raise PluginError(f"{proxy} sent no usable CA certificate; check --proxy", TRUST)
    if not pki.pins_match(certs, pins):
        actual = ", ".join(pki.spki_pin(c) for c in certs)
        raise PluginError(f"the CA of {proxy} does not match --ca-pin: expected {', '.join(pins)}, the server "
                          f"has {actual}; the token was not sent. Check the pin and the proxy address", TRUST)
    return resp["cluster_name"], [pki.cert_pem(c) for c in certs]


def _join(req: LoginRequest, proxy: str, pins: list[str], ttl: int,
          deadline: api.Deadline) -> tuple[Config, str, str]:
    cluster_name, ca_pems = fetch_pinned_ca(proxy, pins, deadline)
    key_pem = pki.private_key_pem(pki.generate_key())
    with api.Client(proxy, ca_pems, deadline=deadline) as client:
        ping = client.call("contacting the proxy", "GET", "/ping")
        kube = ping.get("kube") if isinstance(ping.get("kube"), dict) else {}
        joined = client.call("joining the cluster", "POST", "/join", {
            "token": req.token, "role": "Bot", "join_method": "token",
            "public_tls_key": pki.public_key_pem(pki.load_private_key(key_pem)), "ttl_seconds": ttl,
        }, retry=False)
    api.expect(joined, "joining the cluster", tls_cert=str, bot=str)
    cfg = Config(proxy=proxy, cluster_name=str(ping.get("cluster_name") or cluster_name), bot=joined["bot"],
                 ca_pems=ca_pems, kube_server=str(kube.get("server") or ""),
                 kube_tls_server_name=str(kube.get("tls_server_name") or ""), ttl_seconds=ttl)
    return cfg, joined["tls_cert"], key_pem


def _replace_identity(dd: DataDir, cfg: Config, cert_pem: str, key_pem: str) -> None:
    """Swap in a new identity cleanly: old pending key and cached certificates go."""
    if dd.has_config():
        try:
            old_cfg = dd.load_config()
            cfg.kubeconfigs, cfg.destinations = old_cfg.kubeconfigs, old_cfg.destinations
        except PluginError:
            pass
    identity.clear_pending(dd)
    if dd.kube_dir.is_dir():
        for old in dd.kube_dir.glob("*" + ".cred"):
            old.unlink()
    identity.save(dd, cert_pem, key_pem)
    dd.save_config(cfg)


def _kubeconfig_target(req: LoginRequest, dd: DataDir) -> tuple[Path, bool]:
    if req.merge and req.kubeconfig:
        raise PluginError("--merge and --kubeconfig exclude each other: choose one", USAGE)
    if req.merge:
        return kubeconfig.default_path(), False
    if req.kubeconfig:
        return Path(req.kubeconfig).expanduser().absolute(), False
    return dd.kubeconfig_path, True


def validate(req: LoginRequest) -> tuple[list[str], int]:
    """Check flags before any network traffic; returns the normalised pins and the TTL in seconds."""
    if not req.kube_clusters:
        raise PluginError("give at least one --kube-cluster NAME (see `kubectl-teleport kube ls`)", USAGE)
    for name in req.kube_clusters:
        datadir.check_cluster_name(name)
    if req.context and len(req.kube_clusters) > 1:
        raise PluginError("--context names one context: use it with a single --kube-cluster", USAGE)
    try:
        pins = [pki.normalize_pin(p) for p in req.ca_pins]
        ttl = durations.parse_duration(req.ttl) if req.ttl else 3600
    except ValueError as exc:
        raise PluginError(str(exc), USAGE) from None
    if req.token and not pins:
        raise PluginError("--ca-pin is required with --token (it is printed by `bots add`): the token is only "
                          "sent to a cluster whose CA matches the pin", USAGE)
    if req.token and not req.proxy:
        raise PluginError("--proxy HOST:PORT is required with --token", USAGE)
    if req.proxy:
        check_proxy(req.proxy)
    if req.static and not req.destination:
        raise PluginError("--static applies to --destination DIR: give both", USAGE)
    if not 60 <= ttl <= 86400:
        raise PluginError("--ttl must be between 1m and 24h", USAGE)
    return pins, ttl


def login(req: LoginRequest) -> list[str]:
    """Run a login; returns the lines to print."""
    req.token = req.token or os.environ.get(ENV_TOKEN) or None
    pins, ttl = validate(req)
    dd = datadir.resolve(req.data_dir, req.proxy)
    dd.check()
    deadline = api.Deadline(req.timeout)
    target, standalone = _kubeconfig_target(req, dd)
    out: list[str] = []
    if req.token:
        assert req.proxy is not None
        cfg, cert_pem, key_pem = _join(req, req.proxy, pins, ttl, deadline)
    elif not dd.has_config():
        raise PluginError(f"no identity in {dd.root} yet: log in with --token, --ca-pin and --proxy first",
                          NOT_LOGGED_IN)
    lock = locking.acquire(dd)
    try:
        if req.token:
            _replace_identity(dd, cfg, cert_pem, key_pem)
        else:
            cfg = dd.load_config()
            if req.proxy and req.proxy != cfg.proxy:
                raise PluginError(f"{dd.root} belongs to {cfg.proxy}, not {req.proxy}: log in with a token to "
                                  "switch, or choose another --data-dir", USAGE)
            if req.ttl:
                cfg.ttl_seconds = ttl
        ident = renewal.current_identity(dd, cfg, clock.now(), deadline)
        out.append(f"Logged in to {cfg.cluster_name} at {cfg.proxy} as bot {cfg.bot!r} (identity generation "
                   f"{ident.generation}, valid until {renewal.rfc3339(ident.not_after)}).")
        for name in req.kube_clusters:
            entry, resp = renewal.issue_kube_cert(dd, cfg, name, deadline, req.kube_user)
            context = req.context or f"{cfg.cluster_name}-{name}"
            kube_ca = [p for p in resp.get("kube_ca_certs") or [] if isinstance(p, str)] or cfg.ca_pems
            server = str(resp.get("server") or cfg.kube_server)
            tls_name = str(resp.get("tls_server_name") or cfg.kube_tls_server_name or "")
            cfg.kube_clusters[name] = {"kube_user": req.kube_user or resp.get("kubernetes_user"),
                                       "server": server, "tls_server_name": tls_name, "kube_ca_pems": kube_ca}
            kubeconfig.merge(target, context, kubeconfig.cluster_entry(server, kube_ca, tls_name),
                             kubeconfig.exec_user(dd.root, name))
            record = KubeconfigEntry(str(target), context, name, standalone)
            cfg.kubeconfigs = [k for k in cfg.kubeconfigs if (k.path, k.name) != (record.path, record.name)]
            cfg.kubeconfigs.append(record)
            groups = ", ".join(resp.get("kubernetes_groups") or []) or "none"
            out.append(f"Kubernetes cluster {name}: context {context}, user {resp.get('kubernetes_user')} "
                       f"(groups: {groups}), certificate valid until {renewal.rfc3339(entry.not_after)}.")
        dd.save_config(cfg)
        if req.destination:
            from .outputs import write_destination

            out.extend(write_destination(dd, cfg, Path(req.destination), static=req.static,
                                         default=req.kube_clusters[0]))
        if cfg.destinations:
            from .outputs import refresh

            out.extend(f"Updated the credential files in {path}" for path in refresh(dd, cfg))
    finally:
        lock.release()
    out.append(f"Wrote kubeconfig {target}")
    if standalone or target != kubeconfig.default_path():
        out.append(f"Use it: export KUBECONFIG={target}   (or: kubectl --kubeconfig {target} get pods)")
    return out


def logout(data_dir: str | None) -> list[str]:
    """Remove the identity, its certificates, and the kubeconfig entries login wrote."""
    dd = datadir.resolve(data_dir)
    if not dd.root.exists():
        raise PluginError(f"nothing to log out of: {dd.root} does not exist", NOT_LOGGED_IN)
    dd.check()
    out: list[str] = []
    lock = locking.acquire(dd)
    try:
        cfg = dd.load_config() if dd.has_config() else None
        for entry in cfg.kubeconfigs if cfg else []:
            path = Path(entry.path)
            if entry.standalone:
                path.unlink(missing_ok=True)
            else:
                kubeconfig.remove(path, entry.name)
            out.append(f"Removed context {entry.name} from {path}")
        if cfg and cfg.destinations:
            from .outputs import remove

            for dest in cfg.destinations:
                out.extend(remove(Path(dest["path"])))
        for name in ("identity_path", "pending_path", "config_path", "kubeconfig_path"):
            getattr(dd, name).unlink(missing_ok=True)
        if dd.kube_dir.is_dir():
            for cred in dd.kube_dir.glob("*.cred"):
                cred.unlink()
            dd.kube_dir.rmdir()
        fsutil.fsync_dir(dd.root)
    finally:
        lock.release()
    dd.lock_path.unlink(missing_ok=True)
    try:
        dd.root.rmdir()
    except OSError:
        out.append(f"Left {dd.root} in place: it holds files kubectl-teleport did not write")
    out.append(f"Logged out: removed the identity and certificates in {dd.root}")
    return out

