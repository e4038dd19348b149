"""tbot-compatible file outputs (`--destination DIR` on `login` and `start`) for applications that read files.

Layout of a destination: tbot's Kubernetes output file set, with tbot's names and formats (teleport-wire.md §5),
so a program that reads a tbot destination reads ours unchanged (every file 0600, directories 0700, each
written atomically, which tbot does not; see docs/cli.md):

    DIR/identity              Teleport's identity file: key PEM, SSH certificate line (when there is one), TLS
                              certificate PEM, `@cert-authority` lines, TLS CA PEMs: a pair that always matches
    DIR/tlscert               the default cluster's Kubernetes client certificate (PEM)
    DIR/key                   its private key (PEM: PKCS#1 for RSA, PKCS#8 for ECDSA)
    DIR/key.pub               the key's public half, an authorized_keys line
    DIR/key-cert.pub          the SSH certificate issued with the key (only when the issuer returned one)
    DIR/teleport-host-ca.crt  the Teleport host CA(s): what the Kubernetes endpoint presents (PEM)
    DIR/teleport-user-ca.crt  the Teleport user CA(s): the issuer of tlscert (PEM)
    DIR/kubeconfig.yaml       one context per cluster (`<teleport-cluster>-<kube-cluster>`), current: the default
    DIR/clusters/<name>/      with several clusters, the same file set for each cluster (tbot has one cluster per
                              destination; the top-level files are the default cluster's, as tbot's would be)

The default cluster is the first `--kube-cluster` of the login that set up the destination, so adding a
cluster later never moves the files an application already reads. kubeconfig.yaml runs this plugin (`exec`,
reading the identity's cache) unless the destination is `static`, which embeds certificate and key.
`tlscert` and `key` are two files replaced one after the other; read `identity` or the static kubeconfig when
a reader must never see them from two issuances.

A destination may also be `kubernetes-secret://NAMESPACE/NAME` (kube_secret.py): the default cluster's file set
as the keys of one Opaque Secret, one server-side apply per change, its kubeconfig.yaml always static (the pods
that read the Secret have no data dir to exec into). Only the short-lived certificates go there, never the bot's
renewable identity. Recorded in config.json like a directory, kept renewed by `start`, emptied by `logout`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, Destination
from ..errors import UnsafeState, UsageError
from ..store import files
from ..store.datadir import DataDir
from . import kubeconfig

FILES = ("identity", "tlscert", "key", "key.pub", "key-cert.pub", "teleport-host-ca.crt", "teleport-user-ca.crt",
         "kubeconfig.yaml")
LEGACY = ("tlscacerts",)  # written before the tbot file set; removed on the next write and by logout
CLUSTERS_DIR = "clusters"


@dataclass
class Material:
    """What one cluster's files are made of."""

    name: str
    cert_pem: str
    key_pem: str
    ca_pems: list[str]
    server: str
    tls_server_name: str
    ssh_cert: str = ""  # the SSH certificate issued with key_pem ("" when none or not for this key)
    user_ca_pems: list[str] | None = None
    ssh_ca_lines: list[str] | None = None


SECRET_PREFIX = "kubernetes-secret:"  # noqa: S105 (a URL scheme); kube_secret.SCHEME's start; kube_secret (httpx) is imported only then


def is_secret(dest: str | Path) -> bool:
    """True for a `kubernetes-secret://` destination (a str: Path() would fold its `//`)."""
    return isinstance(dest, str) and dest.startswith(SECRET_PREFIX)


def preflight(dest: str, labels: dict[str, str] | None = None) -> None:
    """Before a login spends its token: a Secret destination must be writable (a server-side dry run)."""
    if is_secret(dest):
        from . import kube_secret

        kube_secret.publish(dest, dict.fromkeys(FILES, b""), labels=labels, dry_run=True)


def check_destination(dd: DataDir, dest: Path) -> Path:
    """The absolute destination; refuse the data dir itself or a place inside it (its files would clash)."""
    dest = Path(dest).expanduser().absolute()
    if dest == dd.root or dd.root in dest.parents:
        raise UsageError(f"--destination {dest} is inside the data dir {dd.root}: choose a directory outside "
                          "it")
    return dest


