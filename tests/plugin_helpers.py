"""Helpers for tests that drive the installed plugin against a devcluster."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from kubectl_teleport import cache, launcher
from tests.conftest import bin_path

KUBE_CLUSTER = "example-k8s-cluster"
ROLE = "machine-id-kube-role"  # the role `bots add` gives by default (the seeded demo world's)
EXEC_INFO_V1 = ('{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1",'
                '"spec":{"interactive":false}}')


# What a cache hit imports beyond the interpreter's own start-up (docs/design.md, the hot path).
HOT_PATH = frozenset({"kubectl_teleport", "kubectl_teleport.entry", "kubectl_teleport.cache",
                      "kubectl_teleport.execcred"})


def plugin(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the installed kubectl-teleport."""
    return subprocess.run([str(bin_path("kubectl-teleport")), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, check=False)


def join_args(bot: dict, *, pin: bool = True) -> list[str]:
    """The Teleport login flags for a bot of `bots add --format json`: proxy, token, CA pin, roles."""
    return ["--proxy", bot["teleport_proxy"], "--token", bot["token"],
            *(["--ca-pin", bot["ca_pins"][0]] if pin else []), *(f"--role={r}" for r in bot["roles"])]


def web_trust(devcluster) -> dict[str, str]:
    """The environment that makes the devcluster's web certificate trusted (its web CA as SSL_CERT_FILE)."""
    return {"SSL_CERT_FILE": devcluster.web_ca_file}


def login(devcluster, data_dir: Path, *extra: str, bot: dict | None = None,
          env: dict | None = None) -> subprocess.CompletedProcess:
    """Add a bot and log in with its token through the devcluster's Teleport proxy; asserts success."""
    bot = bot or devcluster.add_bot()
    out = plugin("login", *join_args(bot), "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data_dir), *extra,
                 env={**web_trust(devcluster), **(env or {})})
    assert out.returncode == 0, out.stderr
    return out


def kubectl_run(kubectl: Path, kubeconfig: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the real kubectl with an isolated HOME (discovery cache) and the given kubeconfig."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(home)
    return subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def credentials(data_dir: Path, cluster: str = KUBE_CLUSTER, info: str = EXEC_INFO_V1,
                **kw) -> subprocess.CompletedProcess:
    return plugin("credentials", "--data-dir", str(data_dir), "--kube-cluster", cluster,
                  env={"KUBERNETES_EXEC_INFO": info}, **kw)


def make_due(data_dir: Path, cluster: str = KUBE_CLUSTER, *, expired: bool = False) -> None:
    """Move a cache entry's renewal time (and, with `expired`, its expiry) into the past."""
    path = Path(cache.cache_path(str(data_dir), cluster))
    entry = cache.decode(path.read_bytes())
    data = cache.encode(0, 0 if expired else entry.expires_at, entry.not_after, entry.status)
    path.write_bytes(data)


def cert_of(output: str) -> str:
    return json.loads(output)["status"]["clientCertificateData"]


def edit_exec(kubeconfig: Path, change: Callable[[dict], None]) -> None:
    """Apply `change` to the first user's exec stanza of a kubeconfig file."""
    doc = yaml.safe_load(kubeconfig.read_text())
    change(doc["users"][0]["user"]["exec"])
    kubeconfig.write_text(yaml.safe_dump(doc))


def python_of(command: str) -> list[str]:
    """How the `kubectl-teleport` launcher at `command` starts Python (`[python, "-IS"]`), so a test can run the
    same interpreter with `-v` on it."""
    argv = launcher.interpreter(command)
    assert argv, f"{command} is not a kubectl-teleport launcher"
    return argv


def imported(argv: list[str], env: dict) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run argv (a python command with -v); the modules it loaded. `-v` reports every module the standard loader
    loads, through an import statement or, as the launcher loads the hot path, by location (-X importtime only
    sees import statements)."""
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    return out, {line.split("'")[1] for line in out.stderr.splitlines() if line.startswith("import '")}


def hit_imports(exec_: dict, env: dict) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run a kubeconfig's exec command as kubectl does, started by its launcher's interpreter with -v; the modules
    it loaded beyond that interpreter's bare start (`python -IS -c pass`)."""
    python = python_of(exec_["command"])
    out, mods = imported([*python, "-v", exec_["command"], *exec_.get("args", [])], env)
    _, floor = imported([*python, "-v", "-c", "pass"], env)
    return out, mods - floor
