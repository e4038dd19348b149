"""`kubectl-teleport completion bash|zsh`: the scripts parse, register themselves, and complete what the argparse
parser declares (bash is driven through its completion function; zsh is parsed and loaded when installed)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from kubectl_teleport import cli, errors
from kubectl_teleport.commands import completion

BASH = shutil.which("bash")
ZSH = shutil.which("zsh")


def complete_bash(script: str, *words: str, cwd: Path | None = None) -> list[str]:
    """COMPREPLY of the script's function for the command line `words` (the last one is being completed)."""
    driver = (script + "\nCOMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _kubectl_teleport\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    out = subprocess.run([BASH, "--norc", "--noprofile", "-c", driver, "bash", *words], capture_output=True,
                         text=True, cwd=cwd, timeout=30, check=False)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    return [line for line in out.stdout.split("\n") if line]


@pytest.fixture(scope="module")
def bash_script() -> str:
    if BASH is None:
        pytest.skip("bash is not installed")
    return completion.script("bash")


def test_bash_accepts_the_script_and_it_registers_the_command(bash_script: str, tmp_path: Path) -> None:
    path = tmp_path / "kubectl-teleport.bash"
    path.write_text(bash_script)
    assert subprocess.run([BASH, "-n", str(path)], capture_output=True, check=False).returncode == 0
    out = subprocess.run([BASH, "--norc", "--noprofile", "-c", f"source {path} && complete -p kubectl-teleport"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "complete -F _kubectl_teleport kubectl-teleport"


def test_bash_completes_commands_subcommands_flags_and_choices(bash_script: str) -> None:
    top = complete_bash(bash_script, "kubectl-teleport", "")
    assert {"login", "credentials", "status", "kube", "init", "start", "demo", "completion"} <= set(top)
    assert complete_bash(bash_script, "kubectl-teleport", "lo") == ["login", "logout"]
    assert complete_bash(bash_script, "kubectl-teleport", "kube", "") == ["ls"]
    assert complete_bash(bash_script, "kubectl-teleport", "--ver") == ["--version"]
    assert complete_bash(bash_script, "kubectl-teleport", "kube", "ls", "--") == ["--help", "--data-dir", "--output"]
    login = complete_bash(bash_script, "kubectl-teleport", "login", "--")
    assert {"--proxy", "--token", "--ca-pin", "--kube-cluster", "--kubeconfig", "--merge", "--ttl"} <= set(login)
    assert complete_bash(bash_script, "kubectl-teleport", "status", "-o", "") == ["text", "json"]
    assert complete_bash(bash_script, "kubectl-teleport", "status", "--output", "=", "j") == ["json"]
    assert complete_bash(bash_script, "kubectl-teleport", "init", "--acls", "=") == ["required", "try", "off"]
    assert complete_bash(bash_script, "kubectl-teleport", "completion", "") == ["bash", "zsh"]
    assert complete_bash(bash_script, "kubectl-teleport", "login", "--proxy", "") == []  # a value: no guess
    # a flag's value is skipped when finding the command: "--proxy status" does not make `status` the command
    assert "--token" in complete_bash(bash_script, "kubectl-teleport", "login", "--proxy", "status", "--to")


def test_bash_completes_files_and_directories_for_path_flags(bash_script: str, tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "kube.yaml").write_text("")
    (tmp_path / "configs" / "with space.yaml").write_text("")
    (tmp_path / "configs" / "sub").mkdir()
    files = complete_bash(bash_script, "kubectl-teleport", "login", "--kubeconfig", "configs/", cwd=tmp_path)
    assert sorted(files) == ["configs/kube.yaml", "configs/sub", "configs/with space.yaml"]
    dirs = complete_bash(bash_script, "kubectl-teleport", "login", "--data-dir", "configs/", cwd=tmp_path)
    assert dirs == ["configs/sub"]
    for flag in ("--tbot-dir", "--cache-dir"):  # DIR / CDIR metavars
        assert complete_bash(bash_script, "kubectl-teleport", "credentials", flag, "co", cwd=tmp_path) == ["configs"]
    assert complete_bash(bash_script, "kubectl-teleport", "demo", "--kubectl", "=", "configs/k",
                         cwd=tmp_path) == ["configs/kube.yaml"]


def test_the_tree_follows_the_parser() -> None:
    """A flag added to cli.py completes without touching completion.py: kinds come from metavar and dest."""
    parser = argparse.ArgumentParser(prog="kubectl-teleport")
    sub = parser.add_subparsers(dest="command")
    new = sub.add_parser("new", help="a new command")
    new.add_argument("--spool-dir")
    new.add_argument("--config", metavar="FILE")
    new.add_argument("--mode", choices=["a", "b"])
    new.add_argument("--name", action="append")
    new.add_argument("--quiet", action="store_true")
    new.add_argument("--hidden", help=argparse.SUPPRESS)
    node = completion.tree(parser).commands["new"]
    kinds = {o.flags[-1]: (o.value, o.choices, o.repeat) for o in node.options}
    assert kinds == {"--help": (None, [], False), "--spool-dir": ("dir", [], False),
                     "--config": ("file", [], False), "--mode": ("choices", ["a", "b"], False),
                     "--name": ("any", [], True), "--quiet": (None, [], False)}
    assert node.help == "a new command"
    if BASH:
        script = completion.script("bash", parser)
        assert complete_bash(script, "kubectl-teleport", "new", "--mode", "") == ["a", "b"]
        assert "--hidden" not in complete_bash(script, "kubectl-teleport", "new", "--")


@pytest.mark.skipif(ZSH is None, reason="zsh is not installed")
def test_zsh_parses_the_script_and_loads_it_sourced_or_from_fpath(tmp_path: Path) -> None:
    script = completion.script("zsh")
    assert script.startswith("#compdef kubectl-teleport\n")
    fpath = tmp_path / "functions"
    fpath.mkdir()
    (fpath / "_kubectl-teleport").write_text(script)
    assert subprocess.run([ZSH, "-n", str(fpath / "_kubectl-teleport")], capture_output=True,
                          check=False).returncode == 0
    probe = "autoload -U compinit && compinit -u -d {dump}; {load}; print -r -- $_comps[kubectl-teleport]"
    for load in (f"source {fpath / '_kubectl-teleport'}", f"fpath=({fpath} $fpath); compinit -u -d {tmp_path}/d2"):
        out = subprocess.run([ZSH, "-f", "-c", probe.format(dump=tmp_path / "dump", load=load)],
                             capture_output=True, text=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                             timeout=30, check=False)
        assert out.returncode == 0 and out.stdout.strip() == "_kubectl-teleport", out.stderr


def test_the_command_prints_the_script_and_refuses_other_shells(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", "bash"]) == 0
    assert capsys.readouterr().out == completion.script("bash")
    assert cli.main(["completion", "zsh"]) == 0
    assert capsys.readouterr().out == completion.script("zsh")
    assert cli.main(["completion", "fish"]) == errors.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'fish'" in err
