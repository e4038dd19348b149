"""A miss on the exec hot path while another process renews: wait for its certificate, as light as a hit.

In a stampede (hundreds of kubectl calls finding the certificate expired or missing at once) one process takes
the lock and renews on the careful path (`commands/credentials.py`); all the others only wait for its result.
They wait here, with the hot path's modules, this one, `policy` and the lock's (built-in modules only, no
`os`): the careful path's imports cost ~3 ms of CPU per process, which 300 processes on two cores pay in
wall time (docs/benchmarks.md). A waiter does not queue for the lock: between two tries it reads the cache and
serves the renewer's certificate as soon as it is there. Anything unusual (a reader, an unsafe lock file or
data dir, a wait that runs out) goes to the careful path, which says what it is.
"""

import time

from . import cache, execcred, policy
from .store.lock import DEFAULT_WAIT, IdentityLock, Timeout, is_writer, lock_path, timeout_error


def wait(data_dir: str, cluster: str, version: str,
         wait: float = DEFAULT_WAIT) -> "tuple[bytes | None, IdentityLock | None, float]":
    """(the answer, None, 0) when a cached certificate can be served; (None, the held lock, `wait`) when this
    process must renew; (None, None, seconds left to wait) when the careful path must decide. Raises
    LockTimeout when nothing valid is cached and the lock's holder kept it longer than `wait`."""
    entry = cache.read_fast(data_dir, cluster)
    if (entry is None and not cache.absent(data_dir, cluster)) or not is_writer(data_dir):
        return None, None, wait
    lock = IdentityLock(lock_path(data_dir))
    try:
        if lock.try_acquire():
            return None, lock, wait
    except Exception:  # an unsafe or unreadable lock file: the careful path explains it
        return None, None, wait
    now = time.time()
    fresh, valid = entry is not None and entry.fresh(now), entry is not None and entry.valid(now)
    if policy.decide(fresh, valid, writable=True) != policy.WAIT_LOCK:  # SERVE, or TRY_LOCK: someone renews it
        return execcred.render(version, entry.status), None, 0.0  # type: ignore[union-attr]
    started = time.monotonic()
    try:
        answer = lock.acquire(wait, until=lambda: _fresh_answer(data_dir, cluster, version))
    except Timeout:  # nothing valid was cached and the lock's holder did not finish: exit 8 (LockTimeout)
        raise timeout_error(data_dir, wait) from None
    except Exception:
        return None, None, max(0.0, wait - (time.monotonic() - started))
    if answer is not None:
        return answer, None, 0.0
    return None, lock, wait


def _fresh_answer(data_dir: str, cluster: str, version: str) -> bytes | None:
    """The ExecCredential once the cache holds a fresh certificate (the renewer committed it), else None."""
    entry = cache.read_fast(data_dir, cluster)
    if entry is None or not entry.fresh(time.time()):
        return None
    return execcred.render(version, entry.status)
