"""The generated Teleport wire messages (kubectl_teleport.proto.teleport_auth_pb2): field numbers from the facts,
round trips through the protobuf runtime, and byte-exact encodings checked against a hand-written encoder."""

from __future__ import annotations

import datetime
import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import empty_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.unknown_fields import UnknownFieldSet

from kubectl_teleport.proto import teleport_auth_pb2 as pb
from tests.protowire import ld, varint, vi

REPO = Path(__file__).resolve().parents[2]


def timestamp(seconds: int, nanos: int) -> bytes:
    return (vi(1, seconds) if seconds else b"") + (vi(2, nanos) if nanos else b"")


EXPIRES = datetime.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc)
EXPIRES_SECONDS = int(EXPIRES.timestamp())
SSH_KEY = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests bot\n"
TLS_KEY = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"


def test_field_numbers_and_types_match_the_wire_facts() -> None:
    fields = {fd.name: (fd.number, fd.type, fd.is_repeated)
              for fd in pb.UserCertsRequest.DESCRIPTOR.fields}
    string, bytes_, message, enum, boolean = (FD.TYPE_STRING, FD.TYPE_BYTES, FD.TYPE_MESSAGE, FD.TYPE_ENUM,
                                              FD.TYPE_BOOL)
    assert fields == {
        "public_key": (1, bytes_, False), "username": (2, string, False), "expires": (3, message, False),
        "format": (4, string, False), "route_to_cluster": (5, string, False), "access_requests": (6, string, True),
        "kubernetes_cluster": (7, string, False), "node_name": (9, string, False), "usage": (10, enum, False),
        "role_requests": (12, string, True), "use_role_requests": (14, boolean, False),
        "ssh_public_key": (22, bytes_, False), "tls_public_key": (23, bytes_, False),
        "reissuable_role_impersonation": (27, boolean, False),
    }
    assert pb.UserCertsRequest.DESCRIPTOR.fields_by_name["expires"].message_type.full_name == \
        "google.protobuf.Timestamp"
    assert {v.name: v.number for v in pb.UserCertsRequest.CertUsage.DESCRIPTOR.values} == {
        "All": 0, "SSH": 1, "Kubernetes": 2, "Database": 3, "App": 4, "WindowsDesktop": 5}
    assert {fd.name: (fd.number, fd.is_repeated) for fd in pb.Certs.DESCRIPTOR.fields} == {
        "ssh": (1, False), "tls": (2, False), "tls_ca_certs": (3, True), "ssh_ca_certs": (4, True)}
    assert [(fd.name, fd.number) for fd in pb.GetClusterCACertResponse.DESCRIPTOR.fields] == [("tls_ca", 1)]
    assert [(fd.name, fd.number) for fd in pb.PingResponse.DESCRIPTOR.fields] == [
        ("cluster_name", 1), ("server_version", 2), ("proxy_public_addr", 4)]
    assert pb.PingRequest.DESCRIPTOR.fields == []


def test_service_method_paths() -> None:
    service = pb.DESCRIPTOR.services_by_name["AuthService"]
    paths = {f"/{service.full_name}/{m.name}": (m.input_type.full_name, m.output_type.full_name)
             for m in service.methods}
    assert paths == {
        "/proto.AuthService/GenerateUserCerts": ("proto.UserCertsRequest", "proto.Certs"),
        "/proto.AuthService/GetClusterCACert": ("google.protobuf.Empty", "proto.GetClusterCACertResponse"),
        "/proto.AuthService/Ping": ("proto.PingRequest", "proto.PingResponse"),
        "/proto.AuthService/ListResources": ("proto.ListResourcesRequest", "proto.ListResourcesResponse"),
        "/proto.AuthService/GetRole": ("proto.GetRoleRequest", "proto.RoleV6"),
    }


