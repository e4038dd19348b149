"""The proxy's web API (HTTPS, the web CA's certificate): `GET /webapi/find`, `GET /webapi/ping` and
`POST /webapi/host/credentials`, in Go's JSON conventions (bytes as standard base64, times RFC 3339, omitempty).

Errors are HTTP 4xx/5xx with trace's body `{"error": {"message": ...}}`. Paths under `/v1/` are served as the same
path without it (versions.SERVE_V1_WEBAPI_PREFIX), as Teleport's web handler strips that prefix.
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .. import __version__
from ..proto import teleport_auth_pb2 as pb
from . import store, traceerr, versions
from .httpbase import BadBody, BodyTooLarge, TLSHandler
from .teleport_rules import JoinRequest, TeleportAuthority

_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
DEFAULT_SESSION_TTL = "12h0m0s"


def parse_rfc3339(text: str) -> datetime:
    """Go's time.Time JSON form (RFC 3339, optional fraction); ValueError otherwise."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(text)
    date, clock, frac, zone = m.groups()
    micro = (frac or ".0")[1:7].ljust(6, "0")
    offset = "+00:00" if zone in ("Z", "z") else zone
    return datetime.fromisoformat(f"{date}T{clock}.{micro}{offset}").astimezone(timezone.utc)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def certs_json(certs: pb.Certs) -> dict[str, Any]:
    """proto.Certs as Go encodes it: every field omitempty, bytes as standard base64."""
    out: dict[str, Any] = {}
    if certs.ssh:
        out["ssh"] = _b64(certs.ssh)
    if certs.tls:
        out["tls"] = _b64(certs.tls)
    if certs.tls_ca_certs:
        out["tls_ca_certs"] = [_b64(c) for c in certs.tls_ca_certs]
    if certs.ssh_ca_certs:
        out["ssh_ca_certs"] = [_b64(c) for c in certs.ssh_ca_certs]
    return out


def join_request(body: dict[str, Any]) -> JoinRequest:
    """RegisterUsingTokenRequest from JSON (unknown fields ignored, as Go's decoder does); BadParameter else."""
    def text(key: str) -> str:
        value = body.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise traceerr.bad_parameter(f"json: cannot unmarshal {type(value).__name__} into field {key} of "
                                         "type string")
        return value

    def raw(key: str) -> bytes:
        value = text(key)
        try:
            return base64.b64decode(value, validate=True) if value else b""
        except (binascii.Error, ValueError):
            raise traceerr.bad_parameter(f"{key} is not standard base64 (with padding)") from None

    expires = None
    if body.get("expires") is not None:
        try:
            expires = parse_rfc3339(text("expires"))
        except ValueError:
            raise traceerr.bad_parameter("expires is not an RFC 3339 time") from None
    return JoinRequest(token=text("token"), role=text("role"), public_tls_key=raw("public_tls_key"),
                       public_ssh_key=raw("public_ssh_key"), expires=expires)


@dataclass
class WebApp:
    """What the web handler needs: the rules, and the addresses /webapi/find reports (set once bound)."""

    authority: TeleportAuthority
    proxy_addr: str = ""
    kube_addr: str = ""  # the Kubernetes endpoint's own address (reported without TLS routing)

    def find(self, ping: bool = False) -> dict[str, Any]:
        profile = self.authority.profile
        with store.opened(self.authority.state_dir) as conn:
            cluster = store.get_setting(conn, "cluster_name") or ""
        auth: dict[str, Any] = {"type": "local", "second_factor": "off", "private_key_policy": "none",
                                "piv_slot": "", "piv_pin_cache_duration": 0, "device_trust": {}, "has_motd": False,
                                "default_session_ttl": DEFAULT_SESSION_TTL}
        if ping:
            auth["local"] = {"name": ""}
        if profile.advertises_suite:
            auth["signature_algorithm_suite"] = profile.suite
        if profile.tls_routing:
            kube = {"enabled": True, "public_addr": self.proxy_addr, "listen_addr": self.proxy_addr}
        else:
            kube = {"enabled": True, "public_addr": self.kube_addr, "listen_addr": self.kube_addr}
        return {
            "auth": auth,
            "proxy": {"kube": kube, "ssh": {"web_listen_addr": self.proxy_addr, "public_addr": self.proxy_addr},
                      "db": {}, "tls_routing_enabled": profile.tls_routing},
            "server_version": profile.version,
            "min_client_version": profile.min_client_version,
            "auto_update": {"tools_version": profile.version, "tools_auto_update": False,
                            "agent_version": profile.version, "agent_auto_update": False,
                            "agent_update_jitter_seconds": 0},
            "cluster_name": cluster,
            "automatic_upgrades": False,
            "edition": "oss",
            "fips": False,
        }


Route = Callable[["WebApiHandler"], dict[str, Any]]


def _find(h: WebApiHandler) -> dict[str, Any]:
    return h.app.find()


def _ping(h: WebApiHandler) -> dict[str, Any]:
    return h.app.find(ping=True)


def _host_credentials(h: WebApiHandler) -> dict[str, Any]:
    try:
        body = h.read_json()
    except BadBody as e:
        raise traceerr.bad_parameter(str(e)) from None
    return certs_json(h.app.authority.register_using_token(join_request(body)))


ROUTES: dict[str, dict[str, Route]] = {
    "/webapi/find": {"GET": _find},
    "/webapi/ping": {"GET": _ping},
    "/webapi/host/credentials": {"POST": _host_credentials},
}


class WebApiHandler(TLSHandler):
    """The proxy's web API; every failure is a trace-style JSON error, never a traceback."""

    server_version = f"kubectl-teleport-devcluster/{__version__}"

    @property
    def app(self) -> WebApp:
        return self.server.app

    def _dispatch(self) -> None:
        self._consumed = False
        path = self.path.split("?", 1)[0]
        if versions.SERVE_V1_WEBAPI_PREFIX and path.startswith("/v1/"):
            path = path[len("/v1"):]
        try:
            methods = ROUTES.get(path)
            if methods is None:
                raise traceerr.not_found(f"not found: {path}")
            route = methods.get(self.command)
            if route is None:
                self._reply(405, {"error": {"message": f"method {self.command} is not allowed on {path}"}})
                return
            self._reply(200, route(self))
        except BodyTooLarge as e:
            self._reply(413, {"error": {"message": str(e)}})
        except traceerr.TraceError as e:
            self._reply(e.http_status, e.body())
        except Exception as e:
            sys.stderr.write(f"{self.server.name}: internal error on {self.command} {path}: {type(e).__name__}\n")
            self._reply(500, {"error": {"message": "internal server error"}})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        if status >= 400 and not self.body_consumed():
            self.close_connection = True  # an unread body must not be taken for the next request
        self.send_json(status, body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

