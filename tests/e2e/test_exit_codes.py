"""Exit 1 only for bugs: inputs and states that once gave "internal error" now give one line and their code."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from kubectl_teleport import errors
from tests.conftest import bin_path
from tests.plugin_helpers import EXEC_INFO_V1, KUBE_CLUSTER, cert_of, credentials, login, make_due, plugin


def one_line(out: subprocess.CompletedProcess, code: int) -> str:
    assert out.returncode == code, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.fixture
def bot(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    return data


@pytest.mark.parametrize("content", [b"[]", b"null", b'{"proxy": []}'])
def test_damaged_config_is_not_logged_in(bot, content):
    (bot / "config.json").write_bytes(content)
    assert "damaged" in one_line(plugin("status", "--data-dir", str(bot)), errors.NOT_LOGGED_IN)
    one_line(plugin("start", "--oneshot", "--data-dir", str(bot)), errors.NOT_LOGGED_IN)
    make_due(bot, expired=True)
    one_line(credentials(bot), errors.NOT_LOGGED_IN)


@pytest.mark.parametrize("kind", ["symlink", "directory"])
def test_lock_replaced_is_unsafe_state(bot, kind):
    lock = bot / "lock"
    lock.unlink(missing_ok=True)
    if kind == "symlink":
        lock.symlink_to(bot / "elsewhere")
    else:
        lock.mkdir()
    cached = cert_of(credentials(bot).stdout)
    make_due(bot)  # due but valid: still served, one warning
    served = credentials(bot)
    assert served.returncode == 0 and cert_of(served.stdout) == cached
    assert "lock" in one_line(served, 0) and "warning" in served.stderr
    make_due(bot, expired=True)
    assert "lock" in one_line(credentials(bot), errors.UNSAFE_STATE)
    one_line(plugin("start", "--oneshot", "--data-dir", str(bot)), errors.UNSAFE_STATE)
    one_line(plugin("logout", "--data-dir", str(bot)), errors.UNSAFE_STATE)


@pytest.mark.parametrize("value", ["inf", "1e308", "-1", "nan"])
def test_timeouts_out_of_range_are_usage_errors(bot, value):
    one_line(plugin("credentials", "--data-dir", str(bot), "--kube-cluster", KUBE_CLUSTER, "--timeout", value),
             errors.USAGE)
    one_line(plugin("login", "--data-dir", str(bot), "--kube-cluster", KUBE_CLUSTER, "--timeout", value),
             errors.USAGE)


def test_data_dir_longer_than_path_max_is_a_usage_error(tmp_path):
    long = "/" + "/".join(["d" * 200] * 25)
    for args in (["credentials", "--data-dir", long, "--kube-cluster", KUBE_CLUSTER], ["status", "--data-dir", long],
                 ["logout", "--data-dir", long]):
        assert "longer than the system allows" in one_line(plugin(*args), errors.USAGE)


def test_deeply_nested_exec_info_is_a_usage_error(bot):
    make_due(bot)  # not a plain hit: the careful path parses the exec info
    info = '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":' + "[" * 50000
    one_line(credentials(bot, info=info + "]" * 50000 + "}"), errors.USAGE)


def test_closed_stdout_is_one_line_not_a_traceback(bot):
    assert credentials(bot).returncode == 0  # a cache hit from now on
    cmd = [str(bin_path("kubectl-teleport")), "credentials", "--data-dir", str(bot), "--kube-cluster", KUBE_CLUSTER]
    out = subprocess.run([shutil.which("bash") or "/bin/bash", "-c", 'exec 1>&-; exec "$@"', "bash", *cmd],
                         capture_output=False, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "KUBERNETES_EXEC_INFO": EXEC_INFO_V1}, check=False)
    assert out.returncode == errors.USAGE and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "standard output" in out.stderr
