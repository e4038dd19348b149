"""`kubectl-teleport status`: what the identity and each cluster's certificate look like right now.

A reader (of `init --reader-user`) sees the certificates it can read; the identity is the bot user's."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import clock, fmt
from ..errors import PluginError
from ..store import identity
from ..store.datadir import resolve


def gather(data_dir: str | None) -> dict[str, Any]:
    """The status as a JSON-ready dict."""
    dd = resolve(data_dir)
    dd.check()
    now = clock.now()
    report: dict[str, Any] = {"data_dir": str(dd.root)}
    try:
        cfg = dd.load_config()
    except PluginError as err:
        if dd.writable() or not dd.exists():
            raise
        cfg = None  # a reader: the config and the identity are the bot user's
        report["reader"] = True
        report["identity"] = {"error": f"not readable by this user ({err})"}
    if cfg is not None:
        report.update(proxy=cfg.proxy, cluster_name=cfg.cluster_name, bot=cfg.bot,
                      teleport={"server_version": cfg.server_version, "signature_algorithm_suite": cfg.suite,
                                "tls_routing": cfg.tls_routing, "auth_server": cfg.auth_server or None,
                                "roles": cfg.roles})
        if cfg.identity_secret:
            report["identity_secret"] = {"url": cfg.identity_secret, "resource_version": _synced_version(dd, cfg)}
        try:
            ident = identity.load(dd)
            pending = _pending(dd, ident)
            report["identity"] = {
                "generation": ident.generation, "bot_instance_id": ident.bot_instance_id,
                "expires": fmt.rfc3339(ident.expires_at), "seconds_left": int(ident.expires_at - now),
                "renewal_due": now >= ident.renew_at(), "expired": now >= ident.expires_at,
                "renewal_in_doubt": pending,
            }
        except PluginError as err:
            report["identity"] = {"error": str(err)}
    names = set(cfg.kube_clusters if cfg else ()) | set(dd.entry_clusters())
    clusters = []
    for name in sorted(names):
        try:
            entry = dd.read_entry(name)
        except PluginError as err:
            clusters.append({"name": name, "state": f"unreadable: {err}", "cached": False})
            continue
        item: dict[str, Any] = {"name": name, "kube_user": cfg.cluster(name).kube_user if cfg else None}
        if entry is None:
            item.update(state="no certificate yet: issued on the next kubectl call", cached=False)
        else:
            state = ("cached" if entry.fresh(now) else
                     "cached; renews on the next kubectl call" if entry.valid(now) else
                     "expired: renews on the next kubectl call")
            item.update(not_after=fmt.rfc3339(entry.not_after), expires=fmt.rfc3339(entry.expires_at),
                        seconds_left=int(entry.expires_at - now), cached=entry.fresh(now), state=state)
        clusters.append(item)
    report["kube_clusters"] = clusters
    return report


def _pending(dd: Any, ident: Any) -> dict[str, Any] | None:
    """An ambiguous renewal (read only: status changes nothing), as when it was sent and when it is retried."""
    from ..issuer import renewal
    from ..store.identity import load_pending
    from ..store.lock import held_elsewhere

    pending = load_pending(dd) if dd.pending_path.exists() else None
    if pending is None or not pending.sent or pending.for_generation != ident.generation:
        return None
    if held_elsewhere(str(dd.lock_path)):  # the renewal is under way right now, not in doubt
        return None
    ident.hold_until = renewal.retry_at(ident)
    return {"sent": fmt.rfc3339(pending.started_at) if pending.started_at else None,
            "retry_after": fmt.rfc3339(ident.hold_until)}


def _synced_version(dd: Any, cfg: Any) -> str | None:
    """The identity Secret's resourceVersion as this data dir last read or wrote it (no network)."""
    from ..store.datadir import SECRET_STATE

    try:
        raw = dd.read(SECRET_STATE)
        state = json.loads(raw) if raw else {}
    except (PluginError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("url") != cfg.identity_secret:
        return None
    return str(state.get("resource_version") or "") or None


def render_text(report: dict[str, Any]) -> list[str]:
    """Human lines for `status`."""
    lines = []
    if "proxy" in report:
        tp = report.get("teleport") or {}
        route = f"auth server {tp['auth_server']}" if tp.get("auth_server") else (
            "auth through the proxy's TLS routing" if tp.get("tls_routing", True) else "auth through the proxy")
        lines += [f"Proxy:      {report['proxy']} (Teleport cluster {report['cluster_name']}, version "
                  f"{tp.get('server_version') or 'unknown'}, signature algorithm suite "
                  f"{tp.get('signature_algorithm_suite') or 'none'}; {route})",
                  f"Bot:        {report['bot']} (roles: {', '.join(tp.get('roles') or []) or 'none'})"]
    lines.append(f"Data dir:   {report['data_dir']}" + (" (read-only for this user)" if report.get("reader") else ""))
    ident = report["identity"]
    if "error" in ident:
        lines.append(f"Identity:   {ident['error']}")
    else:
        left = "expired" if ident["expired"] else f"{fmt.format_duration(ident['seconds_left'])} left"
        extra = "; renewal due" if ident["renewal_due"] and not ident["expired"] else ""
        doubt = ident.get("renewal_in_doubt")
        if doubt:
            extra += (f"; the answer to a renewal sent {doubt['sent'] or 'earlier'} was lost: renewal held until "
                      f"{doubt['retry_after']} (log in again with a new token to avoid a possible lock)")
        instance = f", bot instance {ident['bot_instance_id']}" if ident.get("bot_instance_id") else ""
        lines.append(f"Identity:   generation {ident['generation']}{instance}, valid until {ident['expires']} "
                     f"({left}{extra})")
    kept = report.get("identity_secret")
    if kept:
        version = (f"resourceVersion {kept['resource_version']} as last read or written here"
                   if kept.get("resource_version") else "not read here yet: run `kubectl-teleport start`")
        lines.append(f"Kept in:    Secret {kept['url']} ({version}; only `start` and `login` renew it)")
    lines.append("Kubernetes clusters:" if report["kube_clusters"] else "Kubernetes clusters: none")
    for item in report["kube_clusters"]:
        user = f" as {item['kube_user']}" if item.get("kube_user") else ""
        if "expires" in item:
            left = fmt.format_duration(max(0, item["seconds_left"]))
            lines.append(f"  {item['name']}{user}: valid until {item['not_after']}, kubectl uses it until "
                         f"{item['expires']} ({left} left); kubectl gets: {item['state']}")
        else:
            lines.append(f"  {item['name']}{user}: {item['state']}")
    return lines


def status(data_dir: str | None, output: str) -> list[str]:
    report = gather(data_dir)
    if output == "json":
        return [json.dumps(report, indent=2)]
    return render_text(report)


def run(args: argparse.Namespace) -> int:
    """`kubectl-teleport status`."""
    for line in status(args.data_dir, args.output):
        print(line)
    return 0
