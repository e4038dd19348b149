"""`kubectl-teleport credentials --tbot-dir DIR [--cache-dir CDIR]`, the careful path: everything that is not a
hit on the destination's cache entry.

tbot renews; we only read. The entry is rebuilt (by `tbotdir.py`, the one import of cryptography) when tbot has
rewritten its files, under a per-destination lock in the cache dir, so a stampede after a renewal reads and
parses them once and every other process serves the entry that one wrote. An unchanged destination whose
certificate expired is reported from the entry alone. While the files tbot is writing cannot be read whole,
a still-valid entry from before is served with one warning line.

Light like `credentials.py` (standard library, our cache and lock modules) until a rebuild is needed.
"""

from __future__ import annotations

import os

from .. import cache, clock, execcred, fmt, sitepath
from ..errors import PluginError, UnsafeState, UsageError
from ..store.lock import IdentityLock

LOCK_WAIT = 10.0  # a rebuild reads a few local files; nobody holds the lock this long unless it hangs


def default_cache_dir() -> str:
    """`$XDG_CACHE_HOME/kubectl-teleport/tbot` (platformdirs' user cache dir: `~/.cache/...` on Linux)."""
    sitepath.ensure()
    import platformdirs

    return os.path.join(platformdirs.user_cache_dir("kubectl-teleport", appauthor=False), "tbot")


def paths(tbot_dir: str, cache_dir: str | None) -> tuple[str, str]:
    """The destination and cache dir as absolute, normalised paths (the entry is named after the former)."""
    if not tbot_dir:
        raise UsageError("--tbot-dir needs a directory (tbot's Kubernetes output destination)")
    tbot = cache.norm_dir(os.path.abspath(os.path.expanduser(tbot_dir)))
    cdir = cache.norm_dir(os.path.abspath(os.path.expanduser(cache_dir))) if cache_dir else default_cache_dir()
    return tbot, cdir


class NoCacheDir(UnsafeState):
    """The cache dir cannot be created (a read-only or unwritable file system): read tbot's files uncached."""


def ensure_cache_dir(cache_dir: str) -> None:
    """Create the cache dir (0700, parents too) or tighten ours; refuse one that is not ours alone."""
    if cache.cache_dir_ours(cache_dir):
        return
    from ..store import files

    try:
        files.ensure_dir(cache_dir)
    except OSError as exc:
        raise NoCacheDir(f"cannot create the cache dir {cache_dir} ({exc.strerror or exc}); choose a writable "
                         "--cache-dir") from None
    if not cache.cache_dir_ours(cache_dir):
        st = os.lstat(cache_dir)
        if st.st_uid != os.geteuid():
            raise UnsafeState(f"the cache dir {cache_dir} belongs to uid {st.st_uid}, not to you; choose another "
                              "--cache-dir")
        raise UnsafeState(f"the cache dir {cache_dir} is open to others (mode {st.st_mode & 0o777:o} or an ACL); "
                          f"run: chmod 700 {cache_dir} (and setfacl -b), or choose another --cache-dir")


def entry(tbot_dir: str, cache_dir: str, *, wait: float = LOCK_WAIT) -> cache.TbotEntry:
    """The destination's valid entry: the cached one while tbot's files are unchanged, else rebuilt from them
    under the lock. `tbot_dir`, `cache_dir`: as `paths` returns them."""
    hit = cache.read_tbot_fast(tbot_dir, cache_dir)
    if hit is not None and hit.valid(clock.now()):
        return hit
    try:
        ensure_cache_dir(cache_dir)
    except NoCacheDir as err:
        return _uncached(tbot_dir, err)
    lock = IdentityLock(cache.tbot_lock_path(cache_dir, tbot_dir))
    try:
        lock.acquire_or_fail(wait, cache_dir)
    except PluginError as err:
        return _fallback(err, cache.read_tbot_entry(tbot_dir, cache_dir))
    try:
        latest = cache.read_tbot_entry(tbot_dir, cache_dir)
        now = clock.now()
        if latest is not None and cache.tbot_source(tbot_dir, latest.source[:1]) == latest.source:
            if latest.valid(now):
                return latest  # another process rebuilt it while we waited
            sitepath.ensure()
            from .. import tbotdir

            raise tbotdir.expired_error(tbot_dir, latest.not_after, now)  # unchanged files, nothing to parse
        return _rebuild(tbot_dir, cache_dir, latest)
    finally:
        lock.release()


def _rebuild(tbot_dir: str, cache_dir: str, previous: cache.TbotEntry | None) -> cache.TbotEntry:
    """Read tbot's files into a new entry; while they cannot be read whole, a still-valid previous entry is
    served with one warning line."""
    notes: list[str] = []
    try:
        sitepath.ensure()
        from .. import tbotdir

        fresh = tbotdir.rebuild(tbot_dir, cache_dir, notes=notes)
    except Exception as err:  # whatever failed, a certificate that is still valid is served
        return _fallback(err, previous)
    if notes:
        fmt.warn("; ".join(notes))
    return fresh


def _uncached(tbot_dir: str, why: NoCacheDir) -> cache.TbotEntry:
    """No cache dir to be had (e.g. a read-only home in a container): read tbot's files on every call, with one
    warning line that says how to make it a hit again."""
    sitepath.ensure()
    from .. import tbotdir

    data = tbotdir.encode(tbotdir.read(tbot_dir), clock.now(), tbot_dir)
    fmt.warn(f"{why} (read {tbot_dir} without a cache; every call pays for it)")
    found = cache.decode_tbot(data)
    assert found is not None
    return found


def _fallback(err: Exception, previous: cache.TbotEntry | None) -> cache.TbotEntry:
    """Serve `previous` with one warning line when it is still valid; else raise `err`."""
    if previous is None or not previous.valid(clock.now()):
        raise err
    reason = str(err) if isinstance(err, PluginError) else f"internal error: {type(err).__name__}: {err}"
    fmt.warn(f"{reason[:500]} (serving the certificate read before, valid until "
             f"{fmt.rfc3339(previous.expires_at)})")
    return previous


def credentials(tbot_dir: str, cache_dir: str | None) -> bytes:
    """The ExecCredential JSON for a tbot destination."""
    version = execcred.fast_version(os.environ.get(execcred.ENV)) or execcred.requested_version()
    tbot, cdir = paths(tbot_dir, cache_dir)
    return execcred.render(version, entry(tbot, cdir).status)