def record(cfg: Config, dest: Path | str, static: bool, default: str | None) -> bool:
    """Remember the destination in the config (so `start` keeps it updated); True when the config changed."""
    item = Destination(str(dest), static, default)
    for i, old in enumerate(cfg.destinations):
        if old.path == str(dest):
            item.default = old.default or default
            if old == item:
                return False
            cfg.destinations[i] = item
            return True
    cfg.destinations.append(item)
    return True


def clusters_of(dd: DataDir, cfg: Config) -> list[str]:
    """Every cluster of the identity: those login set up, then those issued on first use (sorted)."""
    return sorted(set(cfg.kube_clusters) | set(dd.entry_clusters()))


def material(dd: DataDir, cfg: Config, name: str) -> Material | None:
    """The cluster's certificate, key and endpoint from its cache entry; None when nothing is cached."""
    entry = dd.read_entry(name)
    if entry is None:
        return None
    status = json.loads(entry.status)
    info = cfg.cluster(name)
    key_pem = status["clientKeyData"]
    host = [p for p in cfg.tls_ca_pems if _norm(p) in {_norm(h) for h in cfg.ca_pems}]
    user = [p for p in cfg.tls_ca_pems if p not in host]
    return Material(name, status["clientCertificateData"], key_pem, info.ca_pems or cfg.ca_pems,
                    info.server or cfg.kube_server, info.tls_server_name or cfg.kube_tls_server_name,
                    ssh_cert=_matching_ssh_cert(dd.read_ssh_cert(name), key_pem),
                    user_ca_pems=user or list(cfg.tls_ca_pems), ssh_ca_lines=_ssh_ca_lines(cfg, host))


def _norm(pem: str) -> str:
    return "".join(pem.split())


def _matching_ssh_cert(line: str, key_pem: str) -> str:
    """The SSH certificate line when it certifies `key_pem` ("" otherwise: one left from an earlier key)."""
    if not line:
        return ""
    from cryptography.hazmat.primitives import serialization

    from .. import pki

    try:
        cert = serialization.load_ssh_public_identity(line.encode())
        key = pki.load_private_key(key_pem)
        if isinstance(cert, serialization.SSHCertificate) and pki.public_keys_equal(cert.public_key(), key):
            return line.strip()
    except (ValueError, TypeError):
        pass
    return ""


def _ssh_ca_lines(cfg: Config, host_tls: list[str]) -> list[str]:
    """The identity file's `@cert-authority` lines (known_hosts format): the SSH host CA(s) of the join.

    config.json keeps the SSH CAs in the order of the TLS ones (user CA(s), then host CA(s)); when the lists
    pair up, only the host ones are written, as Teleport does; otherwise every line."""
    lines = [c.strip() for c in cfg.ssh_ca_certs if c.strip()]
    if len(lines) == len(cfg.tls_ca_pems) and host_tls:
        lines = [line for line, tls in zip(lines, cfg.tls_ca_pems, strict=True) if tls in host_tls]
    name = cfg.cluster_name
    return [line if line.startswith("@cert-authority") else f"@cert-authority {name},*.{name} {line} type=host"
            for line in lines]


def _kubeconfig(dd: DataDir, cfg: Config, items: list[Material], static: bool) -> bytes:
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "preferences": {},
                           "clusters": [], "users": [], "contexts": [],
                           "current-context": f"{cfg.cluster_name}-{items[0].name}"}
    for m in items:
        context = f"{cfg.cluster_name}-{m.name}"
        if static:
            user: dict[str, Any] = {"client-certificate-data": base64.b64encode(m.cert_pem.encode()).decode(),
                                    "client-key-data": base64.b64encode(m.key_pem.encode()).decode()}
        else:
            user = kubeconfig.exec_user(dd.root, m.name)
        doc["clusters"].append({"name": context,
                                "cluster": kubeconfig.cluster_entry(m.server, m.ca_pems, m.tls_server_name)})
        doc["users"].append({"name": context, "user": user})
        doc["contexts"].append({"name": context, "context": {"cluster": context, "user": context}})
    return yaml.safe_dump(doc, default_flow_style=False, sort_keys=False).encode()


