"""The devcluster's certificate authorities: creating them and issuing every certificate they sign.

Two CAs, as in Teleport: the *host* CA signs serving certificates (auth service, Kubernetes endpoint); the *user*
CA signs client identities (bot identities and Kubernetes client certificates). ECDSA P-256, SHA-256.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .. import pki

BACKDATE = timedelta(minutes=1)
CA_VALIDITY = timedelta(days=3650)
SERVING_VALIDITY = timedelta(days=365)
KUBE_TLS_SERVER_NAME = "kube.teleport.cluster.local"


@dataclass(frozen=True)
class CertAuthority:
    """A CA certificate with its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> str:
        return pki.cert_pem(self.cert)

    @classmethod
    def from_pem(cls, cert_pem: str, key_pem: str) -> CertAuthority:
        return cls(pki.load_cert(cert_pem), pki.load_private_key(key_pem))


def create_ca(kind: str, cluster_name: str, now: datetime) -> CertAuthority:
    """A new self-signed CA; `kind` is "host" or "user" (it goes into the subject)."""
    key = pki.generate_key()
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_name),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster_name} {kind} CA"),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertAuthority(cert, key)


def _leaf(ca: CertAuthority, subject: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime,
          not_after: datetime, eku: x509.ObjectIdentifier) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(not_after, pki.not_after(ca.cert)))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )


def serving_sans(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """SubjectAlternativeNames for a serving cert: IP addresses as IPs, anything else as DNS names."""
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(h.strip("[]") for h in hosts if h):
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            names.append(x509.DNSName(host))
            continue
        if not ip.is_unspecified:
            names.append(x509.IPAddress(ip))
    return names


def issue_serving_cert(ca: CertAuthority, public_key: ec.EllipticCurvePublicKey, common_name: str,
                       hosts: Iterable[str], now: datetime, loopback: bool = True) -> x509.Certificate:
    """A server-auth certificate for `hosts` (and localhost, 127.0.0.1 and ::1 unless `loopback` is False)."""
    sans = serving_sans([*(["localhost", "127.0.0.1", "::1"] if loopback else []), *hosts])
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (_leaf(ca, subject, public_key, now, now + SERVING_VALIDITY, ExtendedKeyUsageOID.SERVER_AUTH)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca.key, hashes.SHA256()))


def issue_bot_identity(ca: CertAuthority, public_key: ec.EllipticCurvePublicKey, bot: str, roles: list[str],
                       teleport_cluster: str, generation: int, now: datetime,
                       not_after: datetime) -> x509.Certificate:
    """A renewable bot identity: CN bot-<name>, O = roles, cluster, renewable "true", generation."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, f"bot-{bot}")]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, r) for r in roles]
    attrs += [
        x509.NameAttribute(pki.OID_TELEPORT_CLUSTER, teleport_cluster),
        x509.NameAttribute(pki.OID_RENEWABLE, "true"),
        x509.NameAttribute(pki.OID_GENERATION, str(generation)),
    ]
    return _leaf(ca, x509.Name(attrs), public_key, now, not_after,
                 ExtendedKeyUsageOID.CLIENT_AUTH).sign(ca.key, hashes.SHA256())


def issue_kube_cert(ca: CertAuthority, public_key: ec.EllipticCurvePublicKey, user: str, groups: list[str],
                    kube_cluster: str, teleport_cluster: str, now: datetime,
                    not_after: datetime) -> x509.Certificate:
    """A Kubernetes client certificate: CN = user, O = groups (kube-apiserver's x509 rule) + Teleport's attrs."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    attrs.append(x509.NameAttribute(pki.OID_KUBE_USERS, user))
    attrs += [x509.NameAttribute(pki.OID_KUBE_GROUPS, g) for g in groups]
    attrs += [
        x509.NameAttribute(pki.OID_KUBE_CLUSTER, kube_cluster),
        x509.NameAttribute(pki.OID_TELEPORT_CLUSTER, teleport_cluster),
    ]
    return _leaf(ca, x509.Name(attrs), public_key, now, not_after,
                 ExtendedKeyUsageOID.CLIENT_AUTH).sign(ca.key, hashes.SHA256())


def issue_identity_cert(ca: CertAuthority, public_key: PublicKeyTypes, subject: x509.Name, now: datetime,
                        not_after: datetime) -> x509.Certificate:
    """A client certificate with a Teleport identity subject (see tlsidentity), for any RSA/ECDSA/Ed25519 key."""
    return _leaf(ca, subject, public_key, now, not_after,  # type: ignore[arg-type]
                 ExtendedKeyUsageOID.CLIENT_AUTH).sign(ca.key, hashes.SHA256())
