"""`kubectl-teleport kube ls`: the Kubernetes clusters this identity is set up for, with what Teleport put in
their certificates (roles, Kubernetes users and groups) and what Teleport reported at login (server version,
signature algorithm suite) and in the identity (generation, bot instance).

It reads the data dir only. Listing every cluster the bot's roles grant needs Teleport's `ListResources` with an
impersonated identity, which this plugin does not speak: `tsh kube ls` (or `tctl get kube_server`) shows them,
and `login --kube-cluster NAME` adds one.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import fmt, pki
from ..errors import PluginError
from ..store import identity
from ..store.datadir import resolve


def _cert_info(dd: Any, name: str) -> dict[str, Any]:
    try:
        entry = dd.read_entry(name)
    except PluginError:
        entry = None
    if entry is None:
        return {}
    try:
        status = json.loads(entry.status)
        ident = pki.identity_of(pki.load_cert(status["clientCertificateData"]))
    except (ValueError, KeyError, TypeError):
        return {}
    return {"roles": ident.groups, "kubernetes_users": ident.kube_users, "kubernetes_groups": ident.kube_groups,
            "not_after": fmt.rfc3339(entry.not_after)}


def gather(data_dir: str | None) -> dict[str, Any]:
    dd = resolve(data_dir)
    dd.check()
    cfg = dd.load_config()
    ident = identity.load(dd)
    teleport = {"cluster_name": cfg.cluster_name, "proxy": cfg.proxy, "server_version": cfg.server_version,
                "signature_algorithm_suite": cfg.suite, "bot": cfg.bot, "roles": cfg.roles,
                "generation": ident.generation, "bot_instance_id": ident.bot_instance_id}
    clusters = [{"name": name, **_cert_info(dd, name)}
                for name in sorted(set(cfg.kube_clusters) | set(dd.entry_clusters()))]
    return {"teleport": teleport, "clusters": clusters}


def kube_ls(data_dir: str | None, output: str) -> list[str]:
    report = gather(data_dir)
    if output == "json":
        return [json.dumps(report, indent=2)]
    tp = report["teleport"]
    lines = [f"Teleport cluster {tp['cluster_name']} at {tp['proxy']} (version {tp['server_version'] or 'unknown'}, "
             f"signature algorithm suite {tp['signature_algorithm_suite'] or 'none'}); bot {tp['bot']}, identity "
             f"generation {tp['generation']}" + (f", bot instance {tp['bot_instance_id']}" if tp["bot_instance_id"]
                                                 else "")]
    if not report["clusters"]:
        lines.append("No Kubernetes cluster is set up: `kubectl-teleport login --kube-cluster NAME` adds one.")
        return lines
    rows = [("NAME", "ROLES", "USERS", "GROUPS", "CERTIFICATE VALID UNTIL")]
    for c in report["clusters"]:
        rows.append((c["name"], ",".join(c.get("roles") or []) or "-", ",".join(c.get("kubernetes_users") or []) or "-",
                     ",".join(c.get("kubernetes_groups") or []) or "-", c.get("not_after") or "not issued yet"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append("Other clusters the roles grant: `tsh kube ls` lists them; `kubectl-teleport login --kube-cluster "
                 "NAME` adds one.")
    return lines


def run(args: argparse.Namespace) -> int:
    """`kubectl-teleport kube ls`."""
    for line in kube_ls(args.data_dir, args.output):
        print(line)
    return 0
