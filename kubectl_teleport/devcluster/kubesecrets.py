"""Secrets for the devcluster's Kubernetes endpoint: kube-apiserver's checks and a small server-side apply.

Pure functions over JSON-shaped objects (kubeapi.py does the HTTP, RBAC and storage). What is modelled:

- The fields an apply can own: `type`, `immutable`, `data.<key>`, `metadata.labels.<key>` and
  `metadata.annotations.<key>`. Every write records which manager set which fields in `metadata.managedFields`
  (FieldsV1, with operation `Apply` for an apply patch and `Update` for a create), as kube-apiserver does.
- An apply sets the fields it names and removes those its manager applied before but names no more, unless
  another manager owns them too. A field another manager owns with a different value is a **conflict**: 409 with
  kube-apiserver's message and causes (`Apply failed with 1 conflict: conflict with "m": .data.k`), unless
  `force=true`, which takes the field over. The same value from two managers is shared ownership, no conflict.
- `stringData` is merged into `data` (it wins; the key is then owned as `data.<key>`); `type` defaults to
  `Opaque` and cannot change; `immutable: true` freezes `data` and itself.
- A `metadata.resourceVersion` in an apply is a precondition: 409 when the object has moved on. When the object
  does not exist, it is created and the resourceVersion ignored (kube-apiserver does this for Secrets and
  ConfigMaps, kubernetes/kubernetes#106745).
- A write that changes nothing (values and ownership) returns None: the resourceVersion does not move.
Not modelled: list-type fields, subresources, `deletecollection`, `update` (PUT), watches.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from typing import Any

import yaml

from . import kubeobjects as ko

Path = tuple[str, ...]
Flat = dict[Path, Any]

KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
TOP_LEVEL = {"apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"}
METADATA = {"name", "namespace", "labels", "annotations", "resourceVersion", "uid", "creationTimestamp",
            "generateName", "managedFields"}
KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
           "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
NAME_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
            "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                   "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                   "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
NAME_PART_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
                 "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                 "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
OPTIMISTIC_LOCK = "the object has been modified; please apply your changes to the latest version and try again"


class SecretError(Exception):
    """A request that kube-apiserver would refuse; `body` is the Status to answer with."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.body = body


def _bad_request(message: str) -> SecretError:
    return SecretError(ko.status(400, "BadRequest", message))


def invalid(name: str, causes: list[tuple[str, str, str]], kind: str = "Secret", group: str = "") -> SecretError:
    """422 Invalid: `causes` are (field, reason, message) as kube-apiserver's field errors."""
    detail = ", ".join(f"{field}: {message}" for field, _, message in causes)
    shown = f"{kind}.{group}" if group else kind
    body = ko.status(422, "Invalid", f'{shown} "{name}" is invalid: {detail}',
                     {"name": name, **({"group": group} if group else {}), "kind": kind,
                      "causes": [{"reason": reason, "message": message, "field": field}
                                 for field, reason, message in causes]})
    return SecretError(body)


def conflict(name: str, reason: str) -> SecretError:
    """409 Conflict: `Operation cannot be fulfilled on secrets "NAME": REASON`."""
    return SecretError(ko.status(409, "Conflict", f'Operation cannot be fulfilled on secrets "{name}": {reason}',
                                 ko.details(ko.SECRETS, name)))


def already_exists(name: str) -> SecretError:
    return SecretError(ko.status(409, "AlreadyExists", f'secrets "{name}" already exists',
                                 ko.details(ko.SECRETS, name)))


def missing_field_manager() -> SecretError:
    return invalid("", [("fieldManager", "FieldValueRequired", "Required value: is required for apply patch")],
                   kind="PatchOptions", group="meta.k8s.io")


# the request body ----------------------------------------------------------------------------------------------

def decode(raw: bytes, yaml_allowed: bool) -> dict[str, Any]:
    """The body as an object: YAML (JSON is YAML) for an apply patch, JSON otherwise; 400 when it is neither."""
    try:
        text = raw.decode("utf-8")
        body = yaml.safe_load(text) if yaml_allowed else json.loads(text)
    except (UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError):
        raise _bad_request("the body of the request is not valid " + ("YAML or JSON" if yaml_allowed else "JSON")) \
            from None
    if not isinstance(body, dict):
        raise _bad_request("the body of the request must be an object (a Secret)")
    return body


