"""Machine ID against a Teleport cluster: join a bot, renew its identity, get Kubernetes certificates.

Built from `webapi` (discovery, the join) and `auth` (gRPC to the auth service). Nothing here touches the
data dir: callers store what comes back (the store/ modules) and hold the identity's lock (renewal.py).

- `join_bot`: `/webapi/find` → the host CA from `GetClusterCACert` over the auth route on an unverified
  connection, every CA checked against the CA pins (when given) *before* the token leaves → a key of the
  cluster's suite → `/webapi/host/credentials` → the host CA(s) must be among the CAs the join returned.
- `renew_identity`: `GenerateUserCerts {username, expires}` + the key fields the server reads, from the bot
  identity itself (moves the generation counter: the caller records it first).
- `kube_certificate`: `GenerateUserCerts` from the bot identity with role impersonation and the Kubernetes
  cluster: one request, a fresh key, no generation change.

Key fields by server version: before 17 only field 1 (`public_key`, authorized_keys) is read; from 17 on the
same key goes as fields 22 (`ssh_public_key`) and 23 (`tls_public_key`, PEM). A server that answers UNKNOWN
"ssh: no key found" to the latter is older than it said: the request is sent once more with field 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .. import pki
from ..errors import PluginError, TrustError, Unavailable
from ..proto import teleport_auth_pb2 as pb
from . import auth, http, webapi
from . import certs as certs_mod
from .auth import Route
from .certs import Certs
from .webapi import Discovery

KEY_FIELDS_LEGACY = "public_key"  # field 1: servers before v17
KEY_FIELDS_SPLIT = "ssh_tls"  # fields 22 + 23: v17 and later
MAX_TTL = 24 * 3600  # Teleport caps renewable and impersonated certificates at 24 h


def key_fields_for(major: int | None) -> str:
    """The key fields a server of this major version reads (unknown: the current ones)."""
    return KEY_FIELDS_LEGACY if major is not None and major < 17 else KEY_FIELDS_SPLIT


def user_certs_request(*, username: str, expires: datetime, key: pki.PrivateKey | pki.PublicKey, key_fields: str,
                       roles: Sequence[str] = (), route_to_cluster: str = "",
                       kubernetes_cluster: str = "") -> pb.UserCertsRequest:
    """A `UserCertsRequest`: the bot's own renewal (no roles) or an impersonating Kubernetes request."""
    req = pb.UserCertsRequest(username=username)
    req.expires.FromDatetime(expires.astimezone(timezone.utc))
    ssh_line = pki.ssh_public_key_line(key).encode()
    if key_fields == KEY_FIELDS_LEGACY:
        req.public_key = ssh_line
    else:
        req.ssh_public_key = ssh_line
        req.tls_public_key = pki.tls_public_key_pem(key).encode()
    if roles:
        req.role_requests.extend(roles)
        req.use_role_requests = True
    if route_to_cluster:
        req.route_to_cluster = route_to_cluster
    if kubernetes_cluster:
        req.kubernetes_cluster = kubernetes_cluster
    return req


@dataclass
class AuthTarget:
    """How to reach the auth service as the bot: route, trust, client certificate, what the server reads."""

    route: Route
    host_ca_pems: list[str]
    identity_file: Path
    server_major: int | None = None
    key_fields: str | None = None  # learnt from a fallback; None: by server_major

    def fields(self) -> str:
        return self.key_fields or key_fields_for(self.server_major)


def generate_user_certs(target: AuthTarget, build: Callable[[str], pb.UserCertsRequest], *, deadline: http.Deadline,
                        action: str, kind: str, before_request: Callable[[], None] | None = None) -> Certs:
    """One `GenerateUserCerts` (and one retry with field 1 after "ssh: no key found", which the server refused
    before doing anything). `target.key_fields` records the fields that worked."""
    ctx = auth.auth_context(target.host_ca_pems, target.identity_file)
    fields = target.fields()
    try:
        raw = auth.call(target.route, auth.GENERATE_USER_CERTS, build(fields).SerializeToString(), ctx=ctx,
                        deadline=deadline, action=action, kind=kind, before_request=before_request)
    except PluginError as err:
        if fields == KEY_FIELDS_LEGACY or not auth.is_no_key_found(err):
            raise
        fields = KEY_FIELDS_LEGACY
        ctx = auth.auth_context(target.host_ca_pems, target.identity_file)
        raw = auth.call(target.route, auth.GENERATE_USER_CERTS, build(fields).SerializeToString(), ctx=ctx,
                        deadline=deadline, action=action, kind=kind, before_request=before_request)
    target.key_fields = fields
    return _certs(raw, action)


def _certs(raw: bytes, action: str) -> Certs:
    try:
        msg = pb.Certs.FromString(raw)
    except Exception:  # protobuf's DecodeError and friends
        raise Unavailable(f"{action} failed: the answer is not a Certs message; check --proxy") from None
    return certs_mod.from_message(msg, action)


def _expect_key(certs: Certs, key: pki.PrivateKey, action: str) -> Certs:
    if not pki.public_keys_equal(pki.load_cert(certs.tls).public_key(), key):  # type: ignore[arg-type]
        raise Unavailable(f"{action} failed: the server returned a certificate for another key; try again")
    return certs


def renew_identity(target: AuthTarget, *, username: str, key: pki.PrivateKey, expires: datetime,
                   deadline: http.Deadline, before_request: Callable[[], None] | None = None) -> Certs:
    """The bot's next identity (the server bumps the generation): `{username, expires}` + the key."""
    action = "renewing the bot identity"

    def build(fields: str) -> pb.UserCertsRequest:
        return user_certs_request(username=username, expires=expires, key=key, key_fields=fields)

    certs = generate_user_certs(target, build, deadline=deadline, action=action, kind=auth.RENEW,
                                before_request=before_request)
    return _expect_key(certs, key, action)


