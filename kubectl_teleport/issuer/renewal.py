"""Renewing the bot identity (never twice from the same certificate) and issuing Kubernetes certificates, with
Teleport's `GenerateUserCerts` (issuer/teleport.py).

Callers hold the identity's lock (see store/lock.py); nothing here locks. Room for every file a renewal will
write is reserved *before* the server is asked (`store.files.Reservation`), so a full or read-only disk fails
before anything is issued that could not be stored.

Teleport keeps a generation counter per bot instance: every renewal presents the current generation and the
server moves it on. A second renewal from the same certificate after the server committed one locks the bot,
and there is no idempotent retry. So a renewal is recorded before it is sent (`identity.pending.json`, with
`sent` set just before the request leaves); a record left `sent` by a crash or a lost answer is *ambiguous*,
and the identity is then kept, Kubernetes certificates still issued from it, and the renewal tried again only
when the identity is close to expiring (`retry_at`): docs/design.md, "Crash safety of identity renewal".
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from .. import cache, clock, execcred, fmt, pki, policy
from ..config import Config
from ..errors import AnotherWriter, IdentityRejected, NotLoggedIn, PluginError, Unavailable
from ..store import identity
from ..store.datadir import DataDir
from ..store.files import Reservation
from ..store.identity import BotIdentity, Pending
from . import auth, http, teleport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..store.identity_secret import IdentitySecret

# An ambiguous renewal is tried again once less than this share of the identity's lifetime is left (10 min of
# a 1 h identity): late enough that the identity has served most of its life meanwhile, early enough that
# `start` (which wakes at `renew_at`) and kubectl calls get a few chances before it expires.
AMBIGUOUS_RETRY_FRACTION = 1 / 6


def encode_entry(cert_pem: str, key_pem: str, received_at: float) -> bytes:
    """The cache file for a Kubernetes certificate received at `received_at` (local clock)."""
    cert = pki.load_cert(cert_pem)
    if not pki.public_keys_equal(cert.public_key(), pki.load_private_key(key_pem)):  # type: ignore[arg-type]
        raise Unavailable("the server returned a Kubernetes certificate for another key; try again")
    t = policy.timing(pki.not_before(cert).timestamp(), pki.not_after(cert).timestamp(), received_at)
    status = execcred.status_json(cert_pem, key_pem, fmt.rfc3339(t.expires_at))
    return cache.encode(t.renew_at, t.expires_at, t.not_after, status)


def store_kube_cert(dd: DataDir, cluster: str, cert_pem: str, key_pem: str, received_at: float,
                    room: Reservation | None = None) -> cache.Entry:
    """Check the certificate against its key and commit the cluster's cache entry atomically."""
    data = encode_entry(cert_pem, key_pem, received_at)
    with room if room is not None else dd.reserve_entry(cluster) as slot:
        slot.commit(data)
    entry = cache.decode(data)
    assert entry is not None
    return entry


def auth_target(dd: DataDir, cfg: Config) -> teleport.AuthTarget:
    """How to reach the auth service as the bot, from what login recorded."""
    try:
        route = auth.route_for(cfg.proxy, cfg.cluster_name, cfg.auth_server or None)
    except ValueError:
        raise NotLoggedIn(f"{dd.config_path} names no usable proxy address: log in again") from None
    return teleport.AuthTarget(route, cfg.ca_pems, dd.identity_path, teleport.version_major(cfg.server_version))


def retry_at(ident: BotIdentity) -> float:
    """When an ambiguous renewal is tried again (local clock): once less than a sixth of the lifetime is left."""
    return ident.expires_at - ident.lifetime * AMBIGUOUS_RETRY_FRACTION


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def ambiguous_note(pending: Pending, ident: BotIdentity) -> str:
    """The warning while a renewal's outcome is unknown: what happened, what we do, how to avoid the gap."""
    when = fmt.rfc3339(pending.started_at) if pending.started_at else "earlier"
    return (f"the answer to the identity renewal sent {when} was lost, and Teleport may have committed it; "
            f"the current identity is kept (valid until {fmt.rfc3339(ident.expires_at)}) and the renewal is tried "
            f"again after {fmt.rfc3339(retry_at(ident))}, which locks the bot if the server had committed it: to "
            "avoid that, log in again now with a new join token")


