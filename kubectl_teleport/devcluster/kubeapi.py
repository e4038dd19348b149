"""The devcluster's Kubernetes endpoint: x509 authentication like kube-apiserver, RBAC, and the API that kubectl
and the Python kubernetes client need: discovery, whoami, reads of namespaces, pods and deployments, and Secrets
in a namespace (get, list, create, server-side apply, delete; their semantics are in kubesecrets.py)."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization

from .. import __version__, pki
from . import kubeobjects as ko
from . import kubeproto, rbac, store
from . import kubesecrets as ks
from .authority import rfc3339
from .httpbase import BadBody, BodyTooLarge, TLSHandler
from .tlsidentity import read_identity

UNAUTHORIZED = ko.status(401, "Unauthorized", "Unauthorized")
APPLY_PATCH = "application/apply-patch+yaml"
MAX_FIELD_MANAGER = 128
TRUE_VALUES = ("1", "t", "T", "true", "TRUE", "True")  # Go's strconv.ParseBool


@dataclass
class KubeApp:
    """What the Kubernetes endpoint needs: the state and a clock."""

    state_dir: Path
    address: str = ""  # HOST:PORT clients reach the endpoint at (for /api's serverAddressByClientCIDRs)
    now: Callable[[], datetime] = field(default=pki.utcnow)


@dataclass(frozen=True)
class User:
    """An authenticated Kubernetes user."""

    name: str
    groups: list[str]
    cluster: str
    credential_id: str


class KubeError(Exception):
    """An answer as a Status object."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.body = body


def _not_found_path() -> KubeError:
    return KubeError(ko.status(404, "NotFound", "the server could not find the requested resource", {}))


