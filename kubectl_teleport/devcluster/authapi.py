"""The auth service's HTTP/JSON API (protocol v1, docs/protocol.md) on top of `Authority`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .. import __version__
from . import store
from .authority import ApiError, Authority
from .httpbase import BadBody, BodyTooLarge, TLSHandler

Route = Callable[["AuthApiHandler"], dict[str, Any]]


def _ping(h: AuthApiHandler) -> dict[str, Any]:
    return h.authority.ping()


def _cluster_ca(h: AuthApiHandler) -> dict[str, Any]:
    return h.authority.cluster_ca()


def _join(h: AuthApiHandler) -> dict[str, Any]:
    return h.authority.join(h.read_json())


def _renew(h: AuthApiHandler) -> dict[str, Any]:
    peer = h.peer_cert()
    return h.authority.renew(peer, h.read_json())


def _kube_certs(h: AuthApiHandler) -> dict[str, Any]:
    peer = h.peer_cert()
    return h.authority.kube_certs(peer, h.read_json())


def _kube_clusters(h: AuthApiHandler) -> dict[str, Any]:
    return h.authority.kube_clusters(h.peer_cert())


ROUTES: dict[str, dict[str, Route]] = {
    "/v1/ping": {"GET": _ping},
    "/v1/cluster/ca": {"GET": _cluster_ca},
    "/v1/join": {"POST": _join},
    "/v1/bots/renew": {"POST": _renew},
    "/v1/kube/certs": {"POST": _kube_certs},
    "/v1/kube/clusters": {"GET": _kube_clusters},
}


class AuthApiHandler(TLSHandler):
    """Routes /v1/* to the authority; every failure is a JSON error, never a traceback."""

    server_version = f"kubectl-teleport-devcluster/{__version__}"

    @property
    def authority(self) -> Authority:
        return self.server.app

    def _dispatch(self) -> None:
        self._consumed = False
        path = self.path.split("?", 1)[0]
        methods = ROUTES.get(path)
        try:
            if methods is None:
                raise ApiError(404, "not_found", f"no such endpoint: {path}")
            route = methods.get(self.command)
            if route is None:
                raise ApiError(405, "method_not_allowed", f"{path} accepts {', '.join(methods)}, not {self.command}")
            self.send_json(200, route(self))
        except BodyTooLarge as e:
            self._reject(ApiError(413, "request_too_large", str(e)))
        except BadBody as e:
            self._reject(ApiError(400, "bad_request", str(e)))
        except ApiError as e:
            self._reject(e)
        except Exception as e:
            sys.stderr.write(f"{self.server.name}: internal error on {self.command} {path}: {type(e).__name__}\n")
            self._reject(ApiError(500, "internal", "internal server error; safe to retry idempotent requests"))

    def _reject(self, err: ApiError) -> None:
        if not self.body_consumed():
            self.close_connection = True  # an unread body must not be taken for the next request
        try:
            with store.opened(self.authority.state_dir) as conn:
                store.bump(conn, "rejected_requests")
        except Exception:  # noqa: S110 - counting must never turn an answer into a failure
            pass
        self.send_json(err.status, err.body())

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch
