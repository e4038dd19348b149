"""Teleport role v5 resources: parsing and validation, label matching and the Kubernetes access they grant."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import yaml

DEFAULT_MAX_SESSION_TTL = 3600
SUPPORTED_VERSIONS = ("v5", "v6", "v7")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


class RoleError(ValueError):
    """A role file or value that is not a valid role; the message says what is wrong."""


def parse_duration(text: str) -> int:
    """Go-style duration ("1h", "30m", "90s", "1h30m", "1.5h") or plain seconds → whole seconds (> 0)."""
    raw = str(text).strip().lower()
    if raw.isdigit():
        seconds = float(raw)
    else:
        pos, seconds = 0, 0.0
        for m in _DURATION_PART.finditer(raw):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * {"h": 3600, "m": 60, "s": 1}[m.group(2)]
            pos = m.end()
        if pos != len(raw) or not raw:
            raise RoleError(f"invalid duration {text!r}: use a number with h, m or s, like 1h, 30m or 90s")
    if seconds < 1:
        raise RoleError(f"invalid duration {text!r}: it must be at least 1s")
    return int(seconds)


@dataclass(frozen=True)
class Role:
    """The parts of a Teleport role the devcluster understands."""

    name: str
    kubernetes_labels: dict[str, list[str]] = field(default_factory=dict)
    kubernetes_groups: list[str] = field(default_factory=list)
    kubernetes_users: list[str] = field(default_factory=list)
    max_session_ttl: int = DEFAULT_MAX_SESSION_TTL

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kubernetes_labels": self.kubernetes_labels,
                "kubernetes_groups": self.kubernetes_groups, "kubernetes_users": self.kubernetes_users,
                "max_session_ttl": self.max_session_ttl}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Role:
        return cls(d["name"], dict(d["kubernetes_labels"]), list(d["kubernetes_groups"]),
                   list(d["kubernetes_users"]), int(d["max_session_ttl"]))


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RoleError(f"{where} must be a list of non-empty strings")
    return list(dict.fromkeys(value))


def _labels(value: Any, where: str) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RoleError(f"{where} must be a mapping of label names to a value or a list of values")
    out: dict[str, list[str]] = {}
    for key, vals in value.items():
        if not isinstance(key, str) or not key:
            raise RoleError(f"{where} has an invalid label name {key!r}")
        out[key] = _str_list(vals, f"{where}.{key}")
    return out


def role_from_object(doc: Any) -> Role:
    """Validate one parsed YAML document as a Teleport role resource."""
    if not isinstance(doc, dict):
        raise RoleError("a role must be a YAML mapping with kind, version, metadata and spec")
    if doc.get("kind") != "role":
        raise RoleError(f"kind must be 'role', got {doc.get('kind')!r}")
    if doc.get("version") not in SUPPORTED_VERSIONS:
        raise RoleError(f"version must be one of {', '.join(SUPPORTED_VERSIONS)}, got {doc.get('version')!r}")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RoleError("metadata.name must be a name of letters, digits, '.', '_', '-' or '@'")
    spec = doc.get("spec") or {}
    if not isinstance(spec, dict):
        raise RoleError(f"role {name}: spec must be a mapping")
    allow = spec.get("allow") or {}
    options = spec.get("options") or {}
    deny = spec.get("deny") or {}
    if not isinstance(allow, dict) or not isinstance(options, dict) or not isinstance(deny, dict):
        raise RoleError(f"role {name}: spec.allow, spec.deny and spec.options must be mappings")
    if any(k.startswith("kubernetes_") for k in deny):
        raise RoleError(f"role {name}: kubernetes_* deny rules are not supported by the devcluster")
    ttl = options.get("max_session_ttl")
    return Role(
        name=name,
        kubernetes_labels=_labels(allow.get("kubernetes_labels"), f"role {name}: spec.allow.kubernetes_labels"),
        kubernetes_groups=_str_list(allow.get("kubernetes_groups"), f"role {name}: spec.allow.kubernetes_groups"),
        kubernetes_users=_str_list(allow.get("kubernetes_users"), f"role {name}: spec.allow.kubernetes_users"),
        max_session_ttl=DEFAULT_MAX_SESSION_TTL if ttl is None else _role_ttl(name, ttl),
    )


def _role_ttl(name: str, ttl: Any) -> int:
    try:
        return parse_duration(str(ttl))
    except RoleError as e:
        raise RoleError(f"role {name}: spec.options.max_session_ttl: {e}") from None


def parse_roles(text: str) -> list[Role]:
    """Every role in a YAML stream (documents separated by ---); RoleError when any is invalid."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RoleError(f"not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    if not docs:
        raise RoleError("the file holds no role")
    return [role_from_object(d) for d in docs]


def _value_matches(patterns: list[str], value: str) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)


def labels_match(selector: dict[str, list[str]], labels: dict[str, str]) -> bool:
    """Teleport's rule: every selector key must match ('*': '*' matches anything; values may be globs).

    An empty selector matches nothing (a role without kubernetes_labels grants no cluster).
    """
    if not selector:
        return False
    for key, patterns in selector.items():
        if key == "*":
            if "*" not in patterns:
                return False
            continue
        if key not in labels or not _value_matches(patterns, labels[key]):
            return False
    return True


@dataclass(frozen=True)
class Grants:
    """What a set of roles grants on one Kubernetes cluster."""

    roles: list[str]
    users: list[str]
    groups: list[str]
    max_ttl: int


def grants_for(roles: list[Role], cluster_labels: dict[str, str]) -> Grants | None:
    """Union of users and groups of the roles matching the labels, and the smallest TTL cap; None if none."""
    matching = [r for r in roles if labels_match(r.kubernetes_labels, cluster_labels)]
    if not matching:
        return None
    users = list(dict.fromkeys(u for r in matching for u in r.kubernetes_users))
    groups = list(dict.fromkeys(g for r in matching for g in r.kubernetes_groups))
    return Grants([r.name for r in matching], users, groups, min(r.max_session_ttl for r in matching))
