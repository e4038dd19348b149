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
- `impersonated_identity`: `GenerateUserCerts` from the bot identity with role impersonation and no Kubernetes
  cluster (what tbot lists resources with); no generation change.
- `ping`: `Ping` with the bot identity, which changes nothing; `doctor` asks it whether the bot is locked.
- `get_role` / `default_roles`: `GetRole` of the bot's own role (`bot-<name>`, the identity's CN) with the bot
  identity, and its `allow.impersonate.roles`: the roles to impersonate when none are given (tbot's
  `fetchDefaultRoles`). Teleport lets any user read the roles it holds.

Key fields by server version: before 17 only field 1 (`public_key`, authorized_keys) is read; from 17 on the
same key goes as fields 22 (`ssh_public_key`) and 23 (`tls_public_key`, PEM). A server that answers UNKNOWN
"ssh: no key found" to the latter is older than it said: the request is sent once more with field 1.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

from .. import pki
from ..errors import PluginError, TrustError, Unavailable
from ..proto import teleport_auth_pb2 as pb
from . import auth, grpc, http
from . import certs as certs_mod
from .auth import Route
from .certs import Certs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .webapi import Discovery  # webapi (and httpx) only for discovery and the join

KEY_FIELDS_LEGACY = "public_key"  # field 1: servers before v17
KEY_FIELDS_SPLIT = "ssh_tls"  # fields 22 + 23: v17 and later
MAX_TTL = 24 * 3600  # Teleport caps renewable and impersonated certificates at 24 h
# Once a renewal request has left, its answer is awaited at least this long, whatever the caller's budget: a
# lost answer leaves the renewal ambiguous (the server may have committed it), which costs far more than seconds.
RENEW_ANSWER_WAIT = 10.0


def version_major(version: str) -> int | None:
    """The major number of a Teleport version (`17.4.2`, `v16.0.0-dev.1` → 17, 16); None when unparseable."""
    head = version.strip().lstrip("vV").split(".", 1)[0]
    return int(head) if head.isdigit() and len(head) <= 4 else None


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
                        action: str, kind: str, before_request: Callable[[], None] | None = None,
                        answer_wait: float = 0.0) -> Certs:
    """One `GenerateUserCerts` (and one retry with field 1 after "ssh: no key found", which the server refused
    before doing anything). `target.key_fields` records the fields that worked."""
    ctx = auth.auth_context(target.host_ca_pems, target.identity_file)
    fields = target.fields()
    try:
        raw = auth.call(target.route, auth.GENERATE_USER_CERTS, build(fields).SerializeToString(), ctx=ctx,
                        deadline=deadline, action=action, kind=kind, before_request=before_request,
                        answer_wait=answer_wait)
    except PluginError as err:
        if fields == KEY_FIELDS_LEGACY or not auth.is_no_key_found(err):
            raise
        fields = KEY_FIELDS_LEGACY
        ctx = auth.auth_context(target.host_ca_pems, target.identity_file)
        raw = auth.call(target.route, auth.GENERATE_USER_CERTS, build(fields).SerializeToString(), ctx=ctx,
                        deadline=deadline, action=action, kind=kind, before_request=before_request,
                        answer_wait=answer_wait)
    target.key_fields = fields
    return _certs(raw, action)


MAX_ATTEMPTS = 4
T = TypeVar("T")


