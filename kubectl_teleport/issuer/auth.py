"""Teleport's auth service over gRPC (`issuer/grpc.py`): the route to it, its TLS, and what its answers mean.

Routes (docs/protocol.md):
- through the proxy's TLS routing: the proxy's web address, ALPN `teleport-auth@<hex(cluster)>.teleport.cluster.local`
  then `h2`; the proxy forwards the raw TLS stream to auth, so mTLS runs end to end;
- straight to an auth server (`--auth-server HOST:PORT`): ALPN `h2`.
Both use the SNI `<hex(cluster)>.teleport.cluster.local`, which the auth server's certificate covers
(`*.teleport.cluster.local`), and verify it against the cluster's host CA(s) only. The client certificate is
the bot identity, read from its 0600 file (`ssl.load_cert_chain` takes files: a PEM file holding the
certificate and the key, PKCS#1, SEC 1 or PKCS#8, other text before the first PEM block being ignored).
`$HTTPS_PROXY`/`$NO_PROXY` are honoured with a CONNECT tunnel (TLS still end to end). No `version` metadata is
sent: Teleport admits a client that reports none.

Every failure becomes one of the plugin's typed errors with one line that says what to do (`map_error`), and
carries `request_sent` (the server may have seen the request) and `ambiguous` (it may have acted on it: a
renewal that may have been committed). The table is in `map_error` and docs/protocol.md.
"""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .. import pki
from ..errors import AccessDenied, IdentityRejected, PluginError, TrustError, Unavailable
from . import grpc, http

GENERATE_USER_CERTS = "/proto.AuthService/GenerateUserCerts"
GET_CLUSTER_CA_CERT = "/proto.AuthService/GetClusterCACert"
PING = "/proto.AuthService/Ping"
LIST_RESOURCES = "/proto.AuthService/ListResources"
GET_ROLE = "/proto.AuthService/GetRole"

# what the call was for: decides what a refusal means
CA, RENEW, KUBE, PING_KIND = "ca", "renew", "kube", "ping"
IMPERSONATE, LIST = "impersonate", "list"  # the identity `kube ls` lists with, and the listing
ROLE = "role"  # GetRole of the bot's own role: its default roles to impersonate

LOCK_RECOVERY = ("an admin must remove the lock (`tctl get locks`, `tctl rm lock/NAME`) and issue a new join "
                 "token; then log in again")
NO_KEY_FOUND = "ssh: no key found"


@dataclass(frozen=True)
class Route:
    """Where and how to reach the auth service."""

    host: str
    port: int
    alpn: tuple[str, ...]
    sni: str
    via: str  # for messages: "the proxy teleport.example.com:443" or "the auth server auth.example.com:3025"

    @property
    def address(self) -> str:
        return join_host_port(self.host, self.port)


def split_host_port(address: str) -> tuple[str, int]:
    """(host, port) of `HOST:PORT` or `[v6]:PORT`; ValueError otherwise."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address[:80]!r} is not HOST:PORT")
    return host, int(port)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def route_via_proxy(proxy: str, cluster: str) -> Route:
    """The auth service through a proxy's TLS routing (its web address)."""
    host, port = split_host_port(proxy)
    alpn, sni = grpc.alpn_auth(cluster)
    return Route(host, port, tuple(alpn), sni, f"the proxy {proxy}")


def route_direct(auth_server: str, cluster: str) -> Route:
    """The auth service at its own address (`--auth-server`, usually port 3025)."""
    host, port = split_host_port(auth_server)
    _, sni = grpc.alpn_auth(cluster)
    return Route(host, port, ("h2",), sni, f"the auth server {auth_server}")


def route_for(proxy: str, cluster: str, auth_server: str | None = None) -> Route:
    return route_direct(auth_server, cluster) if auth_server else route_via_proxy(proxy, cluster)