def pending_state(dd: DataDir, ident: BotIdentity) -> Pending | None:
    """The renewal still in doubt for `ident`, tidying records that are not (committed, stale, never sent)."""
    pending = identity.load_pending(dd)
    if pending is None:
        return None
    try:
        committed = pki.public_keys_equal(pki.load_private_key(pending.key_pem), ident.cert.public_key())  # type: ignore[arg-type]
    except ValueError:
        committed = False
    if committed or pending.for_generation != ident.generation or not pending.sent:
        identity.clear_pending(dd)  # saved before a crash; from an older identity; or it never left
        return None
    return pending


def current_identity(dd: DataDir, cfg: Config, now: float, deadline: http.Deadline, *, force: bool = False,
                     notes: list[str] | None = None, store: IdentitySecret | None = None) -> BotIdentity:
    """The identity to issue with, renewed first when due (or `force`).

    With `notes` (kubectl's paths) a failed renewal of a still-valid identity becomes a note there and the
    current identity is used; without it (the daemon, which retries with backoff) the error is raised.
    While a renewal is ambiguous (`pending_state`) nothing renews before `retry_at`, `force` included; the retry
    then uses the pending key again.

    An identity kept in a Secret (`cfg.identity_secret`) is renewed only with its `store` (what `start` and
    `login` pass; kubectl's calls run with kubectl's environment, not the pod's access to the Secret): the data
    dir's state is written to the Secret first if it lags, then the pending key, before anything is sent to
    Teleport, then the new identity (store/identity_secret.py). Another writer (AnotherWriter) always raises.
    """
    ident = identity.load(dd)
    pending = pending_state(dd, ident)
    if pending is not None:
        ident.hold_until = retry_at(ident)
    if cfg.identity_secret and store is None:
        if now >= ident.renew_at():
            identity.check_usable(ident, now)
            if notes is not None:
                notes.append(f"the bot identity is due and kept in Secret {cfg.identity_secret}, which only "
                             f"`kubectl-teleport start` renews (until {fmt.rfc3339(ident.expires_at)}): is it running?")
        return ident

    def blocked(err: PluginError) -> BotIdentity:
        """A Secret write failed before anything was sent: no renewal now."""
        if isinstance(err, AnotherWriter) or notes is None:
            raise err
        identity.check_usable(ident, now)
        notes.append(f"the bot identity was not renewed ({err}); using the current one until "
                     f"{fmt.rfc3339(ident.expires_at)}")
        return ident

    if store is not None:
        try:
            store.push()  # a write that did not reach the Secret before (its API was away) goes first
        except PluginError as err:
            return blocked(err)
    if pending is not None:
        if now < ident.hold_until:
            if notes is not None:
                notes.append(ambiguous_note(pending, ident))
            return ident
    elif not force and now < ident.renew_at():
        return ident
    identity.check_usable(ident, now)
    room = identity.reserve(dd)  # before anything is asked: the answer must have somewhere to go
    try:
        # the retry of a renewal in doubt asks with the same key; anything else with a fresh one
        key = pki.load_private_key(pending.key_pem) if pending is not None else pki.key_for_suite(cfg.suite)
        record = Pending(pki.private_key_pem(key), ident.generation, started_at=now, sent=False)
        identity.save_pending(dd, record)
        if store is not None:
            try:
                store.push()  # the pending key is in the Secret before anything is sent: one writer
            except PluginError as err:
                if pending is not None:
                    identity.save_pending(dd, pending)  # still in doubt, as before
                else:
                    identity.clear_pending(dd)
                return blocked(err)

        def leaving() -> None:  # the connection is up and verified; the request is about to leave
            identity.save_pending(dd, replace(record, sent=True))

        try:
            # `expires` is absolute and read on the server's clock: our clock minus the skew seen at issue
            certs = teleport.renew_identity(auth_target(dd, cfg), username=ident.username, key=key,
                                            expires=_utc(now - ident.skew + min(cfg.ttl_seconds, teleport.MAX_TTL)),
                                            deadline=deadline, before_request=leaving)
        except PluginError as err:
            if not auth.was_ambiguous(err):
                identity.clear_pending(dd)  # refused, or never sent: nothing to be unsure about
                _push_quietly(store)
            if isinstance(err, IdentityRejected) or notes is None:
                raise
            notes.append(f"renewing the bot identity failed ({err}); using the current one until "
                         f"{fmt.rfc3339(ident.expires_at)}")
            return ident
        renewed = identity.save(dd, certs.tls, record.key_pem, room, ssh_cert=certs.ssh)
    finally:
        room.discard()
    identity.clear_pending(dd)
    if store is not None:
        try:
            store.push()
        except PluginError as err:
            if isinstance(err, AnotherWriter):
                raise
            message = (f"the bot identity was renewed (generation {renewed.generation}) but not yet written to "
                       f"Secret {store.url} ({err}); the next renewal writes it first")
            if notes is None:
                raise Unavailable(message) from None
            notes.append(message)
    return renewed