def test_get_role_field_numbers_match_the_wire_facts() -> None:
    def numbers(message: object) -> dict[str, int]:
        return {fd.name: fd.number for fd in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]

    assert numbers(pb.GetRoleRequest) == {"name": 1}
    assert numbers(pb.RoleV6) == {"kind": 1, "sub_kind": 2, "version": 3, "metadata": 4, "spec": 5}
    assert numbers(pb.RoleSpecV6) == {"allow": 2, "deny": 3}
    assert numbers(pb.RoleConditions) == {"rules": 4, "impersonate": 14}
    assert numbers(pb.ImpersonateConditions) == {"users": 1, "roles": 2, "where": 3}
    assert numbers(pb.Rule) == {"resources": 1, "verbs": 2, "where": 3, "actions": 4}


def test_get_role_request_bytes() -> None:
    assert pb.GetRoleRequest(name="bot-ci").SerializeToString() == ld(1, b"bot-ci")


def test_a_bot_role_encoded_by_teleports_numbers_decodes_to_its_impersonable_roles() -> None:
    """A RoleV6 as Teleport would send it, hand-encoded with fields we do not declare (options, logins,
    kubernetes_groups, a later RoleConditions field): the default roles come out, the rest is kept unknown."""
    from kubectl_teleport.issuer.teleport import impersonable_roles

    rule = ld(1, b"cert_authority") + ld(2, b"readnosecrets")
    impersonate = ld(2, b"kube-dev") + ld(2, b"kube-read") + ld(2, b"kube-dev") + ld(3, b"")
    allow = ld(1, b"root") + ld(4, rule) + ld(5, b"ops") + ld(14, impersonate) + ld(44, b"")
    options = vi(2, 12 * 3600 * 10**9)  # RoleOptions.MaxSessionTTL, nanoseconds
    deny = ld(14, ld(2, b"kube-admin"))
    metadata = ld(1, b"bot-ci") + ld(2, b"default") + ld(5, ld(1, b"teleport.internal/bot") + ld(2, b"ci"))
    wire = (ld(1, b"role") + ld(3, b"v7") + ld(4, metadata)
            + ld(5, ld(1, options) + ld(2, allow) + ld(3, deny)))
    role = pb.RoleV6.FromString(wire)
    assert (role.kind, role.version, role.metadata.name) == ("role", "v7", "bot-ci")
    assert dict(role.metadata.labels) == {"teleport.internal/bot": "ci"}
    assert list(role.spec.allow.impersonate.roles) == ["kube-dev", "kube-read", "kube-dev"]
    assert impersonable_roles(role) == ["kube-dev", "kube-read"]  # deny's roles are not defaults
    assert [list(r.verbs) for r in role.spec.allow.rules] == [["readnosecrets"]]
    assert sorted(f.field_number for f in UnknownFieldSet(role.spec.allow)) == [1, 5, 44]  # kept, not read
    assert [f.field_number for f in UnknownFieldSet(role.spec)] == [1]
    assert impersonable_roles(pb.RoleV6.FromString(ld(1, b"role"))) == []  # no spec: no default roles


def test_list_resources_field_numbers_match_the_wire_facts() -> None:
    def numbers(message: object) -> dict[str, int]:
        return {fd.name: fd.number for fd in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]

    assert numbers(pb.ListResourcesRequest) == {"resource_type": 1, "namespace": 2, "limit": 3, "start_key": 4}
    assert numbers(pb.ListResourcesResponse) == {"resources": 1, "next_key": 2, "total_count": 3}
    assert numbers(pb.PaginatedResource) == {"kubernetes_server": 7}
    assert numbers(pb.KubernetesServerV3) == {"kind": 1, "sub_kind": 2, "version": 3, "metadata": 4, "spec": 5}
    assert numbers(pb.KubernetesServerSpecV3) == {"version": 1, "hostname": 2, "host_id": 3, "cluster": 5}
    assert numbers(pb.KubernetesClusterV3) == {"kind": 1, "sub_kind": 2, "version": 3, "metadata": 4}
    assert numbers(pb.Metadata) == {"name": 1, "namespace": 2, "description": 3, "labels": 5}


def kube_cert_request() -> pb.UserCertsRequest:
    """What the plugin sends (with the bot identity) for a Kubernetes certificate from a v17+ server."""
    req = pb.UserCertsRequest(username="bot-ci", role_requests=["kube-dev", "kube-read"], use_role_requests=True,
                              route_to_cluster="example.teleport.sh", kubernetes_cluster="prod",
                              ssh_public_key=SSH_KEY, tls_public_key=TLS_KEY)
    req.expires.FromDatetime(EXPIRES)
    return req


