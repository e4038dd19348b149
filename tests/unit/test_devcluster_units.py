"""Devcluster logic without a server: roles, label matching, CAs and serving certificates, RBAC wording,
Kubernetes tables (the Teleport issuing rules are in test_teleport_rules)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubectl_teleport import pki
from kubectl_teleport.devcluster import kubeobjects, rbac, store
from kubectl_teleport.devcluster.bootstrap import ClusterNameConflict, initialise
from kubectl_teleport.devcluster.ca import CertAuthority, issue_serving_cert
from kubectl_teleport.devcluster.kubeapi import _match_labels, _table_version
from kubectl_teleport.devcluster.roles import RoleError, grants_for, labels_match, parse_duration, parse_roles
from kubectl_teleport.devcluster.seed import seed_demo

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)

ROLE = """kind: role
version: v5
metadata: {name: %(name)s}
spec:
  allow:
    kubernetes_labels: %(labels)s
    kubernetes_groups: %(groups)s
    kubernetes_users: %(users)s
  options: {max_session_ttl: %(ttl)s}
"""


def role_yaml(name: str, labels: str = "{'*': '*'}", groups: str = "[example]", users: str = "[alice]",
              ttl: str = "1h") -> str:
    return ROLE % {"name": name, "labels": labels, "groups": groups, "users": users, "ttl": ttl}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state_dir = tmp_path / "state"
    initialise(state_dir, None, T0)
    with store.opened(state_dir) as conn:
        seed_demo(conn, T0)
    return state_dir


@pytest.mark.parametrize(("text", "seconds"), [("1h", 3600), ("30m", 1800), ("90s", 90), ("1h30m", 5400),
                                               ("1.5h", 5400), ("120", 120)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1d", "h", "-5m", "0s", "5 m", "1h-"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(RoleError):
        parse_duration(text)


def test_parse_role_v5() -> None:
    [role] = parse_roles(role_yaml("r", labels="{env: [dev, 'stag*']}", users="[alice, bob]", ttl="30m"))
    assert role.kubernetes_labels == {"env": ["dev", "stag*"]}
    assert role.kubernetes_users == ["alice", "bob"]
    assert role.kubernetes_groups == ["example"]
    assert role.max_session_ttl == 1800


@pytest.mark.parametrize(("text", "fragment"), [
    ("kind: user\nversion: v5\nmetadata: {name: x}\n", "kind must be 'role'"),
    ("kind: role\nversion: v2\nmetadata: {name: x}\n", "version must be"),
    ("kind: role\nversion: v5\nmetadata: {}\n", "metadata.name"),
    ("kind: role\nversion: v5\nmetadata: {name: x}\nspec: {allow: {kubernetes_groups: 5}}\n", "kubernetes_groups"),
    ("kind: role\nversion: v5\nmetadata: {name: x}\nspec: {options: {max_session_ttl: soon}}\n", "max_session_ttl"),
    ("kind: role\n  bad: [\n", "not valid YAML"),
    ("", "no role"),
])
def test_parse_role_errors(text: str, fragment: str) -> None:
    with pytest.raises(RoleError, match=fragment):
        parse_roles(text)


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ({"*": ["*"]}, {}, True),
    ({"*": ["*"]}, {"env": "dev"}, True),
    ({"env": ["prod"]}, {"env": "dev"}, False),
    ({"env": ["prod"]}, {"env": "prod"}, True),
    ({"env": ["dev", "prod"]}, {"env": "prod"}, True),
    ({"env": ["*"]}, {"env": "anything"}, True),
    ({"env": ["*"]}, {"team": "x"}, False),
    ({"env": ["stag*"]}, {"env": "staging"}, True),
    ({"env": ["dev"], "team": ["a"]}, {"env": "dev"}, False),
    ({}, {"env": "dev"}, False),
])
def test_labels_match(selector: dict, labels: dict, expected: bool) -> None:
    assert labels_match(selector, labels) is expected


def test_grants_union_and_smallest_ttl() -> None:
    roles = parse_roles(role_yaml("a", users="[alice]", ttl="2h") + "---\n"
                        + role_yaml("b", groups="[ops]", users="[bob]", ttl="20m") + "---\n"
                        + role_yaml("c", labels="{env: prod}", groups="[admins]", users="[root]", ttl="5m"))
    grants = grants_for(roles, {"env": "dev"})
    assert grants is not None
    assert grants.users == ["alice", "bob"] and grants.groups == ["example", "ops"]
    assert grants.max_ttl == 1200
    assert grants_for(roles[2:], {"env": "dev"}) is None


# certificates ----------------------------------------------------------------------------------------------------

def test_cas_are_separate_and_persistent(state: Path) -> None:
    with store.opened(state) as conn:
        host, user = (pki.load_cert(store.get_ca(conn, k)[0]) for k in ("host", "user"))
    assert pki.spki_pin(host) != pki.spki_pin(user)
    assert host.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert initialise(state, None) == ("devcluster", False)
    with pytest.raises(ClusterNameConflict):
        initialise(state, "other")
    assert (state / store.DB_NAME).stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700


def test_serving_cert_sans_and_eku(state: Path) -> None:
    with store.opened(state) as conn:
        host_ca = CertAuthority.from_pem(*store.get_ca(conn, "host"))
    cert = issue_serving_cert(host_ca, pki.generate_key().public_key(), "kube", ["10.1.2.3", "kube.example.com"],
                              T0)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "kube.example.com"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1", "10.1.2.3"}
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    cert.verify_directly_issued_by(host_ca.cert)


def test_rbac_allowed() -> None:
    bindings = [{"namespace": "demo", "verbs": ["get", "list"], "resources": ["pods", "deployments.apps"],
                 "subject_kind": "Group", "subject_name": "example"},
                {"namespace": "", "verbs": ["list"], "resources": ["namespaces"], "subject_kind": "User",
                 "subject_name": "root"}]
    assert rbac.allowed(bindings, "bob", ["example"], "list", "pods", "demo")
    assert rbac.allowed(bindings, "bob", ["example"], "get", "deployments", "demo")
    assert not rbac.allowed(bindings, "bob", ["example"], "delete", "pods", "demo")
    assert not rbac.allowed(bindings, "bob", ["example"], "list", "pods", "other")
    assert not rbac.allowed(bindings, "bob", ["other"], "list", "pods", "demo")
    assert not rbac.allowed(bindings, "bob", ["example"], "list", "pods", None)
    assert rbac.allowed(bindings, "root", [], "list", "namespaces", None)


def test_forbidden_messages_match_kube_apiserver() -> None:
    assert rbac.forbidden_message("alice", "list", "pods", "", "secret", None) == (
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "secret"')
    assert rbac.forbidden_message("alice", "list", "deployments", "apps", "x", None) == (
        'deployments.apps is forbidden: User "alice" cannot list resource "deployments" in API group "apps" '
        'in the namespace "x"')
    assert rbac.forbidden_message("alice", "get", "pods", "", "demo", "web") == (
        'pods "web" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "demo"')
    assert rbac.forbidden_message("alice", "list", "namespaces", "", None, None).endswith("at the cluster scope")


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (119, "119s"), (150, "2m30s"), (600, "10m"),
                                               (3 * 3600 + 60, "3h1m"), (9 * 3600, "9h"), (50 * 3600, "2d2h"),
                                               (30 * 86400, "30d"), (3 * 365 * 86400, "3y")])
def test_human_duration(seconds: int, text: str) -> None:
    assert kubeobjects.human_duration(seconds) == text


def test_table_negotiation_and_selectors() -> None:
    kubectl_accept = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
                      "g=meta.k8s.io,application/json")
    assert _table_version(kubectl_accept) == "v1"
    assert _table_version("application/json;as=Table;v=v1beta1;g=meta.k8s.io") == "v1beta1"
    assert _table_version("application/json") is None
    assert _match_labels("app=web", {"app": "web"}) and not _match_labels("app=web", {"app": "db"})
    assert _match_labels("app!=db,tier", {"app": "web", "tier": "x"}) and not _match_labels("!tier", {"tier": "x"})
