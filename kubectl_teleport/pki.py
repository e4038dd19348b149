"""Keys, certificates, CA pins and Teleport's identity attributes (uses `cryptography`; never on the hot path)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Teleport's identity attributes in the certificate subject (lib/tlsca/ca.go).
OID_KUBE_USERS = x509.ObjectIdentifier("1.3.9999.1.1")
OID_KUBE_GROUPS = x509.ObjectIdentifier("1.3.9999.1.2")
OID_KUBE_CLUSTER = x509.ObjectIdentifier("1.3.9999.1.3")
OID_TELEPORT_CLUSTER = x509.ObjectIdentifier("1.3.9999.1.7")
OID_RENEWABLE = x509.ObjectIdentifier("1.3.9999.1.13")
OID_GENERATION = x509.ObjectIdentifier("1.3.9999.1.14")

PIN_PREFIX = "sha256:"


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    """PKCS#8 PEM of an unencrypted private key."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_key_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """PEM SubjectPublicKeyInfo of a key (the form the protocol sends)."""
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_private_key(pem: str | bytes) -> ec.EllipticCurvePrivateKey:
    """Parse a PEM private key; only ECDSA keys are ours."""
    key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("not an ECDSA private key")
    return key


def load_public_key(pem: str | bytes) -> ec.EllipticCurvePublicKey:
    """Parse a PEM SubjectPublicKeyInfo; only ECDSA P-256 keys are accepted (ValueError otherwise)."""
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key")
    return key


def public_key_der(key: ec.EllipticCurvePublicKey) -> bytes:
    """DER SubjectPublicKeyInfo of a public key (a stable byte form to store and compare)."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_cert(pem: str | bytes) -> x509.Certificate:
    """Parse one PEM certificate."""
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def load_certs(pem: str | bytes) -> list[x509.Certificate]:
    """Parse every certificate in a PEM bundle."""
    return x509.load_pem_x509_certificates(pem.encode() if isinstance(pem, str) else pem)


def cert_pem(cert: x509.Certificate) -> str:
    """PEM text of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def spki_pin(cert: x509.Certificate) -> str:
    """Teleport's CA pin: sha256: + hex SHA-256 of the DER SubjectPublicKeyInfo."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return PIN_PREFIX + hashlib.sha256(spki).hexdigest()


def normalize_pin(pin: str) -> str:
    """Validate and lower-case a `sha256:<64 hex>` pin; ValueError otherwise."""
    pin = pin.strip().lower()
    digest = pin[len(PIN_PREFIX):]
    if not pin.startswith(PIN_PREFIX) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"a CA pin is 'sha256:' followed by 64 hex digits, got {pin[:80]!r}")
    return pin


def pins_match(certs: list[x509.Certificate], pins: list[str]) -> bool:
    """True when every CA certificate matches one of the pins (an attacker cannot slip in an extra CA)."""
    if not certs:
        return False
    return all(any(hmac.compare_digest(spki_pin(c), p) for p in pins) for c in certs)


def public_keys_equal(a: ec.EllipticCurvePublicKey, b: ec.EllipticCurvePublicKey) -> bool:
    """Compare two public keys by their DER encoding."""
    enc = serialization.Encoding.DER
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(enc, fmt) == b.public_bytes(enc, fmt)


def not_after(cert: x509.Certificate) -> datetime:
    """NotAfter as an aware UTC datetime."""
    return cert.not_valid_after_utc


def not_before(cert: x509.Certificate) -> datetime:
    """NotBefore as an aware UTC datetime."""
    return cert.not_valid_before_utc


@dataclass(frozen=True)
class Identity:
    """What a certificate's subject says about its holder (Teleport's tlsca.Identity, the parts we use)."""

    username: str
    groups: list[str] = field(default_factory=list)
    kube_users: list[str] = field(default_factory=list)
    kube_groups: list[str] = field(default_factory=list)
    kube_cluster: str | None = None
    teleport_cluster: str | None = None
    renewable: bool = False
    generation: int | None = None


def identity_of(cert: x509.Certificate) -> Identity:
    """Read CN, O and Teleport's extra attributes from a certificate subject."""
    def values(oid: x509.ObjectIdentifier) -> list[str]:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]

    def one(oid: x509.ObjectIdentifier) -> str | None:
        found = values(oid)
        return found[0] if found else None

    gen = one(OID_GENERATION)
    return Identity(
        username=one(NameOID.COMMON_NAME) or "",
        groups=values(NameOID.ORGANIZATION_NAME),
        kube_users=values(OID_KUBE_USERS),
        kube_groups=values(OID_KUBE_GROUPS),
        kube_cluster=one(OID_KUBE_CLUSTER),
        teleport_cluster=one(OID_TELEPORT_CLUSTER),
        renewable=one(OID_RENEWABLE) == "true",
        generation=int(gen) if gen is not None and gen.isdigit() else None,
    )


def utcnow() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(timezone.utc)