def kube_certificate(target: AuthTarget, *, username: str, key: pki.PrivateKey, expires: datetime,
                     roles: Sequence[str], cluster_name: str, kube_cluster: str,
                     deadline: http.Deadline) -> Certs:
    """A Kubernetes certificate from the bot identity: impersonating `roles`, routed to the cluster, for
    `kube_cluster` (one request; the generation does not move)."""
    action = f"issuing a certificate for Kubernetes cluster {kube_cluster!r}"

    def build(fields: str) -> pb.UserCertsRequest:
        return user_certs_request(username=username, expires=expires, key=key, key_fields=fields, roles=roles,
                                  route_to_cluster=cluster_name, kubernetes_cluster=kube_cluster)

    certs = generate_user_certs(target, build, deadline=deadline, action=action, kind=auth.KUBE)
    return _expect_key(certs, key, action)


def kube_expiry(now: datetime, ttl_seconds: int, identity_not_after: datetime) -> datetime:
    """What to ask for a Kubernetes certificate: `ttl` from now, never past the identity's own NotAfter."""
    return min(now + timedelta(seconds=min(ttl_seconds, MAX_TTL)), identity_not_after)


# --- the host CA, pinned or fetched --------------------------------------------------------------------------


def get_cluster_ca(route: Route, ctx: object, deadline: http.Deadline) -> list[str]:
    """`GetClusterCACert` on `route` with `ctx` (no client certificate needed): the host CA(s) as PEMs."""
    from google.protobuf import empty_pb2

    action = f"fetching the cluster CA from {route.via}"
    raw = auth.call(route, auth.GET_CLUSTER_CA_CERT, empty_pb2.Empty().SerializeToString(),
                    ctx=ctx, deadline=deadline, action=action, kind=auth.CA)  # type: ignore[arg-type]
    try:
        msg = pb.GetClusterCACertResponse.FromString(raw)
    except Exception:
        raise Unavailable(f"{action} failed: the answer is not a GetClusterCACertResponse") from None
    return auth.host_cas_from_pem(msg.tls_ca, action)


def check_pins(route: Route, cas: Sequence[str], pins: Sequence[str]) -> None:
    """TrustError unless every CA matches one of the pins."""
    certs = [pki.load_cert(p) for p in cas]
    if not pki.pins_match(certs, list(pins)):
        actual = ", ".join(pki.spki_pin(c) for c in certs)
        raise TrustError(f"the CA of the cluster behind {route.via} does not match --ca-pin: expected "
                         f"{', '.join(pins)}, the server has {actual}; the token was not sent. Check the pin and "
                         "the proxy address")


def fetch_pinned_host_cas(route: Route, pins: Sequence[str], deadline: http.Deadline) -> list[str]:
    """The host CA(s) over an unverified connection, accepted only when every one matches a pin."""
    cas = get_cluster_ca(route, auth.pin_context(), deadline)
    check_pins(route, cas, pins)
    return cas


def fetch_host_cas(route: Route, trust_pems: Sequence[str], deadline: http.Deadline) -> list[str]:
    """The host CA(s) over TLS verified against `trust_pems` (the CAs a join returned), no client cert."""
    return get_cluster_ca(route, auth.auth_context(list(trust_pems), None), deadline)


def _same_cert(a: str, b: str) -> bool:
    return pki.load_cert(a) == pki.load_cert(b)  # compares the DER encodings


# --- the join ------------------------------------------------------------------------------------------------


@dataclass
class Joined:
    """What a successful join brought: the cluster, the route to auth, the identity and the host CA(s)."""

    discovery: Discovery
    route: Route
    certs: Certs
    key_pem: str
    host_ca_pems: list[str]
    pinned: bool


def discover(proxy: str, *, insecure: bool, deadline: http.Deadline) -> Discovery:
    with webapi.WebClient(proxy, insecure=insecure, deadline=deadline) as web:
        return web.find()


def join_bot(proxy: str, token: str, *, pins: Sequence[str] = (), auth_server: str | None = None,
             insecure: bool = False, ttl_seconds: int = 3600, deadline: http.Deadline,
             now: Callable[[], datetime] = pki.utcnow,
             before_token: Callable[[Discovery], None] | None = None) -> Joined:
    """Join as a bot with a one-time token (see the module doc for the order of steps).

    The host CA is fetched over the auth route before the token leaves, pinned or not: with pins it must match
    them; without, it must be among the CAs the join returns (over the web TLS verified against the system
    trust store). Either way the auth route is known to work before the token is spent.
    `before_token(discovery)` runs after that and before the token leaves: the caller's last chance to refuse."""
    with webapi.WebClient(proxy, insecure=insecure, deadline=deadline) as web:
        found = web.find()
        route = auth.route_for(proxy, found.cluster_name, auth_server)
        host_cas = get_cluster_ca(route, auth.pin_context(), deadline)
        if pins:
            check_pins(route, host_cas, pins)
        if before_token is not None:
            before_token(found)
        key = pki.key_for_suite(found.suite)
        expires = now() + timedelta(seconds=min(ttl_seconds, MAX_TTL))
        certs = web.host_credentials(webapi.join_body(token, key, expires), found.cluster_name)
    action = f"joining {found.cluster_name}"
    _expect_key(certs, key, action)
    if not all(any(_same_cert(c, t) for t in certs.tls_ca_certs) for c in host_cas):
        raise TrustError(f"{action} failed: the web API at {proxy} answered for another cluster than the auth "
                         "service behind it (the CAs it returned do not include the host CA); check --proxy")
    return Joined(found, route, certs, pki.private_key_pem(key), host_cas, pinned=bool(pins))
