"""The bot's renewable identity on disk: load, atomic commit, and the pending key of an unfinished renewal.

identity.pem holds the certificate and key, preceded by one line of PEM explanatory text (which TLS libraries
skip), `received-at: <Unix seconds>`: when the server's answer arrived on the local clock. With the certificate's
NotBefore (the issuer's "now" backdated a minute) it tells how far the two clocks are apart, so the identity's
renewal and expiry are judged on the local clock, as the Kubernetes certificates are (policy.timing).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from cryptography import x509

from .. import clock, pki, policy
from ..errors import IdentityRejected, NotLoggedIn
from .datadir import IDENTITY, PENDING, DataDir
from .files import Reservation

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.S)
_RECEIVED_AT = re.compile(r"\Areceived-at: (\d{1,12})\r?\n")


@dataclass
class BotIdentity:
    """A loaded identity: the PEMs (kept byte-for-byte) and what the certificate says."""

    cert_pem: str
    key_pem: str
    cert: x509.Certificate
    received_at: float | None = None  # local clock when the server's answer arrived (None: not recorded)

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
    def not_before(self) -> float:
        return pki.not_before(self.cert).timestamp()

    @property
    def skew(self) -> float:
        """Local minus server time when the identity was issued (0 when its arrival was not recorded)."""
        if self.received_at is None:
            return 0.0
        return self.received_at - policy.server_now(self.not_before, self.not_after)

    @property
    def expires_at(self) -> float:
        """NotAfter on the local clock."""
        return self.not_after + self.skew

    def renew_at(self) -> float:
        """When the identity becomes due on the local clock."""
        return policy.renew_at(self.not_before, self.not_after, self.skew)

    def to_bytes(self) -> bytes:
        head = "" if self.received_at is None else f"received-at: {int(self.received_at)}\n"
        return (head + self.cert_pem.rstrip("\n") + "\n" + self.key_pem.rstrip("\n") + "\n").encode()


def parse(cert_pem: str, key_pem: str, *, where: str) -> BotIdentity:
    """Parse and cross-check a certificate and its key; NotLoggedIn when they do not match."""
    try:
        cert = pki.load_cert(cert_pem)
        key = pki.load_private_key(key_pem)
    except ValueError:
        raise NotLoggedIn(f"the identity in {where} is damaged: log in again with a new token") from None
    if not pki.public_keys_equal(cert.public_key(), key.public_key()):
        raise NotLoggedIn(f"the identity in {where} has a key that does not match its certificate: "
                          "log in again with a new token")
    return BotIdentity(cert_pem, key_pem, cert)


def split_pem(text: str) -> tuple[str, str]:
    """(certificate PEM, private key PEM) out of one file holding both, in any order."""
    cert = key = ""
    for m in _PEM_BLOCK.finditer(text):
        if m.group(1) == "CERTIFICATE" and not cert:
            cert = m.group(0)
        elif m.group(1).endswith("PRIVATE KEY") and not key:
            key = m.group(0)
    return cert, key


def load(dd: DataDir) -> BotIdentity:
    """Read identity.pem (certificate then key)."""
    raw = dd.read(IDENTITY)
    if raw is None:
        raise NotLoggedIn(f"no identity in {dd.root}: run `kubectl-teleport login` first")
    text = raw.decode("utf-8", "replace")
    cert_pem, key_pem = split_pem(text)
    ident = parse(cert_pem, key_pem, where=str(dd.identity_path))
    received = _RECEIVED_AT.match(text)
    ident.received_at = float(received[1]) if received else None
    return ident


def reserve(dd: DataDir) -> Reservation:
    """Room for the next identity.pem, taken before asking the server for it."""
    return dd.reserve(IDENTITY)


def save(dd: DataDir, cert_pem: str, key_pem: str, room: Reservation | None = None) -> BotIdentity:
    """Commit an identity the server has just sent, atomically (one file, so certificate and key can never
    mix), with the local time it arrived."""
    ident = parse(cert_pem, key_pem, where="the server's answer")
    ident.received_at = clock.now()
    if room is not None:
        room.commit(ident.to_bytes())
    else:
        dd.write(IDENTITY, ident.to_bytes())
    return ident


def check_usable(ident: BotIdentity, now: float) -> None:
    """IdentityRejected when the identity has expired."""
    if now >= ident.expires_at:
        raise IdentityRejected("the bot identity has expired: log in again with a new token "
                               "(run `kubectl-teleport start` to keep an idle bot alive)")


@dataclass
class Pending:
    """A renewal's new key, saved before the request so a crash can retry it with the same key."""

    key_pem: str
    for_generation: int


def save_pending(dd: DataDir, pending: Pending) -> None:
    dd.write(PENDING, json.dumps({"key_pem": pending.key_pem, "for_generation": pending.for_generation}).encode())


def load_pending(dd: DataDir) -> Pending | None:
    """The pending renewal, or None (a damaged pending file is dropped: the key was never used)."""
    raw = dd.read(PENDING)
    if raw is None:
        return None
    try:
        obj = json.loads(raw)
        pending = Pending(str(obj["key_pem"]), int(obj["for_generation"]))
        pki.load_private_key(pending.key_pem)
        return pending
    except (ValueError, KeyError, TypeError):
        clear_pending(dd)
        return None


def clear_pending(dd: DataDir) -> None:
    dd.remove(PENDING)