def _strings(where: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _bad_request(f'Secret in version "v1" cannot be handled as a Secret: {where} must be a map of '
                           "strings")
    return value


def _b64(key: str, value: str) -> str:
    """A data value in canonical base64 (Go's decoder skips line breaks, so do we)."""
    try:
        raw = base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        raise _bad_request(f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data in '
                           f"data[{key}]") from None
    return base64.b64encode(raw).decode()


def _check_qualified(where: str, key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN_RE.match(prefix)):
        return f'Invalid value: "{key}": prefix part {NAME_MSG}'
    if not name or len(name) > 63 or not LABEL_NAME_RE.match(name):
        return f'Invalid value: "{key}": {NAME_PART_MSG}'
    return None


def desired(body: dict[str, Any], namespace: str, name: str, strict: bool) -> tuple[Flat, str | None]:
    """The fields a Secret body sets (flattened) and its resourceVersion precondition, checked as kube-apiserver
    checks them: 400 for what cannot be decoded or does not match the URL, 422 for invalid values."""
    if body.get("apiVersion", "v1") != "v1":
        raise _bad_request(f"the API version in the data ({body.get('apiVersion')}) does not match the expected "
                           "API version (v1)")
    if body.get("kind", "Secret") != "Secret":
        raise _bad_request(f"the kind in the data ({body.get('kind')}) does not match the expected kind (Secret)")
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict):
        raise _bad_request('Secret in version "v1" cannot be handled as a Secret: metadata must be an object')
    if strict:
        unknown = sorted(k for k in body if k not in TOP_LEVEL) + sorted(f"metadata.{k}" for k in meta
                                                                          if k not in METADATA)
        if unknown:
            raise _bad_request(f"failed to create typed patch object (/v1, Kind=Secret) {namespace}/{name}: "
                               + ", ".join(f".{k}: field not declared in schema" for k in unknown))
    if meta.get("name", name) != name:
        raise _bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                           f"({name})")
    if meta.get("namespace", namespace) != namespace:
        raise _bad_request("the namespace of the provided object does not match the namespace sent on the request")
    flat: Flat = {}
    causes: list[tuple[str, str, str]] = []
    if not DNS_SUBDOMAIN_RE.match(name) or len(name) > 253:
        causes.append(("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": {NAME_MSG}'))
    for where in ("labels", "annotations"):
        for key, value in sorted(_strings(f"metadata.{where}", meta.get(where)).items()):
            problem = _check_qualified(where, key)
            if problem is None and where == "labels" and (len(value) > 63 or not LABEL_VALUE_RE.match(value)):
                problem = f'Invalid value: "{value}": {LABEL_VALUE_MSG}'
            if problem:
                causes.append((f"metadata.{where}", "FieldValueInvalid", problem))
            flat[("metadata", where, key)] = value
    data = {k: _b64(k, v) for k, v in _strings("data", body.get("data")).items()}
    data.update({k: base64.b64encode(v.encode()).decode()
                 for k, v in _strings("stringData", body.get("stringData")).items()})
    for key, value in sorted(data.items()):
        if not KEY_RE.match(key) or len(key) > 253 or key in (".", ".."):
            causes.append((f"data[{key}]", "FieldValueInvalid", f'Invalid value: "{key}": {KEY_MSG}'))
        flat[("data", key)] = value
    if "type" in body:
        if not isinstance(body["type"], str):
            raise _bad_request('Secret in version "v1" cannot be handled as a Secret: type must be a string')
        flat[("type",)] = body["type"] or "Opaque"
    if body.get("immutable") is not None:
        if not isinstance(body["immutable"], bool):
            raise _bad_request('Secret in version "v1" cannot be handled as a Secret: immutable must be a boolean')
        flat[("immutable",)] = body["immutable"]
    if causes:
        raise invalid(name, causes)
    rv = meta.get("resourceVersion")
    return flat, (str(rv) if rv not in (None, "") else None)


# objects, flattened ---------------------------------------------------------------------------------------------

def flatten(obj: dict[str, Any]) -> Flat:
    """The ownable fields of a stored Secret."""
    meta = obj.get("metadata", {})
    flat: Flat = {("type",): obj.get("type", "Opaque")}
    if "immutable" in obj:
        flat[("immutable",)] = obj["immutable"]
    for key, value in (obj.get("data") or {}).items():
        flat[("data", key)] = value
    for where in ("labels", "annotations"):
        for key, value in (meta.get(where) or {}).items():
            flat[("metadata", where, key)] = value
    return flat


def _build(meta: dict[str, Any], flat: Flat, managed: list[dict[str, Any]]) -> dict[str, Any]:
    meta = {k: v for k, v in meta.items() if k not in ("labels", "annotations", "managedFields")}
    for where in ("labels", "annotations"):
        items = {p[2]: v for p, v in sorted(flat.items()) if p[:2] == ("metadata", where)}
        if items:
            meta[where] = items
    if managed:
        meta["managedFields"] = managed
    obj: dict[str, Any] = {"metadata": meta}
    data = {p[1]: v for p, v in sorted(flat.items()) if p[0] == "data"}
    if data:
        obj["data"] = data
    if ("immutable",) in flat:
        obj["immutable"] = flat[("immutable",)]
    obj["type"] = flat.get(("type",), "Opaque")
    return obj


def fields_v1(paths: set[Path]) -> dict[str, Any]:
    """Field paths as FieldsV1 (`{"f:data": {"f:key": {}}}`)."""
    out: dict[str, Any] = {}
    for path in sorted(paths):
        node = out
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return out


def paths_of(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    """FieldsV1 back to field paths (leaves only)."""
    out: set[Path] = set()
    for key, sub in fields.items():
        if not key.startswith("f:"):
            continue
        path = (*prefix, key[2:])
        out |= paths_of(sub, path) if sub else {path}
    return out


def render_path(path: Path) -> str:
    return "".join(f".{p}" for p in path)


def _manager_name(entry: dict[str, Any]) -> str:
    """How kube-apiserver names a manager in a conflict: `"m"`, or `"m" using v1 at TIME` for an Update."""
    shown = json.dumps(entry["manager"])
    if entry.get("operation") == "Update":
        shown += f" using {entry.get('apiVersion', 'v1')}"
        if entry.get("time"):
            shown += f" at {entry['time']}"
    return shown


def _conflicts(conflicts: list[tuple[dict[str, Any], Path]]) -> SecretError:
    """kube-apiserver's (structured-merge-diff's) apply conflict Status."""
    count = len(conflicts)
    if count == 1:
        entry, path = conflicts[0]
        detail = f"conflict with {_manager_name(entry)}: {render_path(path)}"
    else:
        lines: list[str] = []
        for shown in sorted({_manager_name(e) for e, _ in conflicts}):
            lines.append(f"conflicts with {shown}:")
            lines += [f"- {render_path(p)}" for e, p in conflicts if _manager_name(e) == shown]
        detail = "\n".join(lines)
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {_manager_name(e)}",
               "field": render_path(p)} for e, p in conflicts]
    return SecretError(ko.status(409, "Conflict", f"Apply failed with {count} conflict{'s' if count > 1 else ''}: "
                                 f"{detail}", {"causes": causes}))


# writes ---------------------------------------------------------------------------------------------------------

def _check_immutable(name: str, old: Flat, new: Flat) -> None:
    causes = []
    if old.get(("type",), "Opaque") != new.get(("type",), "Opaque"):
        causes.append(("type", "FieldValueInvalid",
                       f'Invalid value: "{new.get(("type",))}": field is immutable'))
    if old.get(("immutable",)) is True:
        if {p: v for p, v in old.items() if p[0] == "data"} != {p: v for p, v in new.items() if p[0] == "data"}:
            causes.append(("data", "FieldValueForbidden", "Forbidden: field is immutable when `immutable` is set"))
        if new.get(("immutable",)) is not True:
            causes.append(("immutable", "FieldValueForbidden",
                           "Forbidden: field is immutable when `immutable` is set"))
    if causes:
        raise invalid(name, causes)


def new_object(namespace: str, name: str, flat: Flat, manager: str, operation: str, now: str,
               resource_version: int) -> dict[str, Any]:
    """A Secret created by `manager` (type defaults to Opaque)."""
    owned = set(flat)
    flat = {("type",): "Opaque", **flat}
    entry = {"manager": manager, "operation": operation, "apiVersion": "v1", "time": now, "fieldsType": "FieldsV1",
             "fieldsV1": fields_v1(owned)}
    meta = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "resourceVersion": str(resource_version),
            "creationTimestamp": now}
    return _build(meta, flat, [entry])


