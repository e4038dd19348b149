"""`kubectl-teleport kube ls`: the Kubernetes clusters the bot's roles grant (asks the server)."""

from __future__ import annotations

import json

from . import api, clock, datadir, locking, renewal


def kube_ls(data_dir: str | None, output: str) -> list[str]:
    dd = datadir.resolve(data_dir)
    cfg = dd.load_config()
    deadline = api.Deadline()
    lock = locking.acquire(dd)
    try:
        renewal.current_identity(dd, cfg, clock.now(), deadline)
        with api.Client(cfg.proxy, cfg.ca_pems, identity_file=dd.identity_path, deadline=deadline) as client:
            resp = client.call("listing Kubernetes clusters", "GET", "/kube/clusters")
    finally:
        lock.release()
    clusters = [c for c in api.expect(resp, "listing Kubernetes clusters", clusters=list)["clusters"]
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
