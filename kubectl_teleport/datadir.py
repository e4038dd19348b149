"""The identity's data directory: where each file lives, and the small JSON config that login writes.

Layout (see docs/design.md):

    <data-dir>/                 0700
      config.json               proxy, clusters, pinned CAs, kubeconfig entries written (0600)
      identity.pem              the bot's renewable identity: certificate + private key (0600)
      identity.pending.json     a renewal's new key, persisted before asking (0600, only mid-renewal)
      lock                      the identity's lock file (flock; never the data files)
      kube/<cluster>.cred       per-cluster credential cache, see cache.py (0600)
      kubeconfig.yaml           the standalone kubeconfig login writes by default (0600)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import cache, fsutil
from .errors import NOT_LOGGED_IN, UNSAFE_STATE, USAGE, PluginError

ENV_DATA_DIR = "KUBECTL_TELEPORT_DATA_DIR"
CONFIG_VERSION = 1


@dataclass
class KubeconfigEntry:
    """A cluster/user/context triple login wrote into a kubeconfig file (logout removes it)."""

    path: str
    name: str
    kube_cluster: str
    standalone: bool = False


@dataclass
class Config:
    """What login learnt and chose; everything else is derived from the certificates."""

    proxy: str
    cluster_name: str
    bot: str
    ca_pems: list[str]
    kube_server: str
    kube_tls_server_name: str = ""
    ttl_seconds: int = 3600
    kube_clusters: dict[str, dict] = field(default_factory=dict)  # name -> {"kube_user": str | None}
    kubeconfigs: list[KubeconfigEntry] = field(default_factory=list)
    # tbot-style file outputs kept up to date by login/start: {"path": abs dir, "static": bool, "default": cluster}
    destinations: list[dict] = field(default_factory=list)
    version: int = CONFIG_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Config:
        obj = json.loads(data)
        obj["kubeconfigs"] = [KubeconfigEntry(**e) for e in obj.get("kubeconfigs", [])]
        return cls(**obj)


class DataDir:
    """Paths and safe access for one identity's directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self.config_path = self.root / "config.json"
        self.identity_path = self.root / "identity.pem"
        self.pending_path = self.root / "identity.pending.json"
        self.lock_path = self.root / "lock"
        self.kube_dir = Path(cache.kube_dir(str(self.root)))
        self.kubeconfig_path = self.root / "kubeconfig.yaml"

    def cache_path(self, cluster: str) -> Path:
        """The credential cache file of one Kubernetes cluster."""
        check_cluster_name(cluster)
        return Path(cache.cache_path(str(self.root), cluster))

    def read_entry(self, cluster: str) -> cache.Entry | None:
        """The cluster's cache entry, checked strictly; None when missing or damaged (it will be reissued)."""
        path = self.cache_path(cluster)
        try:
            data = fsutil.read_private(path, cache.MAX_SIZE)
        except FileNotFoundError:
            return None
        except PermissionError:
            raise PluginError(f"cannot read {path}: permission denied; its owner can share it "
                              "with `kubectl-teleport init --reader-user`", UNSAFE_STATE) from None
        except OSError as exc:
            raise PluginError(f"cannot read {path} ({exc.strerror}); remove it if it is a symlink",
                              UNSAFE_STATE) from None
        return cache.decode(data)

    def create(self) -> None:
        """Create the directory tree with private modes."""
        fsutil.ensure_dir(self.root)
        fsutil.ensure_dir(self.kube_dir)

    def check(self) -> None:
        """Refuse symlinks and shared modes on the directories before trusting anything in them."""
        for d in (self.root, self.kube_dir):
            try:
                if os.path.lexists(d):
                    fsutil.check_private(d)
                    if not os.access(d, os.X_OK):
                        raise PermissionError(d)
            except PermissionError:
                raise PluginError(f"cannot read {d}: permission denied; it belongs to another user (its owner "
                                  "can share it with `kubectl-teleport init --reader-user`)",
                                  UNSAFE_STATE) from None

    def has_config(self) -> bool:
        return self.config_path.exists()

    def load_config(self) -> Config:
        """The config login wrote; PluginError(NOT_LOGGED_IN) when there is none or it is damaged."""
        if not self.root.exists():
            raise PluginError(f"no identity in {self.root}: run `kubectl-teleport login` first", NOT_LOGGED_IN)
        self.check()
        try:
            data = fsutil.read_private(self.config_path)
        except FileNotFoundError:
            raise PluginError(f"no identity in {self.root}: run `kubectl-teleport login` first",
                              NOT_LOGGED_IN) from None
        try:
            return Config.from_json(data)
        except (ValueError, TypeError, KeyError):
            raise PluginError(f"{self.config_path} is damaged: log in again with a new token",
                              NOT_LOGGED_IN) from None

    def save_config(self, config: Config) -> None:
        self.create()
        fsutil.atomic_write(self.config_path, config.to_json(), state=True)


def check_cluster_name(name: str) -> str:
    """Validate a Kubernetes cluster name (it becomes a file name)."""
    if not cache.valid_cluster_name(name):
        raise PluginError(f"bad Kubernetes cluster name {name[:80]!r}: use letters, digits, '.', '_' and '-'",
                          USAGE)
    return name


def _base_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("kubectl-teleport", appauthor=False))


def resolve(data_dir: str | None, proxy: str | None = None) -> DataDir:
    """--data-dir, else $KUBECTL_TELEPORT_DATA_DIR, else the platform's data dir per proxy.

    Without a proxy (status, logout) the platform dir must hold exactly one identity.
    """
    chosen = data_dir or os.environ.get(ENV_DATA_DIR)
    if chosen:
        return DataDir(Path(chosen).expanduser())
    base = _base_dir()
    if proxy:
        return DataDir(base / proxy.replace(":", "_").replace("/", "_"))
    found = sorted(p for p in base.glob("*/config.json")) if base.exists() else []
    if len(found) == 1:
        return DataDir(found[0].parent)
    if not found:
        raise PluginError(f"no identity found under {base}: run `kubectl-teleport login` first", NOT_LOGGED_IN)
    raise PluginError(f"several identities under {base}: choose one with --data-dir", USAGE)
