"""Renewing the bot identity (crash-safe, with the pending key) and issuing Kubernetes certificates.

Callers hold the identity's lock (see locking.py); nothing here locks.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone

from . import api, cache, execcred, fsutil, identity, pki
from .datadir import Config, DataDir
from .errors import IDENTITY_REJECTED, NOT_LOGGED_IN, PluginError
from .identity import BotIdentity, Pending


def warn(message: str) -> None:
    """One warning line on stderr (kubectl shows it to the user)."""
    sys.stderr.write(f"kubectl-teleport: warning: {message}\n")
    sys.stderr.flush()


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def store_kube_cert(dd: DataDir, cluster: str, cert_pem: str, key_pem: str) -> cache.Entry:
    """Check the certificate against its key and commit the cluster's cache entry atomically."""
    cert = pki.load_cert(cert_pem)
    if not pki.public_keys_equal(cert.public_key(), pki.load_private_key(key_pem).public_key()):
        raise PluginError("the server returned a Kubernetes certificate for another key; try again",
                          IDENTITY_REJECTED)
    not_before, not_after = pki.not_before(cert).timestamp(), pki.not_after(cert).timestamp()
    expires_at = int(not_after) - 60
    renew = min(int(identity.renew_at(not_before, not_after)), expires_at)
    status = execcred.status_json(cert_pem, key_pem, rfc3339(expires_at))
    dd.create()
    data = cache.encode(renew, expires_at, int(not_after), status)
    fsutil.atomic_write(dd.cache_path(cluster), data, state=True)
    entry = cache.decode(data)
    assert entry is not None
    return entry


def _renew_request(dd: DataDir, cfg: Config, pending: Pending, deadline: api.Deadline) -> dict:
    body = {"public_tls_key": pki.public_key_pem(pki.load_private_key(pending.key_pem)),
            "ttl_seconds": cfg.ttl_seconds}
    with api.Client(cfg.proxy, cfg.ca_pems, identity_file=dd.identity_path, deadline=deadline) as client:
        resp = client.call("renewing the bot identity", "POST", "/bots/renew", body)
    return api.expect(resp, "renewing the bot identity", tls_cert=str, generation=int)


def current_identity(dd: DataDir, cfg: Config, now: float, deadline: api.Deadline,
                     *, force: bool = False, fallback: bool = True) -> BotIdentity:
    """The identity to issue with, renewed first when due (or `force`), finishing an interrupted renewal.

    With `fallback` (kubectl's paths) a failed renewal of a still-valid identity is one warning and the current
    identity is used; without it (the daemon, which retries with backoff) the error is raised.

    Crash safety: the new key is saved as pending before the request; the answer is committed atomically
    and only then is the pending key dropped. A pending key found later is retried as is, and the server's
    idempotent retry answers with the same certificate (docs/protocol.md).
    """
    ident = identity.load(dd)
    pending = identity.load_pending(dd)
    if pending is not None:
        pending_pub = pki.load_private_key(pending.key_pem).public_key()
        if pki.public_keys_equal(pending_pub, ident.cert.public_key()) or \
                pending.for_generation != ident.generation:
            identity.clear_pending(dd)  # committed before a crash, or left over from an older identity
            pending = None
    recovering = pending is not None
    if not recovering and not force and now < ident.renew_at:
        return ident
    identity.check_usable(ident, now)
    if pending is None:
        pending = Pending(pki.private_key_pem(pki.generate_key()), ident.generation)
        identity.save_pending(dd, pending)
    try:
        resp = _renew_request(dd, cfg, pending, deadline)
    except PluginError as err:
        if recovering or err.code == IDENTITY_REJECTED or not fallback:
            raise
        warn(f"{err}; using the current identity until {rfc3339(ident.not_after)}")
        return ident
    renewed = identity.save(dd, resp["tls_cert"], pending.key_pem)
    identity.clear_pending(dd)
    return renewed


def issue_kube_cert(dd: DataDir, cfg: Config, cluster: str, deadline: api.Deadline,
                    kube_user: str | None = None) -> tuple[cache.Entry, dict]:
    """Ask for a Kubernetes certificate with a fresh key and commit it to the cluster's cache."""
    key_pem = pki.private_key_pem(pki.generate_key())
    body: dict = {"public_tls_key": pki.public_key_pem(pki.load_private_key(key_pem)),
                  "kubernetes_cluster": cluster, "ttl_seconds": cfg.ttl_seconds}
    kube_user = kube_user or (cfg.kube_clusters.get(cluster) or {}).get("kube_user")
    if kube_user:
        body["kubernetes_user"] = kube_user
    action = f"issuing a certificate for Kubernetes cluster {cluster!r}"
    with api.Client(cfg.proxy, cfg.ca_pems, identity_file=dd.identity_path, deadline=deadline) as client:
        resp = client.call(action, "POST", "/kube/certs", body)
    api.expect(resp, action, tls_cert=str)
    return store_kube_cert(dd, cluster, resp["tls_cert"], key_pem), resp


def refresh(dd: DataDir, cluster: str, now: float, deadline: api.Deadline) -> cache.Entry:
    """Renew the identity if due, then issue and store the cluster's certificate."""
    cfg = dd.load_config()
    if not dd.identity_path.exists():
        raise PluginError(f"no identity in {dd.root}: run `kubectl-teleport login` first", NOT_LOGGED_IN)
    current_identity(dd, cfg, now, deadline)
    entry, _ = issue_kube_cert(dd, cfg, cluster, deadline)
    return entry
