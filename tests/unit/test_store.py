"""The data dir's owner and the safe-file primitives: reservations, stale temp files, short reads, ACL-less
platforms, typed config."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from kubectl_teleport import cache
from kubectl_teleport.config import Config, Destination, KubeCluster
from kubectl_teleport.errors import NotLoggedIn, UnsafeState, UsageError
from kubectl_teleport.store import acl, files
from kubectl_teleport.store.datadir import DataDir
from kubectl_teleport.store.lock import IdentityLock


def _config() -> Config:
    return Config(proxy="p:443", cluster_name="c", bot="b", ca_pems=["x"],
                  kube_clusters={"k": KubeCluster(kube_user="u", server="https://s", ca_pems=["y"])},
                  destinations=[Destination("/d", True, "k")])


def test_config_round_trips_and_reads_older_field_names():
    cfg = _config()
    assert Config.from_json(cfg.to_json()) == cfg
    old = cfg.to_json().replace(b'"ca_pems": [\n        "y"', b'"kube_ca_pems": [\n        "y"')
    assert Config.from_json(old).kube_clusters["k"].ca_pems == ["y"]


@pytest.mark.parametrize("raw", [b"[]", b"null", b"3", b'{"proxy": 1}', b'{"proxy": "p", "cluster_name": "c"}',
                                 b'{"proxy":"p","cluster_name":"c","bot":"b","ca_pems":"x"}',
                                 b'{"proxy":"p","cluster_name":"c","bot":"b","ca_pems":[],"kube_clusters":[]}',
                                 b'{"proxy":"p","cluster_name":"c","bot":"b","ca_pems":[],"destinations":[{"x":1}]}',
                                 b"\xff"])
def test_damaged_config_is_not_logged_in(tmp_path, raw):
    dd = DataDir(tmp_path / "d")
    dd.create()
    dd.write("config.json", raw)
    with pytest.raises(NotLoggedIn, match="damaged"):
        dd.load_config()


def test_reservation_fails_before_and_commits_after(tmp_path):
    with files.Dir.open(tmp_path / "d", create=True) as d:
        room = d.reserve("x.cred", 1024)
        assert d.temps() == [files.temp_name("x.cred")] and not d.exists("x.cred")
        room.commit(b"new contents")
        assert d.read("x.cred") == b"new contents" and d.temps() == []
        d.reserve("y", 10).discard()
        assert not d.exists("y") and d.temps() == []
        assert os.stat(tmp_path / "d" / "x.cred").st_mode & 0o777 == 0o600


def test_stale_temps_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    with files.Dir.open(tmp_path / "d", create=True) as d:
        d.write(files.temp_name("identity.pem", dead_pid), b"-----BEGIN PRIVATE KEY-----")
        d.write(files.temp_name("other", os.getpid()), b"mine")
        d.write(".not-a-temp", b"x")
        assert d.remove_stale_temps() == [files.temp_name("identity.pem", dead_pid)]
        assert sorted(d.names()) == sorted([files.temp_name("other", os.getpid()), ".not-a-temp"])


def test_read_loops_over_short_reads(tmp_path, monkeypatch):
    (tmp_path / "f").write_bytes(b"abcdef")
    os.chmod(tmp_path / "f", 0o600)
    real = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: real(fd, min(n, 2)))
    with files.Dir.open(tmp_path, create=False) as d:
        assert d.read("f") == b"abcdef"


def test_refuses_symlinks_shared_modes_and_non_directories(tmp_path):
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafeState, match="symlink"):
        files.Dir.open(tmp_path / "link")
    os.chmod(tmp_path / "real", 0o755)
    with pytest.raises(UnsafeState, match="readable by other users"):
        files.Dir.open(tmp_path / "real")
    os.chmod(tmp_path / "real", 0o700)
    with files.Dir.open(tmp_path / "real") as d:
        os.symlink("/etc/passwd", tmp_path / "real" / "x")
        with pytest.raises(UnsafeState, match="symlink"):
            d.read("x")
        with pytest.raises(UnsafeState, match="symlink"):
            d.write("x", b"")


def test_lock_that_is_a_symlink_or_directory_is_unsafe_state(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(UnsafeState, match="not a regular lock file"):
        IdentityLock(tmp_path / "dir").try_acquire()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(UnsafeState, match="not a regular lock file"):
        IdentityLock(tmp_path / "link").try_acquire()


def test_platform_without_extended_attributes(tmp_path, monkeypatch):
    """macOS has no os.getxattr: no ACLs, and every write still works."""
    monkeypatch.delattr(os, "getxattr", raising=False)
    monkeypatch.delattr(os, "setxattr", raising=False)
    monkeypatch.delattr(cache.posix, "getxattr", raising=False)
    assert not acl.supported() and not cache.has_acl(str(tmp_path))
    assert acl.inherited_acl(None, 0) is None
    dd = DataDir(tmp_path / "d")
    dd.save_config(_config())
    assert dd.load_config() == _config()
    with dd.reserve_entry("k") as room:
        room.commit(cache.encode(1, 2, 3, b"{}"))
    assert dd.read_entry("k") is not None and dd.entry_clusters() == ["k"]


def test_remove_all_keeps_the_lock_and_removes_temps(tmp_path):
    dd = DataDir(tmp_path / "d")
    dd.save_config(_config())
    dd.write("identity.pem", b"key")
    with dd.kube(create=True) as kube:
        kube.write("k.cred", b"x")
        kube.write(files.temp_name("k.cred", 999_999_999), b"key")
    dd.lock().try_acquire()
    removed = dd.remove_all()
    assert set(removed) >= {"config.json", "identity.pem", "kube/k.cred"}
    assert sorted(p.name for p in dd.root.iterdir()) == ["lock"]


def test_data_dir_longer_than_the_system_allows_is_a_usage_error():
    with pytest.raises(UsageError, match="longer than the system allows"):
        DataDir("/" + "a" * 5000)
    with pytest.raises(UsageError):
        DataDir("/tmp/" + "b" * 300)


def test_full_file_system_fails_at_reserve(tmp_path, monkeypatch):
    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    dd = DataDir(tmp_path / "d")
    dd.create()
    with pytest.raises(UnsafeState, match="No space left"):
        dd.reserve_entry("k")
    with dd.kube() as kube:
        assert kube.temps() == []  # nothing left behind
