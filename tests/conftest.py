"""Shared test plumbing: where the installed commands are, and the fixtures from sibling modules."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.devcluster_fixture", "tests.kubectl_fixture"]

REPO = Path(__file__).resolve().parent.parent

# Tests talk to servers on loopback: a proxy from the environment must not get in the way (test_https_proxy
# sets its own).
for _name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_name, None)
VENV_BIN = Path(sys.executable).parent


def bin_path(name: str) -> Path:
    """Absolute path of a console script installed in the test venv (install.sh --dev)."""
    path = VENV_BIN / name
    if not path.exists():
        pytest.exit(f"{path} is missing: run ./install.sh --dev --prefix .dev first (see README)", 2)
    return path
