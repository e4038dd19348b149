"""Typed errors, the one guard, and the inputs that used to be internal errors."""

from __future__ import annotations

import errno
import json

import pytest

from kubectl_teleport import cli, errors, execcred


@pytest.mark.parametrize(("cls", "code"), [(errors.UsageError, 2), (errors.NotLoggedIn, 3),
                                           (errors.IdentityRejected, 4), (errors.AccessDenied, 5),
                                           (errors.Unavailable, 6), (errors.TrustError, 7),
                                           (errors.LockTimeout, 8), (errors.UnsafeState, 9)])
def test_each_error_class_carries_its_exit_code(cls, code, capsys):
    assert errors.guarded(lambda: (_ for _ in ()).throw(cls("what went wrong; the fix"))) == code
    assert capsys.readouterr().err == "kubectl-teleport: error: what went wrong; the fix\n"


def test_transient_errors_are_those_time_may_fix():
    assert isinstance(errors.Unavailable("x"), errors.TRANSIENT)
    assert isinstance(errors.LockTimeout("x"), errors.TRANSIENT)
    assert not isinstance(errors.IdentityRejected("x"), errors.TRANSIENT)


@pytest.mark.parametrize("err", [OSError(errno.EBADF, "Bad file descriptor"), BrokenPipeError(errno.EPIPE, "x")])
def test_closed_stdout_is_one_line_not_a_traceback(err, capsys):
    assert errors.report(err) == errors.USAGE
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and "standard output" in out


def test_a_bug_is_exit_one_with_one_line(capsys, monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    assert errors.report(ZeroDivisionError("boom")) == errors.INTERNAL
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("value", ["inf", "-1", "1e308", "nan", "x"])
def test_timeouts_must_be_finite_seconds(value):
    with pytest.raises(errors.UsageError):
        cli.build_parser().parse_args(["credentials", "--data-dir", "/d", "--kube-cluster", "k", "--timeout", value])


def test_deeply_nested_exec_info_is_a_usage_error():
    info = '{"kind":"ExecCredential","apiVersion":"' + execcred.V1 + '","spec":' + "[" * 100000 + "]" * 100000 + "}"
    with pytest.raises(errors.UsageError):
        execcred.requested_version(info)
    with pytest.raises(errors.UsageError):
        execcred.requested_version(json.dumps({"kind": "ExecCredential", "apiVersion": "x" * (2 << 20)}))
