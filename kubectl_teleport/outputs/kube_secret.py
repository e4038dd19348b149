"""The Kubernetes Secret destination, `kubernetes-secret://NAMESPACE/NAME`: tbot's file set kept as the keys of an
Opaque Secret, for bots that run inside Kubernetes (as tbot's `kubernetes_secret` destination).

- The namespace defaults to `$POD_NAMESPACE` (`kubernetes-secret://NAME`); names are checked as Kubernetes does.
- The Kubernetes API is reached with `$KUBECONFIG` when it is set (client certificate and/or token; no exec or
  auth-provider plugins), else with the pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the token file,
  read again for every request because the kubelet rotates it, and its `ca.crt`). TLS is always verified: against
  the configured CA, else the system's trust store; `insecure-skip-tls-verify` is refused.
- Writes are one server-side apply (field manager `kubectl-teleport`) of the whole file set: the Secret is
  created when missing, keys this manager wrote before but no longer sends are removed, keys others added are
  kept. A key another manager set to another value is a conflict (`SecretConflict`) unless `force`. An optional
  `resource_version` makes the write conditional (the one-writer rule of `--store-identity`, docs/design.md).
- Every call is bounded (`timeout`, one deadline for the whole request, answers capped) and every failure is one
  typed line (errors.py): `UsageError` for a bad URL or configuration, `AccessDenied` for 401/403, `TrustError`
  for a certificate that does not verify, `Unavailable` for the network or a server failure, `SecretConflict`
  for a Secret that another writer changed. Nothing here logs, and no error carries Secret data.

`login`/`start --destination kubernetes-secret://...` call `publish` through outputs/destination.py (a dry run
before a login spends its token); `logout` calls `delete_secret`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from .. import __version__
from ..errors import UNSAFE_STATE, AccessDenied, PluginError, TrustError, Unavailable, UsageError
from ..issuer.http import Deadline, DeadlineHit, hard_deadline, short_error, verify_code

SCHEME = "kubernetes-secret://"
FIELD_MANAGER = "kubectl-teleport"
NAMESPACE_ENV = "POD_NAMESPACE"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# tbot's Kubernetes output file set (docs/design.md, teleport-wire §5): the keys a destination Secret holds.
FILES = ("identity", "tlscert", "key", "key.pub", "key-cert.pub", "teleport-host-ca.crt", "teleport-user-ca.crt",
         "kubeconfig.yaml")
DEFAULT_TIMEOUT = 10.0
MAX_RESPONSE = 4 << 20  # a Secret holds at most 1 MiB (base64 and managedFields make the answer larger)
MAX_SECRET = 1 << 20  # kube-apiserver's limit on a Secret's data
USER_AGENT = f"kubectl-teleport/{__version__}"

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class SecretConflict(PluginError):
    """The Secret changed under us (a stale resourceVersion) or another field manager owns the keys we write."""

    code = UNSAFE_STATE


# the URL --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SecretRef:
    """Which Secret: a namespace and a name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.namespace}/{self.name}"

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets/{self.name}"


def is_secret_url(text: str) -> bool:
    """True for a destination that names a Secret rather than a directory."""
    return text.startswith("kubernetes-secret:")