def _match_labels(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated (all must hold)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = (x.strip() for x in term.split("!=", 1))
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = (x.strip() for x in term.replace("==", "=").split("=", 1))
            if labels.get(k) != v:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def _table_version(accept: str) -> str | None:
    """`v1`/`v1beta1` when the client asks for a meta.k8s.io Table (kubectl get does), else None."""
    versions = []
    for part in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            versions.append(params.get("v", "v1"))
    for v in ("v1", "v1beta1"):
        if v in versions:
            return v
    return None


class KubeApiHandler(TLSHandler):
    """Routes Kubernetes API paths; every answer is JSON (a Status on failure)."""

    server_version = f"kubectl-teleport-devcluster/{__version__}"

    @property
    def app(self) -> KubeApp:
        return self.server.app

    def _dispatch(self) -> None:
        self._consumed = False
        try:
            conn = store.connect(self.app.state_dir)
        except store.NotInitialised:
            self.send_json(500, ko.status(500, "InternalError", "the devcluster state is not available"))
            return
        try:
            user = self._authenticate(conn)
            if user is None:
                store.bump(conn, "kube_unauthorized")
                self._fail(UNAUTHORIZED)
                return
            code, body = self._route(conn, user)
            self.send_json(code, body)
        except (KubeError, ks.SecretError) as e:
            if e.body.get("code") == 403:
                store.bump(conn, "kube_forbidden")
            self._fail(e.body)
        except BodyTooLarge as e:
            self._fail(ko.status(413, "RequestEntityTooLarge", str(e)))
        except BadBody as e:
            self._fail(ko.status(400, "BadRequest", str(e)))
        except Exception as e:
            sys.stderr.write(f"{self.server.name}: internal error on {self.command}: {type(e).__name__}\n")
            self._fail(ko.status(500, "InternalError", "internal error"))
        finally:
            conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def _fail(self, body: dict[str, Any]) -> None:
        if not self.body_consumed():
            self.close_connection = True
        self.send_json(int(body["code"]), body)

    def _authenticate(self, conn: Any) -> User | None:
        """Who the client certificate says, for an existing cluster of ours; None when it is not a kube cert.

        A Teleport certificate (it names a bot, OID 1.3.9999.2.18) is read as Teleport's kube proxy reads it: the
        Kubernetes user and groups from its kube users/groups attributes (no kube user: the Teleport user; several:
        the one in an `Impersonate-User` header), and its bot must not be locked. A certificate that names no bot
        (one an admin signed with the user CA) follows kube-apiserver's x509 rule (CN user, O groups).
        """
        cert = self.peer_cert()
        if cert is None:
            return None
        now = self.app.now()
        if now >= pki.not_after(cert) or now < pki.not_before(cert):
            return None
        ident = read_identity(cert)
        if (not ident.username or ident.renewable or not ident.kube_cluster
                or ident.teleport_cluster != store.get_setting(conn, "cluster_name")
                or store.get_kube_cluster(conn, ident.kube_cluster) is None):
            return None
        cred = "X509SHA256=" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        if not ident.bot_name:
            return User(ident.username, [*ident.groups, "system:authenticated"], ident.kube_cluster, cred)
        bot = store.get_bot(conn, ident.bot_name)
        if bot is None or bot["locked"]:
            raise KubeError(ko.status(403, "Forbidden", f'access denied: lock targeting User:"{ident.username}" is '
                                      "in force" if bot is not None else f"bot {ident.bot_name!r} no longer exists",
                                      {}))
        if len(ident.kube_users) > 1:
            wanted = self.headers.get("Impersonate-User")
            if wanted not in ident.kube_users:
                raise KubeError(ko.status(403, "Forbidden", "please select a user to impersonate: the certificate "
                                          f"grants {', '.join(ident.kube_users)} (Impersonate-User header)", {}))
            user = wanted
        else:
            user = ident.kube_users[0] if ident.kube_users else ident.username
        return User(user, [*ident.kube_groups, "system:authenticated"], ident.kube_cluster, cred)

    # routing ------------------------------------------------------------------------------------------------

    def _route(self, conn: Any, user: User) -> tuple[int, dict[str, Any]]:
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if self.command == "POST" and parts == ["apis", "authentication.k8s.io", "v1", "selfsubjectreviews"]:
            return 201, self._whoami(user)
        reading = self.command in ("GET", "HEAD")
        if not self._is_resource_path(parts):
            raise _not_found_path()
        if parts == ["version"]:
            return self._read_only(reading, ko.KUBE_VERSION)
        if parts == ["openapi", "v3"]:
            return self._read_only(reading, ko.openapi_v3_root())
        if parts[:2] == ["openapi", "v3"] and "/".join(parts[2:]) in ko.openapi_v3_root()["paths"]:
            gv = "/".join(parts[3:])
            return self._read_only(reading, ko.openapi_v3_group_version(gv))
        if parts == ["api"]:
            return self._read_only(reading, ko.api_versions(self.app.address))
        if parts == ["apis"]:
            return self._read_only(reading, ko.api_group_list())
        if len(parts) == 2 and parts[0] == "apis" and any(r.group == parts[1] for r in ko.RESOURCES):
            return self._read_only(reading, ko.api_group(parts[1]))
        gv = "/".join(parts[1:3]) if parts[:1] == ["apis"] else "/".join(parts[1:2])
        rest = parts[3:] if parts[:1] == ["apis"] else parts[2:]
        if parts[:1] not in (["api"], ["apis"]) or gv not in ko.GROUP_VERSIONS:
            raise _not_found_path()
        if not rest:
            return self._read_only(reading, ko.resource_list(gv))
        if query.get("watch") in ("1", "true"):
            raise KubeError(ko.status(405, "MethodNotAllowed", "watch is not supported by the devcluster", {}))
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        resource = next((r for r in ko.RESOURCES if r.api_version == gv and r.plural == rest[0]), None)
        if resource is None or len(rest) > 2 or "get" not in resource.verbs:
            raise _not_found_path()
        if namespace is not None and not resource.namespaced:
            raise _not_found_path()
        name = rest[1] if len(rest) == 2 else None
        verb = {("GET", True): "get", ("GET", False): "list", ("HEAD", True): "get", ("HEAD", False): "list",
                ("POST", False): "create", ("PATCH", True): "patch", ("DELETE", True): "delete"
                }.get((self.command, name is not None))
        if verb not in resource.verbs:
            raise self._method_not_allowed()
        if verb == "create" and namespace is not None:
            return self._create(conn, user, resource, namespace, query)
        if verb == "patch" and namespace is not None and name is not None:
            return self._apply(conn, user, resource, namespace, name, query)
        if verb == "delete" and namespace is not None and name is not None:
            return self._delete(conn, user, resource, namespace, name, query)
        if not reading:
            raise _not_found_path()
        if resource is ko.NAMESPACES and name is not None:
            return self._get(conn, user, resource, "", name, authz_namespace=name)
        if name is not None:
            if namespace is None:
                raise _not_found_path()
            return self._get(conn, user, resource, namespace, name, authz_namespace=namespace)
        return self._list(conn, user, resource, namespace, query)

    def _read_only(self, reading: bool, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not reading:
            raise self._method_not_allowed()
        return 200, body

    def _is_resource_path(self, parts: list[str]) -> bool:
        return bool(parts) and parts[0] in ("api", "apis", "version", "openapi")

    def _method_not_allowed(self) -> KubeError:
        return KubeError(ko.status(405, "MethodNotAllowed",
                                   "the server does not allow this method on the requested resource", {}))

    def _authorise(self, conn: Any, user: User, verb: str, resource: ko.Resource, namespace: str | None,
                   name: str | None) -> None:
        bindings = store.list_rolebindings(conn, user.cluster)
        if not rbac.allowed(bindings, user.name, user.groups, verb, resource.plural, namespace):
            msg = rbac.forbidden_message(user.name, verb, resource.plural, resource.group, namespace, name)
            raise KubeError(ko.status(403, "Forbidden", msg, ko.details(resource, name)))

    def _get(self, conn: Any, user: User, resource: ko.Resource, namespace: str, name: str,
             authz_namespace: str) -> tuple[int, dict[str, Any]]:
        self._authorise(conn, user, "get", resource, authz_namespace, name)
        obj = store.get_kube_object(conn, user.cluster, resource.kind, namespace, name)
        if obj is None:
            qualified = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
            raise KubeError(ko.status(404, "NotFound", f'{qualified} "{name}" not found',
                                      ko.details(resource, name)))
        table_version = _table_version(self.headers.get("Accept", ""))
        if table_version:
            query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
            return 200, ko.table(resource.kind, [obj], self.app.now(), table_version,
                                 query.get("includeObject", "Metadata"), self._rv([obj]), resource.api_version)
        return 200, {"kind": resource.kind, "apiVersion": resource.api_version, **obj}

    def _list(self, conn: Any, user: User, resource: ko.Resource, namespace: str | None,
              query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self._authorise(conn, user, "list", resource, namespace, None)
        objs = store.list_kube_objects(conn, user.cluster, resource.kind, namespace)
        selector = query.get("labelSelector")
        if selector:
            objs = [o for o in objs if _match_labels(selector, o.get("metadata", {}).get("labels", {}))]
        field_selector = query.get("fieldSelector", "")
        for term in filter(None, field_selector.split(",")):
            key, _, value = term.partition("=")
            if key.strip() == "metadata.name":
                objs = [o for o in objs if o["metadata"]["name"] == value.strip("=").strip()]
            elif key.strip() == "metadata.namespace":
                objs = [o for o in objs if o["metadata"].get("namespace") == value.strip("=").strip()]
        table_version = _table_version(self.headers.get("Accept", ""))
        if table_version:
            return 200, ko.table(resource.kind, objs, self.app.now(), table_version,
                                 query.get("includeObject", "Metadata"), self._rv(objs), resource.api_version)
        return 200, {"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                     "metadata": {"resourceVersion": self._rv(objs)}, "items": objs}

    # writes (Secrets) ---------------------------------------------------------------------------------------

    def _dry_run(self, query: dict[str, str], options: str) -> bool:
        value = query.get("dryRun", "")
        if value not in ("", "All"):
            raise ks.invalid("", [("dryRun", "FieldValueNotSupported",
                                   f'Unsupported value: "{value}": supported values: "All"')],
                             kind=options, group="meta.k8s.io")
        return value == "All"

    def _content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    def _unsupported_media(self, accepted: str) -> KubeError:
        self.read_body()
        return KubeError(ko.status(415, "UnsupportedMediaType", "the body of the request was in an unknown "
                                   f"format - accepted media types include: {accepted}", {}))

    def _require_namespace(self, conn: Any, user: User, namespace: str) -> None:
        """Objects are created only in a namespace that exists (kube-apiserver's NamespaceLifecycle)."""
        if store.get_kube_object(conn, user.cluster, "Namespace", "", namespace) is None:
            raise KubeError(ko.status(404, "NotFound", f'namespaces "{namespace}" not found',
                                      ko.details(ko.NAMESPACES, namespace)))

    def _field_manager(self, query: dict[str, str], options: str, default: str = "") -> str:
        manager = query.get("fieldManager", "") or default
        if len(manager) > MAX_FIELD_MANAGER:
            raise ks.invalid("", [("fieldManager", "FieldValueTooLong",
                                   f"Too long: may not be longer than {MAX_FIELD_MANAGER}")],
                             kind=options, group="meta.k8s.io")
        return manager

    def _apply(self, conn: Any, user: User, resource: ko.Resource, namespace: str, name: str,
               query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """PATCH with an apply patch: apply onto the Secret, or create it (which needs `create` too)."""
        self._authorise(conn, user, "patch", resource, namespace, name)
        if self._content_type() != APPLY_PATCH:
            raise self._unsupported_media(APPLY_PATCH)
        raw = self.read_body()
        manager = self._field_manager(query, "PatchOptions")
        if not manager:
            raise ks.missing_field_manager()
        dry_run = self._dry_run(query, "PatchOptions")
        force = query.get("force", "") in TRUE_VALUES
        flat, precondition = ks.desired(ks.decode(raw, yaml_allowed=True), namespace, name,
                                        strict=query.get("fieldValidation") == "Strict")
        now = rfc3339(self.app.now())
        with store.transaction(conn):
            existing = store.get_kube_object(conn, user.cluster, resource.kind, namespace, name)
            if existing is None:  # an apply that creates needs `create` too, as in kube-apiserver
                self._authorise(conn, user, "create", resource, namespace, name)
                self._require_namespace(conn, user, namespace)
                obj = ks.new_object(namespace, name, flat, manager, "Apply", now,
                                    store.next_resource_version(conn, take=not dry_run))
                code = 201
            else:
                changed = ks.apply(existing, flat, precondition, manager, force, now,
                                   store.next_resource_version(conn, take=False))
                if changed is None:
                    return 200, {"kind": resource.kind, "apiVersion": resource.api_version, **existing}
                obj, code = changed, 200
                if not dry_run:
                    store.next_resource_version(conn)
            if not dry_run:
                store.put_kube_object(conn, user.cluster, resource.kind, namespace, name, obj, replace=True)
        return code, {"kind": resource.kind, "apiVersion": resource.api_version, **obj}

    def _create(self, conn: Any, user: User, resource: ko.Resource, namespace: str,
                query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """POST: create a Secret (`kubectl create secret`); its fields are owned by an `Update` manager."""
        self._authorise(conn, user, "create", resource, namespace, None)
        content_type = self._content_type()
        if content_type not in ("application/json", kubeproto.CONTENT_TYPE):
            raise self._unsupported_media(f"application/json, {kubeproto.CONTENT_TYPE}")
        if content_type == "application/json":
            body = ks.decode(self.read_body(), yaml_allowed=False)
        else:
            try:
                body = kubeproto.secret(self.read_body())
            except kubeproto.ProtoError as e:
                raise KubeError(ko.status(400, "BadRequest", f"the body of the request is not a protobuf Secret: "
                                          f"{e}", {})) from None
        agent = self.headers.get("User-Agent", "").split("/", 1)[0][:MAX_FIELD_MANAGER]
        manager = self._field_manager(query, "CreateOptions", default=agent or "unknown")
        dry_run = self._dry_run(query, "CreateOptions")
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise ks.invalid("", [("metadata.name", "FieldValueRequired",
                                   "Required value: name or generateName is required")])
        flat, _ = ks.desired(body, namespace, name, strict=query.get("fieldValidation") == "Strict")
        with store.transaction(conn):
            self._require_namespace(conn, user, namespace)
            if store.get_kube_object(conn, user.cluster, resource.kind, namespace, name) is not None:
                raise ks.already_exists(name)
            obj = ks.new_object(namespace, name, flat, manager, "Update", rfc3339(self.app.now()),
                                store.next_resource_version(conn, take=not dry_run))
            if not dry_run:
                store.put_kube_object(conn, user.cluster, resource.kind, namespace, name, obj)
        return 201, {"kind": resource.kind, "apiVersion": resource.api_version, **obj}

    def _delete(self, conn: Any, user: User, resource: ko.Resource, namespace: str, name: str,
                query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """DELETE, with DeleteOptions' preconditions (uid, resourceVersion) and dry run."""
        self._authorise(conn, user, "delete", resource, namespace, name)
        raw = self.read_body()
        try:
            options = json.loads(raw) if raw.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            options = None
        if not isinstance(options, dict):
            raise KubeError(ko.status(400, "BadRequest", "the body of the request must be DeleteOptions (JSON)", {}))
        dry_run = self._dry_run(query, "DeleteOptions") or options.get("dryRun") == ["All"]
        pre = options.get("preconditions") or {}
        with store.transaction(conn):
            existing = store.get_kube_object(conn, user.cluster, resource.kind, namespace, name)
            if existing is None:
                raise KubeError(ko.status(404, "NotFound", f'{resource.plural} "{name}" not found',
                                          ko.details(resource, name)))
            meta = existing["metadata"]
            for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                if pre.get(field) and pre[field] != meta.get(field):
                    raise ks.conflict(name, f"Precondition failed: {label} in precondition: {pre[field]}, {label} "
                                            f"in object meta: {meta.get(field)}")
            if not dry_run:
                store.delete_kube_object(conn, user.cluster, resource.kind, namespace, name)
                store.next_resource_version(conn)
        return 200, ko.success(resource, name, meta.get("uid", ""))

    @staticmethod
    def _rv(objs: list[dict[str, Any]]) -> str:
        return str(max((int(o.get("metadata", {}).get("resourceVersion", "1")) for o in objs), default=1))

    def _whoami(self, user: User) -> dict[str, Any]:
        """SelfSubjectReview: the request carries nothing we need (kubectl sends it as protobuf)."""
        if "json" in self.headers.get("Content-Type", "application/json"):
            body = self.read_json()
            if body.get("kind") not in (None, "SelfSubjectReview"):
                raise KubeError(ko.status(400, "BadRequest", "the body must be a SelfSubjectReview", {}))
        else:
            self.read_body()
        return {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": rfc3339(self.app.now())},
                "status": {"userInfo": {"username": user.name, "groups": user.groups,
                                        "extra": {"authentication.kubernetes.io/credential-id":
                                                  [user.credential_id]}}}}

