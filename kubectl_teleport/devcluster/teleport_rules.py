"""Teleport's issuing rules for bots, independent of the transport: the token join (proxy HTTP), and
GenerateUserCerts (own renewal, role impersonation, Kubernetes certificates), per Teleport version.

Time comes from an injectable `now()`. Every rule that reads and then changes state runs in one `BEGIN IMMEDIATE`
transaction, so two renewals from one certificate serialise: the second sees a stale generation and locks the
bot, as Teleport does. An error raised after a commit (the mismatch lock) keeps that state change.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509

from .. import pki
from ..proto import teleport_auth_pb2 as pb
from . import store, traceerr, versions
from .ca import CertAuthority, issue_identity_cert
from .pubkeys import PublicKey, check_suite, parse_ssh_key, parse_tls_key
from .roles import Role, grants_for
from .sshca import SSH_HOST_CA, SSH_USER_CA, SSHAuthority, issue_user_cert
from .tlsidentity import TeleportIdentity, read_identity
from .versions import Profile

DEFAULT_RENEWABLE_TTL = timedelta(hours=1)  # Teleport's DefaultRenewableCertTTL (join without `expires`)
MAX_RENEWABLE_TTL = timedelta(hours=24)  # MaxRenewableCertTTL, also the cap of impersonated certificates
MAX_TOKEN_LEN = 512
BOT_PREFIX = "bot-"
INTERNAL_JOIN_PRINCIPAL = "-teleport-internal-join"
GENERATION_MISMATCH = "renewable cert generation mismatch"


@dataclass(frozen=True)
class JoinRequest:
    """RegisterUsingTokenRequest, the fields a bot join uses (bytes already base64-decoded)."""

    token: str
    role: str
    public_tls_key: bytes = b""
    public_ssh_key: bytes = b""
    expires: datetime | None = None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _lock_message(bot: str) -> str:
    return f'lock targeting User:"{BOT_PREFIX}{bot}" is in force: the bot is locked; an admin must remove the ' \
           f"lock (`locks rm {bot}`) and issue a new join token"


def _timestamp(ts: Any) -> datetime:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, timezone.utc)


@dataclass
class TeleportAuthority:
    """The auth service's bot rules over one state directory, following one Teleport `Profile`."""

    state_dir: Path
    profile: Profile = field(default_factory=Profile)
    now: Callable[[], datetime] = field(default=pki.utcnow)
    proxy_public_addr: str = ""

    # CAs --------------------------------------------------------------------------------------------------

    @staticmethod
    def _tls_ca(conn: Any, kind: str) -> CertAuthority:
        return CertAuthority.from_pem(*store.get_ca(conn, kind))

    @staticmethod
    def _ssh_ca(conn: Any, kind: str) -> SSHAuthority:
        return SSHAuthority.from_pem(store.get_ca(conn, kind)[1])

    def authenticate(self, peer: x509.Certificate | None) -> None:
        """What Teleport's authorizer does before every gRPC call (`authz.Authorize`): a caller whose user a lock
        targets is refused with AccessDenied, whatever it asks. No client certificate: an anonymous caller."""
        if peer is None:
            return
        ident = read_identity(peer)
        bot_name = ident.bot_name or ident.username.removeprefix(BOT_PREFIX)
        if not ident.username.startswith(BOT_PREFIX) and not ident.bot_name:
            return
        with store.opened(self.state_dir) as conn:
            bot = store.get_bot(conn, bot_name)
            if bot is not None and bot["locked"]:
                store.bump(conn, "rejected_requests")
                raise traceerr.access_denied(_lock_message(bot_name))

    def cluster_ca_pem(self, peer: x509.Certificate | None = None) -> str:
        """GetClusterCACert: the host CA (PEM); needs no client certificate (a locked caller is refused)."""
        self.authenticate(peer)
        with store.opened(self.state_dir) as conn:
            return store.get_ca(conn, "host")[0]

    def ping(self, peer: x509.Certificate | None = None) -> pb.PingResponse:
        """Ping: the cluster's name and version; an authenticated call, so a locked caller is refused."""
        self.authenticate(peer)
        with store.opened(self.state_dir) as conn:
            cluster = store.get_setting(conn, "cluster_name") or ""
        return pb.PingResponse(cluster_name=cluster, server_version=self.profile.version,
                               proxy_public_addr=self.proxy_public_addr)

    # GetRole ----------------------------------------------------------------------------------------------------

    def get_role(self, peer: x509.Certificate | None, req: pb.GetRoleRequest) -> pb.RoleV6:
        """GetRole as Teleport's `ServerWithRoles.GetRole`: a caller may read the roles it holds (its certificate's
        roles: a bot identity holds `bot-NAME`, an impersonated one the roles it impersonates); any other role
        needs `read` on `role`, which no role here grants (the bot role's only rule is `readnosecrets` on
        `cert_authority`): AccessDenied, checked before the role is looked up. A held role that does not exist is
        NotFound. The bot role is built as Teleport builds it at `bots add`; every version behaves alike."""
        self.authenticate(peer)
        if peer is None:
            raise traceerr.access_denied(f'access denied to perform action "{VERB_READ}" on "{KIND_ROLE}"')
        ident = read_identity(peer)
        name = req.name
        with store.opened(self.state_dir) as conn:
            cluster = store.get_setting(conn, "cluster_name") or ""
            if ident.teleport_cluster != cluster:
                raise traceerr.access_denied(f"access denied: {ident.username!r} is not a user of cluster {cluster}")
            if not name:
                raise traceerr.bad_parameter("missing role name")
            if name not in ident.groups:
                store.bump(conn, "rejected_requests")
                raise traceerr.access_denied(f'access denied to perform action "{VERB_READ}" on "{KIND_ROLE}"')
            if name.startswith(BOT_PREFIX):
                bot = store.get_bot(conn, name[len(BOT_PREFIX):])
                if bot is not None:
                    return bot_role(bot["name"], json.loads(bot["roles"]))
            if store.get_roles(conn, [name]):
                role = pb.RoleV6(kind=KIND_ROLE, version=versions.ROLE_VERSION)
                role.metadata.name, role.metadata.namespace = name, "default"
                return role
            raise traceerr.not_found(f"role {name} is not found")

    # ListResources --------------------------------------------------------------------------------------------

    def list_resources(self, peer: x509.Certificate | None, req: pb.ListResourcesRequest) -> pb.ListResourcesResponse:
        """ListResources as Teleport's `ServerWithRoles.ListResources` pages `kube_server`: the caller's roles (its
        certificate's) filter the servers by their cluster's labels (`kubernetes_labels`); pages in name order,
        `StartKey` inclusive, and `NextKey` = the key of the first server past the page, taken *before* checking
        access to it (so a last page may come back empty). Other kinds that paginate have nothing here; a kind that
        does not paginate is NotImplemented. Every version behaves alike."""
        self.authenticate(peer)
        if peer is None:
            raise traceerr.access_denied("access denied: ListResources needs a client certificate")
        ident = read_identity(peer)
        if req.limit < 0:
            raise traceerr.bad_parameter("negative parameter limit")
        limit = req.limit or versions.LIST_DEFAULT_LIMIT
        if req.resource_type not in versions.PAGINATED_KINDS:
            raise traceerr.not_implemented(f"resource type {req.resource_type} does not support pagination")
        with store.opened(self.state_dir) as conn:
            cluster = store.get_setting(conn, "cluster_name") or ""
            if ident.teleport_cluster != cluster:
                raise traceerr.access_denied(f"access denied: {ident.username!r} is not a user of cluster {cluster}")
            # the bot's own role (bot-NAME) is not stored: it grants impersonation only, no Kubernetes cluster
            names = [g for g in ident.groups if not (g.startswith(BOT_PREFIX) and g == ident.username)]
            roles = self._roles(conn, names)
            store.bump(conn, "list_resources_pages")
            resp = pb.ListResourcesResponse()
            if req.resource_type != "kube_server":
                return resp
            for name, labels in store.list_kube_clusters(conn):  # ordered by name: the pagination key
                if req.start_key and name < req.start_key:
                    continue
                if len(resp.resources) == limit:
                    resp.next_key = name
                    break
                if grants_for(roles, labels) is None:
                    continue  # access denied: skipped silently, as Teleport does
                self._kube_server(resp.resources.add().kubernetes_server, cluster, name, labels)
            return resp

    def _kube_server(self, server: Any, teleport_cluster: str, name: str, labels: dict[str, str]) -> None:
        """A KubernetesServerV3 for the devcluster's one Kubernetes service proxying cluster `name`."""
        server.kind, server.version = "kube_server", "v3"
        server.metadata.name = name
        server.spec.version = self.profile.version
        server.spec.hostname = "devcluster"
        server.spec.host_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"devcluster:{teleport_cluster}"))
        kube = server.spec.cluster
        kube.kind, kube.version = "kube_cluster", "v3"
        kube.metadata.name = name
        kube.metadata.labels.update(labels)

    # shared pieces ----------------------------------------------------------------------------------------

    def _expiry(self, requested: datetime | None, default: timedelta | None) -> datetime:
        now = self.now()
        if requested is None:
            if default is None:
                raise traceerr.bad_parameter("expires is required: the requested certificate expiry")
            requested = now + default
        if requested <= now:
            raise traceerr.bad_parameter(f"the requested expiry {pki_time(requested)} is not in the future")
        return min(requested, now + MAX_RENEWABLE_TTL)

    def _check_key(self, key: PublicKey, what: str) -> PublicKey:
        check_suite(self.profile, key, what)
        return key

    def _certs(self, conn: Any, ident: TeleportIdentity, tls_key: PublicKey | None, ssh_key: PublicKey | None,
               not_after: datetime, with_host_ca: bool) -> pb.Certs:
        """Sign the TLS (and SSH) certificate; CA lists: user CA, then host CA for renewable bot identities."""
        now = self.now()
        user_ca = self._tls_ca(conn, "user")
        certs = pb.Certs()
        if tls_key is not None:
            cert = issue_identity_cert(user_ca, tls_key, ident.subject(), now, not_after)
            certs.tls = pki.cert_pem(cert).encode()
            not_after = pki.not_after(cert)  # capped at the CA's own expiry
        if ssh_key is not None:
            certs.ssh = issue_user_cert(self._ssh_ca(conn, SSH_USER_CA), ssh_key, ident.username, ident.groups,
                                        ident.principals, ident.route_to_cluster, now, not_after)
        certs.tls_ca_certs.append(user_ca.cert_pem.encode())
        certs.ssh_ca_certs.append(self._ssh_ca(conn, SSH_USER_CA).public_line.encode() + b"\n")
        if with_host_ca:
            certs.tls_ca_certs.append(store.get_ca(conn, "host")[0].encode())
            certs.ssh_ca_certs.append(self._ssh_ca(conn, SSH_HOST_CA).public_line.encode() + b"\n")
        return certs

    def _bot_identity(self, conn: Any, bot: str, generation: int, instance_id: str) -> TeleportIdentity:
        cluster = store.get_setting(conn, "cluster_name") or ""
        user = BOT_PREFIX + bot
        return TeleportIdentity(
            username=user, groups=[user], principals=[f"-teleport-nologin-{uuid.uuid4()}", INTERNAL_JOIN_PRINCIPAL],
            route_to_cluster=cluster, teleport_cluster=cluster, renewable=True, generation=generation,
            bot_name=bot, bot_instance_id=instance_id)

    # the token join (POST /webapi/host/credentials) -------------------------------------------------------

    def register_using_token(self, req: JoinRequest) -> pb.Certs:
        """Consume a one-time bot token: a renewable identity at generation 1 (and a new bot instance)."""
        if not req.token or len(req.token) > MAX_TOKEN_LEN:
            raise traceerr.bad_parameter("token is required: the one-time token printed by `bots add`")
        tls_key, ssh_key = self._join_keys(req)
        expires = self._expiry(req.expires, DEFAULT_RENEWABLE_TTL)
        digest = token_digest(req.token)
        error: traceerr.TraceError | None = None
        with store.opened(self.state_dir) as conn:
            with store.transaction(conn):
                row = store.get_token(conn, digest)
                bot = None if row is None else store.get_bot(conn, row["bot"])
                if row is not None and row["expires_at"] <= self.now().timestamp():
                    store.delete_token(conn, digest)  # an expired token is gone, as in Teleport's backend
                    row = None
                if row is None or bot is None:
                    error = traceerr.access_denied("the join token is not found, expired or already used; ask an "
                                                   "admin for a new one (`bots add`)")
                elif req.role != "Bot":
                    error = traceerr.access_denied(f"the token does not allow joining with role {req.role!r} "
                                                   "(bot tokens join with role \"Bot\")")
                elif bot["locked"]:
                    error = traceerr.access_denied(_lock_message(bot["name"]))
                else:
                    store.delete_token(conn, digest)
                    name = bot["name"]
                    store.upsert_bot(conn, name, json.loads(row["roles"]), int(self.now().timestamp()))
                    store.set_generation(conn, name, 1)
                    instance_id = ""
                    if self.profile.bot_instances:
                        instance_id = str(uuid.uuid4())
                        store.add_instance(conn, instance_id, name, 1, int(self.now().timestamp()))
                    ident = self._bot_identity(conn, name, 1, instance_id)
                    certs = self._certs(conn, ident, tls_key, ssh_key, expires, with_host_ca=True)
                    store.bump(conn, "joins")
            if error is not None:
                store.bump(conn, "rejected_requests")
                raise error
        return certs

    def _join_keys(self, req: JoinRequest) -> tuple[PublicKey, PublicKey | None]:
        """v16 builds both certificates from public_ssh_key; v17+ reads public_tls_key (and public_ssh_key)."""
        if not self.profile.split_keys:
            key = self._check_key(parse_ssh_key(req.public_ssh_key, "public_ssh_key"), "public_ssh_key")
            return key, key
        if not req.public_tls_key:
            raise traceerr.bad_parameter("public_tls_key is required: the PEM public key for the TLS certificate")
        tls_key = self._check_key(parse_tls_key(req.public_tls_key, "public_tls_key"), "public_tls_key")
        ssh_key = None
        if req.public_ssh_key:
            ssh_key = self._check_key(parse_ssh_key(req.public_ssh_key, "public_ssh_key"), "public_ssh_key")
        return tls_key, ssh_key

    # GenerateUserCerts -------------------------------------------------------------------------------------

    def _request_keys(self, req: pb.UserCertsRequest) -> tuple[PublicKey | None, PublicKey | None]:
        """(TLS key, SSH key) by version: v16 reads field 1 only; v17+ fields 22/23 (field 1 alone: see
        versions.V17_ACCEPTS_LEGACY_PUBLIC_KEY)."""
        if not self.profile.split_keys:
            key = self._check_key(parse_ssh_key(req.public_key, "PublicKey"), "PublicKey")
            return key, key
        if req.ssh_public_key or req.tls_public_key:
            tls = self._check_key(parse_tls_key(req.tls_public_key, "TLSPublicKey"), "TLSPublicKey") \
                if req.tls_public_key else None
            ssh = self._check_key(parse_ssh_key(req.ssh_public_key, "SSHPublicKey"), "SSHPublicKey") \
                if req.ssh_public_key else None
            return tls, ssh
        if req.public_key and versions.V17_ACCEPTS_LEGACY_PUBLIC_KEY:
            key = self._check_key(parse_ssh_key(req.public_key, "PublicKey"), "PublicKey")
            return key, key
        if req.public_key:
            raise traceerr.bad_parameter("PublicKey (field 1) is deprecated and not read by Teleport "
                                         f"{self.profile.major}: send SSHPublicKey and TLSPublicKey")
        raise traceerr.bad_parameter("at least one of SSHPublicKey or TLSPublicKey is required")

    def _caller(self, conn: Any, peer: x509.Certificate | None) -> tuple[TeleportIdentity, Any, datetime]:
        """The verified caller: (identity, bot row, certificate expiry); AccessDenied when it may not ask."""
        if peer is None:
            raise traceerr.access_denied("access denied: GenerateUserCerts needs a client certificate (the bot "
                                         "identity)")
        ident = read_identity(peer)
        now = self.now()
        if now >= pki.not_after(peer) or now < pki.not_before(peer):
            raise traceerr.access_denied(f"access denied: the client certificate is not valid now (it expires "
                                         f"{pki_time(pki.not_after(peer))})")
        cluster = store.get_setting(conn, "cluster_name")
        bot_name = ident.bot_name or (ident.username[len(BOT_PREFIX):] if ident.username.startswith(BOT_PREFIX)
                                      else "")
        if ident.teleport_cluster != cluster or not bot_name:
            raise traceerr.access_denied(f"access denied: {ident.username!r} is not a bot of cluster {cluster}")
        bot = store.get_bot(conn, bot_name)
        if bot is None:
            raise traceerr.access_denied(f"access denied: bot {bot_name!r} no longer exists")
        if bot["locked"]:
            raise traceerr.access_denied(_lock_message(bot_name))
        if ident.disallow_reissue:
            raise traceerr.access_denied("access denied: this certificate is not allowed to reissue certificates "
                                         "(it was issued by role impersonation)")
        return ident, bot, pki.not_after(peer)

    def _roles(self, conn: Any, names: list[str]) -> list[Role]:
        found = {s["name"]: Role.from_dict(s) for s in store.get_roles(conn, names)}
        missing = [n for n in names if n not in found]
        if missing:
            raise traceerr.not_found(f"role {missing[0]!r} is not found")
        return [found[n] for n in names]

    def _kube(self, conn: Any, cluster: str, roles: list[Role], user: str) -> tuple[list[str], list[str]]:
        """The kube users and groups `roles` grant on `cluster`; BadParameter for an unknown cluster."""
        labels = store.get_kube_cluster(conn, cluster)
        if labels is None:
            raise traceerr.bad_parameter(f"Kubernetes cluster {cluster!r} is not registered in this Teleport "
                                         "cluster; list the registered ones with `kube ls`")
        grants = grants_for(roles, labels)
        if grants is None:
            raise traceerr.access_denied(f"access denied: the roles of {user} do not grant access to Kubernetes "
                                         f"cluster {cluster!r}")
        return grants.users, grants.groups

    def generate_user_certs(self, peer: x509.Certificate | None, req: pb.UserCertsRequest) -> pb.Certs:
        """GenerateUserCerts as a bot: own renewal (bumps the generation), or role impersonation (never does)."""
        with store.opened(self.state_dir) as conn:
            try:
                with store.transaction(conn):
                    try:
                        return self._generate(conn, peer, req)
                    except _CommitThen as e:  # the mismatch lock is committed, then the caller gets the error
                        error = e.error
                raise error
            except traceerr.TraceError:
                store.bump(conn, "rejected_requests")
                raise

    def _generate(self, conn: Any, peer: x509.Certificate | None, req: pb.UserCertsRequest) -> pb.Certs:
        ident, bot, caller_expiry = self._caller(conn, peer)
        bot_name = bot["name"]
        if req.username != ident.username:
            raise traceerr.access_denied(f"access denied: {ident.username} may request certificates only for "
                                         f"itself, not for {req.username!r}")
        cluster = store.get_setting(conn, "cluster_name") or ""
        if req.route_to_cluster and req.route_to_cluster != cluster:
            raise traceerr.not_found(f"cluster {req.route_to_cluster!r} is not found")
        tls_key, ssh_key = self._request_keys(req)
        if not req.HasField("expires"):
            raise traceerr.bad_parameter("expires is required: the requested certificate expiry")
        expires = self._expiry(_timestamp(req.expires), None)
        if req.use_role_requests and not req.role_requests:
            raise traceerr.bad_parameter("use_role_requests needs role_requests: the roles to impersonate")

        impersonating = bool(req.role_requests)
        renewal = ident.renewable and not impersonating
        generation, instance_id = 0, ident.bot_instance_id
        if impersonating:
            allowed = json.loads(bot["roles"])
            for role in req.role_requests:
                if role not in allowed:
                    raise traceerr.access_denied(f"access denied: {ident.username} is not allowed to impersonate "
                                                 f"role {role!r} (it may impersonate {', '.join(allowed)})")
            role_names = list(dict.fromkeys(req.role_requests))
            roles = self._roles(conn, role_names)
        elif renewal:
            role_names, roles = [ident.username], []  # the bot's own role grants no Kubernetes access
        else:  # a reissue from a reissuable impersonated certificate: the same roles
            role_names = list(ident.groups)
            roles = self._roles(conn, role_names)

        kube_users: list[str] = []
        kube_groups: list[str] = []
        if req.kubernetes_cluster:
            kube_users, kube_groups = self._kube(conn, req.kubernetes_cluster, roles, ident.username)

        if renewal:
            generation, instance_id = self._advance_generation(conn, bot_name, ident)
            not_after = expires
        else:
            caps = [expires, caller_expiry] + [self.now() + timedelta(seconds=r.max_session_ttl) for r in roles]
            not_after = min(caps)
        new = TeleportIdentity(
            username=ident.username, groups=role_names, principals=[f"-teleport-nologin-{uuid.uuid4()}"],
            route_to_cluster=req.route_to_cluster or cluster, kube_users=kube_users, kube_groups=kube_groups,
            kube_cluster=req.kubernetes_cluster, teleport_cluster=cluster, renewable=renewal,
            generation=generation,
            impersonator=ident.username if impersonating else ident.impersonator,
            disallow_reissue=impersonating and not req.reissuable_role_impersonation,
            bot_name=bot_name, bot_instance_id=instance_id if self.profile.bot_instances else "")
        if renewal:
            new = replace(new, principals=[new.principals[0], INTERNAL_JOIN_PRINCIPAL])
        certs = self._certs(conn, new, tls_key, ssh_key, not_after, with_host_ca=renewal)
        if renewal:
            store.bump(conn, "identity_renewals")
        if impersonating:
            store.bump(conn, "impersonated_certs_issued")
        if req.kubernetes_cluster:
            store.bump(conn, "kube_certs_issued")
        return certs

    def _advance_generation(self, conn: Any, bot: str, ident: TeleportIdentity) -> tuple[int, str]:
        """Check the presented generation against the stored one and bump it; lock the bot on a mismatch."""
        presented = ident.generation
        if presented <= 0:
            raise traceerr.access_denied("a current identity generation must be provided")
        instance = None
        if self.profile.bot_instances and ident.bot_instance_id:
            instance = store.get_instance(conn, ident.bot_instance_id)
            if instance is not None and instance["bot"] != bot:
                instance = None
        row = store.get_bot(conn, bot)
        expected = instance["generation"] if instance is not None else row["generation"]
        if presented != expected:
            store.set_lock(conn, bot, True, f"{GENERATION_MISMATCH}: presented {presented}, expected {expected}",
                           int(self.now().timestamp()))
            store.bump(conn, "bots_locked")
            store.bump(conn, "generation_mismatches")
            raise _CommitThen(traceerr.access_denied(GENERATION_MISMATCH))
        new = presented + 1
        instance_id = ident.bot_instance_id
        if self.profile.bot_instances:
            if instance is None:  # a certificate from before bot instances (or an unknown one): a new instance
                instance_id = str(uuid.uuid4())
                store.add_instance(conn, instance_id, bot, new, int(self.now().timestamp()))
            else:
                store.set_instance_generation(conn, instance_id, new)
        store.set_generation(conn, bot, new)  # the legacy label, kept in sync as Teleport does
        return new, instance_id


class _CommitThen(Exception):
    """Raised inside the transaction for an error whose state change must be committed first."""

    def __init__(self, error: traceerr.TraceError) -> None:
        super().__init__(error.message)
        self.error = error


KIND_ROLE = "role"
VERB_READ = "read"
BOT_LABEL = "teleport.internal/bot"  # types.BotLabel


def bot_role(bot: str, roles: list[str]) -> pb.RoleV6:
    """The role `bots add` makes for a bot, as Teleport's bot service builds it (`botToUserAndRole`): `bot-NAME`,
    labelled with the bot's name, allowing `readnosecrets` on `cert_authority` (to watch CA rotations) and the
    impersonation of the bot's roles. (Its `max_session_ttl` of 12 h lives in the options, not encoded here.)"""
    role = pb.RoleV6(kind=KIND_ROLE, version=versions.ROLE_VERSION)
    role.metadata.name, role.metadata.namespace = BOT_PREFIX + bot, "default"
    role.metadata.description = f"Automatically generated role for bot {bot}"
    role.metadata.labels[BOT_LABEL] = bot
    role.spec.allow.rules.add(resources=["cert_authority"], verbs=["readnosecrets"])
    role.spec.allow.impersonate.roles.extend(roles)
    return role


def pki_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