def with_retries(once: Callable[[], T], deadline: http.Deadline) -> T:
    """Run an idempotent call; repeat it after a transient failure (`auth.is_retryable`), at most 4 attempts
    with a jittered backoff of 0.2·2ⁿ s (cap 2 s), all inside the deadline. Never for a renewal."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return once()
        except PluginError as err:
            pause = min(2.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)  # noqa: S311
            if not auth.is_retryable(err) or attempt >= MAX_ATTEMPTS or deadline.left() <= pause + 0.5:
                raise
            time.sleep(pause)


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
                   deadline: http.Deadline, before_request: Callable[[], None] | None = None,
                   answer_wait: float | None = None) -> Certs:
    """The bot's next identity (the server bumps the generation): `{username, expires}` + the key.

    `deadline` bounds connecting and sending; once sent, the answer gets at least `answer_wait` seconds
    (default RENEW_ANSWER_WAIT)."""
    action = "renewing the bot identity"

    def build(fields: str) -> pb.UserCertsRequest:
        return user_certs_request(username=username, expires=expires, key=key, key_fields=fields)

    certs = generate_user_certs(target, build, deadline=deadline, action=action, kind=auth.RENEW,
                                before_request=before_request,
                                answer_wait=RENEW_ANSWER_WAIT if answer_wait is None else answer_wait)
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

    certs = with_retries(lambda: generate_user_certs(target, build, deadline=deadline, action=action,
                                                     kind=auth.KUBE), deadline)
    return _expect_key(certs, key, action)


def impersonated_identity(target: AuthTarget, *, username: str, key: pki.PrivateKey, expires: datetime,
                          roles: Sequence[str], cluster_name: str, deadline: http.Deadline) -> Certs:
    """A short-lived identity from the bot identity impersonating `roles`, routed to the cluster, for no
    Kubernetes cluster: what `ListResources` is asked with (one request; the generation does not move)."""
    action = f"getting an identity for roles {', '.join(roles)}"

    def build(fields: str) -> pb.UserCertsRequest:
        return user_certs_request(username=username, expires=expires, key=key, key_fields=fields, roles=roles,
                                  route_to_cluster=cluster_name)

    certs = with_retries(lambda: generate_user_certs(target, build, deadline=deadline, action=action,
                                                     kind=auth.IMPERSONATE), deadline)
    return _expect_key(certs, key, action)


def kube_expiry(now: datetime, ttl_seconds: int, identity_not_after: datetime) -> datetime:
    """What to ask for a Kubernetes certificate: `ttl` from now, never past the identity's own NotAfter."""
    return min(now + timedelta(seconds=min(ttl_seconds, MAX_TTL)), identity_not_after)


# --- the host CA, pinned or fetched --------------------------------------------------------------------------


def get_cluster_ca(route: Route, ctx: object, deadline: http.Deadline) -> list[str]:
    """`GetClusterCACert` on `route` with `ctx` (no client certificate needed): the host CA(s) as PEMs."""
    from google.protobuf import empty_pb2

    action = f"fetching the cluster CA from {route.via}"
    raw = with_retries(lambda: auth.call(route, auth.GET_CLUSTER_CA_CERT, empty_pb2.Empty().SerializeToString(),
                                         ctx=ctx, deadline=deadline, action=action, kind=auth.CA),  # type: ignore[arg-type]
                       deadline)
    try:
        msg = pb.GetClusterCACertResponse.FromString(raw)
    except Exception:
        raise Unavailable(f"{action} failed: the answer is not a GetClusterCACertResponse") from None
    return auth.host_cas_from_pem(msg.tls_ca, action)


def ping(target: AuthTarget, deadline: http.Deadline) -> pb.PingResponse:
    """`Ping` as the bot: an authenticated call that changes nothing. Teleport's authorizer runs first, so a
    locked bot gets PERMISSION_DENIED "lock targeting User:... is in force" (IdentityRejected, exit 4)."""
    action = f"Ping to {target.route.via} as the bot"
    ctx = auth.auth_context(target.host_ca_pems, target.identity_file)
    raw = with_retries(lambda: auth.call(target.route, auth.PING, pb.PingRequest().SerializeToString(), ctx=ctx,
                                         deadline=deadline, action=action, kind=auth.PING_KIND), deadline)
    try:
        return pb.PingResponse.FromString(raw)
    except Exception:
        raise Unavailable(f"{action} failed: the answer is not a PingResponse") from None


def get_role(target: AuthTarget, name: str, deadline: http.Deadline) -> pb.RoleV6:
    """`GetRole` as the bot (read-only, so retried after a transient failure); AccessDenied (exit 5) when the
    server refuses it or knows no such role, IdentityRejected (exit 4) for a locked bot."""
    action = f"reading role {name!r} (GetRole) from {target.route.via}"
    ctx = auth.auth_context(target.host_ca_pems, target.identity_file)
    raw = with_retries(lambda: auth.call(target.route, auth.GET_ROLE,
                                         pb.GetRoleRequest(name=name).SerializeToString(), ctx=ctx,
                                         deadline=deadline, action=action, kind=auth.ROLE), deadline)
    try:
        return pb.RoleV6.FromString(raw)
    except Exception:
        raise Unavailable(f"{action} failed: the answer is not a role (RoleV6)") from None