def parse_url(text: str, environ: Mapping[str, str] | None = None) -> SecretRef:
    """`kubernetes-secret://NAMESPACE/NAME`, or `kubernetes-secret://NAME` (and `:///NAME`) in `$POD_NAMESPACE`."""
    env = os.environ if environ is None else environ
    usage = f"use {SCHEME}NAMESPACE/NAME (or {SCHEME}NAME with ${NAMESPACE_ENV} set)"
    if not text.startswith(SCHEME):
        raise UsageError(f"invalid Secret destination {text!r}: {usage}")
    rest = text[len(SCHEME):]
    if any(c in rest for c in "?#@:") or not rest:
        raise UsageError(f"invalid Secret destination {text!r}: {usage}")
    parts = rest.split("/")
    if len(parts) == 1 or (len(parts) == 2 and not parts[0]):
        namespace, name = env.get(NAMESPACE_ENV, "").strip(), parts[-1]
        if not namespace:
            raise UsageError(f"Secret destination {text!r} names no namespace and ${NAMESPACE_ENV} is not set: set "
                             f"it (the downward API's metadata.namespace) or write {SCHEME}NAMESPACE/{name}")
    elif len(parts) == 2:
        namespace, name = parts
    else:
        raise UsageError(f"invalid Secret destination {text!r}: {usage}")
    if len(namespace) > 63 or not _LABEL.match(namespace):
        raise UsageError(f"invalid Secret destination {text!r}: namespace {namespace!r} is not a valid namespace "
                         "name (lower-case letters, digits and '-', at most 63)")
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        raise UsageError(f"invalid Secret destination {text!r}: {name!r} is not a valid Secret name (lower-case "
                         "letters, digits, '-' and '.', at most 253)")
    return SecretRef(namespace, name)


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels for the Secret, checked as Kubernetes checks them (UsageError otherwise)."""
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if ((prefix and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix)))
                or len(name) > 63 or not _LABEL_NAME.match(name)):
            raise UsageError(f"invalid Secret label key {key!r}: use [prefix/]name with letters, digits, '-', '_' "
                             "and '.' (a name of at most 63)")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            raise UsageError(f"invalid value for Secret label {key!r}: at most 63 letters, digits, '-', '_' and "
                             "'.', starting and ending with a letter or digit")
    return dict(labels)


# how to reach the Kubernetes API --------------------------------------------------------------------------------

@dataclass
class ClusterAccess:
    """Where the Kubernetes API is and how we authenticate to it."""

    server: str
    source: str  # for messages: "the pod's service account" or "kubeconfig PATH (context NAME)"
    ca_pem: str | None = field(default=None, repr=False)  # None: the system's trust store
    tls_server_name: str | None = None
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None  # read for every request (rotated by the kubelet)
    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)

    def bearer(self) -> str | None:
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip() or None
            except (OSError, UnicodeDecodeError) as e:
                raise UsageError(f"cannot read the token file {self.token_file} ({getattr(e, 'strerror', None) or e})"
                                 f" named by {self.source}") from None
        return self.token


def load_access(environ: Mapping[str, str] | None = None, sa_dir: Path = SA_DIR) -> ClusterAccess:
    """`$KUBECONFIG` when set (as tbot: it takes precedence), else the pod's in-cluster configuration."""
    env = os.environ if environ is None else environ
    if env.get("KUBECONFIG", "").strip():
        return load_kubeconfig(env["KUBECONFIG"])
    return load_in_cluster(env, sa_dir)


