"""`kubectl-teleport credentials`, the careful path: everything that is not a plain cache hit.

One renewal however many processes ask at once: the lock is taken, the cache re-read, and only a process
that still finds the certificate due renews. While the cached certificate is valid nobody waits.
"""

from __future__ import annotations

import os

from . import api, cache, clock, execcred, locking, renewal
from .datadir import DataDir, check_cluster_name
from .errors import NOT_LOGGED_IN, UNAVAILABLE, PluginError


def credentials(data_dir: str, cluster: str, *, wait: float = locking.DEFAULT_WAIT,
                timeout: float = api.DEFAULT_DEADLINE) -> bytes:
    """The ExecCredential JSON for `cluster`, renewing under the lock when due."""
    version = execcred.requested_version()
    dd = DataDir(data_dir)
    check_cluster_name(cluster)
    if not dd.root.is_dir():
        raise PluginError(f"no identity in {dd.root}: run `kubectl-teleport login` first", NOT_LOGGED_IN)
    dd.check()
    if not os.path.lexists(dd.config_path):
        raise PluginError(f"no identity in {dd.root}: run `kubectl-teleport login` first", NOT_LOGGED_IN)
    entry = renewal.read_entry(dd, cluster)
    now = clock.now()
    if entry is not None and entry.fresh(now):
        return execcred.render(version, entry.status)
    if not os.access(dd.root, os.W_OK):  # a reader shared by `kubectl-teleport init`
        return _reader(dd, cluster, version, entry)
    lock = locking.identity_lock(dd)
    try:
        lock.acquire(timeout=0 if entry is not None and entry.valid(now) else wait)
    except locking.Timeout:
        if entry is not None and entry.valid(clock.now()):
            return execcred.render(version, entry.status)  # someone else is renewing it right now
        raise locking.timeout_error(dd, wait) from None
    try:
        entry = renewal.read_entry(dd, cluster)
        now = clock.now()
        if entry is not None and entry.fresh(now):
            return execcred.render(version, entry.status)
        try:
            entry = renewal.refresh(dd, cluster, now, api.Deadline(timeout))
        except PluginError as err:
            if entry is not None and entry.valid(clock.now()):
                renewal.warn(f"{err} (serving the cached certificate, valid until "
                             f"{renewal.rfc3339(entry.expires_at)})")
                return execcred.render(version, entry.status)
            raise
        return execcred.render(version, entry.status)
    finally:
        lock.release()


def _reader(dd: DataDir, cluster: str, version: str, entry: cache.Entry | None) -> bytes:
    """A reader (shared by `kubectl-teleport init`) only reads: it serves the cache while it is valid and
    cannot renew, lock or write; the bot user's `kubectl-teleport start` keeps the cache fresh."""
    if entry is not None and entry.valid(clock.now()):
        return execcred.render(version, entry.status)
    state = "has expired" if entry is not None else "is missing"
    raise PluginError(f"the cached certificate for {cluster!r} in {dd.root} {state} and this user can only read "
                      "it; renewal is the bot user's job: make sure `kubectl-teleport start` runs as that user",
                      UNAVAILABLE)
