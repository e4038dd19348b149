"""Subject public keys as Teleport receives them: PEM for TLS (PKCS#1 `RSA PUBLIC KEY` or PKIX `PUBLIC KEY`),
an OpenSSH authorized_keys line for SSH; and the suite's rule on which algorithms it accepts."""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from . import traceerr, versions
from .versions import Profile

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
MAX_KEY_BYTES = 16 * 1024


def _check_type(key: object, what: str) -> PublicKey:
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        raise traceerr.bad_parameter(f"{what}: unsupported key type {type(key).__name__}")
    return key


def parse_tls_key(data: bytes, what: str = "TLS public key") -> PublicKey:
    """A PEM public key (PKCS#1 RSA or PKIX); BadParameter otherwise."""
    if not data or len(data) > MAX_KEY_BYTES:
        raise traceerr.bad_parameter(f"{what} is missing or too large: send a PEM public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise traceerr.bad_parameter(f"{what} is not a PEM public key (RSA PUBLIC KEY or PUBLIC KEY)") from None
    return _check_type(key, what)


def parse_ssh_key(data: bytes, what: str = "SSH public key") -> PublicKey:
    """An authorized_keys line; an error that says "ssh: no key found" (as Go's parser) when there is none."""
    line = data.strip() if data else b""
    if not line or len(line) > MAX_KEY_BYTES:
        raise traceerr.unknown("ssh: no key found")
    try:
        key = serialization.load_ssh_public_key(line)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise traceerr.unknown("ssh: no key found") from None
    return _check_type(key, what)


def describe(key: PublicKey) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ECDSA P-256", "secp384r1": "ECDSA P-384", "secp521r1": "ECDSA P-521"}.get(
            key.curve.name, f"ECDSA {key.curve.name}")
    return "Ed25519"


def check_suite(profile: Profile, key: PublicKey, what: str) -> None:
    """BadParameter when the suite does not allow this key (see versions.ENFORCE_SUITE_KEY_ALGORITHM)."""
    if not versions.ENFORCE_SUITE_KEY_ALGORITHM:
        return
    if describe(key) != profile.key_rule():
        suite = f"signature algorithm suite {profile.suite}" if profile.advertises_suite else \
            f"Teleport {profile.major} (no suites: RSA 2048)"
        raise traceerr.bad_parameter(f"{what} is {describe(key)}, but this cluster's {suite} requires "
                                     f"{profile.key_rule()} keys")


def spki_der(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def ssh_line(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
