"""Units of the stdlib-only hot path: cache file format, exec info parsing, argument shapes."""

from __future__ import annotations

import json
import os

import pytest

from kubectl_teleport import cache, entry, execcred
from kubectl_teleport.errors import USAGE, PluginError

STATUS = b'{"clientCertificateData":"C","clientKeyData":"K","expirationTimestamp":"2030-01-01T00:00:00Z"}'


def write_cache(tmp_path, cluster="c1", renew_at=2_000, expires_at=3_000, mode=0o600):
    os.makedirs(tmp_path / "kube", mode=0o700, exist_ok=True)
    os.chmod(tmp_path, 0o700)
    path = tmp_path / "kube" / f"{cluster}.cred"
    path.write_bytes(cache.encode(renew_at, expires_at, expires_at + 60, STATUS))
    os.chmod(path, mode)
    return path


def test_encode_decode_round_trip():
    e = cache.decode(cache.encode(10, 20, 80, STATUS))
    assert (e.renew_at, e.expires_at, e.not_after, e.status) == (10, 20, 80, STATUS)
    assert e.fresh(9) and not e.fresh(10) and e.valid(19) and not e.valid(20)


@pytest.mark.parametrize("data", [
    b"", b"KTC1 1 2 3", b"KTC2 1 2 3 4\n{abc}", b"KTC1 1 2 x 5\n{abc}", b"KTC1 1 2 3 99\n{abc}",
    cache.encode(1, 2, 3, STATUS)[:-1], b"KTC1 1 2 3 5\n[abc]", b"\x00" * 300,
])
def test_decode_rejects_truncated_or_corrupt(data):
    assert cache.decode(data) is None


def test_read_fast_hit_and_refusals(tmp_path):
    path = write_cache(tmp_path)
    assert cache.read_fast(str(tmp_path), "c1").status == STATUS
    assert cache.read_fast(str(tmp_path), "../c1") is None
    assert cache.read_fast(str(tmp_path), "missing") is None
    os.chmod(path, 0o640)
    assert cache.read_fast(str(tmp_path), "c1") is None  # group-readable: the careful path decides
    os.chmod(path, 0o600)
    os.chmod(tmp_path / "kube", 0o755)
    assert cache.read_fast(str(tmp_path), "c1") is None
    os.chmod(tmp_path / "kube", 0o700)
    link = tmp_path / "kube" / "l.cred"
    link.symlink_to(path)
    assert cache.read_fast(str(tmp_path), "l") is None


@pytest.mark.parametrize(("info", "version"), [
    (None, execcred.V1BETA1),
    ("", execcred.V1BETA1),
    ('{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}',
     execcred.V1),
    ('{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}',
     execcred.V1BETA1),
    (json.dumps({"apiVersion": execcred.V1, "kind": "ExecCredential", "spec": {"interactive": False}}),
     execcred.V1),
    ('{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}\n',
     execcred.V1),  # kubectl 1.37 ends it with a newline
    ('{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1alpha1","spec":{}}', None),
    ('{"apiVersion":"client.authentication.k8s.io/v1"}', None),
    ("garbage", None),
])
def test_fast_version(info, version):
    assert execcred.fast_version(info) == version


def test_fast_and_full_parsers_agree_on_what_fast_accepts():
    for prefix, version in execcred._FAST_PREFIXES.items():
        info = prefix + '"interactive":false}}'
        assert execcred.fast_version(info) == version == execcred.requested_version(info)


@pytest.mark.parametrize("info", [
    "not json", "[]", '{"kind":"Pod","apiVersion":"v1"}',
    '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1alpha1"}',
    '{"kind":"ExecCredential"}',
])
def test_requested_version_rejects_with_usage_error(info):
    with pytest.raises(PluginError) as err:
        execcred.requested_version(info)
    assert err.value.code == USAGE
    assert "\n" not in str(err.value)


def test_render_is_valid_json_with_requested_version():
    out = json.loads(execcred.render(execcred.V1, STATUS))
    assert out["apiVersion"] == execcred.V1 and out["kind"] == "ExecCredential"
    assert out["status"]["clientCertificateData"] == "C"


@pytest.mark.parametrize(("args", "parsed"), [
    (["--data-dir", "/d", "--kube-cluster", "k"], ("/d", "k")),
    (["--kube-cluster", "k", "--data-dir", "/d"], ("/d", "k")),
    (["--data-dir=/d", "--kube-cluster=k"], ("/d", "k")),
    (["--data-dir", "rel", "--kube-cluster", "k"], None),
    (["--data-dir", "/d"], None),
    (["--data-dir", "/d", "--kube-cluster", "k", "--timeout", "3"], None),
    (["--data-dir", "/d", "--data-dir", "/e", "--kube-cluster", "k"], None),
    (["--data-dir"], None),
])
def test_fast_args(args, parsed):
    assert entry._fast_args(args) == parsed


def test_fast_credentials_hit_and_due(tmp_path, monkeypatch):
    write_cache(tmp_path, renew_at=2_000)
    args = (str(tmp_path), "c1")
    monkeypatch.setenv(execcred.ENV, '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1",'
                                     '"spec":{"interactive":false}}')
    monkeypatch.setattr(entry.time, "time", lambda: 1_999.0)
    out = entry.fast_credentials(*args)
    assert json.loads(out)["apiVersion"] == execcred.V1
    monkeypatch.setattr(entry.time, "time", lambda: 2_000.0)
    assert entry.fast_credentials(*args) is None
