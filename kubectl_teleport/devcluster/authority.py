"""The issuing rules of protocol v1 (join, renew, Kubernetes certificates), independent of HTTP.

Time comes from an injectable `now()` so tests can move the clock instead of sleeping. Every rule that reads
and then changes state runs inside one `BEGIN IMMEDIATE` transaction; an error raised as `ApiError` after a
commit (a lock on generation mismatch, an expired token's deletion) keeps that state change.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from .. import __version__, pki
from . import store
from .ca import KUBE_TLS_SERVER_NAME, CertAuthority, issue_bot_identity, issue_kube_cert
from .roles import NAME_RE, Role, grants_for

PROTOCOL_VERSION = 1
DEFAULT_TTL = 3600
MAX_IDENTITY_TTL = 86400
MIN_TTL = 60
DEFAULT_TOKEN_TTL = 3600
MAX_TOKEN_LEN = 512


class ApiError(Exception):
    """A protocol error: HTTP status, error code and one human sentence (never secret material)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_digest(token: str) -> str:
    """What the state keeps of a join token: its SHA-256 (hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _public_key(body: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    pem = body.get("public_tls_key")
    if not isinstance(pem, str) or not pem.strip():
        raise bad_request("public_tls_key is required: a PEM SubjectPublicKeyInfo of an ECDSA P-256 key")
    try:
        return pki.load_public_key(pem)
    except (ValueError, TypeError):
        raise bad_request("public_tls_key is not a PEM ECDSA P-256 public key (-----BEGIN PUBLIC KEY-----)"
                          ) from None


def _ttl(body: dict[str, Any], cap: int) -> int:
    ttl = body.get("ttl_seconds", DEFAULT_TTL)
    if ttl is None:
        ttl = DEFAULT_TTL
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise bad_request("ttl_seconds must be a positive whole number of seconds")
    return max(MIN_TTL, min(ttl, cap))


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise bad_request(f"{key} must be a non-empty string")
    return value


@dataclass
class Authority:
    """The auth service's rules over one state directory."""

    state_dir: Path
    now: Callable[[], datetime] = field(default=pki.utcnow)

    # helpers ------------------------------------------------------------------------------------------------

    def _ca(self, conn: Any, kind: str) -> CertAuthority:
        return CertAuthority.from_pem(*store.get_ca(conn, kind))

    def _authenticate(self, conn: Any, peer: x509.Certificate | None) -> tuple[str, int, datetime]:
        """The bot name, presented generation and expiry of a bot identity; 401 unauthenticated otherwise."""
        if peer is None:
            raise ApiError(401, "unauthenticated", "a client certificate (the bot identity) is required")
        ident = pki.identity_of(peer)
        cluster = store.get_setting(conn, "cluster_name")
        if (not ident.renewable or ident.generation is None or not ident.username.startswith("bot-")
                or ident.teleport_cluster != cluster):
            raise ApiError(401, "unauthenticated", "the client certificate is not a bot identity of this cluster")
        try:
            peer.verify_directly_issued_by(self._ca(conn, "user").cert)
        except (InvalidSignature, ValueError, TypeError):
            raise ApiError(401, "unauthenticated", "the client certificate is not signed by this cluster's user CA"
                           ) from None
        now = self.now()
        if now >= pki.not_after(peer) or now < pki.not_before(peer):
            raise ApiError(401, "unauthenticated", f"the bot identity expired at {rfc3339(pki.not_after(peer))}; "
                           "log in again with a new token")
        return ident.username[len("bot-"):], ident.generation, pki.not_after(peer)

    def _identity_answer(self, conn: Any, bot: str, cert_pem: str, generation: int, expires: datetime
                         ) -> dict[str, Any]:
        return {"bot": bot, "cluster_name": store.get_setting(conn, "cluster_name"), "tls_cert": cert_pem,
                "tls_ca_certs": [store.get_ca(conn, "host")[0]], "generation": generation,
                "expires": rfc3339(expires)}

    def _issue_identity(self, conn: Any, bot: str, roles: list[str], pub: ec.EllipticCurvePublicKey,
                        generation: int, ttl: int) -> tuple[str, datetime]:
        now = self.now()
        cert = issue_bot_identity(self._ca(conn, "user"), pub, bot, roles, store.get_setting(conn, "cluster_name")
                                  or "", generation, now, now + timedelta(seconds=ttl))
        return pki.cert_pem(cert), pki.not_after(cert)

    # unauthenticated endpoints ------------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        with store.opened(self.state_dir) as conn:
            return {"cluster_name": store.get_setting(conn, "cluster_name"), "server_version": __version__,
                    "protocol_version": PROTOCOL_VERSION,
                    "kube": {"server": store.get_setting(conn, "kube_server") or "",
                             "tls_server_name": KUBE_TLS_SERVER_NAME}}

    def cluster_ca(self) -> dict[str, Any]:
        with store.opened(self.state_dir) as conn:
            return {"cluster_name": store.get_setting(conn, "cluster_name"),
                    "ca_pems": [store.get_ca(conn, "host")[0]]}

    # admin --------------------------------------------------------------------------------------------------

    def add_bot(self, name: str, roles: list[str], token_ttl: int = DEFAULT_TOKEN_TTL) -> tuple[str, datetime]:
        """Create (or update) a bot and a one-time join token; returns the token and its expiry.

        ValueError for a bad name or TTL, LookupError naming roles that do not exist.
        """
        if not NAME_RE.match(name):
            raise ValueError(f"invalid bot name {name!r}: use letters, digits, '.', '_', '-' or '@'")
        if not roles:
            raise ValueError("a bot needs at least one role (--roles)")
        if token_ttl <= 0:
            raise ValueError("the token TTL must be positive")
        token = secrets.token_hex(16)
        now = self.now()
        expires = now + timedelta(seconds=token_ttl)
        with store.opened(self.state_dir) as conn, store.transaction(conn):
            known = {r["name"] for r in store.get_roles(conn, roles)}
            missing = [r for r in roles if r not in known]
            if missing:
                raise LookupError(f"unknown role(s): {', '.join(missing)}; create them with `create -f role.yaml`")
            store.upsert_bot(conn, name, roles, int(now.timestamp()))
            store.add_token(conn, token_digest(token), name, roles, int(expires.timestamp()))
        return token, expires

    # POST /v1/join ------------------------------------------------------------------------------------------

    def join(self, body: dict[str, Any]) -> dict[str, Any]:
        """Consume a one-time token and return the bot's identity at generation 1."""
        token = body.get("token")
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LEN:
            raise bad_request("token is required: the one-time token printed by `bots add`")
        if body.get("role") != "Bot":
            raise bad_request("role must be \"Bot\"")
        if body.get("join_method") != "token":
            raise bad_request("join_method must be \"token\"")
        pub = _public_key(body)
        ttl = _ttl(body, MAX_IDENTITY_TTL)
        digest = token_digest(token)
        error: ApiError | None = None
        with store.opened(self.state_dir) as conn:
            with store.transaction(conn):
                row = store.get_token(conn, digest)
                bot = None if row is None else store.get_bot(conn, row["bot"])
                if row is None or bot is None:
                    error = ApiError(401, "invalid_token", "the join token is unknown or was already used; "
                                     "ask an admin for a new one (`bots add`)")
                elif row["expires_at"] <= self.now().timestamp():
                    store.delete_token(conn, digest)
                    error = ApiError(401, "token_expired", "the join token expired; ask an admin for a new one "
                                     "(`bots add`)")
                else:
                    store.delete_token(conn, digest)
                    roles = json.loads(row["roles"])
                    store.reset_bot_identity(conn, row["bot"], roles, 1)
                    cert_pem, expires = self._issue_identity(conn, row["bot"], roles, pub, 1, ttl)
                    store.bump(conn, "joins")
            if error is not None:
                raise error
            return self._identity_answer(conn, row["bot"], cert_pem, 1, expires)

    # POST /v1/bots/renew ------------------------------------------------------------------------------------

    def renew(self, peer: x509.Certificate | None, body: dict[str, Any]) -> dict[str, Any]:
        """Generation N → N+1; the idempotent retry; lock on a generation mismatch."""
        with store.opened(self.state_dir) as conn:
            bot, presented, _ = self._authenticate(conn, peer)
            pub = _public_key(body)
            ttl = _ttl(body, MAX_IDENTITY_TTL)
            der = pki.public_key_der(pub)
            error: ApiError | None = None
            with store.transaction(conn):
                row = store.get_bot(conn, bot)
                if row is None:
                    error = ApiError(401, "unauthenticated", f"bot {bot} no longer exists")
                elif row["locked"]:
                    error = ApiError(403, "bot_locked", f"bot {bot} is locked; an admin must remove the lock "
                                     f"(`locks rm {bot}`) or issue a new token")
                elif (row["last_presented_generation"] == presented and row["last_public_key"] == der
                      and row["generation"] == presented + 1):
                    store.bump(conn, "idempotent_retries")
                    cert_pem = row["last_cert_pem"]
                    expires = datetime.fromtimestamp(row["last_expires"], timezone.utc)
                elif row["generation"] != presented:
                    store.set_lock(conn, bot, True, f"generation mismatch: presented {presented}, "
                                   f"expected {row['generation']}", int(self.now().timestamp()))
                    store.bump(conn, "bots_locked")
                    error = ApiError(403, "generation_mismatch", f"bot {bot} presented generation {presented} but "
                                     f"the current one is {row['generation']}: the identity was used twice, so the "
                                     "bot is now locked")
                else:
                    cert_pem, expires = self._issue_identity(conn, bot, json.loads(row["roles"]), pub,
                                                             presented + 1, ttl)
                    store.record_renewal(conn, bot, presented, der, cert_pem, int(expires.timestamp()))
                    store.bump(conn, "identity_renewals")
            if error is not None:
                raise error
            return self._identity_answer(conn, bot, cert_pem, presented + 1, expires)

    # Kubernetes ---------------------------------------------------------------------------------------------

    def _current_bot(self, conn: Any, peer: x509.Certificate | None) -> tuple[str, list[Role], datetime]:
        bot, presented, expiry = self._authenticate(conn, peer)
        row = store.get_bot(conn, bot)
        if row is None:
            raise ApiError(401, "unauthenticated", f"bot {bot} no longer exists")
        if row["locked"]:
            raise ApiError(403, "bot_locked", f"bot {bot} is locked; an admin must remove the lock "
                           f"(`locks rm {bot}`) or issue a new token")
        if row["generation"] != presented:
            raise ApiError(403, "generation_mismatch", f"the presented identity of bot {bot} is generation "
                           f"{presented}, not the current {row['generation']}; use the current identity")
        roles = [Role.from_dict(s) for s in store.get_roles(conn, json.loads(row["roles"]))]
        return bot, roles, expiry

    def kube_certs(self, peer: x509.Certificate | None, body: dict[str, Any]) -> dict[str, Any]:
        """A Kubernetes client certificate for one cluster, user and groups granted by the bot's roles."""
        with store.opened(self.state_dir) as conn:
            self._authenticate(conn, peer)
            pub = _public_key(body)
            cluster = body.get("kubernetes_cluster")
            if not isinstance(cluster, str) or not cluster:
                raise bad_request("kubernetes_cluster is required: the name of a Kubernetes cluster")
            wanted_user = _optional_str(body, "kubernetes_user")
            requested_ttl = _ttl(body, MAX_IDENTITY_TTL)
            bot, roles, identity_expiry = self._current_bot(conn, peer)
            labels = store.get_kube_cluster(conn, cluster)
            if labels is None:
                raise ApiError(404, "unknown_kube_cluster", f"there is no Kubernetes cluster named {cluster!r}")
            grants = grants_for(roles, labels)
            if grants is None or not (grants.users or grants.groups):
                raise ApiError(403, "access_denied", f"the roles of bot {bot} grant no access to Kubernetes "
                               f"cluster {cluster!r}")
            if wanted_user is not None:
                if wanted_user not in grants.users:
                    raise ApiError(403, "access_denied", f"the roles of bot {bot} do not grant Kubernetes user "
                                   f"{wanted_user!r} on {cluster!r}")
                user = wanted_user
            elif len(grants.users) == 1:
                user = grants.users[0]
            elif not grants.users:
                user = f"bot-{bot}"
            else:
                raise bad_request(f"the roles grant several Kubernetes users ({', '.join(grants.users)}); choose "
                                  "one with kubernetes_user")
            now = self.now()
            left = int((identity_expiry - now).total_seconds())
            ttl = max(MIN_TTL, min(requested_ttl, grants.max_ttl, left))
            cert = issue_kube_cert(self._ca(conn, "user"), pub, user, grants.groups, cluster,
                                   store.get_setting(conn, "cluster_name") or "", now,
                                   now + timedelta(seconds=ttl))
            store.bump(conn, "kube_certs_issued")
            return {"tls_cert": pki.cert_pem(cert), "kube_ca_certs": [store.get_ca(conn, "host")[0]],
                    "expires": rfc3339(pki.not_after(cert)), "kubernetes_cluster": cluster,
                    "kubernetes_user": user, "kubernetes_groups": grants.groups,
                    "server": store.get_setting(conn, "kube_server") or "",
                    "tls_server_name": KUBE_TLS_SERVER_NAME}

    def kube_clusters(self, peer: x509.Certificate | None) -> dict[str, Any]:
        """The Kubernetes clusters the bot's roles grant, with the users and groups granted."""
        with store.opened(self.state_dir) as conn:
            _, roles, _ = self._current_bot(conn, peer)
            out = []
            for name, labels in store.list_kube_clusters(conn):
                grants = grants_for(roles, labels)
                if grants is not None and (grants.users or grants.groups):
                    out.append({"name": name, "labels": labels, "kubernetes_users": grants.users,
                                "kubernetes_groups": grants.groups})
            return {"clusters": out}