def load_in_cluster(environ: Mapping[str, str] | None = None, sa_dir: Path = SA_DIR) -> ClusterAccess:
    """The pod's service account: `KUBERNETES_SERVICE_HOST`/`_PORT`, `token` and `ca.crt` in `sa_dir`."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST", "").strip(), env.get("KUBERNETES_SERVICE_PORT", "").strip()
    if not host or not port:
        raise UsageError("no Kubernetes API to keep the Secret in: KUBECONFIG is not set and this is not a pod "
                         "(KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset); set KUBECONFIG")
    if not port.isdigit():
        raise UsageError(f"KUBERNETES_SERVICE_PORT {port!r} is not a port number")
    token_file, ca_file = sa_dir / "token", sa_dir / "ca.crt"
    if not token_file.is_file():
        raise UsageError(f"no service account token at {token_file}: mount one (automountServiceAccountToken) or "
                         "set KUBECONFIG")
    try:
        ca_pem = ca_file.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the cluster CA {ca_file} ({getattr(e, 'strerror', None) or e}); mount the "
                         "service account's ca.crt or set KUBECONFIG") from None
    server_host = f"[{host}]" if ":" in host else host
    return ClusterAccess(f"https://{server_host}:{port}", "the pod's service account", ca_pem=ca_pem,
                         token_file=token_file)


def _named(doc: dict[str, Any], section: str, origin: Path, into: dict[str, tuple[dict[str, Any], Path]]) -> None:
    singular = section[:-1]
    for item in doc.get(section) or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            into.setdefault(item["name"], (item.get(singular) or {}, origin))


def load_kubeconfig(paths: str, context: str | None = None) -> ClusterAccess:
    """The current (or given) context of a `$KUBECONFIG` list, merged as kubectl merges it (first wins)."""
    clusters: dict[str, tuple[dict[str, Any], Path]] = {}
    users: dict[str, tuple[dict[str, Any], Path]] = {}
    contexts: dict[str, tuple[dict[str, Any], Path]] = {}
    current, found = "", []
    for raw in filter(None, (p.strip() for p in paths.split(os.pathsep))):
        path = Path(raw).expanduser()
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise UsageError(f"cannot read the kubeconfig {path} ({getattr(e, 'strerror', None) or type(e).__name__})"
                             "; fix it or point KUBECONFIG elsewhere") from None
        if not isinstance(doc, dict):
            raise UsageError(f"the kubeconfig {path} is not a kubeconfig (not a YAML mapping)")
        found.append(path)
        current = current or str(doc.get("current-context") or "")
        _named(doc, "clusters", path, clusters)
        _named(doc, "users", path, users)
        _named(doc, "contexts", path, contexts)
    if not found:
        raise UsageError(f"KUBECONFIG names no readable file ({paths}); point it at the kubeconfig to use")
    name = context or current
    where = " ".join(map(str, found))
    if not name or name not in contexts:
        raise UsageError(f"the kubeconfig {where} has no " + (f"context {name!r}" if name else "current-context")
                         + "; set one with `kubectl config use-context`")
    ctx = contexts[name][0]
    source = f"kubeconfig {where} (context {name})"
    cluster, cluster_origin = clusters.get(str(ctx.get("cluster")), ({}, found[0]))
    user, user_origin = users.get(str(ctx.get("user")), ({}, found[0]))
    server = str(cluster.get("server") or "")
    if not server.startswith("https://"):
        raise UsageError(f"{source}: the cluster's server {server!r} is not an https:// URL; the Secret is written "
                         "over verified TLS only")
    if cluster.get("insecure-skip-tls-verify"):
        raise UsageError(f"{source}: insecure-skip-tls-verify is set; the Secret is written over verified TLS only: "
                         "give the cluster's certificate-authority instead")
    if cluster.get("proxy-url"):
        raise UsageError(f"{source}: proxy-url is not supported for the Secret destination")
    if user.get("exec") or user.get("auth-provider"):
        raise UsageError(f"{source}: the user runs an exec or auth-provider plugin, which the Secret destination "
                         "does not run; use a kubeconfig with a client certificate or a token (in a pod, unset "
                         "KUBECONFIG to use the service account)")
    if user.get("username") or user.get("password"):
        raise UsageError(f"{source}: basic authentication is not supported; use a client certificate or a token")
    access = ClusterAccess(server.rstrip("/"), source, tls_server_name=cluster.get("tls-server-name") or None)
    access.ca_pem = _data_or_file(cluster, "certificate-authority", cluster_origin, source, text=True)
    access.cert_pem = _data_or_file(user, "client-certificate", user_origin, source)
    access.key_pem = _data_or_file(user, "client-key", user_origin, source)
    if (access.cert_pem is None) != (access.key_pem is None):
        raise UsageError(f"{source}: the user has a client certificate without its key (or a key without its "
                         "certificate)")
    access.token = str(user["token"]) if user.get("token") else None
    if user.get("tokenFile") and not access.token:
        access.token_file = _relative(str(user["tokenFile"]), user_origin)
    return access


def _relative(value: str, origin: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else origin.parent / path


def _data_or_file(entry: dict[str, Any], key: str, origin: Path, source: str, text: bool = False) -> Any:
    """`KEY-data` (base64) or the file `KEY` (relative to the kubeconfig that names it); None when neither."""
    data = entry.get(f"{key}-data")
    try:
        if data:
            raw = base64.b64decode(str(data), validate=True)
        elif entry.get(key):
            raw = _relative(str(entry[key]), origin).read_bytes()
        else:
            return None
    except (binascii.Error, ValueError):
        raise UsageError(f"{source}: {key}-data is not valid base64") from None
    except OSError as e:
        raise UsageError(f"{source}: cannot read {key} {entry.get(key)} ({e.strerror})") from None
    return raw.decode("ascii", "replace") if text else raw


# the client ------------------------------------------------------------------------------------------------------

def _tls_context(access: ClusterAccess) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=access.ca_pem) if access.ca_pem else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if access.cert_pem is not None and access.key_pem is not None:
            _load_pair(ctx, access.cert_pem, access.key_pem)
    except ssl.SSLError:
        raise UsageError(f"{access.source}: the client certificate and key do not load (not PEM, or not a "
                         "pair)") from None
    return ctx


def _load_pair(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """ssl loads key pairs from files only: use an anonymous memory file (Linux), else a private temp file."""
    pem = cert_pem.rstrip(b"\n") + b"\n" + key_pem
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        fd = os.memfd_create("kubectl-teleport-client", os.MFD_CLOEXEC)
        try:
            os.write(fd, pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="kubectl-teleport-") as tmp:  # 0700
        path = Path(tmp) / "client.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        ctx.load_cert_chain(str(path))


@dataclass
class _Answer:
    status: int
    body: dict[str, Any]


def _request(access: ClusterAccess, action: str, method: str, path: str, *, params: dict[str, str] | None = None,
             body: dict[str, Any] | None = None, content_type: str = "application/json",
             timeout: float = DEFAULT_TIMEOUT) -> _Answer:
    """One request inside one deadline; the answer's JSON object (a Status on failure)."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    token = access.bearer()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    content = None
    if body is not None:
        content = json.dumps(body, separators=(",", ":")).encode()
        headers["Content-Type"] = content_type
    extensions = {"sni_hostname": access.tls_server_name} if access.tls_server_name else None
    deadline = Deadline(timeout)
    try:
        with (hard_deadline(timeout),
              httpx.Client(base_url=access.server, verify=_tls_context(access), trust_env=False,
                           timeout=httpx.Timeout(timeout)) as http,
              http.stream(method, path, params=params, content=content, headers=headers,
                          extensions=extensions) as resp):
            raw = _read_capped(resp, deadline)
            status = resp.status_code
    except (DeadlineHit, httpx.TimeoutException):
        raise Unavailable(f"{action}: the Kubernetes API at {access.server} did not answer within {timeout:g} s; "
                          "check that it is reachable") from None
    except httpx.TransportError as exc:
        if verify_code(exc) is not None:
            raise TrustError(f"{action}: the Kubernetes API at {access.server} presented a certificate that does "
                             f"not verify against the CA of {access.source}") from None
        raise Unavailable(f"{action}: cannot reach the Kubernetes API at {access.server} ({short_error(exc)}); "
                          "check that it is reachable") from None
    try:
        obj = json.loads(raw) if raw else {}
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise Unavailable(f"{action}: the Kubernetes API answered HTTP {status} without a JSON object; check that "
                          f"{access.server} is a Kubernetes API server")
    return _Answer(status, obj)


