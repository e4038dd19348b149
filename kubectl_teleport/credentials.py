"""`kubectl-teleport credentials`, the careful path: everything that is not a plain cache hit.

One renewal however many processes ask at once: the lock is taken, the cache re-read, and only a process
that still finds the certificate due renews. While the cached certificate is valid nobody waits.

This module stays light (standard library plus our cache and lock modules): in a stampede every waiting
process runs it, and only the one that renews imports the TLS, HTTP and crypto libraries (`_renew`).
"""

from __future__ import annotations

import os

from . import cache, clock, execcred, locking, sitepath
from .errors import NOT_LOGGED_IN, UNAVAILABLE, PluginError

DEFAULT_TIMEOUT = 15.0


def credentials(data_dir: str, cluster: str, *, wait: float = locking.DEFAULT_WAIT,
                timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """The ExecCredential JSON for `cluster`, renewing under the lock when due."""
    version = execcred.fast_version(os.environ.get(execcred.ENV)) or execcred.requested_version()
    data_dir = os.path.abspath(data_dir)
    entry = cache.read_fast(data_dir, cluster) or _checked_entry(data_dir, cluster)
    now = clock.now()
    if entry is not None and entry.fresh(now):
        return execcred.render(version, entry.status)
    if not os.access(data_dir, os.W_OK):  # a reader shared by `kubectl-teleport init`
        return _reader(data_dir, cluster, version, entry)
    lock = locking.IdentityLock(os.path.join(data_dir, "lock"))
    if entry is not None and entry.valid(now):
        if not lock.try_acquire():
            return execcred.render(version, entry.status)  # someone else is renewing it right now
    else:
        try:
            lock.acquire(wait)
        except locking.Timeout:
            raise locking.timeout_error(data_dir, wait) from None
    try:
        latest = cache.read_fast(data_dir, cluster) or _checked_entry(data_dir, cluster)
        if latest is not None and latest.fresh(clock.now()):
            return execcred.render(version, latest.status)
        return execcred.render(version, _renew(data_dir, cluster, latest, timeout).status)
    finally:
        lock.release()


def _checked_entry(data_dir: str, cluster: str) -> cache.Entry | None:
    """Strict checks with clear errors, for whatever the fast read declined (missing, unsafe, corrupt)."""
    from .datadir import DataDir, check_cluster_name

    check_cluster_name(cluster)
    dd = DataDir(data_dir)
    if not dd.root.is_dir():
        raise PluginError(f"no identity in {dd.root}: run `kubectl-teleport login` first", NOT_LOGGED_IN)
    dd.check()
    if not os.path.lexists(dd.config_path):
        raise PluginError(f"no identity in {dd.root}: run `kubectl-teleport login` first", NOT_LOGGED_IN)
    return dd.read_entry(cluster)


def _renew(data_dir: str, cluster: str, cached: cache.Entry | None, timeout: float) -> cache.Entry:
    """Renew under the held lock; serve a still-valid cached certificate with one warning if that fails."""
    sitepath.ensure()
    from . import api, renewal
    from .datadir import DataDir

    try:
        return renewal.refresh(DataDir(data_dir), cluster, clock.now(), api.Deadline(timeout))
    except PluginError as err:
        if cached is not None and cached.valid(clock.now()):
            renewal.warn(f"{err} (serving the cached certificate, valid until {renewal.rfc3339(cached.expires_at)})")
            return cached
        raise


def _reader(data_dir: str, cluster: str, version: str, entry: cache.Entry | None) -> bytes:
    """A reader (shared by `kubectl-teleport init`) only reads: it serves the cache while it is valid and
    cannot renew, lock or write; the bot user's `kubectl-teleport start` keeps the cache fresh."""
    if entry is not None and entry.valid(clock.now()):
        return execcred.render(version, entry.status)
    state = "has expired" if entry is not None else "is missing"
    raise PluginError(f"the cached certificate for {cluster!r} in {data_dir} {state} and this user can only read "
                      "it; renewal is the bot user's job: make sure `kubectl-teleport start` runs as that user",
                      UNAVAILABLE)
