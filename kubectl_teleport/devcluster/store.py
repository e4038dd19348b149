"""The devcluster's state: one SQLite database (WAL) in the state directory, shared by server and admin CLI.

Every request and every admin command opens its own connection, so admin changes apply to the running server
at once. Writes that read-then-modify run in `BEGIN IMMEDIATE` transactions (see `transaction`).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import files

DB_NAME = "devcluster.db"
BUSY_TIMEOUT_MS = 30_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cas (kind TEXT PRIMARY KEY, cert_pem TEXT NOT NULL, key_pem TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roles (name TEXT PRIMARY KEY, yaml TEXT NOT NULL, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bots (
    name TEXT PRIMARY KEY,
    roles TEXT NOT NULL,                  -- JSON list
    generation INTEGER NOT NULL DEFAULT 0,
    locked INTEGER NOT NULL DEFAULT 0,
    lock_reason TEXT,
    locked_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_sha256 TEXT PRIMARY KEY,        -- never the token itself
    bot TEXT NOT NULL,
    roles TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kube_clusters (name TEXT PRIMARY KEY, labels TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kube_objects (
    cluster TEXT NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (cluster, kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS rolebindings (
    cluster TEXT NOT NULL, namespace TEXT NOT NULL,   -- namespace '' = cluster-wide
    verbs TEXT NOT NULL, resources TEXT NOT NULL,     -- JSON lists
    subject_kind TEXT NOT NULL, subject_name TEXT NOT NULL,
    PRIMARY KEY (cluster, namespace, verbs, resources, subject_kind, subject_name)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bot_instances (  -- Teleport 16.2+: one per join, each with its own generation
    id TEXT PRIMARY KEY,
    bot TEXT NOT NULL,
    generation INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
"""

COUNTERS = ("joins", "identity_renewals", "kube_certs_issued", "rejected_requests",
            "bots_locked", "kube_unauthorized", "kube_forbidden", "generation_mismatches",
            "impersonated_certs_issued", "list_resources_pages")


class NotInitialised(Exception):
    """The state directory is missing or was never initialised by `start` (or `init`)."""


def db_path(state_dir: Path) -> Path:
    return Path(state_dir) / DB_NAME


def _configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def create(state_dir: Path) -> sqlite3.Connection:
    """Create the state directory (0700) and database file (0600, WAL) if needed, and the schema."""
    files.ensure_dir(Path(state_dir))
    path = db_path(state_dir)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, files.FILE_MODE))
    files.check_private(path)
    conn = _configure(sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                      check_same_thread=False))
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(SCHEMA)
    return conn


def connect(state_dir: Path) -> sqlite3.Connection:
    """A new connection to an initialised state directory; NotInitialised otherwise."""
    path = db_path(state_dir)
    if not path.is_file():
        raise NotInitialised(str(state_dir))
    conn = _configure(sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                      isolation_level=None, check_same_thread=False))
    try:
        if get_setting(conn, "cluster_name") is None:
            raise NotInitialised(str(state_dir))
    except (sqlite3.DatabaseError, NotInitialised):
        conn.close()
        raise NotInitialised(str(state_dir)) from None
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (the write lock is taken up front, so read-modify-write cannot interleave) ... COMMIT."""
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def opened(state_dir: Path) -> Iterator[sqlite3.Connection]:
    """`connect` as a context manager that closes the connection."""
    conn = connect(state_dir)
    try:
        yield conn
    finally:
        conn.close()


# settings -----------------------------------------------------------------------------------------------------

def get_setting(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def set_setting(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


# counters -----------------------------------------------------------------------------------------------------

def bump(conn: sqlite3.Connection, name: str, by: int = 1) -> None:
    """Add to a counter (call inside a transaction, or alone: a single statement is atomic)."""
    conn.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, by))


def counters(conn: sqlite3.Connection) -> dict[str, int]:
    out = dict.fromkeys(COUNTERS, 0)
    out.update({r["name"]: r["value"] for r in conn.execute("SELECT name, value FROM counters")})
    return out


# CAs ----------------------------------------------------------------------------------------------------------

def get_ca(conn: sqlite3.Connection, kind: str) -> tuple[str, str]:
    row = conn.execute("SELECT cert_pem, key_pem FROM cas WHERE kind = ?", (kind,)).fetchone()
    if row is None:
        raise NotInitialised(f"no {kind} CA")
    return row["cert_pem"], row["key_pem"]


def put_ca(conn: sqlite3.Connection, kind: str, cert_pem: str, key_pem: str) -> None:
    conn.execute("INSERT INTO cas (kind, cert_pem, key_pem) VALUES (?, ?, ?)", (kind, cert_pem, key_pem))


def has_ca(conn: sqlite3.Connection, kind: str) -> bool:
    return conn.execute("SELECT 1 FROM cas WHERE kind = ?", (kind,)).fetchone() is not None


# roles --------------------------------------------------------------------------------------------------------

def put_role(conn: sqlite3.Connection, name: str, yaml_text: str, spec: dict[str, Any]) -> bool:
    """Insert or replace a role; True when it is new."""
    new = conn.execute("SELECT 1 FROM roles WHERE name = ?", (name,)).fetchone() is None
    conn.execute("INSERT INTO roles (name, yaml, spec) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                 "yaml = excluded.yaml, spec = excluded.spec", (name, yaml_text, json.dumps(spec)))
    return new


def get_roles(conn: sqlite3.Connection, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Parsed role specs (all, or those named that exist), ordered by name."""
    rows = conn.execute("SELECT spec FROM roles ORDER BY name").fetchall()
    specs = [json.loads(r["spec"]) for r in rows]
    return specs if names is None else [s for s in specs if s["name"] in names]


