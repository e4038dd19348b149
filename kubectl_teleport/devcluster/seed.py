"""The demo world of `start --seed-demo` (idempotent): a role, a Kubernetes cluster, namespaces, a deployment
with its pods, a standalone pod, and rolebindings for group `example` and user `alice` in `demo`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from . import store
from .authority import rfc3339
from .roles import parse_roles

DEMO_ROLE_YAML = """\
kind: role
version: v5
metadata:
  name: machine-id-kube-role
spec:
  allow:
    kubernetes_labels:
      '*': '*'
    kubernetes_groups:
      - example
    kubernetes_users:
      - alice
  options:
    max_session_ttl: 1h
"""
DEMO_CLUSTER = "example-k8s-cluster"
DEMO_LABELS = {"env": "dev"}
NODE = "devcluster-node-1"


def _pod(name: str, namespace: str, labels: dict[str, str], image: str, ip: str, created: str, rv: int,
         owner: dict[str, Any] | None = None) -> dict[str, Any]:
    container = name.rsplit("-", 2)[0] if owner else name
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"00000000-0000-4000-8000-{rv:012d}",
                            "resourceVersion": str(rv), "creationTimestamp": created, "labels": labels}
    if owner:
        meta["ownerReferences"] = [owner]
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": container, "image": image, "ports": [{"containerPort": 8080,
                                                                               "protocol": "TCP"}]}],
                 "nodeName": NODE, "restartPolicy": "Always", "serviceAccountName": "default"},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.0.10",
                   "startTime": created, "qosClass": "BestEffort",
                   "conditions": [{"type": t, "status": "True", "lastTransitionTime": created}
                                  for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                   "containerStatuses": [{"name": container, "image": image, "imageID": "", "ready": True,
                                          "started": True, "restartCount": 0,
                                          "state": {"running": {"startedAt": created}}}]},
    }


def _deployment(name: str, namespace: str, replicas: int, image: str, created: str, rv: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"00000000-0000-4000-8000-{rv:012d}",
                     "resourceVersion": str(rv), "generation": 1, "creationTimestamp": created,
                     "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": name, "image": image}]}},
                 "strategy": {"type": "RollingUpdate"}},
        "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                   "readyReplicas": replicas, "availableReplicas": replicas,
                   "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]},
    }


def _namespace(name: str, created: str, rv: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"00000000-0000-4000-8000-{rv:012d}", "resourceVersion": str(rv),
                         "creationTimestamp": created, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def seed_demo(conn: Any, now: datetime) -> None:
    """Create the demo world; objects that already exist are left as they are."""
    role = parse_roles(DEMO_ROLE_YAML)[0]
    created = rfc3339(now - timedelta(minutes=5))
    with store.transaction(conn):
        if not store.get_roles(conn, [role.name]):
            store.put_role(conn, role.name, DEMO_ROLE_YAML, role.to_dict())
        if store.get_kube_cluster(conn, DEMO_CLUSTER) is None:
            store.put_kube_cluster(conn, DEMO_CLUSTER, DEMO_LABELS)
        for rv, ns in enumerate(("default", "kube-system", "demo"), start=100):
            store.put_kube_object(conn, DEMO_CLUSTER, "Namespace", "", ns, _namespace(ns, created, rv))
        image = "registry.k8s.io/e2e-test-images/agnhost:2.53"
        store.put_kube_object(conn, DEMO_CLUSTER, "Deployment", "demo", "web",
                              _deployment("web", "demo", 2, image, created, 200))
        owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7c9d8f6b5d",
                 "uid": "00000000-0000-4000-8000-000000000201", "controller": True, "blockOwnerDeletion": True}
        labels = {"app": "web", "pod-template-hash": "7c9d8f6b5d"}
        for rv, (name, ip) in enumerate((("web-7c9d8f6b5d-x2k4q", "10.244.0.11"),
                                         ("web-7c9d8f6b5d-p8mzn", "10.244.0.12")), start=300):
            store.put_kube_object(conn, DEMO_CLUSTER, "Pod", "demo", name,
                                  _pod(name, "demo", labels, image, ip, created, rv, owner))
        store.put_kube_object(conn, DEMO_CLUSTER, "Pod", "demo", "toolbox",
                              _pod("toolbox", "demo", {"app": "toolbox"}, "busybox:1.36", "10.244.0.13", created,
                                   310))
        store.put_kube_object(conn, DEMO_CLUSTER, "Pod", "kube-system", "coredns-6f6b679f8f-4x9lz",
                              _pod("coredns-6f6b679f8f-4x9lz", "kube-system", {"k8s-app": "kube-dns"},
                                   "registry.k8s.io/coredns/coredns:v1.11.3", "10.244.0.2", created, 320))
        for kind, subject in (("Group", "example"), ("User", "alice")):
            store.add_rolebinding(conn, DEMO_CLUSTER, "demo", ["get", "list"], ["pods", "deployments"], kind,
                                  subject)
