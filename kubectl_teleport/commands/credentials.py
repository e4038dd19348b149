"""`kubectl-teleport credentials`, the careful path: everything that is not a plain cache hit.

The decisions are `policy.decide`'s; this module only reads, locks and renews as it says. One renewal however
many processes ask at once: the lock is taken, the cache re-read, and only a process that still finds the
certificate due renews. Waiters do not queue for the lock once it is done: between two tries they read the
cache, and serve the renewer's certificate as soon as it is there (called from the hot path, `waiter.py` does
the same waiting more lightly and hands the lock it took to this module). While the cached certificate is valid nobody
waits, a renewal may only take `policy.DUE_BUDGET` seconds of network, and whatever goes wrong the cached
certificate is served with one warning line.

This module stays light (standard library plus our cache, policy and lock modules): in a stampede every waiting
process runs it, whether the certificate is expired or missing, and only the one that renews imports the TLS,
HTTP and crypto libraries and the strict data-dir code (`_renew`).
"""

from __future__ import annotations

import os

from .. import cache, clock, execcred, fmt, policy, sitepath
from ..errors import NotLoggedIn, PluginError, Unavailable, UsageError
from ..store.lock import DEFAULT_WAIT, IdentityLock, is_writer, lock_path

DEFAULT_TIMEOUT = 15.0


def credentials(data_dir: str, cluster: str, *, wait: float = DEFAULT_WAIT,
                timeout: float = DEFAULT_TIMEOUT, held: IdentityLock | None = None) -> bytes:
    """The ExecCredential JSON for `cluster`, renewing under the lock when due (`held`: the caller already
    holds the identity's lock, `waiter.wait` took it)."""
    version = execcred.fast_version(os.environ.get(execcred.ENV)) or execcred.requested_version()
    data_dir = os.path.abspath(data_dir)
    lock = held
    if lock is None:
        entry = _read(data_dir, cluster)
        now = clock.now()
        step = policy.decide(_fresh(entry, now), _valid(entry, now), writable=_writable(data_dir))
        if step in (policy.SERVE, policy.READER_SERVE):
            return execcred.render(version, entry.status)  # type: ignore[union-attr]
        if step == policy.READER_FAIL:
            raise _reader_error(data_dir, cluster, entry)
        lock = IdentityLock(lock_path(data_dir))
        try:
            if step == policy.TRY_LOCK:
                if not lock.try_acquire():
                    return execcred.render(version, entry.status)  # type: ignore[union-attr]  # someone renews
            else:
                renewed = lock.acquire_or_fail(wait, data_dir, until=lambda: _fresh_entry(data_dir, cluster))
                if renewed is not None:  # another process renewed it while this one waited
                    return execcred.render(version, renewed.status)
        except PluginError as err:
            if _valid(entry, clock.now()):
                fmt.warn(f"{err} (serving the cached certificate, valid until {fmt.rfc3339(entry.expires_at)})")
                return execcred.render(version, entry.status)  # type: ignore[union-attr]
            raise
    try:
        latest = _read(data_dir, cluster)
        now = clock.now()
        if policy.decide(_fresh(latest, now), _valid(latest, now), writable=True, locked=True) == policy.SERVE:
            return execcred.render(version, latest.status)  # type: ignore[union-attr]
        return execcred.render(version, _renew(data_dir, cluster, latest, timeout).status)
    finally:
        lock.release()


def _fresh_entry(data_dir: str, cluster: str) -> cache.Entry | None:
    """The cache entry if it is fresh now (the fast reader only: waiters poll it)."""
    entry = cache.read_fast(data_dir, cluster)
    return entry if _fresh(entry, clock.now()) else None


def _fresh(entry: cache.Entry | None, now: float) -> bool:
    return entry is not None and entry.fresh(now)


def _valid(entry: cache.Entry | None, now: float) -> bool:
    return entry is not None and entry.valid(now)


def _writable(data_dir: str) -> bool:
    """False for a reader shared by `init` (it may read, never lock or write)."""
    return is_writer(data_dir)