def delete_role(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("DELETE FROM roles WHERE name = ?", (name,)).rowcount > 0


# bots and tokens ----------------------------------------------------------------------------------------------

def get_bot(conn: sqlite3.Connection, name: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM bots WHERE name = ?", (name,)).fetchone()


def list_bots(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM bots ORDER BY name").fetchall()


def upsert_bot(conn: sqlite3.Connection, name: str, roles: list[str], now: int) -> None:
    conn.execute("INSERT INTO bots (name, roles, created_at) VALUES (?, ?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET roles = excluded.roles", (name, json.dumps(roles), now))


def delete_bot(conn: sqlite3.Connection, name: str) -> bool:
    conn.execute("DELETE FROM tokens WHERE bot = ?", (name,))
    conn.execute("DELETE FROM bot_instances WHERE bot = ?", (name,))
    return conn.execute("DELETE FROM bots WHERE name = ?", (name,)).rowcount > 0


def set_generation(conn: sqlite3.Connection, name: str, generation: int) -> None:
    """The bot's generation label (Teleport's legacy counter, kept in sync by 16.2+ too); locks untouched."""
    conn.execute("UPDATE bots SET generation = ? WHERE name = ?", (generation, name))


def add_instance(conn: sqlite3.Connection, instance_id: str, bot: str, generation: int, now: int) -> None:
    conn.execute("INSERT INTO bot_instances (id, bot, generation, created_at) VALUES (?, ?, ?, ?)",
                 (instance_id, bot, generation, now))


def get_instance(conn: sqlite3.Connection, instance_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM bot_instances WHERE id = ?", (instance_id,)).fetchone()


def set_instance_generation(conn: sqlite3.Connection, instance_id: str, generation: int) -> None:
    conn.execute("UPDATE bot_instances SET generation = ? WHERE id = ?", (generation, instance_id))


def list_instances(conn: sqlite3.Connection, bot: str | None = None) -> list[sqlite3.Row]:
    if bot is None:
        return conn.execute("SELECT * FROM bot_instances ORDER BY bot, created_at, id").fetchall()
    return conn.execute("SELECT * FROM bot_instances WHERE bot = ? ORDER BY created_at, id", (bot,)).fetchall()


def set_lock(conn: sqlite3.Connection, name: str, locked: bool, reason: str | None, now: int) -> bool:
    cur = conn.execute("UPDATE bots SET locked = ?, lock_reason = ?, locked_at = ? WHERE name = ?",
                       (int(locked), reason if locked else None, now if locked else None, name))
    return cur.rowcount > 0


def add_token(conn: sqlite3.Connection, token_sha256: str, bot: str, roles: list[str], expires_at: int) -> None:
    conn.execute("INSERT INTO tokens (token_sha256, bot, roles, expires_at) VALUES (?, ?, ?, ?)",
                 (token_sha256, bot, json.dumps(roles), expires_at))


def get_token(conn: sqlite3.Connection, token_sha256: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM tokens WHERE token_sha256 = ?", (token_sha256,)).fetchone()


def delete_token(conn: sqlite3.Connection, token_sha256: str) -> None:
    conn.execute("DELETE FROM tokens WHERE token_sha256 = ?", (token_sha256,))


# Kubernetes clusters, objects and rolebindings ---------------------------------------------------------------

def put_kube_cluster(conn: sqlite3.Connection, name: str, labels: dict[str, str]) -> bool:
    new = get_kube_cluster(conn, name) is None
    conn.execute("INSERT INTO kube_clusters (name, labels) VALUES (?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET labels = excluded.labels", (name, json.dumps(labels)))
    return new


def get_kube_cluster(conn: sqlite3.Connection, name: str) -> dict[str, str] | None:
    row = conn.execute("SELECT labels FROM kube_clusters WHERE name = ?", (name,)).fetchone()
    return None if row is None else json.loads(row["labels"])


def list_kube_clusters(conn: sqlite3.Connection) -> list[tuple[str, dict[str, str]]]:
    return [(r["name"], json.loads(r["labels"]))
            for r in conn.execute("SELECT name, labels FROM kube_clusters ORDER BY name")]


def delete_kube_cluster(conn: sqlite3.Connection, name: str) -> bool:
    conn.execute("DELETE FROM kube_objects WHERE cluster = ?", (name,))
    conn.execute("DELETE FROM rolebindings WHERE cluster = ?", (name,))
    return conn.execute("DELETE FROM kube_clusters WHERE name = ?", (name,)).rowcount > 0


def put_kube_object(conn: sqlite3.Connection, cluster: str, kind: str, namespace: str, name: str,
                    body: dict[str, Any], replace: bool = False) -> None:
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    conn.execute(f"{verb} INTO kube_objects (cluster, kind, namespace, name, body) VALUES (?, ?, ?, ?, ?)",
                 (cluster, kind, namespace, name, json.dumps(body)))


def get_kube_object(conn: sqlite3.Connection, cluster: str, kind: str, namespace: str,
                    name: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT body FROM kube_objects WHERE cluster = ? AND kind = ? AND namespace = ? "
                       "AND name = ?", (cluster, kind, namespace, name)).fetchone()
    return None if row is None else json.loads(row["body"])


def list_kube_objects(conn: sqlite3.Connection, cluster: str, kind: str,
                      namespace: str | None) -> list[dict[str, Any]]:
    """Objects of a kind, in one namespace or (None) all, ordered by namespace and name."""
    if namespace is None:
        rows = conn.execute("SELECT body FROM kube_objects WHERE cluster = ? AND kind = ? "
                            "ORDER BY namespace, name", (cluster, kind))
    else:
        rows = conn.execute("SELECT body FROM kube_objects WHERE cluster = ? AND kind = ? AND namespace = ? "
                            "ORDER BY name", (cluster, kind, namespace))
    return [json.loads(r["body"]) for r in rows]


def delete_kube_object(conn: sqlite3.Connection, cluster: str, kind: str, namespace: str, name: str) -> bool:
    cur = conn.execute("DELETE FROM kube_objects WHERE cluster = ? AND kind = ? AND namespace = ? AND name = ?",
                       (cluster, kind, namespace, name))
    return cur.rowcount > 0


FIRST_RESOURCE_VERSION = 1000  # above the seed's fixed ones


def next_resource_version(conn: sqlite3.Connection, take: bool = True) -> int:
    """The next resourceVersion of a written object: one counter for every object, as etcd's revision (call
    inside the write's transaction; `take=False` only peeks, for a dry run)."""
    value = int(get_setting(conn, "kube_resource_version") or FIRST_RESOURCE_VERSION) + 1
    if take:
        set_setting(conn, "kube_resource_version", str(value))
    return value


def add_rolebinding(conn: sqlite3.Connection, cluster: str, namespace: str, verbs: list[str],
                    resources: list[str], subject_kind: str, subject_name: str) -> bool:
    cur = conn.execute("INSERT OR IGNORE INTO rolebindings VALUES (?, ?, ?, ?, ?, ?)",
                       (cluster, namespace, json.dumps(verbs), json.dumps(resources), subject_kind, subject_name))
    return cur.rowcount > 0


def list_rolebindings(conn: sqlite3.Connection, cluster: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM rolebindings"
    rows = (conn.execute(sql + " WHERE cluster = ? ORDER BY namespace, subject_kind, subject_name", (cluster,))
            if cluster is not None else conn.execute(sql + " ORDER BY cluster, namespace, subject_name"))
    return [{"cluster": r["cluster"], "namespace": r["namespace"], "verbs": json.loads(r["verbs"]),
             "resources": json.loads(r["resources"]), "subject_kind": r["subject_kind"],
             "subject_name": r["subject_name"]} for r in rows]
