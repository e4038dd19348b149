"""`kubectl-teleport kube ls`: the Kubernetes clusters the bot's roles grant (asks the server)."""

from __future__ import annotations

import argparse
import json

from .. import clock, fmt
from ..issuer import http, renewal
from ..store.datadir import resolve

LOCK_WAIT = 30.0


def kube_ls(data_dir: str | None, output: str) -> list[str]:
    dd = resolve(data_dir)
    cfg = dd.load_config()
    deadline = http.Deadline()
    lock = dd.acquire(LOCK_WAIT)
    notes: list[str] = []
    try:
        renewal.current_identity(dd, cfg, clock.now(), deadline, notes=notes)
        with http.Client(cfg.proxy, cfg.ca_pems, identity_file=dd.identity_path, deadline=deadline) as client:
            resp = client.call("listing Kubernetes clusters", "GET", "/kube/clusters")
    finally:
        lock.release()
    for note in notes:
        fmt.warn(note)
    clusters = [c for c in http.expect(resp, "listing Kubernetes clusters", clusters=list)["clusters"]
                if isinstance(c, dict)]
    if output == "json":
        return [json.dumps({"clusters": clusters}, indent=2)]
    if not clusters:
        return ["The bot's roles grant no Kubernetes cluster."]
    rows = [("NAME", "USERS", "GROUPS", "LABELS", "LOGGED IN")]
    for c in clusters:
        labels = ",".join(f"{k}={v}" for k, v in sorted((c.get("labels") or {}).items()))
        rows.append((str(c.get("name")), ",".join(c.get("kubernetes_users") or []) or "-",
                     ",".join(c.get("kubernetes_groups") or []) or "-", labels or "-",
                     "yes" if c.get("name") in cfg.kube_clusters else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def run(args: argparse.Namespace) -> int:
    """`kubectl-teleport kube ls`."""
    for line in kube_ls(args.data_dir, args.output):
        print(line)
    return 0
