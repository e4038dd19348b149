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

A tbot destination (`credentials --tbot-dir DIR --cache-dir CDIR`) has its own entry in CDIR, named after DIR
(`tbot-<FNV-1a 64 of DIR>.cred`, 0600 in a 0700 dir of ours), rebuilt by `tbotdir.py` whenever tbot rewrites
its files:

    KTB1 <renew_at> <expires_at> <not_after> <source> <length>\\n
    <status>

`source` names the files the entry was made from and their identity when it was made: `i:<dev>.<ino>.<size>.
<mtime_ns>` for DIR/identity, or `p:<...>,<...>` for DIR/tlscert and DIR/key. The hot path `lstat`s those files
and serves the entry only while they are unchanged (and the certificate valid); tbot rewrites them in place,
which changes their size or mtime, so a renewal is picked up by the next call.
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
    data = _read_small(cache_path(data_dir, cluster), False)
    return None if data is None else decode(data)


def absent(data_dir: str, cluster: str) -> bool:
    """True when the cluster's cache file simply does not exist (yet) in a data dir we trust: nothing unusual
    for the careful path to explain (after `read_fast` declined)."""
    if not valid_cluster_name(cluster) or not dirs_trusted(data_dir):
        return False
    try:
        posix.lstat(cache_path(data_dir, cluster))
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def _read_small(path: str, strict_owner: bool) -> bytes | None:
    """A small regular file's bytes (`O_NOFOLLOW`), or None when it is missing or not to be trusted: ours with
    no bits for others (with `strict_owner`, no group bits either, ACL or not)."""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = posix.fstat(fd)
        if st.st_mode & _MODE_FMT != _MODE_FILE:
            return None
        if strict_owner:
            if st.st_uid != posix.geteuid() or st.st_mode & 0o077:
                return None
        elif not _trusted(st, posix.geteuid(), fd):
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
    return data


# tbot destinations ------------------------------------------------------------------------------------------

TBOT_MAGIC = b"KTB1"
TBOT_IDENTITY = b"i"  # the entry was made from DIR/identity
TBOT_PAIR = b"p"  # ... from DIR/tlscert and DIR/key
_TBOT_FILES = {TBOT_IDENTITY: ("identity",), TBOT_PAIR: ("tlscert", "key")}


class TbotEntry(Entry):
    """A tbot destination's cache entry: an Entry plus the `source` it was made from."""

    __slots__ = ("source",)

    def __init__(self, renew_at: int, expires_at: int, not_after: int, source: bytes, status: bytes) -> None:
        super().__init__(renew_at, expires_at, not_after, status)
        self.source = source


def norm_dir(path: str) -> str:
    """An absolute path in its lexical normal form (`//`, `.`, `..` and a trailing `/` gone), the same string
    `os.path.abspath` gives; both paths name a destination's entry by it."""
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def _fnv64(text: str) -> int:
    """FNV-1a, 64 bits (`hash()` is salted per process and hashlib is not a built-in module)."""
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8", "surrogateescape"):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def tbot_name(tbot_dir: str) -> str:
    """The file name (without suffix) of a destination's entry and lock in the cache dir."""
    return f"tbot-{_fnv64(norm_dir(tbot_dir)):016x}"


def tbot_entry_path(cache_dir: str, tbot_dir: str) -> str:
    return f"{cache_dir.rstrip('/')}/{tbot_name(tbot_dir)}.cred"


def tbot_lock_path(cache_dir: str, tbot_dir: str) -> str:
    return f"{cache_dir.rstrip('/')}/{tbot_name(tbot_dir)}.lock"


def file_token(st: posix.stat_result) -> bytes:
    """A file's identity for a source key: device, inode, size, mtime in nanoseconds."""
    return b"%d.%d.%d.%d" % (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def tbot_source(tbot_dir: str, kind: bytes) -> bytes | None:
    """The `source` the destination's files of `kind` have now (`lstat`, never following a symlink); None when
    one is missing or not a regular file."""
    names = _TBOT_FILES.get(kind)
    if names is None:
        return None
    base = norm_dir(tbot_dir)
    tokens = []
    try:
        for name in names:
            st = posix.lstat(f"{base}/{name}")
            if st.st_mode & _MODE_FMT != _MODE_FILE:
                return None
            tokens.append(file_token(st))
    except OSError:
        return None
    return kind + b":" + b",".join(tokens)


def encode_tbot(renew_at: int, expires_at: int, not_after: int, source: bytes, status: bytes) -> bytes:
    """Serialise a tbot destination's entry (tbotdir.py writes it atomically)."""
    header = b"%s %d %d %d %s %d\n" % (TBOT_MAGIC, renew_at, expires_at, not_after, source, len(status))
    return header + status


def decode_tbot(data: bytes) -> TbotEntry | None:
    """Parse a tbot entry's bytes; None when it is truncated, corrupt or of another format."""
    nl = data.find(b"\n", 0, 256)
    if nl < 0:
        return None
    fields = data[:nl].split(b" ")
    if len(fields) != 6 or fields[0] != TBOT_MAGIC or fields[4][:2] not in (b"i:", b"p:"):
        return None
    try:
        renew_at, expires_at, not_after, length = (int(f) for f in (*fields[1:4], fields[5]))
    except ValueError:
        return None
    status = data[nl + 1:]
    if len(status) != length or not status.startswith(b"{") or not status.endswith(b"}"):
        return None
    return TbotEntry(renew_at, expires_at, not_after, fields[4], status)


def cache_dir_ours(cache_dir: str) -> bool:
    """True when the cache dir is a real directory of ours that nobody else may use (no ACL sharing here)."""
    try:
        st = posix.lstat(cache_dir.rstrip("/") or "/")  # "link/" would follow a symlink
    except OSError:
        return False
    return st.st_mode & _MODE_FMT == _MODE_DIR and st.st_uid == posix.geteuid() and not st.st_mode & 0o077


def read_tbot_entry(tbot_dir: str, cache_dir: str) -> TbotEntry | None:
    """A destination's entry whatever its source (the careful path compares it itself); None when it is
    missing, corrupt, or the file or the cache dir is not ours alone."""
    if not cache_dir_ours(cache_dir):
        return None
    data = _read_small(tbot_entry_path(cache_dir, tbot_dir), True)
    return None if data is None else decode_tbot(data)


def read_tbot_fast(tbot_dir: str, cache_dir: str) -> TbotEntry | None:
    """The hot path's read for a tbot destination: the entry while the files it was made from are unchanged;
    None for anything else (the careful path rebuilds or explains)."""
    entry = read_tbot_entry(tbot_dir, cache_dir)
    if entry is None or tbot_source(tbot_dir, entry.source[:1]) != entry.source:
        return None
    return entry
