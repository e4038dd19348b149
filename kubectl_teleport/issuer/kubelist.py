"""The Kubernetes clusters the configured roles grant, as Teleport lists them (`kube ls`).

tbot's way: an impersonated identity from the bot identity (the configured roles, no Kubernetes cluster;
`teleport.impersonated_identity`, which does not move the generation counter), then `ListResources` of kind
`kube_server` with that identity on the auth route. The server keeps only the servers whose cluster the roles'
`kubernetes_labels` allow. Pages are followed with `StartKey` = the previous `NextKey` until it is empty (the
last page may be empty: the server takes `NextKey` before checking access to that resource); clusters are listed
once by name (several servers may proxy one cluster).

`ssl.load_cert_chain` reads files, so the impersonated certificate and its key go to an anonymous memory file
(`memfd_create`, Linux: never on a disk, gone with the process whatever kills it) named by `/proc/self/fd/N`;
where there is none (macOS), to a 0600 file in a private 0700 temporary directory removed as soon as the
listing is done.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .. import clock, pki
from ..config import Config
from ..errors import NotLoggedIn, Unavailable
from ..proto import teleport_auth_pb2 as pb
from ..store import identity
from ..store.datadir import DataDir
from . import auth, http, renewal, teleport

KUBE_SERVER = "kube_server"
PAGE_SIZE = 100  # per ListResources request (Teleport's default when 0 is 1000)
MAX_PAGES = 1000  # a server that never ends the listing is an error, not a loop
LIST_IDENTITY_TTL = timedelta(minutes=5)


@dataclass(frozen=True)
class KubeCluster:
    """A Kubernetes cluster Teleport listed: its name and labels."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)


def list_request(start_key: str = "", limit: int = PAGE_SIZE) -> pb.ListResourcesRequest:
    """One page of `kube_server` resources from `start_key` (empty: the first page)."""
    return pb.ListResourcesRequest(resource_type=KUBE_SERVER, limit=limit, start_key=start_key)


def clusters_of(page: pb.ListResourcesResponse) -> list[KubeCluster]:
    """The clusters of one page's Kubernetes servers (other kinds ignored): the cluster's name and labels, else
    the server's."""
    found = []
    for res in page.resources:
        if res.WhichOneof("resource") != "kubernetes_server":
            continue
        server = res.kubernetes_server
        cluster = server.spec.cluster if server.spec.HasField("cluster") else None
        name = (cluster.metadata.name if cluster is not None else "") or server.metadata.name
        labels = dict(cluster.metadata.labels) if cluster is not None and cluster.metadata.labels \
            else dict(server.metadata.labels)
        if name:
            found.append(KubeCluster(name, labels))
    return found


def collect(fetch: Callable[[str], pb.ListResourcesResponse], max_pages: int = MAX_PAGES) -> list[KubeCluster]:
    """Every cluster over all pages (`fetch(start_key)` gets one), once by name (the first server's labels),
    sorted by name. Unavailable when the server repeats a NextKey or does not stop within `max_pages`."""
    clusters: dict[str, KubeCluster] = {}
    seen: set[str] = set()
    start = ""
    for _ in range(max_pages):
        page = fetch(start)
        for cluster in clusters_of(page):
            clusters.setdefault(cluster.name, cluster)
        if not page.next_key:
            return [clusters[n] for n in sorted(clusters)]
        if page.next_key in seen or page.next_key == start:
            raise Unavailable("listing the Kubernetes clusters failed: the auth service sent the same page key "
                              "twice; try again later")
        seen.add(page.next_key)
        start = page.next_key
    raise Unavailable(f"listing the Kubernetes clusters failed: more than {max_pages} pages; try again later")


def list_kube_clusters(route: auth.Route, host_ca_pems: list[str], identity_file: Path,
                       deadline: http.Deadline) -> list[KubeCluster]:
    """`ListResources kube_server`, every page, on `route` with the certificate in `identity_file`."""
    action = f"listing the Kubernetes clusters on {route.via}"

    def fetch(start_key: str) -> pb.ListResourcesResponse:
        ctx = auth.auth_context(host_ca_pems, identity_file)
        body = list_request(start_key).SerializeToString()
        raw = teleport.with_retries(lambda: auth.call(route, auth.LIST_RESOURCES, body, ctx=ctx, deadline=deadline,
                                                      action=action, kind=auth.LIST), deadline)
        try:
            return pb.ListResourcesResponse.FromString(raw)
        except Exception:  # protobuf's DecodeError and friends
            raise Unavailable(f"{action} failed: the answer is not a ListResourcesResponse") from None

    return collect(fetch)


def granted_clusters(dd: DataDir, cfg: Config, deadline: http.Deadline) -> list[KubeCluster]:
    """The clusters the data dir's roles grant: an impersonated identity (generation untouched), then the
    listing with it. Nothing is written to the data dir."""
    if not cfg.roles:
        raise NotLoggedIn(f"{dd.config_path} names no roles to impersonate: run `kubectl-teleport login --role NAME` "
                          "(no token needed)")
    ident = identity.load(dd)
    key = pki.key_for_suite(cfg.suite)
    server_now = datetime.fromtimestamp(clock.now() - ident.skew, timezone.utc)  # absolute, on the server's clock
    expires = min(server_now + LIST_IDENTITY_TTL, pki.not_after(ident.cert))
    target = renewal.auth_target(dd, cfg)
    certs = teleport.impersonated_identity(target, username=ident.username, key=key, expires=expires,
                                           roles=cfg.roles, cluster_name=cfg.cluster_name, deadline=deadline)
    with key_file(certs.tls + pki.private_key_pem(key)) as path:
        return list_kube_clusters(target.route, cfg.ca_pems, path, deadline)


@contextmanager
def key_file(pem: str) -> Iterator[Path]:
    """A path `ssl.load_cert_chain` can read `pem` (a certificate and its key) from, for the `with` block: an
    anonymous memory file where the platform has them (nothing on a disk, nothing left if the process is
    killed), else a 0600 file in a private 0700 temporary directory, removed at the end."""
    data = pem.encode()
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("kubectl-teleport-identity", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            yield Path(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="kubectl-teleport-ls-") as tmp:  # mode 0700
        path = Path(tmp) / "identity.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
