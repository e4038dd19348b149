"""The light waiter (`waiter.wait`): what a hot-path miss does while another process holds the lock."""

from __future__ import annotations

import json
import os

import pytest

from kubectl_teleport import cache, execcred, waiter
from kubectl_teleport.errors import LOCK_TIMEOUT, LockTimeout
from kubectl_teleport.store import lock as lockmod
from kubectl_teleport.store.lock import IdentityLock, lock_path

OLD = b'{"clientCertificateData":"OLD","clientKeyData":"K","expirationTimestamp":"2030-01-01T00:00:00Z"}'
NEW = b'{"clientCertificateData":"NEW","clientKeyData":"K","expirationTimestamp":"2030-01-01T00:00:00Z"}'
NOW = 10_000.0


def put(data_dir, status=OLD, renew_at=NOW + 100, expires_at=NOW + 200) -> None:
    """Write the cache entry as the renewer does (temp file, rename)."""
    path = cache.cache_path(str(data_dir), "c1")
    tmp = path + ".t"
    with open(tmp, "wb") as fh:
        fh.write(cache.encode(int(renew_at), int(expires_at), int(expires_at) + 60, status))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


@pytest.fixture
def dd(tmp_path, monkeypatch):
    d = tmp_path / "bot"
    os.makedirs(d / "kube", mode=0o700)
    os.chmod(d, 0o700)
    (d / "config.json").write_text("{}")
    monkeypatch.setattr(waiter.time, "time", lambda: NOW)
    return d


@pytest.fixture
def renewer(dd):
    """Another process's lock (flock on another open file conflicts, in this process too)."""
    held = IdentityLock(lock_path(str(dd)))
    assert held.try_acquire()
    yield held
    held.release()


def wait(dd, **kw):
    return waiter.wait(str(dd), "c1", execcred.V1, **kw)


def cert(out: bytes) -> str:
    return json.loads(out)["status"]["clientCertificateData"]


def test_lock_free_the_waiter_takes_it_to_renew(dd):
    put(dd, renew_at=NOW - 1, expires_at=NOW - 1)
    out, held, left = wait(dd)
    assert out is None and held is not None and held.held and left == lockmod.DEFAULT_WAIT
    held.release()


def test_due_but_valid_and_someone_renews_serves_the_cached_one_at_once(dd, renewer, monkeypatch):
    put(dd, renew_at=NOW - 1, expires_at=NOW + 50)
    monkeypatch.setattr(lockmod.time, "sleep", lambda s: pytest.fail("a valid certificate must not wait"))
    out, held, _ = wait(dd)
    assert cert(out) == "OLD" and held is None


@pytest.mark.parametrize("missing", [False, True])
def test_expired_or_missing_waits_and_serves_the_renewers_certificate_without_the_lock(dd, renewer, monkeypatch,
                                                                                     missing):
    if missing:
        assert cache.absent(str(dd), "c1")
    else:
        put(dd, renew_at=NOW - 10, expires_at=NOW - 5)
    naps = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            put(dd, NEW)  # the renewer commits; it still holds the lock

    monkeypatch.setattr(lockmod.time, "sleep", nap)
    out, held, _ = wait(dd)
    assert cert(out) == "NEW" and held is None and renewer.held and len(naps) == 3
    assert naps == sorted(naps) and max(naps) <= 0.05  # backs off, never sleeps long


def test_a_wait_that_runs_out_is_a_lock_timeout_naming_the_wait(dd, renewer, monkeypatch):
    put(dd, renew_at=NOW - 10, expires_at=NOW - 5)
    clock = [0.0]
    monkeypatch.setattr(lockmod.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(lockmod.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    with pytest.raises(LockTimeout, match=r"for more than 2s") as exc:
        wait(dd, wait=2.0)
    assert exc.value.code == LOCK_TIMEOUT and 2.0 <= clock[0] < 2.06


def test_the_renewer_dies_and_a_waiter_takes_over(dd, renewer, monkeypatch):
    put(dd, renew_at=NOW - 10, expires_at=NOW - 5)
    monkeypatch.setattr(lockmod.time, "sleep", lambda s: renewer.release())  # the kernel drops a dead one's flock
    out, held, _ = wait(dd)
    assert out is None and held is not None and held.held
    held.release()


def test_unusual_states_go_to_the_careful_path_untouched(dd, tmp_path, monkeypatch):
    (dd / "kube" / "c1.cred").write_bytes(b"garbage")
    os.chmod(dd / "kube" / "c1.cred", 0o600)
    assert wait(dd) == (None, None, lockmod.DEFAULT_WAIT)  # corrupt: the careful path explains or repairs
    os.unlink(dd / "kube" / "c1.cred")
    os.symlink(tmp_path / "elsewhere", dd / "lock")
    assert wait(dd) == (None, None, lockmod.DEFAULT_WAIT)  # a symlinked lock: the careful path refuses it
    assert not (tmp_path / "elsewhere").exists()
    os.unlink(dd / "lock")
    monkeypatch.setattr(waiter, "is_writer", lambda d: False)
    assert wait(dd) == (None, None, lockmod.DEFAULT_WAIT)  # a reader: never locks
    assert not (dd / "lock").exists()
