"""Initialising a state directory: the database, the cluster name and the two CAs (once, ever)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from .. import pki
from . import store
from .ca import create_ca

DEFAULT_CLUSTER_NAME = "devcluster"
CLUSTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")


class ClusterNameConflict(ValueError):
    """The state directory belongs to a cluster of another name."""


def initialise(state_dir: Path, cluster_name: str | None, now: datetime | None = None) -> tuple[str, bool]:
    """Create the state (0700 dir, 0600 database, host and user CAs) if needed; (cluster name, created?)."""
    if cluster_name is not None and not CLUSTER_NAME_RE.match(cluster_name):
        raise ValueError(f"invalid cluster name {cluster_name!r}: use letters, digits, '.' and '-'")
    conn = store.create(Path(state_dir))
    try:
        with store.transaction(conn):
            existing = store.get_setting(conn, "cluster_name")
            if existing is not None:
                if cluster_name is not None and cluster_name != existing:
                    raise ClusterNameConflict(f"{state_dir} holds cluster {existing!r}, not {cluster_name!r}; "
                                              "use another --state-dir or drop --cluster-name")
                return existing, False
            name = cluster_name or DEFAULT_CLUSTER_NAME
            t = now or pki.utcnow()
            for kind in ("host", "user"):
                ca = create_ca(kind, name, t)
                store.put_ca(conn, kind, ca.cert_pem, pki.private_key_pem(ca.key))
            store.set_setting(conn, "cluster_name", name)
            return name, True
    finally:
        conn.close()