def _read_capped(resp: httpx.Response, deadline: Deadline) -> bytes:
    chunks, size = [], 0
    for chunk in resp.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE:
            raise Unavailable(f"the Kubernetes API's answer is larger than {MAX_RESPONSE} bytes")
        if deadline.left() <= 0:
            raise httpx.ReadTimeout("deadline")
        chunks.append(chunk)
    return b"".join(chunks)


def _fail(action: str, access: ClusterAccess, ref: SecretRef, answer: _Answer, verbs: str) -> PluginError:
    """The typed error for a Kubernetes Status answer (its message names no Secret data)."""
    status = answer.status
    message = str(answer.body.get("message") or f"HTTP {status}").splitlines()[0][:300]
    if status == 401:
        return AccessDenied(f"{action}: the Kubernetes API did not accept the credentials of {access.source} "
                            "(401 Unauthorized); check its token or client certificate")
    if status == 403:
        return AccessDenied(f"{action}: {message}; grant {verbs} on secrets in namespace {ref.namespace} (a Role "
                            "and RoleBinding)")
    if status == 409:
        hint = ("another field manager set these keys: point one writer at a Secret, or remove the other's keys"
                if message.startswith("Apply failed") else
                "another writer changed it since it was read: only one process may keep this Secret")
        return SecretConflict(f"{action}: {message}; {hint}")
    if status == 404:
        return UsageError(f"{action}: {message}; check the namespace in {ref}")
    if status in (400, 415, 422):
        return UsageError(f"{action}: the Kubernetes API refused the request: {message}")
    return Unavailable(f"{action}: the Kubernetes API answered HTTP {status}: {message}; try again later")