def test_kube_cert_request_bytes_are_exactly_the_expected_fields() -> None:
    wire = kube_cert_request().SerializeToString()
    assert wire == (ld(2, b"bot-ci") + ld(3, timestamp(EXPIRES_SECONDS, 678_901_000)) + ld(5, b"example.teleport.sh")
                    + ld(7, b"prod") + ld(12, b"kube-dev") + ld(12, b"kube-read") + vi(14, 1) + ld(22, SSH_KEY)
                    + ld(23, TLS_KEY))
    decoded = pb.UserCertsRequest.FromString(wire)
    assert decoded.username == "bot-ci"
    assert decoded.expires.ToDatetime(tzinfo=datetime.timezone.utc) == EXPIRES
    assert (decoded.route_to_cluster, decoded.kubernetes_cluster) == ("example.teleport.sh", "prod")
    assert list(decoded.role_requests) == ["kube-dev", "kube-read"] and decoded.use_role_requests
    assert (decoded.ssh_public_key, decoded.tls_public_key) == (SSH_KEY, TLS_KEY)
    assert decoded.public_key == b"" and decoded.usage == pb.UserCertsRequest.All  # proto3 defaults: not sent


def test_v16_renewal_request_uses_field_1_and_always_sends_expires() -> None:
    req = pb.UserCertsRequest(public_key=SSH_KEY, username="bot-ci")
    req.expires.SetInParent()  # an unset-but-present Timestamp: the server's Go type is non-nullable
    assert req.SerializeToString() == ld(1, SSH_KEY) + ld(2, b"bot-ci") + ld(3, b"")
    assert pb.UserCertsRequest.FromString(req.SerializeToString()).HasField("expires")


def test_every_user_certs_request_field_round_trips() -> None:
    req = pb.UserCertsRequest(
        public_key=b"\x00\xffkey", username="bot-ü", format="standard", route_to_cluster="leaf",
        access_requests=["req-1", "req-2"], kubernetes_cluster="k8s", node_name="node-1",
        usage=pb.UserCertsRequest.Kubernetes, role_requests=["a", "b", "c"], use_role_requests=True,
        ssh_public_key=b"ssh", tls_public_key=b"tls", reissuable_role_impersonation=True,
        expires=timestamp_pb2.Timestamp(seconds=1_893_553_445, nanos=123_456_789))
    again = pb.UserCertsRequest.FromString(req.SerializeToString())
    assert again == req
    assert (again.expires.seconds, again.expires.nanos) == (1_893_553_445, 123_456_789)
    assert again.usage == 2 and pb.UserCertsRequest.CertUsage.Name(again.usage) == "Kubernetes"
    assert vi(10, 2) in req.SerializeToString() and vi(27, 1) in req.SerializeToString()


