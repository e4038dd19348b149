"""pytest plugin: the real, pinned kubectl (see harness/kubectl.py), skipped where it cannot be had."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from harness.kubectl import KubectlUnavailable, ensure_kubectl


@pytest.fixture(scope="session")
def kubectl() -> Path:
    """The real kubectl 1.37.1 binary (see the module docstring); skips where it cannot run."""
    try:
        return ensure_kubectl()
    except KubectlUnavailable as exc:
        if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
            pytest.skip(str(exc))
        raise
