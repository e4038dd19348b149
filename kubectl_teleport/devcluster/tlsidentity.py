"""Teleport's identity in an X.509 subject (the layout of lib/tlsca): writing it and reading it back.

Standard attributes: CN = user, O = roles, OU = usage, L = principals, STREET = [route-to-cluster],
POSTALCODE = [traits JSON]. Extra attributes (string values) under 1.3.9999.1.* and 1.3.9999.2.*.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..pki import OID_BOT_INSTANCE_ID as OID_BOT_INSTANCE

# Teleport's subject attributes: one table, in the neutral pki module the plugin uses too.
from ..pki import (
    OID_BOT_NAME,
    OID_DISALLOW_REISSUE,
    OID_GENERATION,
    OID_IMPERSONATOR,
    OID_KUBE_CLUSTER,
    OID_KUBE_GROUPS,
    OID_KUBE_USERS,
    OID_RENEWABLE,
    OID_TELEPORT_CLUSTER,
)

TRUE = "true"


@dataclass(frozen=True)
class TeleportIdentity:
    """The parts of Teleport's tlsca.Identity the devcluster writes and reads."""

    username: str
    groups: list[str] = field(default_factory=list)  # roles
    usage: list[str] = field(default_factory=list)
    principals: list[str] = field(default_factory=list)
    route_to_cluster: str = ""
    kube_users: list[str] = field(default_factory=list)
    kube_groups: list[str] = field(default_factory=list)
    kube_cluster: str = ""
    teleport_cluster: str = ""
    renewable: bool = False
    generation: int = 0
    impersonator: str = ""
    disallow_reissue: bool = False
    bot_name: str = ""
    bot_instance_id: str = ""

    def subject(self) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, self.username)]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in self.groups]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, u) for u in self.usage]
        attrs += [x509.NameAttribute(NameOID.LOCALITY_NAME, p) for p in self.principals]
        if self.route_to_cluster:
            attrs.append(x509.NameAttribute(NameOID.STREET_ADDRESS, self.route_to_cluster))
        attrs.append(x509.NameAttribute(NameOID.POSTAL_CODE, "{}"))  # traits: none
        attrs += [x509.NameAttribute(OID_KUBE_USERS, u) for u in self.kube_users]
        attrs += [x509.NameAttribute(OID_KUBE_GROUPS, g) for g in self.kube_groups]
        optional = [
            (OID_KUBE_CLUSTER, self.kube_cluster),
            (OID_RENEWABLE, TRUE if self.renewable else ""),
            (OID_TELEPORT_CLUSTER, self.teleport_cluster),
            (OID_IMPERSONATOR, self.impersonator),
            (OID_DISALLOW_REISSUE, TRUE if self.disallow_reissue else ""),
            (OID_GENERATION, str(self.generation) if self.generation > 0 else ""),
            (OID_BOT_NAME, self.bot_name),
            (OID_BOT_INSTANCE, self.bot_instance_id),
        ]
        attrs += [x509.NameAttribute(oid, value) for oid, value in optional if value]
        return x509.Name(attrs)


def read_identity(cert: x509.Certificate) -> TeleportIdentity:
    """The identity a certificate's subject carries (unknown attributes ignored)."""
    subject = cert.subject

    def values(oid: x509.ObjectIdentifier) -> list[str]:
        return [str(a.value) for a in subject.get_attributes_for_oid(oid)]

    def one(oid: x509.ObjectIdentifier) -> str:
        found = values(oid)
        return found[0] if found else ""

    generation = one(OID_GENERATION)
    return TeleportIdentity(
        username=one(NameOID.COMMON_NAME),
        groups=values(NameOID.ORGANIZATION_NAME),
        usage=values(NameOID.ORGANIZATIONAL_UNIT_NAME),
        principals=values(NameOID.LOCALITY_NAME),
        route_to_cluster=one(NameOID.STREET_ADDRESS),
        kube_users=values(OID_KUBE_USERS),
        kube_groups=values(OID_KUBE_GROUPS),
        kube_cluster=one(OID_KUBE_CLUSTER),
        teleport_cluster=one(OID_TELEPORT_CLUSTER),
        renewable=one(OID_RENEWABLE) == TRUE,
        generation=int(generation) if generation.isdigit() else 0,
        impersonator=one(OID_IMPERSONATOR),
        disallow_reissue=one(OID_DISALLOW_REISSUE) == TRUE,
        bot_name=one(OID_BOT_NAME),
        bot_instance_id=one(OID_BOT_INSTANCE),
    )