def pin_context() -> ssl.SSLContext:
    """Unverified TLS without a client certificate: only to fetch the CA whose pin is then checked."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def auth_context(host_ca_pems: list[str], identity_file: Path | None) -> ssl.SSLContext:
    """TLS verified against the cluster's host CA(s) only (never system roots), with the bot's certificate."""
    if not host_ca_pems:
        raise TrustError("no host CA of the cluster is known: log in again")
    ctx = ssl.create_default_context(cadata="\n".join(host_ca_pems))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if identity_file is not None:
        ctx.load_cert_chain(str(identity_file))
    return ctx


def tunnel(proxy_url: str, target: str, timeout: float) -> socket.socket:
    """A socket connected to `target` through an HTTP proxy's CONNECT (http.client does the handshake)."""
    from http.client import HTTPConnection

    parts = urlsplit(proxy_url if "://" in proxy_url else f"http://{proxy_url}")
    if parts.scheme != "http" or not parts.hostname:
        raise Unavailable(f"the proxy URL {parts.scheme}://{parts.hostname or ''} in $HTTPS_PROXY cannot carry the "
                          "auth connection: use an http:// proxy URL, or list the host in $NO_PROXY")
    host, port = split_host_port(target)
    headers = {}
    if parts.username is not None:
        creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(creds).decode()
    conn = HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    conn.set_tunnel(host, port, headers)
    try:
        conn.connect()
    except OSError as exc:
        conn.close()
        raise Unavailable(f"cannot reach {target} through the HTTP proxy {parts.hostname}:{parts.port or 80} "
                          f"({http.short_error(exc)}); check $HTTPS_PROXY and $NO_PROXY") from None
    sock, conn.sock = conn.sock, None
    assert sock is not None
    return sock


def call(route: Route, method: str, request: bytes, *, ctx: ssl.SSLContext, deadline: http.Deadline, action: str,
         kind: str, before_request: Callable[[], None] | None = None, answer_wait: float = 0.0) -> bytes:
    """One unary call on `route`; the serialized answer, or a typed PluginError (see `map_error`).

    `deadline` bounds everything until the request has left; `answer_wait` then allows at least that long for
    the answer (grpc.call)."""
    left = deadline.left()
    if left <= 0:
        raise _tag(Unavailable(f"{action} failed: no time left to reach {route.via}; check that it is reachable "
                               "and try again"), sent=False, ambiguous=False)
    sock = None
    proxy_url = http.http_proxy_for(route.address)
    if proxy_url:
        sock = tunnel(proxy_url, route.address, left)
    try:
        return grpc.call(route.host, route.port, method, request, ssl_context=ctx, server_hostname=route.sni,
                         alpn=list(route.alpn), deadline_seconds=deadline.left(), sock=sock,
                         before_request=before_request, answer_wait=answer_wait)
    except grpc.CallError as err:
        raise map_error(err, action, route, kind) from None


def _tag(err: PluginError, *, sent: bool, ambiguous: bool, code: int | None = None,
         retryable: bool = False) -> PluginError:
    """Mark what the failure says about the request: `request_sent`, `ambiguous` (the server may have acted on
    it), the gRPC status `grpc_code` (None for transport failures) and `retryable` (time may fix it, so an
    idempotent call may be repeated)."""
    err.request_sent = sent  # type: ignore[attr-defined]
    err.ambiguous = ambiguous  # type: ignore[attr-defined]
    err.grpc_code = code  # type: ignore[attr-defined]
    err.retryable = retryable  # type: ignore[attr-defined]
    return err


def is_retryable(err: BaseException) -> bool:
    """True when repeating an idempotent call may succeed (the server busy or away, a connection lost)."""
    return bool(getattr(err, "retryable", False))


def was_ambiguous(err: BaseException) -> bool:
    """True when a failed call may still have been carried out by the server."""
    return bool(getattr(err, "ambiguous", False))


# Statuses that say the server refused the request as such: it did not act on it. Anything else after the
# request left (a transport failure, DEADLINE_EXCEEDED, UNKNOWN, INTERNAL, UNAVAILABLE, ...) may have come after
# the server committed it.
_DEFINITE = {3, 5, 6, 7, 8, 9, 11, 12, 16}
_TRANSIENT = {4, 13, 14}  # DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE: worth repeating an idempotent call


def map_error(err: grpc.CallError, action: str, route: Route, kind: str) -> PluginError:
    """The plugin's error (one line, what to do) for a failed call, tagged (`_tag`).

    | failure | error (exit) |
    |---|---|
    | PERMISSION_DENIED "generation mismatch" or a lock | IdentityRejected (4): remove the lock, new token, log in |
    | PERMISSION_DENIED, other, renewal or Ping; UNAUTHENTICATED | IdentityRejected (4): log in again with a new token |
    | PERMISSION_DENIED, other, kube certificate or CA | AccessDenied (5): ask an admin, check --role |
    | INVALID_ARGUMENT / NOT_FOUND, kube certificate | AccessDenied (5): check the name (`kube ls`) and --role |
    | INVALID_ARGUMENT / NOT_FOUND, impersonation for `kube ls` | AccessDenied (5): check --role |
    | PERMISSION_DENIED (no lock), INVALID_ARGUMENT / NOT_FOUND, GetRole | AccessDenied (5): login adds the fix |
    | UNIMPLEMENTED | Unavailable (6): not a Teleport auth service, or too old |
    | any other status, a deadline, a transport failure | Unavailable (6): try again |
    | TLS verification (clock skew when only the validity times fail) | TrustError (7) |
    """
    if isinstance(err, grpc.GrpcError):
        # "ssh: no key found" (UNKNOWN) is a server before v17 failing to parse the request: it did nothing
        definite = err.code in _DEFINITE or (err.code == 2 and NO_KEY_FOUND in err.message)
        return _tag(_status_error(err, action, route.via, kind), sent=True, ambiguous=not definite, code=err.code,
                    retryable=err.code in _TRANSIENT)
    assert isinstance(err, grpc.TransportError)
    return _transport_error(err, action, route)


