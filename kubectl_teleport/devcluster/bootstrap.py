"""Initialising a state directory: the database, the cluster name and the CAs (once, ever).

The host and user CAs (TLS) come with the state; the web CA (standing in for a public CA that signs the proxy's
web certificate) and the SSH user and host CAs are added to a state made before they existed.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from pathlib import Path

from .. import pki
from . import store
from .ca import create_ca
from .sshca import SSH_HOST_CA, SSH_USER_CA, SSHAuthority

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
                _add_missing_cas(conn, existing, now or pki.utcnow())
                return existing, False
            name = cluster_name or DEFAULT_CLUSTER_NAME
            t = now or pki.utcnow()
            for kind in ("host", "user"):
                ca = create_ca(kind, name, t)
                store.put_ca(conn, kind, ca.cert_pem, pki.private_key_pem(ca.key))
            _add_missing_cas(conn, name, t)
            store.set_setting(conn, "cluster_name", name)
            return name, True
    finally:
        conn.close()


def _add_missing_cas(conn: sqlite3.Connection, cluster: str, now: datetime) -> None:
    """The web CA and the SSH CAs, for states made before they existed (inside the caller's transaction)."""
    if not store.has_ca(conn, "web"):
        ca = create_ca("web", cluster, now)
        store.put_ca(conn, "web", ca.cert_pem, pki.private_key_pem(ca.key))
    for kind in (SSH_USER_CA, SSH_HOST_CA):
        if not store.has_ca(conn, kind):
            ssh = SSHAuthority.generate()
            store.put_ca(conn, kind, ssh.public_line, ssh.private_pem())