def _read(data_dir: str, cluster: str) -> cache.Entry | None:
    """The cache entry; the strict reader (and its clear errors) only for what the fast one declined while the
    file is there, or when the data dir itself is in doubt. A plain missing certificate stays light."""
    entry = cache.read_fast(data_dir, cluster)
    if entry is not None:
        return entry
    if cache.absent(data_dir, cluster):
        if not os.path.lexists(os.path.join(data_dir, "config.json")):
            raise NotLoggedIn(f"no identity in {data_dir}: run `kubectl-teleport login` first")
        return None
    return _strict_read(data_dir, cluster)


def _strict_read(data_dir: str, cluster: str) -> cache.Entry | None:
    """Strict checks with clear errors, for whatever the fast read declined (unsafe, corrupt, missing dir)."""
    from ..store.datadir import DataDir, check_cluster_name

    check_cluster_name(cluster)
    dd = DataDir(data_dir)
    dd.check()
    if not dd.has_config():
        raise NotLoggedIn(f"no identity in {dd.root}: run `kubectl-teleport login` first")
    return dd.read_entry(cluster)


def _renew(data_dir: str, cluster: str, cached: cache.Entry | None, timeout: float) -> cache.Entry:
    """Renew under the held lock; on any failure serve a still-valid cached certificate with one warning."""
    notes: list[str] = []
    try:
        sitepath.ensure()
        from ..issuer import http, renewal
        from ..store.datadir import DataDir

        dd = DataDir(data_dir)
        dd.remove_stale_temps()
        now = clock.now()
        budget = policy.network_budget(_valid(cached, now), timeout)
        entry = renewal.refresh(dd, cluster, now, http.Deadline(budget), notes)
    except Exception as err:  # whatever failed, a valid certificate is still served
        if cached is None or not policy.serve_after_failure(cached.valid(clock.now())):
            raise
        reason = str(err) if isinstance(err, PluginError) else f"internal error: {type(err).__name__}: {err}"
        fmt.warn("; ".join([*notes, f"renewal failed: {reason}"])[:600] +
                 f" (serving the cached certificate, valid until {fmt.rfc3339(cached.expires_at)})")
        return cached
    if notes:
        fmt.warn("; ".join(notes)[:600])
    return entry


def _reader_error(data_dir: str, cluster: str, entry: cache.Entry | None) -> PluginError:
    """A reader (shared by `kubectl-teleport init`) cannot renew: the bot user's `start` keeps the cache fresh."""
    if not os.path.isdir(data_dir):
        return NotLoggedIn(f"no identity in {data_dir}: run `kubectl-teleport login` first")
    state = "has expired" if entry is not None else "is missing"
    return Unavailable(f"the cached certificate for {cluster!r} in {data_dir} {state} and this user can only read "
                       "it; renewal is the bot user's job: make sure `kubectl-teleport start` runs as that user")


def run(args: object) -> int:
    """`kubectl-teleport credentials` through the full CLI (flags in another order, --timeout, ...)."""
    data_dir, cluster = args.data_dir, args.kube_cluster  # type: ignore[attr-defined]
    tbot_dir, cache_dir = getattr(args, "tbot_dir", None), getattr(args, "cache_dir", None)
    if tbot_dir is not None or cache_dir is not None:
        if tbot_dir is None:
            raise UsageError("--cache-dir goes with --tbot-dir DIR (a tbot destination)")
        if data_dir or cluster:
            raise UsageError("--tbot-dir DIR reads a tbot destination; use it without --data-dir and --kube-cluster")
        from . import tbot_credentials

        execcred.write_stdout(tbot_credentials.credentials(tbot_dir, cache_dir))
        return 0
    if not data_dir or not cluster:
        raise UsageError("credentials needs --data-dir and --kube-cluster (or --tbot-dir for a tbot destination)")
    execcred.write_stdout(credentials(data_dir, cluster, wait=args.lock_timeout,  # type: ignore[attr-defined]
                                      timeout=args.timeout))  # type: ignore[attr-defined]
    return 0