@pytest.mark.parametrize(("seconds", "nanos"), [(0, 1), (1, 999_999_999), (-62_135_596_800, 0), (-1, 500_000_000)])
def test_timestamp_encoding(seconds: int, nanos: int) -> None:
    req = pb.UserCertsRequest(expires=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    assert req.SerializeToString() == ld(3, timestamp(seconds, nanos))
    assert pb.UserCertsRequest.FromString(req.SerializeToString()).expires == req.expires


def test_certs_repeated_bytes_and_order() -> None:
    cas = [b"-----BEGIN CERTIFICATE-----\nuser\n", b"-----BEGIN CERTIFICATE-----\nhost\n", b""]
    certs = pb.Certs(ssh=b"ssh-cert", tls=b"tls-cert", tls_ca_certs=cas, ssh_ca_certs=[b"user-ca", b"host-ca"])
    wire = certs.SerializeToString()
    assert wire == (ld(1, b"ssh-cert") + ld(2, b"tls-cert") + b"".join(ld(3, c) for c in cas)
                    + ld(4, b"user-ca") + ld(4, b"host-ca"))
    again = pb.Certs.FromString(wire)
    assert list(again.tls_ca_certs) == cas  # order kept, the empty element too
    assert list(again.ssh_ca_certs) == [b"user-ca", b"host-ca"]


def test_unknown_fields_are_ignored_and_preserved() -> None:
    # A newer server's request fields we did not declare: 8 RouteToDatabase (message), 21 Purpose (enum),
    # 99 fixed64, 100 fixed32.
    fixed64, fixed32 = varint(99 << 3 | 1) + b"\x01" * 8, varint(100 << 3 | 5) + b"\x02" * 4
    extra = ld(8, ld(1, b"postgres")) + vi(21, 3) + fixed64 + fixed32
    wire = ld(2, b"bot-ci") + extra + ld(7, b"prod")
    req = pb.UserCertsRequest.FromString(wire)
    assert (req.username, req.kubernetes_cluster) == ("bot-ci", "prod")
    assert sorted(field.field_number for field in UnknownFieldSet(req)) == [8, 21, 99, 100]
    assert pb.UserCertsRequest.FromString(req.SerializeToString()) == req
    assert extra in req.SerializeToString()  # re-serialized as received
    req.DiscardUnknownFields()
    assert req.SerializeToString() == ld(2, b"bot-ci") + ld(7, b"prod")


def test_ping_response_from_a_server_with_more_fields() -> None:
    # Field 3 (server features, a message) and 5+ are left out of our .proto: ignored on decode.
    wire = (ld(1, b"example.teleport.sh") + ld(2, b"17.4.2") + ld(3, ld(1, vi(1, 1))) + ld(4, b"proxy.example:443")
            + vi(5, 1) + ld(11, b"x"))
    ping = pb.PingResponse.FromString(wire)
    assert (ping.cluster_name, ping.server_version, ping.proxy_public_addr) == (
        "example.teleport.sh", "17.4.2", "proxy.example:443")


def test_unknown_enum_values_are_kept() -> None:
    req = pb.UserCertsRequest.FromString(vi(10, 9))  # a CertUsage added after our .proto
    assert req.usage == 9
    assert req.SerializeToString() == vi(10, 9)


def test_empty_messages() -> None:
    assert pb.PingRequest().SerializeToString() == b""
    assert empty_pb2.Empty().SerializeToString() == b""
    assert pb.PingRequest.FromString(b"") == pb.PingRequest()
    assert pb.Certs.FromString(b"") == pb.Certs()
    assert pb.GetClusterCACertResponse.FromString(b"").tls_ca == b""
    assert pb.UserCertsRequest(use_role_requests=False, username="").SerializeToString() == b""  # defaults unsent
    assert pb.GetClusterCACertResponse(tls_ca=b"PEM").SerializeToString() == ld(1, b"PEM")


def test_the_hand_encoder_agrees_with_the_runtime_on_varints() -> None:
    for n in (0, 1, 127, 128, 300, 2**31 - 1, 2**32, 2**63 - 1):
        assert pb.UserCertsRequest(expires=timestamp_pb2.Timestamp(seconds=n)).SerializeToString() == \
            ld(3, timestamp(n, 0))


def test_protobuf_lower_bound_covers_the_gencode() -> None:
    gencode = (REPO / "kubectl_teleport" / "proto" / "teleport_auth_pb2.py").read_text()
    check = r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),"
    found = re.search(check, gencode)
    assert found, "the generated module should check the protobuf runtime version"
    bound = re.search(r'"protobuf>=([\d.]+)"', (REPO / "pyproject.toml").read_text())
    assert bound, "pyproject.toml should require protobuf>=..."
    assert tuple(int(p) for p in bound.group(1).split(".")) >= tuple(int(p) for p in found.groups())


def test_generated_module_matches_the_proto() -> None:
    pytest.importorskip("grpc_tools")
    result = subprocess.run([sys.executable, str(REPO / "tools" / "gen_proto.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_messages_import_no_grpc() -> None:
    code = ("import sys, kubectl_teleport.proto.teleport_auth_pb2\n"
            "print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith(('grpc.', 'grpc_tools'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
