"""Which Teleport the devcluster stands in for: the version, the signature algorithm suite, TLS routing.

Every behaviour that differs between Teleport versions is a predicate of `Profile`, and every rule that rests on
an unverified fact is one constant here (docs/devcluster.md lists them with what they assume).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SUPPORTED_MAJORS = (16, 17, 18)
DEFAULT_MAJOR = 17
# The version each major stands for when only the major is given (a full X.Y.Z picks another minor).
DEFAULT_VERSIONS = {16: "16.5.0", 17: "17.5.0", 18: "18.2.0"}
SUITES = ("legacy", "balanced-v1")
DEFAULT_SUITE = "balanced-v1"  # for 17 and 18; 16 predates suites and behaves as legacy

# Assumption (unverified): a v17+ server rejects a UserCertsRequest that carries only the deprecated PublicKey
# (field 1) with BadParameter. Set True to make v17+ accept field 1 alone (both certificates from that key).
V17_ACCEPTS_LEGACY_PUBLIC_KEY = False
# Assumption (unverified): the auth service refuses subject keys of another algorithm than its suite's
# (legacy and v16: RSA 2048; balanced-v1: ECDSA P-256) with BadParameter. False accepts any RSA/ECDSA/Ed25519 key.
ENFORCE_SUITE_KEY_ALGORITHM = True
# Assumption (inferred from Teleport's web handler, which strips a leading /v1 from API paths): the proxy answers
# /v1/webapi/... exactly like /webapi/.... False makes /v1/webapi/... a 404 (to exercise a client's fallback).
SERVE_V1_WEBAPI_PREFIX = True
# Where bot instances (and the certificate's bot instance ID, OID 1.3.9999.2.20) begin (RFD 0162: 16.2.0).
BOT_INSTANCES_SINCE = (16, 2)

# Assumption (read in lib/auth/auth_with_roles.go, v15/16-era; not re-read for 17/18): ListResources pages these
# kinds; any other ResourceType is NotImplemented (UNIMPLEMENTED) on every version the devcluster stands in for.
PAGINATED_KINDS = ("node", "db_server", "db_service", "app_server", "kube_server", "windows_desktop",
                   "windows_desktop_service", "user_group", "saml_idp_service_provider")
# Assumption (apidefaults.DefaultChunkSize, not re-read): the page size of a ListResources request with Limit 0.
LIST_DEFAULT_LIMIT = 1000

_VERSION_RE = re.compile(r"^(\d+)(?:\.(\d+)\.(\d+))?$")


class ProfileError(ValueError):
    """An unsupported --teleport-version/--suite combination; the message says what is supported."""


@dataclass(frozen=True)
class Profile:
    """The Teleport behaviour the devcluster follows."""

    version: str = DEFAULT_VERSIONS[DEFAULT_MAJOR]
    suite: str = DEFAULT_SUITE  # the effective suite: "legacy" for 16, which has none
    tls_routing: bool = True

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def minor(self) -> int:
        return int(self.version.split(".")[1])

    @property
    def advertises_suite(self) -> bool:
        """/webapi/find carries auth.signature_algorithm_suite (v17+)."""
        return self.major >= 17

    @property
    def split_keys(self) -> bool:
        """UserCertsRequest fields 22/23 and the join's public_tls_key are read (v17+); v16 reads only SSH keys."""
        return self.major >= 17

    @property
    def bot_instances(self) -> bool:
        """Bot instances: each join makes one, with its own generation, and certificates carry its ID."""
        return (self.major, self.minor) >= BOT_INSTANCES_SINCE

    @property
    def min_client_version(self) -> str:
        return f"{self.major - 1}.0.0-aa"

    def key_rule(self) -> str:
        """What subject keys the suite allows, for messages."""
        return "RSA 2048" if self.suite == "legacy" else "ECDSA P-256"


def make_profile(version: str | None = None, suite: str | None = None, tls_routing: bool = True) -> Profile:
    """A Profile from the `start` flags; ProfileError for what the devcluster does not stand in for."""
    text = (version or str(DEFAULT_MAJOR)).strip()
    match = _VERSION_RE.match(text)
    if match is None:
        raise ProfileError(f"invalid --teleport-version {text!r}: use 16, 17 or 18 (or a full version like 17.5.0)")
    major = int(match.group(1))
    if major not in SUPPORTED_MAJORS:
        raise ProfileError(f"--teleport-version {text}: the devcluster stands in for Teleport "
                           f"{', '.join(map(str, SUPPORTED_MAJORS))} only")
    full = text if match.group(2) is not None else DEFAULT_VERSIONS[major]
    if suite is not None and suite not in SUITES:
        raise ProfileError(f"invalid --suite {suite!r}: use {' or '.join(SUITES)}")
    if major < 17:
        if suite not in (None, "legacy"):
            raise ProfileError(f"--suite {suite}: Teleport {major} has no signature algorithm suites (it uses RSA "
                               "2048 keys, like legacy); drop --suite or use --suite legacy")
        suite = "legacy"
    return Profile(full, suite or DEFAULT_SUITE, tls_routing)

# The version GetRole reports for roles: Teleport's types.DefaultRoleVersion (v7 since 14, not re-read for 16-18).
ROLE_VERSION = "v7"
