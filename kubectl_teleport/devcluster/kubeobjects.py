"""Kubernetes API shapes the endpoint serves: resource metadata, discovery documents, Status and Tables."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

KUBE_VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.1-devcluster", "gitCommit": "devcluster",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25.0",
                "compiler": "gc", "platform": "linux/amd64"}


@dataclass(frozen=True)
class Resource:
    """One served resource type."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("get", "list")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def discovery(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
                               "kind": self.kind, "verbs": list(self.verbs)}
        if self.short_names:
            out["shortNames"] = list(self.short_names)
        if self.kind in ("Pod", "Deployment"):
            out["categories"] = ["all"]
        return out


NAMESPACES = Resource("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",))
PODS = Resource("", "v1", "pods", "pod", "Pod", True, ("po",))
DEPLOYMENTS = Resource("apps", "v1", "deployments", "deployment", "Deployment", True, ("deploy",))
SECRETS = Resource("", "v1", "secrets", "secret", "Secret", True, (), ("create", "delete", "get", "list", "patch"))
SELF_SUBJECT_REVIEWS = Resource("authentication.k8s.io", "v1", "selfsubjectreviews", "selfsubjectreview",
                                "SelfSubjectReview", False, (), ("create",))
RESOURCES = (NAMESPACES, PODS, DEPLOYMENTS, SECRETS, SELF_SUBJECT_REVIEWS)
GROUP_VERSIONS = {r.api_version for r in RESOURCES}


def resource_list(api_version: str) -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": api_version,
            "resources": [r.discovery() for r in RESOURCES if r.api_version == api_version]}


def api_group(name: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{name}/v1", "version": "v1"}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> dict[str, Any]:
    groups = sorted({r.group for r in RESOURCES if r.group})
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{k: v for k, v in api_group(g).items() if k not in ("kind", "apiVersion")} for g in groups]}


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


# OpenAPI v3, as little as kubectl needs: `kubectl apply --server-side` looks up the PATCH operation of the
# object's kind and its `fieldValidation` parameter (so the server validates), else it fails to download OpenAPI.
# No schemas: `kubectl explain` is not served.
_ACTIONS = (("list", "get", False), ("create", "post", False), ("get", "get", True), ("patch", "patch", True),
            ("delete", "delete", True))
_WRITE_PARAMS = {"post": ("dryRun", "fieldManager", "fieldValidation"),
                 "patch": ("dryRun", "fieldManager", "fieldValidation", "force"), "delete": ("dryRun",)}


def _gv_path(api_version: str) -> str:
    return f"apis/{api_version}" if "/" in api_version else f"api/{api_version}"


