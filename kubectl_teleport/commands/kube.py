"""`kubectl-teleport kube ls`: every Kubernetes cluster the data dir's roles grant, as Teleport lists them (like
`tsh kube ls` and tbot), with their labels, marking the ones set up in this data dir with what Teleport put in
their certificates (roles, Kubernetes users and groups) and what it reported at login (server version, signature
algorithm suite) and in the identity (generation, bot instance).

The list comes from `ListResources kube_server` asked with an identity impersonating the configured roles
(issuer/kubelist.py); getting it does not renew the bot identity or move its generation, and writes nothing.
With `--offline`, or when the auth service cannot be reached (or the identity has expired), the clusters set up in
the data dir are listed instead, after one warning line on stderr saying the list is local only.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import clock, fmt, pki
from ..errors import PluginError, Unavailable
from ..store import identity
from ..store.datadir import resolve

TELEPORT, LOCAL = "teleport", "local"


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


def _unreachable(err: PluginError) -> bool:
    """A failure that says the auth service could not be reached (not that it refused): a transport failure, a
    deadline, or a transient status after the retries."""
    if not isinstance(err, Unavailable):
        return False
    return getattr(err, "grpc_code", None) is None or bool(getattr(err, "retryable", False))


def gather(data_dir: str | None, *, offline: bool = False, timeout: float = 15.0) -> dict[str, Any]:
    """The report `kube ls` prints: `teleport` (the cluster and identity), `source` (`teleport` or `local`),
    `warning` (why the list is local only, or None) and `clusters`."""
    dd = resolve(data_dir)
    dd.check()
    cfg = dd.load_config()
    ident = identity.load(dd)
    teleport = {"cluster_name": cfg.cluster_name, "proxy": cfg.proxy, "server_version": cfg.server_version,
                "signature_algorithm_suite": cfg.suite, "bot": cfg.bot, "roles": cfg.roles,
                "generation": ident.generation, "bot_instance_id": ident.bot_instance_id}
    set_up = sorted(set(cfg.kube_clusters) | set(dd.entry_clusters()))
    granted = None
    warning = None
    if offline:
        warning = "--offline"
    elif clock.now() - ident.skew >= pki.not_after(ident.cert).timestamp():
        warning = (f"the bot identity expired at {fmt.rfc3339(pki.not_after(ident.cert).timestamp())}, so Teleport "
                   "cannot be asked (log in again with a new join token)")
    else:
        from ..issuer import http, kubelist

        try:
            granted = kubelist.granted_clusters(dd, cfg, http.Deadline(timeout))
        except PluginError as err:
            if not _unreachable(err):
                raise
            warning = str(err)
    if granted is None:
        clusters = [{"name": name, "labels": None, "set_up": True, "granted": None, **_cert_info(dd, name)}
                    for name in set_up]
    else:
        listed = {c.name: c.labels for c in granted}
        clusters = [{"name": name, "labels": listed.get(name), "set_up": name in set_up,
                     "granted": name in listed, **(_cert_info(dd, name) if name in set_up else {})}
                    for name in sorted(set(listed) | set(set_up))]
    return {"teleport": teleport, "source": LOCAL if granted is None else TELEPORT, "warning": warning,
            "clusters": clusters}


def _labels(labels: dict[str, str] | None) -> str:
    if labels is None:
        return "?"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _set_up(c: dict[str, Any]) -> str:
    if not c["set_up"]:
        return "no"
    return "yes" if c["granted"] is not False else "yes (not granted)"


def kube_ls(report: dict[str, Any], output: str) -> list[str]:
    """The lines to print for `report` (gather)."""
    if output == "json":
        return [json.dumps(report, indent=2)]
    tp = report["teleport"]
    lines = [f"Teleport cluster {tp['cluster_name']} at {tp['proxy']} (version {tp['server_version'] or 'unknown'}, "
             f"signature algorithm suite {tp['signature_algorithm_suite'] or 'none'}); bot {tp['bot']}, identity "
             f"generation {tp['generation']}" + (f", bot instance {tp['bot_instance_id']}" if tp["bot_instance_id"]
                                                 else "")]
    local = report["source"] == LOCAL
    if not report["clusters"]:
        if local:
            lines.append("No Kubernetes cluster is set up: `kubectl-teleport login --kube-cluster NAME` adds one.")
        else:
            lines.append(f"Roles {', '.join(tp['roles'])} grant no Kubernetes cluster: ask an admin to grant one "
                         "(the roles' kubernetes_labels).")
        return lines
    rows = [("NAME", "LABELS", "SET UP", "ROLES", "USERS", "GROUPS", "CERTIFICATE VALID UNTIL")]
    for c in report["clusters"]:
        rows.append((c["name"], _labels(c["labels"]), _set_up(c), ",".join(c.get("roles") or []) or "-",
                     ",".join(c.get("kubernetes_users") or []) or "-",
                     ",".join(c.get("kubernetes_groups") or []) or "-",
                     c.get("not_after") or ("not issued yet" if c["set_up"] else "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    if local:
        lines.append("Only the clusters set up here are listed; `kubectl-teleport login --kube-cluster NAME` adds "
                     "one.")
    elif any(not c["set_up"] for c in report["clusters"]):
        lines.append("`kubectl-teleport login --kube-cluster NAME` sets one up.")
    return lines


def warning_line(report: dict[str, Any]) -> str | None:
    """The one warning line of a local-only list."""
    if report["source"] != LOCAL:
        return None
    why = report["warning"]
    if why == "--offline":
        return "warning: --offline: the list is local only (the clusters set up in this data dir), Teleport was not " \
               "asked"
    return f"warning: the list is local only (the clusters set up in this data dir): {why}"


def run(args: argparse.Namespace) -> int:
    """`kubectl-teleport kube ls`."""
    report = gather(args.data_dir, offline=getattr(args, "offline", False), timeout=getattr(args, "timeout", 15.0))
    warning = warning_line(report)
    if warning:
        print(warning, file=sys.stderr)
    for line in kube_ls(report, args.output):
        print(line)
    return 0
