"""Renewing the bot identity (crash-safe, with the pending key) and issuing Kubernetes certificates.

Callers hold the identity's lock (see store/lock.py); nothing here locks. Room for every file a renewal will
write is reserved *before* the server is asked (`store.files.Reservation`), so a full or read-only disk fails
before anything is issued that could not be stored.
"""

from __future__ import annotations

from .. import cache, clock, execcred, fmt, pki, policy
from ..config import Config
from ..errors import IdentityRejected, NotLoggedIn, PluginError, Unavailable
from ..store import identity
from ..store.datadir import DataDir
from ..store.files import Reservation
from ..store.identity import BotIdentity, Pending
from . import http


def encode_entry(cert_pem: str, key_pem: str, received_at: float) -> bytes:
    """The cache file for a Kubernetes certificate received at `received_at` (local clock)."""
    cert = pki.load_cert(cert_pem)
    if not pki.public_keys_equal(cert.public_key(), pki.load_private_key(key_pem).public_key()):
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


def _renew_request(dd: DataDir, cfg: Config, pending: Pending, deadline: http.Deadline) -> dict:
    body = {"public_tls_key": pki.public_key_pem(pki.load_private_key(pending.key_pem)),
            "ttl_seconds": cfg.ttl_seconds}
    with http.Client(cfg.proxy, cfg.ca_pems, identity_file=dd.identity_path, deadline=deadline) as client:
        resp = client.call("renewing the bot identity", "POST", "/bots/renew", body)
    return http.expect(resp, "renewing the bot identity", tls_cert=str, generation=int)


def current_identity(dd: DataDir, cfg: Config, now: float, deadline: http.Deadline, *, force: bool = False,
                     notes: list[str] | None = None) -> BotIdentity:
    """The identity to issue with, renewed first when due (or `force`), finishing an interrupted renewal.

    With `notes` (kubectl's paths) a failed renewal of a still-valid identity becomes a note there and the
    current identity is used; without it (the daemon, which retries with backoff) the error is raised.

    Crash safety: the new key is saved as pending before the request; the answer is committed atomically and
    only then is the pending key dropped. A pending key found later is retried as is, and the server's
    idempotent retry answers with the same certificate (docs/protocol.md).
    """
    ident = identity.load(dd)
    pending = identity.load_pending(dd)
    if pending is not None:
        pending_pub = pki.load_private_key(pending.key_pem).public_key()
        if pki.public_keys_equal(pending_pub, ident.cert.public_key()) or pending.for_generation != ident.generation:
            identity.clear_pending(dd)  # committed before a crash, or left over from an older identity
            pending = None
    recovering = pending is not None
    if not recovering and not force and now < ident.renew_at():
        return ident
    identity.check_usable(ident, now)
    room = identity.reserve(dd)  # before anything is asked: the answer must have somewhere to go
    try:
        if pending is None:
            pending = Pending(pki.private_key_pem(pki.generate_key()), ident.generation)
            identity.save_pending(dd, pending)
        try:
            resp = _renew_request(dd, cfg, pending, deadline)
        except PluginError as err:
            if recovering or isinstance(err, IdentityRejected) or notes is None:
                raise
            notes.append(f"renewing the bot identity failed ({err}); using the current one until "
                         f"{fmt.rfc3339(ident.not_after)}")
            return ident
        renewed = identity.save(dd, resp["tls_cert"], pending.key_pem, room)
    finally:
        room.discard()
    identity.clear_pending(dd)
    return renewed


def issue_kube_cert(dd: DataDir, cfg: Config, cluster: str, deadline: http.Deadline,
                    kube_user: str | None = None, room: Reservation | None = None) -> tuple[cache.Entry, dict]:
    """Ask for a Kubernetes certificate with a fresh key and commit it to the cluster's cache."""
    room = room or dd.reserve_entry(cluster)
    with room:
        key_pem = pki.private_key_pem(pki.generate_key())
        body: dict = {"public_tls_key": pki.public_key_pem(pki.load_private_key(key_pem)),
                      "kubernetes_cluster": cluster, "ttl_seconds": cfg.ttl_seconds}
        kube_user = kube_user or cfg.cluster(cluster).kube_user
        if kube_user:
            body["kubernetes_user"] = kube_user
        action = f"issuing a certificate for Kubernetes cluster {cluster!r}"
        with http.Client(cfg.proxy, cfg.ca_pems, identity_file=dd.identity_path, deadline=deadline) as client:
            resp = client.call(action, "POST", "/kube/certs", body)
        http.expect(resp, action, tls_cert=str)
        return store_kube_cert(dd, cluster, resp["tls_cert"], key_pem, clock.now(), room), resp


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