def openapi_v3_group_version(api_version: str) -> dict[str, Any]:
    """The OpenAPI v3 document of one group/version: its operations, tagged with kind and action."""
    paths: dict[str, Any] = {}
    for r in RESOURCES:
        if r.api_version != api_version:
            continue
        base = f"/{_gv_path(api_version)}" + ("/namespaces/{namespace}" if r.namespaced else "") + f"/{r.plural}"
        for verb, method, item in _ACTIONS:
            if verb not in r.verbs:
                continue
            path = base + ("/{name}" if item else "")
            entry = paths.setdefault(path, {"parameters": [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string", "uniqueItems": True}}
                for n in (("namespace",) if r.namespaced else ()) + (("name",) if item else ())]})
            entry[method] = {
                "operationId": f"{verb}{r.kind}", "x-kubernetes-action": "post" if verb == "create" else verb,
                "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
                "parameters": [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                               for n in _WRITE_PARAMS.get(method, ())],
                "responses": {"200": {"description": "OK"}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
            "paths": paths}


def openapi_v3_root() -> dict[str, Any]:
    """`/openapi/v3`: where each group/version's document is (the hash changes with its content)."""
    out = {}
    for api_version in sorted(GROUP_VERSIONS):
        doc = json.dumps(openapi_v3_group_version(api_version), sort_keys=True).encode()
        digest = hashlib.sha256(doc).hexdigest().upper()
        out[_gv_path(api_version)] = {"serverRelativeURL": f"/openapi/v3/{_gv_path(api_version)}?hash={digest}"}
    return {"paths": out}


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A metav1.Status failure as kube-apiserver sends it."""
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": message, "reason": reason}
    if details is not None:
        out["details"] = details
    out["code"] = code
    return out


def details(resource: Resource, name: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if resource.group:
        out["group"] = resource.group
    out["kind"] = resource.plural
    out.update(extra)
    return out


def success(resource: Resource, name: str, uid: str) -> dict[str, Any]:
    """The Status kube-apiserver answers a DELETE of an object that is gone at once (no finalizers) with."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": details(resource, name, uid=uid)}


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration (what kubectl shows in the AGE column)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _age(obj: dict[str, Any], now: datetime) -> str:
    created = obj.get("metadata", {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    t = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return human_duration((now - t).total_seconds())


def _col(name: str, typ: str, description: str, priority: int = 0, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": typ, "format": fmt, "description": description, "priority": priority}


NAME_COL = _col("Name", "string", "Name must be unique within a namespace.", fmt="name")
AGE_COL = _col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this "
               "object was created.")
COLUMNS = {
    "Pod": [NAME_COL,
            _col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            _col("Status", "string", "The aggregate status of the containers in this pod."),
            _col("Restarts", "string", "The number of times the containers in this pod have been restarted and "
                 "when the last container in this pod has restarted."),
            AGE_COL,
            _col("IP", "string", "IP address allocated to the pod.", 1),
            _col("Node", "string", "Name of the node the pod is assigned to.", 1),
            _col("Nominated Node", "string", "Name of the node nominated for the pod.", 1),
            _col("Readiness Gates", "string", "Pod readiness gates.", 1)],
    "Deployment": [NAME_COL,
                   _col("Ready", "string", "Number of the pod with ready state"),
                   _col("Up-to-date", "integer", "Total number of non-terminated pods targeted by this "
                        "deployment that have the desired template spec."),
                   _col("Available", "integer", "Total number of available pods (ready for at least "
                        "minReadySeconds) targeted by this deployment."),
                   AGE_COL,
                   _col("Containers", "string", "Names of each container in the template.", 1),
                   _col("Images", "string", "Images referenced by each container in the template.", 1),
                   _col("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are "
                        "selected by this will be the ones affected by this deployment.", 1)],
    "Namespace": [NAME_COL,
                  _col("Status", "string", "The status of the namespace"),
                  AGE_COL],
    "Secret": [NAME_COL,
               _col("Type", "string", "Used to facilitate programmatic handling of secret data. More info: "
                    "https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"),
               _col("Data", "string", "Data contains the secret data. Each key must consist of alphanumeric "
                    "characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded "
                    "string, representing the arbitrary (possibly non-string) data value here. Described in "
                    "https://tools.ietf.org/html/rfc4648#section-4"),
               AGE_COL],
}


def _cells(kind: str, obj: dict[str, Any], now: datetime) -> list[Any]:
    meta, spec, st = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {})
    if kind == "Pod":
        containers = st.get("containerStatuses", [])
        ready = sum(1 for c in containers if c.get("ready"))
        restarts = sum(int(c.get("restartCount", 0)) for c in containers)
        return [meta["name"], f"{ready}/{len(spec.get('containers', []))}", st.get("reason") or st.get("phase", ""),
                str(restarts), _age(obj, now), st.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
                "<none>", "<none>"]
    if kind == "Deployment":
        template = spec.get("template", {}).get("spec", {}).get("containers", [])
        selector = ",".join(f"{k}={v}" for k, v in spec.get("selector", {}).get("matchLabels", {}).items())
        return [meta["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
                st.get("updatedReplicas", 0), st.get("availableReplicas", 0), _age(obj, now),
                ",".join(c["name"] for c in template), ",".join(c["image"] for c in template), selector]
    if kind == "Secret":
        return [meta["name"], obj.get("type", "Opaque"), len(obj.get("data") or {}), _age(obj, now)]
    return [meta["name"], st.get("phase", "Active"), _age(obj, now)]


def table(kind: str, objects: list[dict[str, Any]], now: datetime, table_version: str, include: str,
          resource_version: str, object_api_version: str) -> dict[str, Any]:
    """A meta.k8s.io Table (what `kubectl get` asks for) with kube-apiserver's columns."""
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": _cells(kind, obj, now)}
        if include == "Object":
            row["object"] = {"kind": kind, "apiVersion": object_api_version, **obj}
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{table_version}",
                             "metadata": obj.get("metadata", {})}
        rows.append(row)
    return {"kind": "Table", "apiVersion": f"meta.k8s.io/{table_version}",
            "metadata": {"resourceVersion": resource_version}, "columnDefinitions": COLUMNS[kind], "rows": rows}
