"""The identity's data directory: the one owner of its layout and of every file in it.

Layout (see docs/design.md):

    <data-dir>/                 0700
      config.json               proxy, clusters, pinned CAs, kubeconfig entries written (0600)
      identity.pem              the bot's renewable identity: certificate + private key (0600)
      identity.pending.json     a renewal's new key, persisted before asking (0600, only mid-renewal)
      identity.secret.json      with --store-identity: the identity Secret's version this dir last read or
                                wrote (identity_secret.py; 0600, never stored in the Secret)
      lock                      the identity's lock file (flock; never a data file; never removed)
      kube/<cluster>.cred       per-cluster credential cache, format in cache.py (0600)
      kube/<cluster>.sshcert    the SSH certificate issued with that entry's key, if any (0600; readers check
                                that its key is the entry's: it is written after the entry)
      kubeconfig.yaml           the standalone kubeconfig login writes by default (0600)
      .<name>.<pid>.tmp         a writer's temp file (removed when its writer is dead)

The exec hot path reads `kube/<cluster>.cred` with its own stdlib reader (`cache.read_fast`); everything else
reads and writes through this module.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .. import cache
from ..config import Config
from ..errors import NotLoggedIn, UnsafeState, UsageError
from .files import Dir, Reservation
from .lock import LOCK_NAME, IdentityLock, is_writer

ENV_DATA_DIR = "KUBECTL_TELEPORT_DATA_DIR"
CONFIG, IDENTITY, PENDING, LOCK, KUBE, KUBECONFIG, SECRET_STATE = (
    "config.json", "identity.pem", "identity.pending.json", LOCK_NAME, "kube", "kubeconfig.yaml",
    "identity.secret.json")
OWNED = (CONFIG, IDENTITY, PENDING, KUBECONFIG, SECRET_STATE)  # files logout removes (the lock stays)
ENTRY_SUFFIX = ".cred"
SSH_CERT_SUFFIX = ".sshcert"
PATH_MAX, NAME_MAX = 4096, 255


def check_cluster_name(name: str) -> str:
    """Validate a Kubernetes cluster name (it becomes a file name)."""
    if not cache.valid_cluster_name(name):
        raise UsageError(f"bad Kubernetes cluster name {name[:80]!r}: use letters, digits, '.', '_' and '-'")
    return name


def _not_logged_in(root: Path) -> NotLoggedIn:
    return NotLoggedIn(f"no identity in {root}: run `kubectl-teleport login` first")


def _os_error(action: str, path: Path, exc: OSError) -> UnsafeState:
    return UnsafeState(f"cannot {action} {path} ({exc.strerror or exc}); check the file system (full or "
                       "read-only?) and the directory's owner")


def _reserve_in(directory: Dir, name: str) -> Reservation:
    """A reservation that owns (and closes) `directory`; UnsafeState when the file system refuses."""
    try:
        return directory.reserve(name, owns_dir=True)
    except OSError as exc:
        directory.close()
        raise _os_error("write in", directory.path, exc) from None
    except BaseException:
        directory.close()
        raise


class DataDir:
    """Paths and safe access for one identity's directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        root = Path(root).expanduser().absolute()
        text = str(root)
        if len(text.encode()) >= PATH_MAX or any(len(p.encode()) > NAME_MAX for p in root.parts):
            raise UsageError(f"--data-dir {text[:60]}... is longer than the system allows; choose a shorter path")
        self.root = root
        self.config_path = root / CONFIG
        self.identity_path = root / IDENTITY
        self.pending_path = root / PENDING
        self.lock_path = root / LOCK
        self.kube_dir = root / KUBE
        self.kubeconfig_path = root / KUBECONFIG

    def __str__(self) -> str:
        return str(self.root)

    # directories --------------------------------------------------------------------------------------------

    def exists(self) -> bool:
        return os.path.lexists(self.root)

    def open(self, *, create: bool = False) -> Dir:
        """The checked root directory (UnsafeState when it is not private; NotLoggedIn when absent)."""
        if not create and not self.exists():
            raise _not_logged_in(self.root)
        try:
            return Dir.open(self.root, create=create)
        except FileNotFoundError:
            raise _not_logged_in(self.root) from None
        except OSError as exc:
            raise _os_error("create" if create else "open", self.root, exc) from None

    def kube(self, *, create: bool = False) -> Dir:
        """The checked `kube/` directory."""
        with self.open(create=create) as root:
            try:
                return root.sub(KUBE, create=create)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise
                raise _os_error("create" if create else "open", self.kube_dir, exc) from None

    def create(self) -> None:
        """Create the directory tree with private modes."""
        self.kube(create=True).close()

    def check(self) -> None:
        """Refuse symlinks, strangers' and shared directories before trusting anything in them."""
        with self.open() as root:
            try:
                present = root.exists(KUBE)
            except PermissionError:
                raise UnsafeState(f"cannot read {self.root}: permission denied; it belongs to another user (its "
                                  "owner can share it with `kubectl-teleport init --reader-user`)") from None
        if present:
            self.kube().close()

    def writable(self) -> bool:
        """False for a reader (of `init --reader-user`): it may read the cache, never lock or write."""
        return is_writer(self.root)

    # config -------------------------------------------------------------------------------------------------

    def has_config(self) -> bool:
        return os.path.lexists(self.config_path)

    def load_config(self) -> Config:
        """The config login wrote; NotLoggedIn when there is none or it is damaged."""
        with self.open() as root:
            try:
                data = root.read(CONFIG)
            except FileNotFoundError:
                raise _not_logged_in(self.root) from None
            except PermissionError:
                raise UnsafeState(f"cannot read {self.config_path}: permission denied; the identity belongs to "
                                  "the bot user, run this command as that user") from None
        try:
            return Config.from_json(data)
        except ValueError:
            raise NotLoggedIn(f"{self.config_path} is damaged: log in again with a new token") from None

    def save_config(self, config: Config) -> None:
        self.write(CONFIG, config.to_json())

    # the identity's files -----------------------------------------------------------------------------------

    def read(self, name: str, limit: int = 1 << 20) -> bytes | None:
        """A file of the root directory (identity, pending key), or None when absent."""
        with self.open() as root:
            try:
                return root.read(name, limit)
            except FileNotFoundError:
                return None
            except PermissionError:
                raise UnsafeState(f"cannot read {self.root / name}: permission denied; the identity belongs "
                                  "to the bot user, run this command as that user") from None

    def write(self, name: str, data: bytes) -> None:
        """Write a root file atomically; UnsafeState (one line) when the file system refuses."""
        with self.open(create=True) as root:
            try:
                root.write(name, data)
            except OSError as exc:
                raise _os_error("write in", self.root, exc) from None

    def reserve(self, name: str) -> Reservation:
        """Room for a later write of a root file (before a network call)."""
        return _reserve_in(self.open(create=True), name)

    def remove(self, name: str) -> bool:
        with self.open() as root:
            return root.unlink(name)

    # the lock -----------------------------------------------------------------------------------------------

    def lock(self) -> IdentityLock:
        """The identity's (unacquired) lock."""
        return IdentityLock(self.lock_path)

    def acquire(self, wait: float) -> IdentityLock:
        """Create the directory if needed and take the lock, waiting at most `wait` seconds."""
        self.create()
        lock = self.lock()
        lock.acquire_or_fail(wait, self.root)
        return lock

    # cache entries ------------------------------------------------------------------------------------------

    def entry_name(self, cluster: str) -> str:
        return check_cluster_name(cluster) + ENTRY_SUFFIX

    def cache_path(self, cluster: str) -> Path:
        return self.kube_dir / self.entry_name(cluster)

    def read_entry(self, cluster: str) -> cache.Entry | None:
        """The cluster's cache entry, checked strictly; None when missing or damaged (it will be reissued)."""
        name = self.entry_name(cluster)
        try:
            with self.kube() as kube:
                data = kube.read(name, cache.MAX_SIZE)
        except FileNotFoundError:
            return None
        except PermissionError:
            raise UnsafeState(f"cannot read {self.kube_dir / name}: permission denied; its owner can share it "
                              "with `kubectl-teleport init --reader-user`") from None
        return cache.decode(data)

    def reserve_entry(self, cluster: str) -> Reservation:
        """Room for the cluster's next cache entry (made before asking the server for its certificate)."""
        return _reserve_in(self.kube(create=True), self.entry_name(cluster))

    def write_ssh_cert(self, cluster: str, line: str) -> None:
        """Keep the SSH certificate the cluster's certificate came with (atomically; empty: remove it)."""
        name = check_cluster_name(cluster) + SSH_CERT_SUFFIX
        with self.kube(create=True) as kube:
            if line.strip():
                kube.write(name, line.strip().encode() + b"\n")
            else:
                kube.unlink(name)

    def read_ssh_cert(self, cluster: str) -> str:
        """The SSH certificate line kept for the cluster ("" when none)."""
        try:
            with self.kube() as kube:
                data = kube.read(check_cluster_name(cluster) + SSH_CERT_SUFFIX, 1 << 16)
        except (OSError, UnsafeState):
            return ""
        return data.decode("utf-8", "replace").strip()

    def entry_clusters(self) -> list[str]:
        """Clusters with a cache entry (sorted)."""
        try:
            with self.kube() as kube:
                names = kube.names()
        except FileNotFoundError:
            return []
        return [n.removesuffix(ENTRY_SUFFIX) for n in names
                if n.endswith(ENTRY_SUFFIX) and cache.valid_cluster_name(n.removesuffix(ENTRY_SUFFIX))]

    def remove_entries(self) -> None:
        for cluster in self.entry_clusters():
            with self.kube() as kube:
                kube.unlink(self.entry_name(cluster))

    # hygiene ------------------------------------------------------------------------------------------------

    def remove_stale_temps(self) -> list[str]:
        """Temp files of killed writers (they may hold a private key); call with the lock held."""
        removed = []
        with self.open() as root:
            removed += root.remove_stale_temps()
        if os.path.lexists(self.kube_dir):
            with self.kube() as kube:
                removed += [f"{KUBE}/{n}" for n in kube.remove_stale_temps()]
        return removed

    def remove_all(self) -> list[str]:
        """Logout: every file this module owns, temp files included (the lock file stays); names removed."""
        removed = []
        if os.path.lexists(self.kube_dir):
            with self.kube() as kube:
                for name in kube.names():
                    if (name.endswith((ENTRY_SUFFIX, SSH_CERT_SUFFIX)) or name in kube.temps()) and kube.unlink(name):
                        removed.append(f"{KUBE}/{name}")
            with self.open() as root:
                try:
                    os.rmdir(KUBE, dir_fd=root.fd)
                except OSError:
                    pass
        with self.open() as root:
            for name in root.names():
                if (name in OWNED or name in root.temps()) and root.unlink(name):
                    removed.append(name)
            os.fsync(root.fd)
        return removed


def resolve(data_dir: str | None, proxy: str | None = None) -> DataDir:
    """--data-dir, else $KUBECTL_TELEPORT_DATA_DIR, else the platform's data dir per proxy.

    Without a proxy (status, logout) the platform dir must hold exactly one identity.
    """
    chosen = data_dir or os.environ.get(ENV_DATA_DIR)
    if chosen:
        return DataDir(chosen)
    import platformdirs

    base = Path(platformdirs.user_data_dir("kubectl-teleport", appauthor=False))
    if proxy:
        return DataDir(base / proxy.replace(":", "_").replace("/", "_"))
    found = sorted(base.glob("*/config.json")) if base.exists() else []
    if len(found) == 1:
        return DataDir(found[0].parent)
    if not found:
        raise NotLoggedIn(f"no identity found under {base}: run `kubectl-teleport login` first")
    raise UsageError(f"several identities under {base}: choose one with --data-dir")