def _push_quietly(store: IdentitySecret | None) -> None:
    """Take a pending key that never left out of the Secret again; a failure is left to the next `push`."""
    if store is not None:
        try:
            store.push()
        except PluginError:
            pass


def kube_identity_info(cert_pem: str) -> dict:
    """What a Kubernetes certificate says about its holder (Teleport's subject attributes)."""
    ident = pki.identity_of(pki.load_cert(cert_pem))
    return {"kubernetes_users": ident.kube_users, "kubernetes_groups": ident.kube_groups, "roles": ident.groups}


def issue_kube_cert(dd: DataDir, cfg: Config, cluster: str, deadline: http.Deadline,
                    room: Reservation | None = None) -> tuple[cache.Entry, dict]:
    """A Kubernetes certificate from the bot identity (impersonating the configured roles) with a fresh key,
    committed to the cluster's cache. The generation does not move."""
    if not cfg.roles:
        raise NotLoggedIn(f"{dd.config_path} names no roles to impersonate: run `kubectl-teleport login --role NAME` "
                          "(no token needed)")
    room = room or dd.reserve_entry(cluster)
    with room:
        ident = identity.load(dd)
        key = pki.key_for_suite(cfg.suite)
        server_now = _utc(clock.now() - ident.skew)  # the expiry is absolute, on the server's clock
        expires = teleport.kube_expiry(server_now, cfg.ttl_seconds, pki.not_after(ident.cert))
        certs = teleport.kube_certificate(auth_target(dd, cfg), username=ident.username, key=key, expires=expires,
                                          roles=cfg.roles, cluster_name=cfg.cluster_name, kube_cluster=cluster,
                                          deadline=deadline)
        entry = store_kube_cert(dd, cluster, certs.tls, pki.private_key_pem(key), clock.now(), room)
        try:  # for destinations' key-cert.pub; written after the entry, matched to its key by the reader
            dd.write_ssh_cert(cluster, certs.ssh)
        except OSError:
            pass
        return entry, kube_identity_info(certs.tls)


def refresh(dd: DataDir, cluster: str, now: float, deadline: http.Deadline, notes: list[str]) -> cache.Entry:
    """Renew the identity if due, then issue and store the cluster's certificate (room reserved first)."""
    cfg = dd.load_config()
    if not dd.identity_path.exists():
        raise NotLoggedIn(f"no identity in {dd.root}: run `kubectl-teleport login` first")
    room = dd.reserve_entry(cluster)
    with room:
        current_identity(dd, cfg, now, deadline, notes=notes)
        entry, _ = issue_kube_cert(dd, cfg, cluster, deadline, room=room)
    return entry