def _status_error(err: grpc.GrpcError, action: str, where: str, kind: str) -> PluginError:
    text = " ".join(err.message.split())[:300].rstrip(".") or err.name
    low = text.lower()
    if err.code == 7 and ("generation mismatch" in low or "lock" in low):
        reason = ("the identity was renewed from another copy (generation mismatch) and Teleport locked the bot"
                  if "generation" in low else "the bot is locked")
        return IdentityRejected(f"{action} failed: {reason} ({_clip(text, 120)}); {LOCK_RECOVERY}")
    if err.code in (3, 5, 7) and kind == ROLE:
        return AccessDenied(f"{action} failed: {text}")
    if err.code == 16 or (err.code == 7 and kind in (RENEW, PING_KIND)):
        return IdentityRejected(f"{action} failed: {where} refused the bot identity ({text}); log in again with "
                                "a new join token")
    if err.code == 7:
        return AccessDenied(f"{action} failed: access denied ({text}); ask an admin to grant the bot's roles "
                            "this, or check --role")
    if err.code in (3, 5) and kind == KUBE:
        return AccessDenied(f"{action} failed: {text}; check the name with `kubectl-teleport kube ls` and the "
                            "roles given with --role")
    if err.code in (3, 5) and kind == IMPERSONATE:
        return AccessDenied(f"{action} failed: {text}; check the roles given with --role (log in again to change "
                            "them)")
    if err.code == 12:
        return Unavailable(f"{action} failed: {where} does not implement it ({text}); check that it is a "
                           "Teleport auth service (v15 or later)")
    return Unavailable(f"{action} failed: {where} answered {err.name} ({text}); try again later")


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 3] + "..."


def _transport_error(err: grpc.TransportError, action: str, route: Route) -> PluginError:
    where, sent = route.via, err.request_sent
    if isinstance(err, grpc.TLSVerifyError):
        code = http.verify_code(err.__cause__ or err)
        if code in (http.NOT_YET_VALID, http.EXPIRED):
            return _tag(http.clock_skew_error(action, route.address, code), sent=False, ambiguous=False)
        return _tag(TrustError(f"{action} failed: {where} presented a certificate that does not chain to the "
                               "cluster's host CA; check --proxy/--auth-server, or log in again if the cluster's "
                               "CA was rotated"), sent=False, ambiguous=False)
    if isinstance(err, grpc.DeadlineExceeded):
        return _tag(Unavailable(f"{action} failed: {where} did not answer in time; check that it is reachable "
                                "and try again"), sent=sent, ambiguous=sent)
    message = " ".join(err.message.split())[:300]
    if "negotiated" in message and "not h2" in message:
        return _tag(Unavailable(f"{action} failed: {message}; the proxy does not route Teleport's auth ALPN (no "
                                "TLS routing, or a load balancer in front): pass --auth-server HOST:3025"),
                    sent=False, ambiguous=False)
    # a reply that is not gRPC is retried only when it is an HTTP 5xx (a load balancer's); others will not change
    retryable = not isinstance(err, grpc.ProtocolError) or " status 5" in message
    return _tag(Unavailable(f"{action} failed: cannot reach {where} or lost the connection ({message}); check "
                            "that it is running and reachable, and try again"),
                sent=sent, ambiguous=sent, retryable=retryable)


def is_no_key_found(err: BaseException) -> bool:
    """The answer of a server before v17 to a request without the `public_key` field (gRPC UNKNOWN)."""
    return getattr(err, "grpc_code", None) == 2 and NO_KEY_FOUND in str(err)


def host_cas_from_pem(pem: bytes | str, action: str) -> list[str]:
    """Every certificate of a GetClusterCACert answer, one PEM each; Unavailable when there is none."""
    try:
        found = pki.load_certs(pem)
    except ValueError:
        found = []
    if not found:
        raise Unavailable(f"{action} failed: the answer holds no CA certificate; check --proxy")
    return [pki.cert_pem(c) for c in found]
