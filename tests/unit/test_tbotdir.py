"""Reading tbot destinations (tbotdir.py, the tbot entry of cache.py, commands/tbot_credentials.py and
commands/kubeconfig_cmd.py) on files laid out as tbot writes them (harness/tbotdest.py)."""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from harness import tbotdest as td
from kubectl_teleport import cache, clock, entry, execcred, pki, tbotdir
from kubectl_teleport.commands import kubeconfig_cmd
from kubectl_teleport.commands import tbot_credentials as tc
from kubectl_teleport.errors import UNAVAILABLE, Unavailable, UnsafeState, UsageError

V1_INFO = '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}'


@pytest.fixture(scope="module")
def cas() -> dict[str, td.CA]:
    return {"ec": td.CA.make("ec"), "rsa": td.CA.make("rsa")}


@pytest.fixture
def dirs(tmp_path) -> tuple[Path, Path]:
    return tmp_path / "dest", tmp_path / "cache"


def status(e: cache.Entry) -> dict:
    return json.loads(e.status)


def expiry(e: cache.Entry) -> float:
    return datetime.fromisoformat(status(e)["expirationTimestamp"].replace("Z", "+00:00")).timestamp()


def rebuild(dest: Path, cdir: Path, **kw) -> cache.TbotEntry:
    tc.ensure_cache_dir(str(cdir))
    return tbotdir.rebuild(str(dest), str(cdir), **kw)


def later(path: Path, seconds: int = 1) -> None:
    """Give a rewritten file a later mtime (two writes within one coarse kernel timestamp tick look alike)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


# reading every layout -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["ec", "rsa"])
@pytest.mark.parametrize("layout", ["full", "identity", "pair"])
def test_reads_each_layout_and_key_kind(cas, dirs, kind, layout):
    dest, cdir = dirs
    issued = td.write_destination(dest, cas[kind], kind=kind, layout=layout)
    e = rebuild(dest, cdir)
    st = status(e)
    assert st["clientCertificateData"] == issued.cert_pem and st["clientKeyData"] == issued.key_pem
    assert st["clientKeyData"].startswith("-----BEGIN RSA PRIVATE KEY" if kind == "rsa" else "-----BEGIN PRIVATE KEY")
    assert e.source[:2] == (b"p:" if layout == "pair" else b"i:")
    cert = pki.load_cert(issued.cert_pem)
    # 1 h: a minute early; a second more when the file's mtime (the kernel's coarse clock, a few ms behind
    # time.time()) falls just before the second the certificate was issued in
    assert expiry(e) == e.expires_at
    assert int(cert.not_valid_after_utc.timestamp()) - e.expires_at in (60, 61)
    assert e.renew_at == e.expires_at  # tbot renews, not us: fresh while the files are unchanged and it is valid
    hit = cache.read_tbot_fast(str(dest), str(cdir))
    assert hit is not None and hit.status == e.status


def test_ec_key_in_sec1_form(cas, dirs):
    dest, cdir = dirs
    issued = td.write_destination(dest, cas["ec"], layout="identity", sec1=True)
    assert issued.key_pem.startswith("-----BEGIN EC PRIVATE KEY")
    assert status(rebuild(dest, cdir))["clientKeyData"] == issued.key_pem


def test_identity_is_split_by_block_type_not_by_line(cas):
    key = td.new_key("ec")
    cert, ca_pem = td.cert_pem(cas["ec"].issue(key)), td.cert_pem(cas["ec"].cert)
    ssh = cas["ec"].ssh_cert_line(key)
    assert ssh.startswith("ecdsa-sha2-nistp256-cert-v01@openssh.com ")  # not every SSH line starts with ssh-
    text = td.identity_text(td.key_pem(key), cert, [ca_pem, ca_pem], ssh, [cas["ec"].ssh_ca_line()])
    assert tbotdir.split_identity(text) == (td.key_pem(key), cert, [ca_pem, ca_pem])
    indented = "\n".join("  " + line + "  " for line in text.splitlines()) + "\n"  # Teleport trims lines
    assert tbotdir.split_identity(indented)[1] == cert


@pytest.mark.parametrize(("text", "reason"), [
    ("", "no private key"),
    ("-----BEGIN PRIVATE KEY-----\nAAAA\n", "ends inside a PEM block"),
    ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END CERTIFICATE-----\n", "ends as another type"),
    ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\nssh-rsa-cert-v01@openssh.com AAAA\n",
     "no TLS certificate"),
])
def test_split_identity_reports_what_is_missing(text, reason):
    with pytest.raises(tbotdir.Incomplete, match=reason):
        tbotdir.split_identity(text)


# half-written, mismatched, expired -----------------------------------------------------------------------------

def cut_points(text: str) -> dict[str, int]:
    cert_at = text.index("-----BEGIN CERTIFICATE-----")
    ca_at = text.index("-----BEGIN CERTIFICATE-----", cert_at + 1)
    return {"empty": 0, "mid-key": 100, "key-only": text.index("\n", text.index("-----END")) + 1,
            "mid-cert": cert_at + 200, "mid-ca": ca_at + 200}


@pytest.mark.parametrize("cut", ["empty", "mid-key", "key-only", "mid-cert", "mid-ca"])
def test_half_written_identity_is_read_again_until_whole(cas, dirs, cut):
    """tbot truncates and rewrites in place: the first read sees a part, the file is whole at the next read."""
    dest, cdir = dirs
    issued = td.write_destination(dest, cas["rsa"], kind="rsa", layout="identity")
    td.write_in_place(dest / "identity", issued.identity[:cut_points(issued.identity)[cut]])
    pauses: list[float] = []

    def tbot_finishes(delay: float) -> None:
        pauses.append(delay)
        td.write_in_place(dest / "identity", issued.identity)

    e = rebuild(dest, cdir, sleep=tbot_finishes)
    assert pauses == [tbotdir.RETRY_DELAYS[0]]
    assert status(e)["clientCertificateData"] == issued.cert_pem
    assert e.source == cache.tbot_source(str(dest), b"i")  # keyed by the whole file, not the part


def test_half_written_identity_is_never_served(cas, dirs):
    dest, cdir = dirs
    issued = td.write_destination(dest, cas["ec"], layout="identity")
    td.write_in_place(dest / "identity", issued.identity[:cut_points(issued.identity)["mid-cert"]])
    pauses: list[float] = []
    with pytest.raises(Unavailable, match="incomplete or damaged") as err:
        rebuild(dest, cdir, sleep=pauses.append)
    assert err.value.code == UNAVAILABLE and "tbot" in str(err.value) and "BEGIN" not in str(err.value)
    assert len(pauses) == len(tbotdir.RETRY_DELAYS) and sum(pauses) <= 0.2
    assert not Path(cache.tbot_entry_path(str(cdir), str(dest))).exists()


def test_pair_caught_between_key_and_certificate(cas, dirs):
    """tlscert and key are two files: a read between tbot's two writes has a new key and the old certificate."""
    dest, cdir = dirs
    td.write_destination(dest, cas["ec"], layout="pair")
    new_key = td.new_key("ec")
    new_cert = td.cert_pem(cas["ec"].issue(new_key))
    td.write_in_place(dest / "key", td.key_pem(new_key))  # the certificate is still the old one

    def tbot_finishes(_delay: float) -> None:
        td.write_in_place(dest / "tlscert", new_cert)

    assert status(rebuild(dest, cdir, sleep=tbot_finishes))["clientCertificateData"] == new_cert


def test_mismatched_key_is_never_served(cas, dirs):
    dest, cdir = dirs
    td.write_destination(dest, cas["rsa"], kind="rsa", layout="full")
    other = td.key_pem(td.new_key("rsa"))
    td.write_in_place(dest / "identity", (dest / "identity").read_text().replace(
        td.key_pem(pki.load_private_key((dest / "key").read_text())), other))
    with pytest.raises(Unavailable, match="does not match its private key") as err:
        rebuild(dest, cdir, sleep=lambda _d: None)
    assert err.value.code == UNAVAILABLE
    assert not Path(cache.tbot_entry_path(str(cdir), str(dest))).exists()


def test_expired_certificate_says_tbot_is_not_renewing(cas, dirs, monkeypatch):
    dest, cdir = dirs
    td.write_destination(dest, cas["ec"], layout="identity", issued_at=clock.now() - 7200, lifetime=3600)
    with pytest.raises(Unavailable, match=r"expired at .*tbot is not renewing it; is `tbot` running\?"):
        rebuild(dest, cdir)


