"""The per-cluster credential cache file: one small file, read with one `posix.read` on every kubectl call.

Standard library only (this module is on the exec hot path): it uses the built-in `posix` module rather than
`os` (importing `os` and what it pulls in is ~1.5 ms of a ~10 ms start), and no pathlib, json or re.

Format of `<data-dir>/kube/<cluster>.cred` (0600, written atomically by the renewal path):

    KTC1 <renew_at> <expires_at> <not_after> <length>\\n
    <status>

`renew_at`, `expires_at` (the ExecCredential expirationTimestamp) and `not_after` are Unix seconds on this
machine's clock, with margins scaled to the certificate's lifetime (policy.timing); `status` is the
ExecCredential's `status` object as compact JSON, exactly `length` bytes, rendered once when the certificate
was issued so every call returns byte-identical PEM until a renewal.
"""

import posix

MAGIC = b"KTC1"
MAX_SIZE = 64 * 1024
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_MODE_FILE = 0o100000  # S_IFREG
_MODE_DIR = 0o040000  # S_IFDIR
_MODE_FMT = 0o170000  # S_IFMT


class Entry:
    """A parsed cache file."""

    __slots__ = ("expires_at", "not_after", "renew_at", "status")

    def __init__(self, renew_at: int, expires_at: int, not_after: int, status: bytes) -> None:
        self.renew_at = renew_at
        self.expires_at = expires_at
        self.not_after = not_after
        self.status = status

    def fresh(self, now: float) -> bool:
        """True while no renewal is due: serve from cache without locking."""
        return now < self.renew_at

    def valid(self, now: float) -> bool:
        """True while kubectl may still use the certificate."""
        return now < self.expires_at


def valid_cluster_name(name: str) -> bool:
    """Kubernetes cluster names we accept as file names: [A-Za-z0-9._-], not starting with a dot."""
    return 0 < len(name) <= 253 and not name.startswith(".") and all(c in _NAME_CHARS for c in name)


def kube_dir(data_dir: str) -> str:
    """The directory holding the per-cluster cache files."""
    return data_dir.rstrip("/") + "/kube"


def cache_path(data_dir: str, cluster: str) -> str:
    """The cache file of one Kubernetes cluster."""
    return f"{kube_dir(data_dir)}/{cluster}.cred"


def encode(renew_at: int, expires_at: int, not_after: int, status: bytes) -> bytes:
    """Serialise an entry (the renewal path writes this atomically)."""
    header = b"%s %d %d %d %d\n" % (MAGIC, renew_at, expires_at, not_after, len(status))
    return header + status


def decode(data: bytes) -> Entry | None:
    """Parse a cache file's bytes; None when it is truncated, corrupt or of another format."""
    nl = data.find(b"\n", 0, 128)
    if nl < 0:
        return None
    fields = data[:nl].split(b" ")
    if len(fields) != 5 or fields[0] != MAGIC:
        return None
    try:
        renew_at, expires_at, not_after, length = (int(f) for f in fields[1:])
    except ValueError:
        return None
    status = data[nl + 1:]
    if len(status) != length or not status.startswith(b"{") or not status.endswith(b"}"):
        return None
    return Entry(renew_at, expires_at, not_after, status)


def has_acl(target: str | int) -> bool:
    """True when `target` (a path or fd) carries a POSIX access ACL, as `init` sets (Linux only: where there are
    no extended attributes, as on macOS, there are no ACLs; the one check, shared with store/)."""
    getxattr = getattr(posix, "getxattr", None)
    if getxattr is None:
        return False
    try:
        if isinstance(target, int):
            return bool(getxattr(target, "system.posix_acl_access"))
        return bool(getxattr(target, "system.posix_acl_access", follow_symlinks=False))
    except OSError:
        return False


def _trusted(st: posix.stat_result, uid: int, target: str | int) -> bool:
    """Nothing for other users; ours without group bits, or shared only through a POSIX ACL (`init`)."""
    if st.st_mode & 0o007:
        return False
    if st.st_uid == uid and not st.st_mode & 0o070:
        return True
    return has_acl(target)


def dirs_trusted(data_dir: str) -> bool:
    """True when the data dir and its `kube/` are real directories that are ours or shared by an ACL (the
    careful path then knows a missing cache file is simply missing)."""
    uid = posix.geteuid()
    try:
        for d in (data_dir, kube_dir(data_dir)):
            st = posix.lstat(d)
            if st.st_mode & _MODE_FMT != _MODE_DIR or not _trusted(st, uid, d):
                return False
    except OSError:
        return False
    return True


def read_fast(data_dir: str, cluster: str) -> Entry | None:
    """The hot path's read: None for anything unusual, which the careful path then explains or repairs.

    Refuses (returns None for) symlinks, files others may read, files of other users that no ACL shares
    with us (see `kubectl-teleport init`), and corrupt files.
    """
    if not valid_cluster_name(cluster) or not dirs_trusted(data_dir):
        return None
    try:
        fd = posix.open(cache_path(data_dir, cluster), posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = posix.fstat(fd)
        if st.st_mode & _MODE_FMT != _MODE_FILE or not _trusted(st, posix.geteuid(), fd):
            return None
        data = b""
        while len(data) < MAX_SIZE:  # a file read may come back short
            chunk = posix.read(fd, MAX_SIZE - len(data))
            if not chunk:
                break
            data += chunk
    except OSError:
        return None
    finally:
        posix.close(fd)
    return decode(data)
