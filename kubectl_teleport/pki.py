"""Keys, certificates, CA pins and Teleport's identity attributes (uses `cryptography`; never on the hot path).

Keys are ECDSA P-256 or RSA (2048 bits and more). Teleport picks the algorithm from the cluster's signature
algorithm suite (`key_for_suite`) and expects its own encodings (`tls_public_key_pem`, `ssh_public_key_line`,
`private_key_pem`); the functions that load keys accept both kinds."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

# Teleport's identity attributes in the certificate subject (lib/tlsca/ca.go).
OID_KUBE_USERS = x509.ObjectIdentifier("1.3.9999.1.1")
OID_KUBE_GROUPS = x509.ObjectIdentifier("1.3.9999.1.2")
OID_KUBE_CLUSTER = x509.ObjectIdentifier("1.3.9999.1.3")
OID_TELEPORT_CLUSTER = x509.ObjectIdentifier("1.3.9999.1.7")
OID_RENEWABLE = x509.ObjectIdentifier("1.3.9999.1.13")
OID_GENERATION = x509.ObjectIdentifier("1.3.9999.1.14")
OID_IMPERSONATOR = x509.ObjectIdentifier("1.3.9999.2.7")
OID_DISALLOW_REISSUE = x509.ObjectIdentifier("1.3.9999.2.9")
OID_BOT_NAME = x509.ObjectIdentifier("1.3.9999.2.18")
OID_BOT_INSTANCE_ID = x509.ObjectIdentifier("1.3.9999.2.20")

# Teleport's signature algorithm suites (AuthPreferenceSpecV2.signature_algorithm_suite) as /webapi/find names
# them, with the enum numbers an older or hand-written answer may carry instead.
SUITE_UNSPECIFIED, SUITE_LEGACY, SUITE_BALANCED_V1, SUITE_FIPS_V1, SUITE_HSM_V1 = (
    "", "legacy", "balanced-v1", "fips-v1", "hsm-v1")
SUITE_NUMBERS = {0: SUITE_UNSPECIFIED, 1: SUITE_LEGACY, 2: SUITE_BALANCED_V1, 3: SUITE_FIPS_V1, 4: SUITE_HSM_V1}
RSA_BITS = 2048

PIN_PREFIX = "sha256:"


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def suite_uses_rsa(suite: str) -> bool:
    """True when Teleport's suite asks for RSA 2048 keys (`legacy`, or no suite: servers before v17).

    balanced-v1, fips-v1 and hsm-v1 use ECDSA P-256 for bot identities and their impersonated certificates; a
    suite this client does not know yet gets ECDSA P-256 too (every suite after `legacy` accepts it)."""
    return suite in (SUITE_UNSPECIFIED, SUITE_LEGACY)


def key_for_suite(suite: str) -> PrivateKey:
    """A fresh key of the algorithm Teleport's signature algorithm suite expects for a bot's keys."""
    if suite_uses_rsa(suite):
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return generate_key()


def private_key_pem(key: PrivateKey) -> str:
    """Unencrypted PEM, encoded as Teleport writes keys: RSA as PKCS#1 (`RSA PRIVATE KEY`), ECDSA as PKCS#8
    (`PRIVATE KEY`)."""
    fmt = (serialization.PrivateFormat.TraditionalOpenSSL if isinstance(key, rsa.RSAPrivateKey)
           else serialization.PrivateFormat.PKCS8)
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def _public(key: PrivateKey | PublicKey) -> PublicKey:
    return key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) else key


def public_key_pem(key: PrivateKey | PublicKey) -> str:
    """PEM SubjectPublicKeyInfo (`PUBLIC KEY`) of a key, whatever its algorithm."""
    return _public(key).public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def tls_public_key_pem(key: PrivateKey | PublicKey) -> str:
    """The public key as Teleport sends it in `public_tls_key`/`TLSPublicKey`: RSA as PKCS#1
    (`RSA PUBLIC KEY`), anything else as PKIX (`PUBLIC KEY`)."""
    pub = _public(key)
    fmt = (serialization.PublicFormat.PKCS1 if isinstance(pub, rsa.RSAPublicKey)
           else serialization.PublicFormat.SubjectPublicKeyInfo)
    return pub.public_bytes(serialization.Encoding.PEM, fmt).decode()


def ssh_public_key_line(key: PrivateKey | PublicKey) -> str:
    """The public key as an OpenSSH authorized_keys line with a trailing newline (Go's MarshalAuthorizedKey)."""
    return _public(key).public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + "\n"


def _check_key(key: object) -> None:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < RSA_BITS:
            raise ValueError(f"an RSA key of {key.key_size} bits is too small (at least {RSA_BITS})")
    elif not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        raise ValueError("not an ECDSA or RSA key")


def load_private_key(pem: str | bytes) -> PrivateKey:
    """Parse a PEM private key: ECDSA or RSA (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY`, SEC 1
    `EC PRIVATE KEY`); ValueError for anything else."""
    key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
    _check_key(key)
    return key  # type: ignore[return-value]


def load_public_key(pem: str | bytes) -> ec.EllipticCurvePublicKey:
    """Parse a PEM SubjectPublicKeyInfo; only ECDSA P-256 keys are accepted (ValueError otherwise)."""
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key")
    return key


def load_tls_public_key(pem: str | bytes) -> PublicKey:
    """Parse a public key the way Teleport accepts `public_tls_key`: PEM PKIX (`PUBLIC KEY`) or PKCS#1
    (`RSA PUBLIC KEY`), ECDSA or RSA of at least 2048 bits; ValueError otherwise."""
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    _check_key(key)
    return key  # type: ignore[return-value]


def load_ssh_public_key(line: str | bytes) -> PublicKey:
    """Parse an authorized_keys line (`<type> <base64>[ comment]`); ECDSA or RSA only."""
    key = serialization.load_ssh_public_key((line.encode() if isinstance(line, str) else line).strip())
    _check_key(key)
    return key  # type: ignore[return-value]


def public_key_der(key: PrivateKey | PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo of a key (a stable byte form to store and compare)."""
    return _public(key).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


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


def public_keys_equal(a: PrivateKey | PublicKey, b: PrivateKey | PublicKey) -> bool:
    """Compare two keys (public, or the public half of private ones) by their DER SubjectPublicKeyInfo."""
    return public_key_der(a) == public_key_der(b)


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
    bot_name: str | None = None
    bot_instance_id: str | None = None
    impersonator: str | None = None
    disallow_reissue: bool = False


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
        bot_name=one(OID_BOT_NAME),
        bot_instance_id=one(OID_BOT_INSTANCE_ID),
        impersonator=one(OID_IMPERSONATOR),
        disallow_reissue=one(OID_DISALLOW_REISSUE) is not None,
    )


def utcnow() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(timezone.utc)