def test_unchanged_files_past_expiry_fail_from_the_entry_alone(cas, dirs, monkeypatch):
    dest, cdir = dirs
    td.write_destination(dest, cas["ec"], layout="identity")
    tbot, cdir_s = tc.paths(str(dest), str(cdir))
    e = tc.entry(tbot, cdir_s)
    monkeypatch.setattr(clock, "now", lambda: e.expires_at + 1.0)  # inside the margin before NotAfter
    monkeypatch.setattr(tbotdir, "read", lambda *a, **k: pytest.fail("the files were read again"))
    with pytest.raises(Unavailable, match="too soon to hand to kubectl: tbot is not renewing it"):
        tc.entry(tbot, cdir_s)


def test_clock_mapping_only_ever_shortens(cas):
    key = td.new_key("ec")
    cert = cas["ec"].issue(key, issued_at=1_000_000)
    nb, na = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
    snap = lambda written: tbotdir.Snapshot("", "", [], b"i:1.2.3.4", written, nb, na)  # noqa: E731
    assert tbotdir.timing(snap(1_000_000)).expires_at == na - 60
    assert tbotdir.timing(snap(1_000_000 + 86400)).expires_at == na - 60  # copied a day later: no younger
    assert tbotdir.timing(snap(1_000_000 - 120)).expires_at == na - 60 - 120  # our clock 2 min behind


# the hot path and the cache ------------------------------------------------------------------------------------

def test_a_rewrite_is_picked_up_by_the_next_call(cas, dirs, monkeypatch):
    dest, cdir = dirs
    td.write_destination(dest, cas["ec"], layout="full")
    tbot, cdir_s = tc.paths(str(dest), str(cdir))
    monkeypatch.setenv(execcred.ENV, V1_INFO)
    first = json.loads(tc.credentials(tbot, cdir_s))
    assert json.loads(entry.fast_tbot_credentials(tbot, cdir_s)) == first  # the hot path serves it now
    renewed = td.write_destination(dest, cas["ec"], layout="full")  # tbot renews: in place, same inode
    later(dest / "identity")
    assert entry.fast_tbot_credentials(tbot, cdir_s) is None
    assert json.loads(tc.credentials(tbot, cdir_s))["status"]["clientCertificateData"] == renewed.cert_pem
    assert json.loads(entry.fast_tbot_credentials(tbot, cdir_s))["status"]["clientCertificateData"] == \
        renewed.cert_pem


def test_fast_path_declines_past_expiry_and_odd_exec_info(cas, dirs, monkeypatch):
    dest, cdir = dirs
    td.write_destination(dest, cas["ec"], layout="identity")
    e = rebuild(dest, cdir)
    monkeypatch.setenv(execcred.ENV, V1_INFO)
    assert entry.fast_tbot_credentials(str(dest), str(cdir)) is not None
    monkeypatch.setattr(entry.time, "time", lambda: float(e.expires_at))
    assert entry.fast_tbot_credentials(str(dest), str(cdir)) is None
    monkeypatch.undo()
    monkeypatch.setenv(execcred.ENV, '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential"}')
    assert entry.fast_tbot_credentials(str(dest), str(cdir)) is None


def test_cache_is_ours_alone(cas, dirs):
    dest, cdir = dirs
    td.write_destination(dest, cas["ec"], layout="identity")
    rebuild(dest, cdir)
    path = Path(cache.tbot_entry_path(str(cdir), str(dest)))
    assert (cdir.stat().st_mode & 0o777, path.stat().st_mode & 0o777) == (0o700, 0o600)
    path.chmod(0o640)
    assert cache.read_tbot_fast(str(dest), str(cdir)) is None
    path.chmod(0o600)
    cdir.chmod(0o750)
    assert cache.read_tbot_fast(str(dest), str(cdir)) is None
    tc.ensure_cache_dir(str(cdir))  # ours: tightened
    assert cdir.stat().st_mode & 0o777 == 0o700 and cache.read_tbot_fast(str(dest), str(cdir)) is not None
    link = cdir.parent / "cache-link"
    link.symlink_to(cdir)
    assert cache.read_tbot_fast(str(dest), str(link)) is None
    assert cache.read_tbot_fast(str(dest), str(link) + "/") is None
    with pytest.raises(UnsafeState, match="symlink"):
        tc.ensure_cache_dir(str(link))


