"""The identity's `config.json`: what login learnt and chose, as typed records (everything else comes from the
certificates). Parsing is strict: anything that is not this shape is a damaged config (`ValueError`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

CONFIG_VERSION = 1


@dataclass
class KubeCluster:
    """A Kubernetes cluster login set up: the user asked for and where its endpoint is."""

    kube_user: str | None = None
    server: str = ""
    tls_server_name: str = ""
    ca_pems: list[str] = field(default_factory=list)


@dataclass
class KubeconfigEntry:
    """A cluster/user/context triple login wrote into a kubeconfig file (logout removes it)."""

    path: str
    name: str
    kube_cluster: str
    standalone: bool = False


@dataclass
class Destination:
    """A tbot-style file output kept up to date by login/start."""

    path: str
    static: bool = False
    default: str | None = None  # the cluster of the top-level files


@dataclass
class Config:
    """What login learnt and chose.

    `ca_pems` are the Teleport cluster's host CA(s): the only trust for the auth service and the Kubernetes
    endpoint. The Teleport fields come from `/webapi/find` and the join; every one has a default, so a config
    written before them still reads (it then lacks `roles`: log in again with --role)."""

    proxy: str
    cluster_name: str
    bot: str
    ca_pems: list[str]
    kube_server: str = ""
    kube_tls_server_name: str = ""
    ttl_seconds: int = 3600
    kube_clusters: dict[str, KubeCluster] = field(default_factory=dict)
    kubeconfigs: list[KubeconfigEntry] = field(default_factory=list)
    destinations: list[Destination] = field(default_factory=list)
    version: int = CONFIG_VERSION
    auth_server: str = ""  # --auth-server HOST:PORT; empty: the auth service through the proxy's TLS routing
    tls_routing: bool = True
    server_version: str = ""
    suite: str = ""  # signature algorithm suite ("" before v17: RSA 2048)
    roles: list[str] = field(default_factory=list)  # the roles Kubernetes certificates impersonate
    tls_ca_pems: list[str] = field(default_factory=list)  # every TLS CA of the join: user CA(s), then host CA(s)
    ssh_ca_certs: list[str] = field(default_factory=list)  # authorized_keys lines, same order
    identity_secret: str = ""  # --store-identity kubernetes-secret://NS/NAME: the identity's committed store
    secret_labels: dict[str, str] = field(default_factory=dict)  # --secret-label: on every Secret we write

    def cluster(self, name: str) -> KubeCluster:
        """The recorded cluster, or an empty record for one issued on first use."""
        return self.kube_clusters.get(name) or KubeCluster()

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Config:
        """Parse `config.json`; ValueError for anything that is not a config of this version."""
        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        if obj.get("version", CONFIG_VERSION) != CONFIG_VERSION:
            raise ValueError(f"unknown config version {obj.get('version')!r}")
        try:
            return cls(
                proxy=_str(obj, "proxy"), cluster_name=_str(obj, "cluster_name"), bot=_str(obj, "bot"),
                ca_pems=_str_list(obj.get("ca_pems")), kube_server=_str(obj, "kube_server", ""),
                kube_tls_server_name=_str(obj, "kube_tls_server_name", ""),
                ttl_seconds=_int(obj.get("ttl_seconds", 3600)),
                kube_clusters={_name(k): _kube_cluster(v) for k, v in _dict(obj.get("kube_clusters")).items()},
                kubeconfigs=[KubeconfigEntry(**_dict(e)) for e in _list(obj.get("kubeconfigs"))],
                destinations=[Destination(**_dict(d)) for d in _list(obj.get("destinations"))],
                auth_server=_str(obj, "auth_server", ""), tls_routing=_bool(obj.get("tls_routing", True)),
                server_version=_str(obj, "server_version", ""), suite=_str(obj, "suite", ""),
                roles=_str_list(obj.get("roles")), tls_ca_pems=_str_list(obj.get("tls_ca_pems")),
                ssh_ca_certs=_str_list(obj.get("ssh_ca_certs")),
                identity_secret=_str(obj, "identity_secret", ""), secret_labels=_str_dict(obj.get("secret_labels")),
            )
        except TypeError as exc:
            raise ValueError(str(exc)) from None


def _kube_cluster(value: Any) -> KubeCluster:
    d = _dict(value)
    ca = d.get("ca_pems", d.get("kube_ca_pems"))  # older configs named it kube_ca_pems
    user = d.get("kube_user")
    if user is not None and not isinstance(user, str):
        raise ValueError("kube_user must be a string")
    return KubeCluster(kube_user=user, server=_str(d, "server", ""), tls_server_name=_str(d, "tls_server_name", ""),
                       ca_pems=_str_list(ca))


def _str(obj: dict[str, Any], key: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _name(key: Any) -> str:
    if not isinstance(key, str):
        raise ValueError("cluster names must be strings")
    return key


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected a whole number")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("expected an object")
    return value


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("expected a list")
    return value


def _str_dict(value: Any) -> dict[str, str]:
    items = _dict(value)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in items.items()):
        raise ValueError("expected an object of strings")
    return items


def _str_list(value: Any) -> list[str]:
    items = _list(value)
    if not all(isinstance(v, str) for v in items):
        raise ValueError("expected a list of strings")
    return items
