"""`kubectl-teleport completion bash|zsh`: the scripts parse, register themselves, and complete what the argparse
parser declares. Bash is driven through its completion function for every command of the parser; the zsh script's
structure and its coverage of the parser are checked without zsh (no zsh can be had from PyPI for CI), and where
zsh is installed it also parses and loads the script."""

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
    assert complete_bash(bash_script, "kubectl-teleport", "kube", "ls", "--") == ["--help", "--data-dir", "--output",
                                                                             "--offline", "--timeout"]
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


# ---- every command and flag of the CLI, read from its parser here (not through completion.tree) --------------

def cli_commands(parser: argparse.ArgumentParser | None = None, path: tuple[str, ...] = ()) -> list[dict]:
    """Each command path of the CLI with its flags, the choices of flags and positionals, and subcommands."""
    parser = parser or cli.build_parser()
    node: dict = {"path": path, "flags": {}, "positionals": [], "commands": []}
    found = [node]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                node["commands"].append(name)
                found += cli_commands(sub, (*path, name))
        elif action.help == argparse.SUPPRESS:
            continue
        elif action.option_strings:
            for flag in action.option_strings:
                node["flags"][flag] = [str(c) for c in action.choices or []]
        else:
            node["positionals"].append([str(c) for c in action.choices or []])
    return found


def test_the_cli_walk_sees_the_whole_parser() -> None:
    """The walk the drift checks below rely on finds what cli.py declares (so they cannot pass on nothing)."""
    paths = {c["path"]: c for c in cli_commands()}
    assert {(), ("login",), ("kube",), ("kube", "ls"), ("doctor",), ("completion",)} <= set(paths)
    assert {"--proxy", "--token", "--ca-pin", "--data-dir"} <= set(paths[("login",)]["flags"])
    assert paths[("doctor",)]["flags"]["--output"] == ["text", "json"]
    assert paths[("completion",)]["positionals"] == [["bash", "zsh"]]


def zsh_words(text: str) -> list[list[str]]:
    """The script's lines as shell words, single quotes removed (zsh's rules for them: no escape inside, \'
    outside); fails when a line ends inside a quote, as a defect in the generator's quoting would."""
    lines, words, word, quoted, escaped = [], [], "", False, False
    for ch in text:
        if quoted:
            if ch == "'":
                quoted = False
            else:
                word += ch
        elif escaped:
            word, escaped = word + ch if ch != "\n" else word, False
        elif ch == "\\":
            escaped = True
        elif ch == "'":
            quoted = True
        elif ch in " \t\n":
            if word:
                words.append(word)
            word = ""
            if ch == "\n":
                lines.append(words)
                words = []
        else:
            word += ch
        if ch == "\n":
            assert not quoted, f"line {len(lines)} ends inside a single quote"
    assert not quoted and not escaped
    return lines + ([words + ([word] if word else [])] if words or word else [])


def zsh_functions(script: str) -> dict[str, list[list[str]]]:
    """Function name -> the words of its body's lines (`name() {` ... `}` at the start of a line)."""
    found: dict[str, list[list[str]]] = {}
    current = None
    for words in zsh_words(script):
        if len(words) == 2 and words[0].endswith("()") and words[1] == "{":
            current = words[0][:-2]
            assert current not in found, f"{current} is defined twice"
            found[current] = []
        elif words == ["}"] and current:
            current = None
        elif current:
            found[current].append(words)
    assert current is None, "a function is not closed"
    return found


def _zsh_spec_flag(spec: str) -> str:
    """The flag an `_arguments` spec is for: `*(--a --b)--flag=[help]:msg:action` -> `--flag`."""
    spec = spec.lstrip("*")
    if spec.startswith("("):
        spec = spec[spec.index(")") + 1:]
    for i, ch in enumerate(spec):
        if ch in "=+[:":
            return spec[:i]
    return spec


def test_the_zsh_script_completes_every_command_flag_and_choice_without_zsh() -> None:
    """Checked on every machine (zsh or not): the structure zsh relies on, and every command, flag and choice of
    the parser present where zsh looks for it. A flag added to cli.py that the script misses fails here."""
    script = completion.script("zsh")
    assert script.splitlines()[0] == "#compdef kubectl-teleport"
    functions = zsh_functions(script)
    lines = zsh_words(script)
    assert ["compdef", "_kubectl-teleport", "kubectl-teleport"] in lines
    assert ["_kubectl-teleport", '"$@"'] in [w[:2] for w in lines]  # autoloaded from $fpath: completes at once
    commands = cli_commands()
    names = {"_kubectl-teleport" + "".join("__" + p.replace("-", "_") for p in c["path"]): c for c in commands}
    assert set(functions) == set(names)
    for name, command in names.items():
        body = functions[name]
        words = [w for line in body for w in line]
        calls = [line for line in body if line[:1] == ["_arguments"]]  # continued lines are one line here
        assert len(calls) == 1, name
        args = calls[0][1:calls[0].index("&&")] if "&&" in calls[0] else calls[0][1:]
        while args and args[0] in ("-C", "-s"):  # _arguments' own options
            args = args[1:]
        specs: dict[str, list[str]] = {}
        for spec in args:
            if spec.startswith(("-", "*-", "(", "*(")):
                specs.setdefault(_zsh_spec_flag(spec), []).append(spec)
        assert set(specs) == set(command["flags"]), name
        for flag, choices in command["flags"].items():
            assert len(specs[flag]) == 1, (name, flag)
            if choices:
                assert specs[flag][0].endswith(f":({' '.join(choices)})"), (name, flag)
        for i, choices in enumerate(command["positionals"]):
            assert any(w.startswith(f"{i + 1}:") and w.endswith(f":({' '.join(choices)})") for w in args), name
        if command["commands"]:
            listed = [w.split(":", 1)[0] for w in words if ":" in w and not w.startswith(("-", "*", "(", "1:"))
                      and w.split(":", 1)[0] in command["commands"]]
            assert listed == command["commands"], name
            arms = [line[1] for line in body if len(line) > 1 and line[0].endswith(")")
                    and line[0][:-1] in command["commands"]]
            assert arms == [f"{name}__{c.replace('-', '_')}" for c in command["commands"]], name


def test_bash_completes_every_command_flag_and_choice_of_the_parser(bash_script: str) -> None:
    """Driven through bash for every command path the parser has: its subcommands, all its long flags, and the
    choices of each flag and positional. A flag added to cli.py that the script misses fails here."""
    for command in cli_commands():
        words = ["kubectl-teleport", *command["path"]]
        if command["commands"]:
            assert complete_bash(bash_script, *words, "") == command["commands"], words
        longs = [f for f in command["flags"] if f.startswith("--")]
        assert sorted(complete_bash(bash_script, *words, "--")) == sorted(longs), words
        for flag, choices in command["flags"].items():
            if choices:
                assert complete_bash(bash_script, *words, flag, "") == choices, (words, flag)
        for choices in command["positionals"]:
            if choices:
                assert complete_bash(bash_script, *words, "") == choices, words


@pytest.mark.skipif(ZSH is None, reason="zsh is not installed (the script's structure and its coverage of the "
                                        "parser are checked without it above)")
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