def _pem(*parts: str) -> bytes:
    return "".join(p.rstrip("\n") + "\n" for p in parts).encode()


def _put(directory: files.Dir, name: str, data: bytes) -> bool:
    """Write atomically unless the file already holds exactly `data` (watchers see no change then)."""
    try:
        if directory.read(name, len(data) + 1) == data:
            return False
    except (OSError, UnsafeState):
        pass
    directory.write(name, data)
    return True


def file_set(m: Material, kubeconfig_yaml: bytes) -> list[tuple[str, bytes | None]]:
    """tbot's Kubernetes output files for one cluster, in write order (None: the file must not be there).

    identity first (always a matching pair), the CAs, then the key before what certifies it, the kubeconfig
    last."""
    from .. import pki

    public_line = pki.ssh_public_key_line(pki.load_private_key(m.key_pem)).strip()
    identity = _pem(m.key_pem, *([m.ssh_cert] if m.ssh_cert else []), m.cert_pem, *(m.ssh_ca_lines or []),
                    *m.ca_pems)
    return [("identity", identity),
            ("teleport-host-ca.crt", _pem(*m.ca_pems)),
            ("teleport-user-ca.crt", _pem(*(m.user_ca_pems or m.ca_pems))),
            ("key", _pem(m.key_pem)), ("key.pub", _pem(public_line)),
            ("key-cert.pub", _pem(m.ssh_cert) if m.ssh_cert else None),
            ("tlscert", _pem(m.cert_pem)),
            ("kubeconfig.yaml", kubeconfig_yaml)]


def _write_set(path: Path, dd: DataDir, cfg: Config, items: list[Material], static: bool) -> bool:
    """The file set for items[0] (kubeconfig.yaml with every item); True when any file changed."""
    changed = False
    with files.Dir.open(path, create=True) as directory:
        for name, data in file_set(items[0], _kubeconfig(dd, cfg, items, static)):
            if data is None:
                changed |= directory.unlink(name)
            else:
                changed |= _put(directory, name, data)
        for name in LEGACY:
            changed |= directory.unlink(name)
        directory.remove_stale_temps()
    return changed


def secret_files(dd: DataDir, cfg: Config, m: Material) -> dict[str, bytes]:
    """The file set of one cluster as a Secret's keys (static kubeconfig; no key-cert.pub without an SSH cert)."""
    return {name: data for name, data in file_set(m, _kubeconfig(dd, cfg, [m], True)) if data is not None}


def _write_secret(dd: DataDir, cfg: Config, url: str, m: Material) -> bool:
    """Apply the file set (with the `--secret-label`s) to the Secret unless it already holds exactly it; True when
    written."""
    from . import kube_secret

    files_ = secret_files(dd, cfg, m)
    labels = cfg.secret_labels
    current = kube_secret.read_secret(kube_secret.parse_url(url), access=kube_secret.load_access())
    if (current is not None and all(current.labels.get(k) == v for k, v in labels.items())
            and {k: current.data.get(k) for k in FILES if k in current.data or k in files_} == files_):
        return False
    kube_secret.publish(url, files_, labels=labels)
    return True


def write(dd: DataDir, cfg: Config, dest: Destination) -> tuple[bool, list[str]]:
    """Bring one recorded destination up to date from the caches; (changed, clusters without a certificate)."""
    names = clusters_of(dd, cfg)
    default = dest.default
    if default in names:
        names.remove(default)
        names.insert(0, default)
    items, missing = [], []
    for name in names:
        m = material(dd, cfg, name)
        if m is None:
            missing.append(name)
        else:
            items.append(m)
    if not items:
        return False, missing
    if is_secret(dest.path):
        return _write_secret(dd, cfg, dest.path, items[0]), missing
    path = Path(dest.path)
    static = dest.static
    try:
        changed = _write_set(path, dd, cfg, items, static)
        if len(items) > 1:
            for m in items:
                changed |= _write_set(path / CLUSTERS_DIR / m.name, dd, cfg, [m], static)
    except OSError as exc:
        raise UnsafeState(f"cannot write the destination {path} ({exc.strerror}); check its owner and "
                          "permissions") from None
    return changed, missing


