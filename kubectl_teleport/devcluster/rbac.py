"""Kubernetes RBAC for the devcluster's Kubernetes endpoint: rolebindings and kube-apiserver's denial text."""

from __future__ import annotations

from typing import Any

KNOWN_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "*")


def normalise_resource(resource: str) -> str:
    """`deployments.apps` and `deployments` name the same resource here (plural names are unique)."""
    return resource.strip().lower().split(".", 1)[0]


def allowed(bindings: list[dict[str, Any]], user: str, groups: list[str], verb: str, resource: str,
            namespace: str | None) -> bool:
    """True when a binding for the user or one of its groups grants `verb` on `resource` in `namespace`.

    `namespace` None is the cluster scope: only cluster-wide bindings (namespace '') apply there.
    """
    for b in bindings:
        if b["subject_kind"] == "User" and b["subject_name"] != user:
            continue
        if b["subject_kind"] == "Group" and b["subject_name"] not in groups:
            continue
        if b["namespace"] and b["namespace"] != namespace:
            continue
        if verb not in b["verbs"] and "*" not in b["verbs"]:
            continue
        resources = {normalise_resource(r) for r in b["resources"]}
        if resource in resources or "*" in resources:
            return True
    return False


def forbidden_message(user: str, verb: str, resource: str, group: str, namespace: str | None,
                      name: str | None) -> str:
    """kube-apiserver's wording, e.g. `pods is forbidden: User "alice" cannot list resource "pods" in API group
    "" in the namespace "secret"`."""
    qualified = f"{resource}.{group}" if group else resource
    subject = f'{qualified} "{name}"' if name else qualified
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return (f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "{group}" '
            f"{scope}")
