"""The devcluster's SSH CAs (user and host, Ed25519) and the SSH user certificates Teleport returns next to the
TLS ones. Stored in the `cas` table: the public key as an authorized_keys line, the private key as PKCS#8 PEM."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from .pubkeys import PublicKey

SSH_USER_CA, SSH_HOST_CA = "ssh_user", "ssh_host"
BACKDATE = timedelta(minutes=1)


@dataclass(frozen=True)
class SSHAuthority:
    key: ed25519.Ed25519PrivateKey

    @property
    def public_line(self) -> str:
        """The CA's public key as an authorized_keys line (what `ssh_ca_certs` carries)."""
        return self.key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                  serialization.PublicFormat.OpenSSH).decode()

    def private_pem(self) -> str:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()

    @classmethod
    def generate(cls) -> SSHAuthority:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, key_pem: str) -> SSHAuthority:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("the SSH CA key is not an Ed25519 key")
        return cls(key)


def issue_user_cert(ca: SSHAuthority, public_key: PublicKey, username: str, roles: list[str], principals: list[str],
                    cluster: str, now: datetime, not_after: datetime) -> bytes:
    """An SSH user certificate (authorized_keys format, with a trailing newline).

    Key ID = the Teleport user, principals as given, Teleport's role and route extensions plus the usual permits.
    """
    extensions = {
        "permit-agent-forwarding": b"",
        "permit-port-forwarding": b"",
        "permit-pty": b"",
        "teleport-roles": json.dumps({"version": "v1", "roles": roles}, separators=(",", ":")).encode(),
        "teleport-route-to-cluster": cluster.encode(),
    }
    builder = (serialization.SSHCertificateBuilder()
               .public_key(public_key)  # type: ignore[arg-type]
               .serial(int(now.timestamp() * 1000))
               .type(serialization.SSHCertificateType.USER)
               .key_id(username.encode())
               .valid_principals([p.encode() for p in principals])
               .valid_after(int((now - BACKDATE).timestamp()))
               .valid_before(int(not_after.timestamp())))
    for name in sorted(extensions):  # OpenSSH wants extensions in lexical order
        builder = builder.add_extension(name.encode(), extensions[name])
    cert = builder.sign(ca.key)
    return cert.public_bytes() + b"\n"