# what callers use ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SecretInfo:
    """A Secret as read or written: identity, version, and (when read) its data."""

    ref: SecretRef
    uid: str
    resource_version: str
    created: bool = False
    type: str = "Opaque"
    labels: dict[str, str] = field(default_factory=dict)
    data: dict[str, bytes] = field(default_factory=dict, repr=False)
    annotations: dict[str, str] = field(default_factory=dict)


def _info(ref: SecretRef, obj: dict[str, Any], created: bool = False) -> SecretInfo:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    raw = obj.get("data") if isinstance(obj.get("data"), dict) else {}
    data = {}
    for key, value in raw.items():
        try:
            data[str(key)] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise Unavailable(f"reading Secret {ref}: key {key!r} is not base64; the answer is not a Secret") \
                from None
    return SecretInfo(ref, str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""), created,
                      str(obj.get("type") or "Opaque"), dict(meta.get("labels") or {}), data,
                      dict(meta.get("annotations") or {}))


def check_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    """Annotations for the Secret: keys checked as Kubernetes checks them, values any string."""
    for key, value in annotations.items():
        prefix, _, name = key.rpartition("/")
        if ((prefix and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix)))
                or len(name) > 63 or not _LABEL_NAME.match(name) or not isinstance(value, str)):
            raise UsageError(f"invalid Secret annotation {key!r}: use [prefix/]name with letters, digits, '-', '_' "
                             "and '.'")
    return dict(annotations)


