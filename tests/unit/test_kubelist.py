"""`kube ls`'s client side without a server: the ListResources request on the wire, decoding of hand-encoded
answers by Teleport's field numbers, and following the pages."""

from __future__ import annotations

import pytest

from kubectl_teleport import errors
from kubectl_teleport.issuer import kubelist
from kubectl_teleport.proto import teleport_auth_pb2 as pb
from tests.protowire import field


def _metadata(name: str, labels: dict[str, str]) -> bytes:  # types.Metadata: 1 Name, 5 Labels (map entries 1/2)
    return field(1, name) + b"".join(field(5, field(1, k) + field(2, v)) for k, v in labels.items())


def _kube_server(name: str, labels: dict[str, str], server_labels: dict[str, str] | None = None) -> bytes:
    cluster = field(1, "kube_cluster") + field(3, "v3") + field(4, _metadata(name, labels))  # KubernetesClusterV3
    spec = field(1, "17.5.0") + field(2, "host") + field(3, "host-id") + field(5, cluster)  # ...ServerSpecV3
    server = field(1, "kube_server") + field(3, "v3") + field(4, _metadata(name, server_labels or {})) + \
        field(5, spec)
    return field(7, server)  # PaginatedResource.KubernetesServer = 7


def _page(*resources: bytes, next_key: str = "") -> bytes:  # ListResourcesResponse: 1 Resources, 2 NextKey
    return b"".join(field(1, r) for r in resources) + (field(2, next_key) if next_key else b"")


def test_the_request_carries_teleports_field_numbers() -> None:
    raw = kubelist.list_request("dev-03").SerializeToString()
    assert raw == field(1, "kube_server") + field(3, 100) + field(4, "dev-03")  # no namespace: the default
    assert kubelist.list_request().SerializeToString() == field(1, "kube_server") + field(3, 100)


def test_a_hand_encoded_answer_decodes_to_clusters_and_labels() -> None:
    other_kind = field(3, field(1, "node"))  # PaginatedResource.Node = 3: not ours, skipped
    page = pb.ListResourcesResponse.FromString(_page(_kube_server("dev-a", {"env": "dev", "team": "x"}), other_kind,
                                                     _kube_server("dev-b", {}, {"env": "dev"}), next_key="k9"))
    assert page.next_key == "k9"
    assert kubelist.clusters_of(page) == [kubelist.KubeCluster("dev-a", {"env": "dev", "team": "x"}),
                                          kubelist.KubeCluster("dev-b", {"env": "dev"})]  # else the server's


def test_pages_are_followed_until_next_key_is_empty_and_clusters_listed_once() -> None:
    pages = {"": _page(_kube_server("b", {"env": "dev"}), _kube_server("a", {"env": "dev"}), next_key="k1"),
             "k1": _page(next_key="k2"),  # an empty page that still points further
             "k2": _page(_kube_server("b", {"env": "other"}), _kube_server("c", {}), next_key="k3"),
             "k3": _page()}  # the last page, empty
    asked: list[str] = []

    def fetch(start: str) -> pb.ListResourcesResponse:
        asked.append(start)
        return pb.ListResourcesResponse.FromString(pages[start])

    found = kubelist.collect(fetch)
    assert asked == ["", "k1", "k2", "k3"]
    assert [(c.name, c.labels) for c in found] == [("a", {"env": "dev"}), ("b", {"env": "dev"}), ("c", {})]


def test_a_server_that_never_ends_the_listing_is_an_error_not_a_loop() -> None:
    loop = pb.ListResourcesResponse.FromString(_page(_kube_server("a", {}), next_key="same"))
    with pytest.raises(errors.Unavailable, match="same page key twice"):
        kubelist.collect(lambda start: loop)
    counter = iter(range(10**6))
    with pytest.raises(errors.Unavailable, match="more than 5 pages"):
        kubelist.collect(lambda start: pb.ListResourcesResponse(next_key=f"k{next(counter)}"), max_pages=5)


def test_what_a_failure_means_for_kube_ls() -> None:
    from kubectl_teleport.commands.kube import _unreachable
    from kubectl_teleport.issuer import auth, grpc

    route = auth.route_via_proxy("proxy.example.com:443", "c")
    gone = auth.map_error(grpc.GrpcError(5, "NOT_FOUND", 'role "x" is not found'), "getting", route, auth.IMPERSONATE)
    assert isinstance(gone, errors.AccessDenied) and "--role" in str(gone) and not _unreachable(gone)
    busy = auth.map_error(grpc.GrpcError(14, "UNAVAILABLE", "busy"), "listing", route, auth.LIST)
    assert isinstance(busy, errors.Unavailable) and _unreachable(busy)
    absent = auth.map_error(grpc.GrpcError(12, "UNIMPLEMENTED", "unknown method"), "listing", route, auth.LIST)
    assert isinstance(absent, errors.Unavailable) and not _unreachable(absent)  # an answer: an error, exit 6


@pytest.mark.skipif(not hasattr(__import__("os"), "memfd_create"), reason="memfd_create is Linux-only")
def test_the_impersonated_key_never_touches_a_disk_on_linux(monkeypatch, tmp_path) -> None:
    import os
    import ssl
    import tempfile

    monkeypatch.setattr(tempfile, "TemporaryDirectory", lambda **kw: pytest.fail("a file on disk"))
    pem = _self_signed()
    with kubelist.key_file(pem) as path:
        assert str(path).startswith("/proc/self/fd/") and path.read_text() == pem
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(path))  # what the listing's TLS does
        fd = int(path.name)
    with pytest.raises(OSError):
        os.fstat(fd)  # closed: the memory is gone with it


def test_without_memfd_a_private_temp_file_is_removed_afterwards(monkeypatch) -> None:
    import os
    import ssl
    import stat

    monkeypatch.delattr(os, "memfd_create", raising=False)
    pem = _self_signed()
    with kubelist.key_file(pem) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(path))
    assert not path.exists() and not path.parent.exists()


def _self_signed() -> str:
    """A certificate and its key in one PEM, as the listing writes them."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bot")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(minutes=5))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode() + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())
