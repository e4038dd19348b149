"""`kubectl-teleport status`: what the identity and each cluster's certificate look like right now."""

from __future__ import annotations

import json
from typing import Any

from . import clock, datadir, durations, identity, renewal
from .errors import PluginError


def gather(data_dir: str | None) -> dict[str, Any]:
    """The status as a JSON-ready dict."""
    dd = datadir.resolve(data_dir)
    cfg = dd.load_config()
    now = clock.now()
    report: dict[str, Any] = {"proxy": cfg.proxy, "cluster_name": cfg.cluster_name, "bot": cfg.bot,
                              "data_dir": str(dd.root)}
    try:
        ident = identity.load(dd)
        report["identity"] = {
            "generation": ident.generation, "expires": renewal.rfc3339(ident.not_after),
            "seconds_left": int(ident.not_after - now), "renewal_due": now >= ident.renew_at,
            "expired": now >= ident.not_after, "renewal_pending": dd.pending_path.exists(),
        }
    except PluginError as err:
        report["identity"] = {"error": str(err)}
    names = set(cfg.kube_clusters)
    if dd.kube_dir.is_dir():
        names |= {p.name.removesuffix(".cred") for p in dd.kube_dir.glob("*.cred")}
    clusters = []
    for name in sorted(names):
        entry = dd.read_entry(name)
        item: dict[str, Any] = {"name": name, "kube_user": (cfg.kube_clusters.get(name) or {}).get("kube_user")}
        if entry is None:
            item.update(state="no certificate yet: issued on the next kubectl call", cached=False)
        else:
            state = ("cached" if entry.fresh(now) else
                     "cached; renews on the next kubectl call" if entry.valid(now) else
                     "expired: renews on the next kubectl call")
            item.update(expires=renewal.rfc3339(entry.expires_at), seconds_left=int(entry.expires_at - now),
                        cached=entry.fresh(now), state=state)
        clusters.append(item)
    report["kube_clusters"] = clusters
    return report


def render_text(report: dict[str, Any]) -> list[str]:
    """Human lines for `status`."""
    lines = [f"Proxy:      {report['proxy']} (Teleport cluster {report['cluster_name']})",
             f"Bot:        {report['bot']}",
             f"Data dir:   {report['data_dir']}"]
    ident = report["identity"]
    if "error" in ident:
        lines.append(f"Identity:   {ident['error']}")
    else:
        left = "expired" if ident["expired"] else f"{durations.format_duration(ident['seconds_left'])} left"
        extra = "; renewal due" if ident["renewal_due"] and not ident["expired"] else ""
        extra += "; an interrupted renewal will be finished" if ident["renewal_pending"] else ""
        lines.append(f"Identity:   generation {ident['generation']}, valid until {ident['expires']} "
                     f"({left}{extra})")
    lines.append("Kubernetes clusters:" if report["kube_clusters"] else "Kubernetes clusters: none")
    for item in report["kube_clusters"]:
        user = f" as {item['kube_user']}" if item.get("kube_user") else ""
        if "expires" in item:
            left = durations.format_duration(max(0, item["seconds_left"]))
            lines.append(f"  {item['name']}{user}: valid until {item['expires']} ({left} left); "
                         f"kubectl gets: {item['state']}")
        else:
            lines.append(f"  {item['name']}{user}: {item['state']}")
    return lines


def status(data_dir: str | None, output: str) -> list[str]:
    report = gather(data_dir)
    if output == "json":
        return [json.dumps(report, indent=2)]
    return render_text(report)