def test_no_cache_dir_to_be_had_reads_uncached_with_one_warning(cas, dirs, tmp_path, monkeypatch, capsys):
    dest, _ = dirs
    issued = td.write_destination(dest, cas["ec"], layout="identity")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(execcred.ENV, V1_INFO)
    out = json.loads(tc.credentials(str(dest), str(tmp_path / "file" / "cache")))  # not creatable (ENOTDIR)
    assert out["status"]["clientCertificateData"] == issued.cert_pem
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot create the cache dir" in err and "without a cache" in err


def test_a_killed_writers_temp_file_is_removed(cas, dirs):
    dest, cdir = dirs
    td.write_destination(dest, cas["ec"], layout="identity")
    rebuild(dest, cdir)
    stale = cdir / f".{cache.tbot_name(str(dest))}.cred.999999999.tmp"
    stale.write_text("a key")
    td.write_destination(dest, cas["ec"], layout="identity")
    later(dest / "identity")
    rebuild(dest, cdir)
    assert not stale.exists()


def test_symlinks_in_the_destination_are_refused(cas, dirs, tmp_path):
    dest, cdir = dirs
    td.write_destination(dest, cas["ec"], layout="identity")
    link_dir = tmp_path / "dest-link"
    link_dir.symlink_to(dest)
    with pytest.raises(UnsafeState, match="symlink"):
        rebuild(link_dir, cdir)
    (dest / "identity").rename(tmp_path / "real-identity")
    (dest / "identity").symlink_to(tmp_path / "real-identity")
    with pytest.raises(UnsafeState, match="refusing symlink"):
        rebuild(dest, cdir)
    assert cache.tbot_source(str(dest), b"i") is None


def test_missing_destination_or_files(dirs):
    dest, cdir = dirs
    with pytest.raises(Unavailable, match="does not exist"):
        rebuild(dest, cdir)
    dest.mkdir()
    (dest / "tlscert").write_text("x")
    with pytest.raises(Unavailable, match="neither `identity` nor `tlscert` and `key`"):
        rebuild(dest, cdir)


def test_previous_certificate_served_while_the_new_files_stay_half_written(cas, dirs, capsys):
    dest, cdir = dirs
    issued = td.write_destination(dest, cas["ec"], layout="identity")
    tbot, cdir_s = tc.paths(str(dest), str(cdir))
    before = tc.entry(tbot, cdir_s)
    td.write_in_place(dest / "identity", issued.identity[:300])
    later(dest / "identity")
    assert tc.entry(tbot, cdir_s).status == before.status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and "incomplete" in err and "serving" in err


def test_tbot_entry_format_round_trip_and_corruption():
    data = cache.encode_tbot(10, 20, 80, b"i:1.2.3.4", b'{"a":1}')
    e = cache.decode_tbot(data)
    assert (e.renew_at, e.expires_at, e.not_after, e.source, e.status) == (10, 20, 80, b"i:1.2.3.4", b'{"a":1}')
    for bad in (data[:-1], data.replace(b"KTB1", b"KTC1"), data.replace(b"i:", b"x:"), b"", data[:20]):
        assert cache.decode_tbot(bad) is None
    assert cache.decode(data) is None  # never mistaken for a data dir's entry


@pytest.mark.parametrize("path", ["/a/b", "/a/b/", "/a//b/./c/..", "/", "/x/../../y"])
def test_norm_dir_is_abspath(path):
    assert cache.norm_dir(path) == os.path.abspath(path)
    assert cache.tbot_name(path) == cache.tbot_name(os.path.abspath(path))


@pytest.mark.parametrize(("args", "parsed"), [
    (["--tbot-dir", "/t", "--cache-dir", "/c"], ("/t", "/c")),
    (["--cache-dir=/c", "--tbot-dir=/t"], ("/t", "/c")),
    (["--tbot-dir", "/t"], ("/t", None)),
    (["--tbot-dir", "t", "--cache-dir", "/c"], None),
    (["--tbot-dir", "/t", "--cache-dir", "c"], None),
    (["--tbot-dir", "/t", "--data-dir", "/d"], None),
    (["--cache-dir", "/c"], None),
])
def test_tbot_args(args, parsed):
    assert entry._tbot_args(args) == parsed
    assert entry._fast_args(args) is None


# kubeconfig --tbot-dir -------------------------------------------------------------------------------------------