def refresh(dd: DataDir, cfg: Config) -> list[str]:
    """Update every recorded destination; the paths that changed. Caller holds the identity's lock.

    One that fails (a Secret's API unreachable) does not stop the others; the first error is raised after."""
    from ..errors import PluginError

    changed, first_error = [], None
    for dest in cfg.destinations:
        try:
            if write(dd, cfg, dest)[0]:
                changed.append(dest.path)
        except PluginError as err:
            first_error = first_error or err
    if first_error is not None:
        raise first_error
    return changed


def add(dd: DataDir, cfg: Config, dest: Path | str, *, static: bool, default: str | None) -> Destination:
    """Validate, record (saving the config when it changed) and return the destination's record."""
    if is_secret(dest):
        from . import kube_secret

        url = str(kube_secret.parse_url(str(dest)))  # canonical: the namespace of $POD_NAMESPACE written out
        if record(cfg, url, True, default):
            dd.save_config(cfg)
        return next(d for d in cfg.destinations if d.path == url)
    path = check_destination(dd, Path(dest))
    try:
        files.ensure_dir(path)  # refuses a symlink or a file there before it is recorded
    except OSError as exc:
        raise UnsafeState(f"cannot create the destination {path} ({exc.strerror}); check the path and its "
                          "permissions") from None
    if record(cfg, path, static, default):
        dd.save_config(cfg)
    return next(d for d in cfg.destinations if d.path == str(path))


def write_destination(dd: DataDir, cfg: Config, dest: Path | str, *, static: bool = False,
                      default: str | None = None) -> list[str]:
    """`login --destination DIR`: record DIR and write its files now; the lines to print.

    Called by login with the identity's lock held. `default` is the cluster of the top-level files.
    """
    default = default or next(iter(cfg.kube_clusters), None)
    item = add(dd, cfg, dest, static=static, default=default)
    _, missing = write(dd, cfg, item)
    if is_secret(item.path):
        out = [f"Wrote tbot's Kubernetes output files (static kubeconfig) to Secret {item.path}; "
               "`kubectl-teleport start` keeps it renewed"]
        return out + ([f"No certificate cached yet for {item.default}"] if item.default in missing else [])
    kind = "static kubeconfig" if static else "exec kubeconfig"
    out = [f"Wrote tbot's Kubernetes output files (identity, tlscert, key, ..., kubeconfig.yaml; {kind}) to "
           f"{item.path}; "
           "`kubectl-teleport start` keeps them renewed"]
    if missing:
        out.append(f"No certificate cached yet for {', '.join(missing)}: not in {item.path} until issued")
    return out


def remove(dest: Path | str) -> list[str]:
    """Delete the files a destination holds (only ours) and its directories when empty (logout). A Secret
    destination is emptied: an apply of no keys removes ours, the Secret and others' keys stay (deleting it is the
    admin's call, docs/design.md); a failure is a warning line, logout goes on."""
    if is_secret(dest):
        from ..errors import PluginError
        from . import kube_secret

        try:
            ref = kube_secret.parse_url(str(dest))
            access = kube_secret.load_access()
            if kube_secret.read_secret(ref, access=access) is None:
                return []
            kube_secret.write_files(ref, {}, access=access)
        except PluginError as err:
            return [f"Warning: {err}; remove the credentials from the Secret yourself"]
        return [f"Removed the credentials from Secret {dest}"]
    dest = Path(dest)
    removed = False
    for directory in [*sorted((dest / CLUSTERS_DIR).glob("*")), dest / CLUSTERS_DIR, dest]:
        if directory.is_symlink() or not directory.is_dir():
            continue
        for name in (*FILES, *LEGACY):
            target = directory / name
            if target.is_file() and not target.is_symlink():
                target.unlink()
                removed = True
        try:
            directory.rmdir()
        except OSError:
            pass
    return [f"Removed the credential files in {dest}"] if removed else []
