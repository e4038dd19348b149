"""The bot's renewable identity on disk: load, atomic commit, and the pending key of an unfinished renewal."""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography import x509

from . import fsutil, pki
from .datadir import DataDir
from .errors import IDENTITY_REJECTED, NOT_LOGGED_IN, PluginError

RENEW_FRACTION = 1 / 3  # renew when less than this share of the lifetime is left


@dataclass
class BotIdentity:
    """A loaded identity: the PEMs (kept byte-for-byte) and what the certificate says."""

    cert_pem: str
    key_pem: str
    cert: x509.Certificate

    @property
    def generation(self) -> int:
        return pki.identity_of(self.cert).generation or 0

    @property
    def bot(self) -> str:
        return pki.identity_of(self.cert).username.removeprefix("bot-")

    @property
    def not_after(self) -> float:
        return pki.not_after(self.cert).timestamp()

    @property
    def renew_at(self) -> float:
        return renew_at(pki.not_before(self.cert).timestamp(), self.not_after)


def renew_at(not_before: float, not_after: float) -> float:
    """When a certificate becomes due: once less than RENEW_FRACTION of its lifetime is left."""
    return not_after - (not_after - not_before) * RENEW_FRACTION


def parse(cert_pem: str, key_pem: str, *, where: str) -> BotIdentity:
    """Parse and cross-check a certificate and its key; PluginError(NOT_LOGGED_IN) when they do not match."""
    try:
        cert = pki.load_cert(cert_pem)
        key = pki.load_private_key(key_pem)
    except ValueError:
        raise PluginError(f"the identity in {where} is damaged: log in again with a new token",
                          NOT_LOGGED_IN) from None
    if not pki.public_keys_equal(cert.public_key(), key.public_key()):
        raise PluginError(f"the identity in {where} has a key that does not match its certificate: "
                          "log in again with a new token", NOT_LOGGED_IN)
    return BotIdentity(cert_pem, key_pem, cert)


def load(dd: DataDir) -> BotIdentity:
    """Read identity.pem (certificate then key)."""
    try:
        text = fsutil.read_private(dd.identity_path).decode()
    except FileNotFoundError:
        raise PluginError(f"no identity in {dd.root}: run `kubectl-teleport login` first", NOT_LOGGED_IN) from None
    except UnicodeDecodeError:
        text = ""
    marker = "-----BEGIN PRIVATE KEY-----"
    cert_pem, _, key_rest = text.partition(marker)
    return parse(cert_pem, marker + key_rest, where=str(dd.identity_path))


def save(dd: DataDir, cert_pem: str, key_pem: str) -> BotIdentity:
    """Commit an identity atomically (one file, so certificate and key can never mix)."""
    ident = parse(cert_pem, key_pem, where="the server's answer")
    dd.create()
    data = (cert_pem.rstrip("\n") + "\n" + key_pem.rstrip("\n") + "\n").encode()
    fsutil.atomic_write(dd.identity_path, data, state=True)
    return ident


def check_usable(ident: BotIdentity, now: float) -> None:
    """PluginError(IDENTITY_REJECTED) when the identity has expired."""
    if now >= ident.not_after:
        raise PluginError("the bot identity has expired: log in again with a new token "
                          "(run `kubectl-teleport start` to keep an idle bot alive)", IDENTITY_REJECTED)


@dataclass
class Pending:
    """A renewal's new key, saved before the request so a crash can retry it with the same key."""

    key_pem: str
    for_generation: int


def save_pending(dd: DataDir, pending: Pending) -> None:
    data = json.dumps({"key_pem": pending.key_pem, "for_generation": pending.for_generation}).encode()
    fsutil.atomic_write(dd.pending_path, data, state=True)


def load_pending(dd: DataDir) -> Pending | None:
    """The pending renewal, or None (a damaged pending file is dropped: the key was never used)."""
    try:
        obj = json.loads(fsutil.read_private(dd.pending_path))
        pending = Pending(str(obj["key_pem"]), int(obj["for_generation"]))
        pki.load_private_key(pending.key_pem)
        return pending
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        clear_pending(dd)
        return None


def clear_pending(dd: DataDir) -> None:
    try:
        dd.pending_path.unlink()
    except FileNotFoundError:
        return
    fsutil.fsync_dir(dd.root)