def kubeconfig_args(dest: Path, cdir: Path, **kw) -> argparse.Namespace:
    return argparse.Namespace(**{"tbot_dir": str(dest), "cache_dir": str(cdir), "kubeconfig": None,
                                 "merge": False, "context": None, **kw})


def test_kubeconfig_takes_tbots_endpoint_and_names(cas, dirs, tmp_path, capsys):
    dest, cdir = dirs
    td.write_destination(dest, cas["ec"])
    ca_pem = td.cert_pem(cas["ec"].cert)
    name = td.write_kubeconfig(dest, server="https://tele.example.com:443", ca_pems=[ca_pem],
                               tls_server_name="kube-teleport-proxy-alpn.tele.example.com")
    assert name == "tele.example.com-example-k8s-cluster"
    target = tmp_path / "kc.yaml"
    target.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "other",
                                      "contexts": [{"name": "other", "context": {"cluster": "o", "user": "o"}}],
                                      "clusters": [], "users": []}))
    assert kubeconfig_cmd.run(kubeconfig_args(dest / ".", cdir / "x" / "..", kubeconfig=str(target))) == 0
    doc = yaml.safe_load(target.read_text())
    assert doc["current-context"] == "other" and [c["name"] for c in doc["contexts"]] == ["other", name]
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == name)
    assert cluster["server"] == "https://tele.example.com:443"
    assert cluster["tls-server-name"] == "kube-teleport-proxy-alpn.tele.example.com"
    assert cluster["certificate-authority-data"] == yaml.safe_load((dest / "kubeconfig.yaml").read_text())[
        "clusters"][0]["cluster"]["certificate-authority-data"]
    exec_ = next(u["user"]["exec"] for u in doc["users"] if u["name"] == name)
    assert exec_["args"] == ["credentials", "--tbot-dir", str(dest), "--cache-dir", str(cdir)]  # normalised
    assert exec_["apiVersion"] == execcred.V1 and exec_["interactiveMode"] == "Never"
    assert os.path.isabs(exec_["command"])
    out = capsys.readouterr().out
    assert "kubectl --context tele.example.com-example-k8s-cluster" in out and "good until" in out


def test_kubeconfig_to_stdout_renamed_and_several_contexts(cas, dirs, capsys):
    dest, cdir = dirs
    td.write_destination(dest, cas["ec"])
    td.write_kubeconfig(dest, server="https://tele.example.com:443", ca_pems=[td.cert_pem(cas["ec"].cert)])
    kubeconfig_cmd.run(kubeconfig_args(dest, cdir, context="mine"))
    captured = capsys.readouterr()
    doc = yaml.safe_load(captured.out)
    assert doc["current-context"] == "mine" and [u["name"] for u in doc["users"]] == ["mine"]
    assert "good until" in captured.err
    v2 = yaml.safe_load((dest / "kubeconfig.yaml").read_text())  # tbot's kubernetes/v2 output: several contexts
    second = {**v2["clusters"][0], "name": "c2"}
    second["cluster"] = {**second["cluster"], "server": "https://tele.example.com:443/v1/teleport/dA/Yg"}
    v2["clusters"].append(second)
    v2["contexts"].insert(0, {"name": "tele.example.com-b", "context": {"cluster": "c2", "user": "u"}})
    td.write_in_place(dest / "kubeconfig.yaml", yaml.safe_dump(v2))
    contexts = tbotdir.read_kubeconfig(str(dest))
    assert [c.name for c in contexts] == ["tele.example.com-example-k8s-cluster", "tele.example.com-b"]
    assert contexts[1].server.endswith("/v1/teleport/dA/Yg")
    with pytest.raises(UsageError, match="2 contexts"):
        kubeconfig_cmd.run(kubeconfig_args(dest, cdir, context="mine"))


def test_kubeconfig_without_tbots_kubeconfig(cas, dirs):
    dest, cdir = dirs
    td.write_destination(dest, cas["ec"])
    with pytest.raises(Unavailable, match=r"no kubeconfig\.yaml"):
        kubeconfig_cmd.run(kubeconfig_args(dest, cdir))
    td.write_in_place(dest / "kubeconfig.yaml", "clusters: [")
    with pytest.raises(Unavailable, match="not valid YAML"):
        tbotdir.read_kubeconfig(str(dest), sleep=lambda _d: None)