def impersonable_roles(role: pb.RoleV6) -> list[str]:
    """A role's `allow.impersonate.roles`, in order, without duplicates or empty names."""
    seen: list[str] = []
    for name in role.spec.allow.impersonate.roles:
        if name and name not in seen:
            seen.append(name)
    return seen


def default_roles(target: AuthTarget, bot_role: str, deadline: http.Deadline) -> list[str]:
    """The roles the bot role may impersonate: what Kubernetes certificates ask for when no --role is given."""
    return impersonable_roles(get_role(target, bot_role, deadline))


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


# --- where kubectl goes ----------------------------------------------------------------------------------------

KUBE_SNI_PREFIX = "kube-teleport-proxy-alpn."
DEFAULT_KUBE_PORT = 3026


def kube_endpoint(proxy: str, found: Discovery) -> tuple[str, str]:
    """(server URL, tls-server-name) of the Teleport Kubernetes proxy, as tbot writes them.

    With TLS routing: the proxy's own address, and the SNI `kube-teleport-proxy-alpn.<host>` that routes to the
    Kubernetes service (`kube-teleport-proxy-alpn.teleport.cluster.local` when the host is an IP or localhost).
    Without: the proxy's Kubernetes public address, or the web host with the Kubernetes listener's port."""
    host, port = auth.split_host_port(proxy)
    if found.tls_routing:
        if not host or host == "localhost" or _is_ip(host):
            sni = KUBE_SNI_PREFIX + grpc.TELEPORT_API_DOMAIN
        else:
            sni = KUBE_SNI_PREFIX + host
        return f"https://{auth.join_host_port(host, port)}", sni
    if found.kube_public_addr:
        return f"https://{_with_port(found.kube_public_addr, DEFAULT_KUBE_PORT)}", ""
    web_host = host
    for addr in (found.web_public_addr, found.ssh_public_addr):
        if addr:
            web_host = addr.rpartition(":")[0].strip("[]") if ":" in addr else addr
            break
    kube_port = DEFAULT_KUBE_PORT
    if found.kube_listen_addr:
        try:
            kube_port = auth.split_host_port(found.kube_listen_addr)[1]
        except ValueError:
            pass
    return f"https://{auth.join_host_port(web_host, kube_port)}", ""


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _with_port(addr: str, default: int) -> str:
    try:
        host, port = auth.split_host_port(addr)
    except ValueError:
        return auth.join_host_port(addr.strip("[]"), default)
    return auth.join_host_port(host, port)


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
    from . import webapi

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
    from . import webapi

    with webapi.WebClient(proxy, insecure=insecure, deadline=deadline) as web:
        found = web.find()
        route = auth.route_for(proxy, found.cluster_name, auth_server)
        host_cas = get_cluster_ca(route, auth.pin_context(), deadline)
        if pins:
            check_pins(route, host_cas, pins)
        if before_token is not None:
            before_token(found)
        key = pki.key_for_suite(found.suite)
        # `expires` is absolute: ask for it on the server's clock, so a clock difference does not change the
        # lifetime granted (the Date header's second of resolution is all the precision needed)
        expires = now() + timedelta(seconds=found.clock_offset + min(ttl_seconds, MAX_TTL))
        certs = web.host_credentials(webapi.join_body(token, key, expires), found.cluster_name)
    action = f"joining {found.cluster_name}"
    _expect_key(certs, key, action)
    if not all(any(_same_cert(c, t) for t in certs.tls_ca_certs) for c in host_cas):
        raise TrustError(f"{action} failed: the web API at {proxy} answered for another cluster than the auth "
                         "service behind it (the CAs it returned do not include the host CA); check --proxy")
    return Joined(found, route, certs, pki.private_key_pem(key), host_cas, pinned=bool(pins))