def apply_body(ref: SecretRef, files: Mapping[str, bytes], labels: Mapping[str, str] | None = None,
               resource_version: str | None = None,
               annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The apply patch: an Opaque Secret whose keys are the files (base64), with the labels and annotations if
    any (a resourceVersion makes it conditional)."""
    total = 0
    for key, value in files.items():
        if not _KEY.match(key) or len(key) > 253 or key in (".", ".."):
            raise UsageError(f"{key!r} cannot be a Secret key (letters, digits, '-', '_' and '.')")
        if not isinstance(value, bytes):
            raise TypeError(f"the content of {key!r} must be bytes")
        total += len(value)
    if total > MAX_SECRET:
        raise UsageError(f"the files for Secret {ref} hold {total} bytes, more than a Secret may ({MAX_SECRET})")
    metadata: dict[str, Any] = {"name": ref.name, "namespace": ref.namespace}
    if labels:
        metadata["labels"] = check_labels(labels)
    if annotations:
        metadata["annotations"] = check_annotations(annotations)
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque",
            "data": {key: base64.b64encode(files[key]).decode() for key in sorted(files)}}


def write_files(ref: SecretRef, files: Mapping[str, bytes], *, access: ClusterAccess | None = None,
                labels: Mapping[str, str] | None = None, resource_version: str | None = None, force: bool = False,
                dry_run: bool = False, timeout: float = DEFAULT_TIMEOUT,
                annotations: Mapping[str, str] | None = None) -> SecretInfo:
    """Make the Secret hold exactly `files` as this manager's keys (server-side apply); returns its new version.

    `resource_version` makes the write conditional (SecretConflict when the Secret moved on); `force` takes over
    keys another field manager set; `dry_run` checks permissions and validity without writing (what a login
    should do before it spends its join token).
    """
    access = access or load_access()
    body = apply_body(ref, files, labels, resource_version, annotations)
    params = {"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict"}
    if force:
        params["force"] = "true"
    if dry_run:
        params["dryRun"] = "All"
    action = f"writing Secret {ref}"
    answer = _request(access, action, "PATCH", ref.path, params=params, body=body,
                      content_type="application/apply-patch+yaml", timeout=timeout)
    if answer.status not in (200, 201):
        raise _fail(action, access, ref, answer, "get, create and patch")
    return _info(ref, answer.body, created=answer.status == 201)


def create_secret(ref: SecretRef, files: Mapping[str, bytes], *, access: ClusterAccess | None = None,
                  labels: Mapping[str, str] | None = None, annotations: Mapping[str, str] | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> SecretInfo:
    """Create the Secret only if it does not exist (POST: SecretConflict when another writer created it first).

    A server-side apply would create *or* overwrite (an apply's resourceVersion is ignored when the object is
    missing, kubernetes#106745), so a create that must not clobber another writer's Secret is a plain create;
    the keys are then owned by this manager's `Update` entry, which later forced applies take over."""
    access = access or load_access()
    body = apply_body(ref, files, labels, None, annotations)
    action = f"creating Secret {ref}"
    answer = _request(access, action, "POST", f"/api/v1/namespaces/{ref.namespace}/secrets",
                      params={"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict"}, body=body,
                      timeout=timeout)
    if answer.status == 409 and answer.body.get("reason") == "AlreadyExists":
        raise SecretConflict(f"{action}: another writer created it first; only one process may keep this Secret")
    if answer.status != 201:
        raise _fail(action, access, ref, answer, "get, create and patch")
    return _info(ref, answer.body, created=True)


def read_secret(ref: SecretRef, *, access: ClusterAccess | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> SecretInfo | None:
    """The Secret's data and version; None when it does not exist."""
    access = access or load_access()
    action = f"reading Secret {ref}"
    answer = _request(access, action, "GET", ref.path, timeout=timeout)
    if answer.status == 404 and answer.body.get("reason") == "NotFound":
        return None
    if answer.status != 200:
        raise _fail(action, access, ref, answer, "get")
    if answer.body.get("kind") != "Secret":
        raise Unavailable(f"{action}: the answer is not a Secret")
    return _info(ref, answer.body)


def delete_secret(ref: SecretRef, *, access: ClusterAccess | None = None, resource_version: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Delete the Secret (only at `resource_version`, when given); False when it did not exist."""
    access = access or load_access()
    action = f"deleting Secret {ref}"
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
    if resource_version:
        body["preconditions"] = {"resourceVersion": resource_version}
    answer = _request(access, action, "DELETE", ref.path, body=body, timeout=timeout)
    if answer.status == 404 and answer.body.get("reason") == "NotFound":
        return False
    if answer.status not in (200, 202):
        raise _fail(action, access, ref, answer, "delete")
    return True


def publish(url: str, files: Mapping[str, bytes], *, labels: Mapping[str, str] | None = None,
            environ: Mapping[str, str] | None = None, dry_run: bool = False,
            timeout: float = DEFAULT_TIMEOUT) -> SecretInfo:
    """What `login`/`start --destination kubernetes-secret://...` will call after each issuance (with `dry_run`
    before a login spends its token): resolve the URL and the cluster access, then write the file set."""
    ref = parse_url(url, environ)
    return write_files(ref, files, access=load_access(environ), labels=labels, dry_run=dry_run, timeout=timeout)
