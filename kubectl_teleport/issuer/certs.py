"""Teleport's `proto.Certs`: what a join (JSON) and `GenerateUserCerts` (protobuf) answer, checked once.

Fields (certs.proto): 1 `ssh` (an SSH certificate, authorized_keys format), 2 `tls` (PEM certificate),
3 `tls_ca_certs` (PEM CAs: the user CA(s), then the host CA(s) for bots), 4 `ssh_ca_certs` (authorized_keys
lines, same order). In JSON all four are Go `[]byte`, so standard base64 with padding, and omitted when empty.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from .. import pki
from ..errors import Unavailable


@dataclass(frozen=True)
class Certs:
    """An issued certificate with its CAs, as text (PEM / authorized_keys lines)."""

    tls: str
    ssh: str = ""
    tls_ca_certs: list[str] = field(default_factory=list)
    ssh_ca_certs: list[str] = field(default_factory=list)

    def checked(self, action: str) -> Certs:
        """Self, once the TLS certificate and every TLS CA parse; Unavailable (one line) otherwise."""
        try:
            pki.load_cert(self.tls)
            for pem in self.tls_ca_certs:
                pki.load_certs(pem)
        except ValueError:
            raise _bad(action, "a certificate that does not parse") from None
        return self


def _bad(action: str, what: str) -> Unavailable:
    return Unavailable(f"{action} failed: the server's answer holds {what}; check that --proxy names a "
                       "Teleport proxy")


def _text(raw: bytes, action: str, name: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise _bad(action, f"a {name} that is not text") from None


def from_message(msg: Any, action: str) -> Certs:
    """From a decoded protobuf `Certs` (kubectl_teleport.proto.teleport_auth_pb2.Certs)."""
    if not msg.tls:
        raise _bad(action, "no TLS certificate")
    return Certs(tls=_text(msg.tls, action, "certificate"), ssh=_text(msg.ssh, action, "SSH certificate"),
                 tls_ca_certs=[_text(c, action, "CA") for c in msg.tls_ca_certs],
                 ssh_ca_certs=[_text(c, action, "SSH CA") for c in msg.ssh_ca_certs]).checked(action)


def go_bytes(data: bytes) -> str:
    """Go's encoding/json form of a `[]byte`: standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


def from_go_bytes(value: Any, action: str, name: str) -> bytes:
    """Decode a Go `[]byte` JSON value (standard base64; a missing field is empty)."""
    if value is None:
        return b""
    if not isinstance(value, str):
        raise _bad(action, f"a {name} that is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(action, f"a {name} that is not valid base64") from None


def from_json(obj: Any, action: str) -> Certs:
    """From the JSON of a `proto.Certs` (the answer of `/webapi/host/credentials`)."""
    if not isinstance(obj, dict):
        raise _bad(action, "no certificates")

    def many(name: str) -> list[str]:
        items = obj.get(name)
        if items is None:
            return []
        if not isinstance(items, list):
            raise _bad(action, f"a {name} that is not a list")
        return [_text(from_go_bytes(v, action, name), action, name) for v in items]

    tls = from_go_bytes(obj.get("tls"), action, "tls")
    if not tls:
        raise _bad(action, "no TLS certificate")
    return Certs(tls=_text(tls, action, "certificate"), ssh=_text(from_go_bytes(obj.get("ssh"), action, "ssh"),
                                                                   action, "SSH certificate"),
                 tls_ca_certs=many("tls_ca_certs"), ssh_ca_certs=many("ssh_ca_certs")).checked(action)
