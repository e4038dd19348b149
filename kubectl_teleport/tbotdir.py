"""Reading a tbot destination (`credentials --tbot-dir DIR`): tbot's files, checked, made into a cache entry.

tbot (Teleport Machine ID) writes its Kubernetes output in place (`O_CREAT|O_WRONLY|O_TRUNC`, not atomically), so
a reader can catch a file empty or half-written, or `tlscert` already new while `key` is still old. Every read
here is checked to be whole: the file is the same (inode, size, mtime) before and after reading it and has the
size read, every PEM block that begins also ends, key and certificate parse and belong together. Anything else
is read again a few times over ~150 ms (`RETRY_DELAYS`) and never served.

The files (Teleport's `lib/tbot/identity` artifacts, the identity file format of `api/identityfile`):

- `identity`: the private key PEM, the SSH certificate line, the TLS certificate PEM, `@cert-authority` lines and
  the TLS CA PEMs. Read by PEM block type: the first private key block is the key, the first `CERTIFICATE` the
  client certificate, later ones are CAs; the SSH lines are not needed by kubectl.
- `tlscert` + `key`: the same certificate and key in two files, read when there is no `identity`.

Keys: RSA PKCS#1 (`RSA PRIVATE KEY`), PKCS#8 (`PRIVATE KEY`, tbot's EC keys) and SEC 1 (`EC PRIVATE KEY`).

The entry (format in cache.py) is keyed by the files' identity, so the hot path serves it with one `lstat` more
than a plain hit until tbot rewrites them. Times: the certificate's NotBefore is backdated a minute as in every
Teleport certificate, so NotBefore + 1 min is the cluster's clock at issue; `policy.timing` maps it onto ours
using the file's mtime (when tbot wrote it), but only ever to shorten the certificate's life on our clock (a file
copied or touched long after it was issued must not make an old certificate look younger).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm

from . import cache, clock, execcred, fmt, pki, policy
from .errors import Unavailable, UnsafeState
from .store import files

IDENTITY, TLSCERT, KEY = "identity", "tlscert", "key"
KEY_TYPES = ("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY")
RETRY_DELAYS = (0.01, 0.02, 0.04, 0.08)  # pauses between reads of a half-written file: 150 ms in all
MAX_FILE = 1 << 20
_O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
HINT = "is `tbot` running? (check its log)"


class Incomplete(Exception):
    """A file that is half-written (or was changing while read), or a certificate and key that do not match
    yet: read it again."""

    def __init__(self, message: str, mismatch: bool = False) -> None:
        super().__init__(message)
        self.mismatch = mismatch


@dataclass(frozen=True)
class Snapshot:
    """One consistent read of a destination: the client certificate and key as PEM, their CAs, where they
    came from (`source`, as cache.py keys entries), when tbot wrote them (local clock) and the certificate."""

    cert_pem: str
    key_pem: str
    ca_pems: list[str]
    source: bytes
    written_at: float
    not_before: float
    not_after: float


def pem_blocks(text: str, name: str) -> list[tuple[str, str]]:
    """(type, PEM text) of every PEM block in `text`, lines trimmed as Teleport's reader does; other lines are
    skipped. Incomplete when a block begins and does not end (a half-written file)."""
    blocks: list[tuple[str, str]] = []
    current: list[str] | None = None
    kind = ""
    for raw in text.splitlines():
        line = raw.strip()
        if current is None:
            if line.startswith("-----BEGIN ") and line.endswith("-----"):
                kind, current = line[11:-5], [line]
            continue
        current.append(line)
        if line.startswith("-----END "):
            if line != f"-----END {kind}-----":
                raise Incomplete(f"{name} has a PEM block that ends as another type")
            blocks.append((kind, "\n".join(current) + "\n"))
            current = None
    if current is not None:
        raise Incomplete(f"{name} ends inside a PEM block")
    return blocks


def split_identity(text: str, name: str = IDENTITY) -> tuple[str, str, list[str]]:
    """(key PEM, certificate PEM, CA PEMs) of an identity file; Incomplete when the key or certificate is
    missing (a file caught before tbot finished writing it)."""
    key = cert = None
    cas: list[str] = []
    for kind, pem in pem_blocks(text, name):
        if kind in KEY_TYPES and key is None:
            key = pem
        elif kind == "CERTIFICATE":
            if cert is None:
                cert = pem
            else:
                cas.append(pem)
    if key is None:
        raise Incomplete(f"{name} holds no private key")
    if cert is None:
        raise Incomplete(f"{name} holds no TLS certificate")
    return key, cert, cas


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise Incomplete(f"{name} is not PEM text") from None


def _open_dir(tbot_dir: str) -> int:
    """The destination directory, opened without following a symlink (`O_PATH` when we may only search it)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            return os.open(tbot_dir, flags)
        except PermissionError:
            o_path = getattr(os, "O_PATH", 0)
            if not o_path:
                raise
            return os.open(tbot_dir, o_path | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _dir_error(tbot_dir, exc) from None


def _dir_error(tbot_dir: str, exc: OSError) -> Exception:
    if exc.errno == errno.ENOENT:
        return Unavailable(f"{tbot_dir} does not exist: tbot has not written a Kubernetes output there; {HINT}, "
                           "and is this its destination directory?")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        kind = "a symlink" if os.path.islink(tbot_dir) else "not a directory"
        return UnsafeState(f"{tbot_dir} is {kind}; give --tbot-dir the real directory tbot writes to")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return UnsafeState(f"cannot open {tbot_dir}: permission denied; tbot's owner shares its destination with "
                           "`tbot init --destination-dir DIR --bot-user BOT --reader-user YOU`")
    return exc


def _read_whole(dir_fd: int, tbot_dir: str, name: str) -> tuple[bytes, os.stat_result] | None:
    """A file's bytes and identity, checked unchanged while read; None when it does not exist."""
    path = f"{tbot_dir}/{name}"
    try:
        fd = os.open(name, _O_READ, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeState(f"refusing symlink {path}; tbot writes regular files there") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise UnsafeState(f"cannot read {path}: permission denied; tbot's owner shares its destination with "
                              "`tbot init --destination-dir DIR --bot-user BOT --reader-user YOU`") from None
        raise
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise UnsafeState(f"{path} is not a regular file; tbot writes regular files there")
        if before.st_size > MAX_FILE:
            raise Incomplete(f"{name} is larger than {MAX_FILE} bytes")
        data = files.read_all(fd, MAX_FILE)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if cache.file_token(before) != cache.file_token(after) or len(data) != after.st_size:
        raise Incomplete(f"{name} changed while it was read")
    return data, after


def _unchanged(dir_fd: int, name: str, st: os.stat_result) -> bool:
    try:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return cache.file_token(now) == cache.file_token(st)


def read_once(dir_fd: int, tbot_dir: str) -> Snapshot:
    """One attempt: `identity` if tbot wrote one, else `tlscert` + `key`. Incomplete means: try again."""
    ident = _read_whole(dir_fd, tbot_dir, IDENTITY)
    if ident is not None:
        data, st = ident
        key_pem, cert_pem, ca_pems = split_identity(_decode(data, IDENTITY))
        source = cache.TBOT_IDENTITY + b":" + cache.file_token(st)
        written = st.st_mtime
    else:
        cert_file = _read_whole(dir_fd, tbot_dir, TLSCERT)
        key_file = _read_whole(dir_fd, tbot_dir, KEY)
        if cert_file is None or key_file is None:
            raise Unavailable(f"no credentials in {tbot_dir} (neither `identity` nor `tlscert` and `key`): tbot has "
                              f"not written its Kubernetes output there yet; {HINT}")
        certs = [pem for kind, pem in pem_blocks(_decode(cert_file[0], TLSCERT), TLSCERT) if kind == "CERTIFICATE"]
        keys = [pem for kind, pem in pem_blocks(_decode(key_file[0], KEY), KEY) if kind in KEY_TYPES]
        if not certs:
            raise Incomplete(f"{TLSCERT} holds no certificate")
        if not keys:
            raise Incomplete(f"{KEY} holds no private key")
        if not (_unchanged(dir_fd, TLSCERT, cert_file[1]) and _unchanged(dir_fd, KEY, key_file[1])):
            raise Incomplete(f"{TLSCERT} or {KEY} changed while they were read")
        cert_pem, key_pem, ca_pems = certs[0], keys[0], certs[1:]
        source = (cache.TBOT_PAIR + b":" + cache.file_token(cert_file[1]) + b"," +
                  cache.file_token(key_file[1]))
        written = max(cert_file[1].st_mtime, key_file[1].st_mtime)
    try:
        cert = pki.load_cert(cert_pem)
    except (ValueError, UnsupportedAlgorithm):
        raise Incomplete("the TLS certificate does not parse") from None
    try:
        key = pki.load_private_key(key_pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise Incomplete("the private key does not parse (or is not an RSA or ECDSA key)") from None
    if not pki.public_keys_equal(cert.public_key(), key):
        raise Incomplete("the TLS certificate does not match the private key", mismatch=True)
    return Snapshot(cert_pem, key_pem, ca_pems, source, written, pki.not_before(cert).timestamp(),
                    pki.not_after(cert).timestamp())


def read(tbot_dir: str, *, sleep: Callable[[float], None] = time.sleep) -> Snapshot:
    """A consistent snapshot of the destination, read again while it is half-written (at most ~150 ms)."""
    dir_fd = _open_dir(tbot_dir)
    try:
        for delay in (*RETRY_DELAYS, None):
            try:
                return read_once(dir_fd, tbot_dir)
            except Incomplete as exc:
                if delay is None:
                    raise _final_error(tbot_dir, exc) from None
                sleep(delay)
    finally:
        os.close(dir_fd)
    raise AssertionError("unreachable")


def _final_error(tbot_dir: str, exc: Incomplete) -> Unavailable:
    tries = f"{len(RETRY_DELAYS) + 1} reads over {sum(RETRY_DELAYS) * 1000:.0f} ms"
    if exc.mismatch:
        return Unavailable(f"the certificate in {tbot_dir} does not match its private key ({tries}), so it is not "
                           f"served; {HINT}; restarting tbot writes a new pair")
    return Unavailable(f"the credentials in {tbot_dir} are incomplete or damaged ({exc}; {tries}), so they are not "
                       f"served; {HINT}")


def timing(snap: Snapshot) -> policy.Timing:
    """Margins scaled to the certificate's lifetime, on our clock; the mtime may only make it shorter."""
    issued = policy.server_now(snap.not_before, snap.not_after)
    return policy.timing(snap.not_before, snap.not_after, min(snap.written_at, issued))


def expired_error(tbot_dir: str, not_after: float, now: float) -> Unavailable:
    """The certificate in the destination has expired (or is about to, within its margin)."""
    when = (f"expired at {fmt.rfc3339(not_after)}" if now >= not_after else
            f"expires at {fmt.rfc3339(not_after)}, too soon to hand to kubectl")
    return Unavailable(f"the certificate tbot wrote to {tbot_dir} {when}: tbot is not renewing it; {HINT}")


def encode(snap: Snapshot, now: float, tbot_dir: str) -> bytes:
    """The cache entry for a snapshot; Unavailable when its certificate is no longer usable. The entry is
    fresh until the expiry kubectl is told: tbot renews, not us, and a rewrite changes the source."""
    t = timing(snap)
    if now >= t.expires_at:
        raise expired_error(tbot_dir, t.not_after, now)
    status = execcred.status_json(snap.cert_pem, snap.key_pem, fmt.rfc3339(t.expires_at))
    return cache.encode_tbot(t.expires_at, t.expires_at, t.not_after, snap.source, status)


def check_cache_dir(directory: files.Dir) -> None:
    """The cache dir holds copies of private keys: it must be ours alone (no ACL sharing either)."""
    st = os.fstat(directory.fd)
    if st.st_uid != os.geteuid():
        raise UnsafeState(f"the cache dir {directory.path} belongs to uid {st.st_uid}, not to you; choose another "
                          "--cache-dir")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise UnsafeState(f"the cache dir {directory.path} is open to others (mode {stat.S_IMODE(st.st_mode):o}); "
                          f"run: chmod 700 {directory.path} (and setfacl -b), or choose another --cache-dir")


def rebuild(tbot_dir: str, cache_dir: str, *, sleep: Callable[[float], None] = time.sleep,
            notes: list[str] | None = None) -> cache.TbotEntry:
    """Read the destination and write its entry atomically (caller holds the entry's lock). A cache that
    cannot be written is only a note: the credential read is still served."""
    data = encode(read(tbot_dir, sleep=sleep), clock.now(), tbot_dir)
    try:
        with files.Dir.open(cache_dir, create=True) as directory:
            check_cache_dir(directory)
            directory.write(cache.tbot_name(tbot_dir) + ".cred", data)
            directory.remove_stale_temps()  # a writer killed before its rename left a copy of the key
    except OSError as exc:
        if notes is None:
            raise
        notes.append(f"cannot write the cache in {cache_dir} ({exc.strerror or exc}); every call reads {tbot_dir} "
                     "again until it can")
    entry = cache.decode_tbot(data)
    assert entry is not None
    return entry


# tbot's kubeconfig.yaml --------------------------------------------------------------------------------------

KUBECONFIG = "kubeconfig.yaml"


@dataclass(frozen=True)
class KubeContext:
    """One context of tbot's kubeconfig.yaml: its name, its cluster's endpoint and CA, its namespace."""

    name: str
    server: str
    ca_pem: str
    tls_server_name: str
    namespace: str | None


def _contexts(doc: object) -> list[KubeContext]:
    """The contexts of a parsed kubeconfig, the current one first; Incomplete for anything malformed."""
    import base64
    import binascii

    if not isinstance(doc, dict):
        raise Incomplete(f"{KUBECONFIG} is not a kubeconfig")
    clusters = {c.get("name"): c.get("cluster") for c in doc.get("clusters") or [] if isinstance(c, dict)}
    out = []
    for item in doc.get("contexts") or []:
        ctx = item.get("context") if isinstance(item, dict) else None
        cluster = clusters.get(ctx.get("cluster")) if isinstance(ctx, dict) else None
        if not isinstance(item.get("name"), str) or not isinstance(cluster, dict):
            raise Incomplete(f"{KUBECONFIG} has a context without its cluster")
        server, ca_data = cluster.get("server"), cluster.get("certificate-authority-data")
        if not isinstance(server, str) or not server.startswith("https://") or not isinstance(ca_data, str):
            raise Incomplete(f"{KUBECONFIG}: cluster of context {item['name'][:80]!r} has no https server or "
                             "certificate-authority-data")
        try:
            ca_pem = base64.b64decode(ca_data, validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            raise Incomplete(f"{KUBECONFIG}: certificate-authority-data is not base64 PEM") from None
        if not any(kind == "CERTIFICATE" for kind, _ in pem_blocks(ca_pem, KUBECONFIG)):
            raise Incomplete(f"{KUBECONFIG}: certificate-authority-data holds no certificate")
        namespace = ctx.get("namespace")
        out.append(KubeContext(item["name"], server, ca_pem, str(cluster.get("tls-server-name") or ""),
                               namespace if isinstance(namespace, str) and namespace else None))
    if not out:
        raise Incomplete(f"{KUBECONFIG} has no contexts")
    current = doc.get("current-context")
    return sorted(out, key=lambda c: c.name != current)


def read_kubeconfig(tbot_dir: str, *, sleep: Callable[[float], None] = time.sleep) -> list[KubeContext]:
    """The contexts of tbot's DIR/kubeconfig.yaml (written in place too: read again while it is incomplete)."""
    import yaml

    dir_fd = _open_dir(tbot_dir)
    try:
        for delay in (*RETRY_DELAYS, None):
            try:
                got = _read_whole(dir_fd, tbot_dir, KUBECONFIG)
                if got is None:
                    raise Unavailable(f"no {KUBECONFIG} in {tbot_dir}: give --tbot-dir the destination of tbot's "
                                      f"`kubernetes` output, once tbot has written it; {HINT}")
                try:
                    doc = yaml.safe_load(got[0].decode("utf-8"))
                except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
                    raise Incomplete(f"{KUBECONFIG} is not valid YAML") from None
                return _contexts(doc)
            except Incomplete as exc:
                if delay is None:
                    raise Unavailable(f"cannot use {tbot_dir}/{KUBECONFIG}: {exc}; is it tbot's Kubernetes "
                                      "output?") from None
                sleep(delay)
    finally:
        os.close(dir_fd)
    raise AssertionError("unreachable")