def apply(existing: dict[str, Any], flat: Flat, precondition: str | None, manager: str, force: bool, now: str,
          resource_version: int) -> dict[str, Any] | None:
    """Server-side apply of `flat` by `manager` onto an existing Secret; None when nothing would change."""
    meta = existing["metadata"]
    name = meta["name"]
    if precondition is not None and precondition != meta.get("resourceVersion"):
        raise conflict(name, OPTIMISTIC_LOCK)
    old = flatten(existing)
    entries = [dict(e) for e in meta.get("managedFields", [])]
    owned = [paths_of(e.get("fieldsV1", {})) for e in entries]
    before = [set(paths) for paths in owned]
    mine = next((i for i, e in enumerate(entries) if e["manager"] == manager and e.get("operation") == "Apply"), None)
    clashes = [(entries[i], path) for path, value in sorted(flat.items()) if old.get(path) != value
               for i in range(len(entries)) if i != mine and path in owned[i]]
    if clashes and not force:
        raise _conflicts(clashes)
    for i in range(len(entries)):
        if i != mine:
            owned[i] -= {path for _, path in clashes}
    new = dict(old)
    previous = owned[mine] if mine is not None else set()
    others = set().union(*(owned[i] for i in range(len(entries)) if i != mine))
    for path in previous - set(flat) - others:
        if path != ("type",):  # a required field: it keeps its value (kube-apiserver would default it again)
            new.pop(path, None)
    new.update(flat)
    _check_immutable(name, old, new)
    if mine is None:
        entries.append({"manager": manager, "operation": "Apply", "apiVersion": "v1", "time": now,
                        "fieldsType": "FieldsV1"})
        owned.append(set())
        before.append(set())
        mine = len(entries) - 1
    owned[mine] = set(flat)
    if new == old and owned == before:
        return None
    kept = []
    for entry, paths, was in zip(entries, owned, before, strict=True):
        if not paths:
            continue
        if paths != was or entry is entries[mine]:
            entry["time"] = now
        entry["fieldsV1"] = fields_v1(paths)
        kept.append(entry)
    return _build({**meta, "resourceVersion": str(resource_version)}, new, kept)
