"""The admin side of the auth service, independent of any transport: bots and their one-time join tokens.

The Teleport rules that spend the tokens (join, GenerateUserCerts) are in `teleport_rules`. Time comes from an
injectable `now()` so tests can move the clock instead of sleeping.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .. import pki
from . import store
from .roles import NAME_RE
from .teleport_rules import token_digest

DEFAULT_TOKEN_TTL = 3600


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Authority:
    """The admin rules over one state directory."""

    state_dir: Path
    now: Callable[[], datetime] = field(default=pki.utcnow)

    def add_bot(self, name: str, roles: list[str], token_ttl: int = DEFAULT_TOKEN_TTL) -> tuple[str, datetime]:
        """Create (or update) a bot and a one-time join token; returns the token and its expiry.

        ValueError for a bad name or TTL, LookupError naming roles that do not exist. A bot without roles is
        allowed, as `tctl bots add` allows it: its role may impersonate nothing until it is given roles.
        """
        if not NAME_RE.match(name):
            raise ValueError(f"invalid bot name {name!r}: use letters, digits, '.', '_', '-' or '@'")
        if token_ttl <= 0:
            raise ValueError("the token TTL must be positive")
        token = secrets.token_hex(16)
        now = self.now()
        expires = now + timedelta(seconds=token_ttl)
        with store.opened(self.state_dir) as conn, store.transaction(conn):
            known = {r["name"] for r in store.get_roles(conn, roles)}
            missing = [r for r in roles if r not in known]
            if missing:
                raise LookupError(f"unknown role(s): {', '.join(missing)}; create them with `create -f role.yaml`")
            store.upsert_bot(conn, name, roles, int(now.timestamp()))
            store.add_token(conn, token_digest(token), name, roles, int(expires.timestamp()))
        return token, expires
