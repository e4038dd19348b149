"""The bot's renewable identity on disk: load, atomic commit, and the pending key of an unfinished renewal.

identity.pem holds the certificate and key (RSA PKCS#1 or ECDSA PKCS#8, as the cluster's suite chose),
preceded by lines of PEM explanatory text (which TLS libraries skip, so the file is also the client
certificate for `ssl.load_cert_chain`):
- `received-at: <Unix seconds>`: when the server's answer arrived on the local clock. With the certificate's
  NotBefore (the issuer's "now" backdated a minute) it tells how far the two clocks are apart, so the
  identity's renewal and expiry are judged on the local clock, as the Kubernetes certificates are;
- `ssh-cert: <authorized_keys line>`: the SSH certificate Teleport issued with it (same key), kept with the TLS
  certificate in one atomic file.

identity.pending.json records a renewal in flight (see docs/design.md, "Crash safety of identity renewal"):
the new key and the generation it renews, written before connecting, and `sent: true` written once the
connection is up and just before the request leaves. A `sent` record found later is ambiguous: the server may
have committed that renewal.
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
_RECEIVED_AT = re.compile(r"^received-at: (\d{1,12})\r?$", re.M)
_SSH_CERT = re.compile(r"^ssh-cert: ([A-Za-z0-9@._+/=-]+ [A-Za-z0-9+/=]+)\r?$", re.M)


@dataclass
class BotIdentity:
    """A loaded identity: the PEMs (kept byte-for-byte) and what the certificate says."""

    cert_pem: str
    key_pem: str
    cert: x509.Certificate
    received_at: float | None = None  # local clock when the server's answer arrived (None: not recorded)
    ssh_cert: str = ""  # the SSH certificate issued with it (authorized_keys line), if any
    hold_until: float | None = None  # an ambiguous renewal: no renewal before this moment (renewal.py)

    @property
    def generation(self) -> int:
        return pki.identity_of(self.cert).generation or 0

    @property
    def username(self) -> str:
        """The certificate's CN: the bot user, `bot-<name>`."""
        return pki.identity_of(self.cert).username

    @property
    def bot(self) -> str:
        ident = pki.identity_of(self.cert)
        return ident.bot_name or ident.username.removeprefix("bot-")

    @property
    def bot_instance_id(self) -> str | None:
        return pki.identity_of(self.cert).bot_instance_id

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

    @property
    def lifetime(self) -> float:
        return max(0.0, self.not_after - policy.server_now(self.not_before, self.not_after))

    def renew_at(self) -> float:
        """When the identity becomes due on the local clock (held back while a renewal is ambiguous)."""
        due = policy.renew_at(self.not_before, self.not_after, self.skew)
        return max(due, self.hold_until) if self.hold_until is not None else due

    def to_bytes(self) -> bytes:
        head = "" if self.received_at is None else f"received-at: {int(self.received_at)}\n"
        if self.ssh_cert:
            head += f"ssh-cert: {self.ssh_cert.strip()}\n"
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
    return decode(raw, where=str(dd.identity_path))


def decode(raw: bytes, *, where: str) -> BotIdentity:
    """An identity.pem's bytes (from the data dir, or the identity Secret) as a checked identity."""
    text = raw.decode("utf-8", "replace")
    cert_pem, key_pem = split_pem(text)
    ident = parse(cert_pem, key_pem, where=where)
    head = text.split("-----BEGIN", 1)[0]
    received = _RECEIVED_AT.search(head)
    ident.received_at = float(received[1]) if received else None
    ssh = _SSH_CERT.search(head)
    ident.ssh_cert = ssh[1] + "\n" if ssh else ""
    return ident


def reserve(dd: DataDir) -> Reservation:
    """Room for the next identity.pem, taken before asking the server for it."""
    return dd.reserve(IDENTITY)


def save(dd: DataDir, cert_pem: str, key_pem: str, room: Reservation | None = None, *,
         ssh_cert: str = "") -> BotIdentity:
    """Commit an identity the server has just sent, atomically (one file, so certificate, key and SSH
    certificate can never mix), with the local time it arrived."""
    ident = parse(cert_pem, key_pem, where="the server's answer")
    ident.received_at = clock.now()
    line = ssh_cert.strip()
    ident.ssh_cert = line + "\n" if line and "\n" not in line and _SSH_CERT.fullmatch("ssh-cert: " + line) else ""
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
    """A renewal in flight: its new key and the generation it renews, saved before connecting; `sent` once the
    request is about to leave (from then on the server may commit it whatever happens to us)."""

    key_pem: str
    for_generation: int
    started_at: float = 0.0
    sent: bool = True  # a record without the field (older versions) is taken as sent: the safe reading


def encode_pending(pending: Pending) -> bytes:
    """identity.pending.json's bytes."""
    return json.dumps({"key_pem": pending.key_pem, "for_generation": pending.for_generation,
                       "started_at": pending.started_at, "sent": pending.sent}).encode()


def save_pending(dd: DataDir, pending: Pending) -> None:
    dd.write(PENDING, encode_pending(pending))


def load_pending(dd: DataDir) -> Pending | None:
    """The renewal in flight, or None. Writes are atomic, so only a hand-edited record is damaged; it is dropped
    (were that renewal committed, the next one gets Teleport's lock message, which names the recovery)."""
    raw = dd.read(PENDING)
    if raw is None:
        return None
    try:
        obj = json.loads(raw)
        sent = obj.get("sent", True)
        if not isinstance(sent, bool):
            raise TypeError("sent")
        pending = Pending(str(obj["key_pem"]), int(obj["for_generation"]), float(obj.get("started_at", 0.0)), sent)
        pki.load_private_key(pending.key_pem)
        return pending
    except (ValueError, KeyError, TypeError, AttributeError):
        clear_pending(dd)
        return None


def clear_pending(dd: DataDir) -> None:
    dd.remove(PENDING)
