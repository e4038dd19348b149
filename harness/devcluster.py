"""Run a devcluster as a child process and drive its admin CLI: for tests, benchmarks and soak scripts.

It runs the `kubectl-teleport-devcluster` installed next to the running interpreter (install.sh --dev).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class DevClusterError(RuntimeError):
    """The devcluster did not start, stop cleanly, or answer an admin command."""


def devcluster_env() -> dict[str, str]:
    """The environment for devcluster commands."""
    return dict(os.environ)


def devcluster_cmd(*args: str) -> list[str]:
    """The installed devcluster command (next to this interpreter) with `args`."""
    return [str(Path(sys.executable).parent / "kubectl-teleport-devcluster"), *args]


@dataclass
class DevCluster:
    """A running devcluster and its admin CLI."""

    state_dir: Path
    proxy: str  # "127.0.0.1:PORT": the Teleport proxy (the same as teleport_proxy)
    kube_server: str  # "https://127.0.0.1:PORT"
    cluster_name: str
    ca_pin: str
    user_ca_pem: str
    process: subprocess.Popen
    log_path: Path | None = field(default=None, repr=False)
    # The Teleport side (see docs/devcluster.md): the proxy's one TLS port, the auth gRPC port, the host CA, the
    # web CA file (for SSL_CERT_FILE) and the behaviour chosen at start.
    teleport_proxy: str = ""  # "127.0.0.1:PORT"
    auth_server: str = ""  # "127.0.0.1:PORT"
    host_ca_pem: str = field(default="", repr=False)
    web_ca_file: str = ""
    teleport_version: str = ""
    suite: str = ""
    tls_routing: bool = True

    def admin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `kubectl-teleport-devcluster ARGS --state-dir DIR`, text output captured."""
        proc = subprocess.run(devcluster_cmd(*args, "--state-dir", str(self.state_dir)), capture_output=True,
                              text=True, env=devcluster_env(), timeout=60)
        if check and proc.returncode != 0:
            raise DevClusterError(f"devcluster {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def stats(self) -> dict:
        """The server's counters (`stats --format json`)."""
        return json.loads(self.admin("stats", "--format", "json").stdout)

    def add_bot(self, name: str = "robot", roles: str = "machine-id-kube-role",
                token_ttl: str | None = None) -> dict:
        """`bots add NAME --roles R --format json`: {"bot", "token", "ca_pins", "proxy", "login_command", ...}."""
        args = ["bots", "add", name, "--roles", roles, "--format", "json"]
        if token_ttl is not None:
            args += ["--token-ttl", token_ttl]
        return json.loads(self.admin(*args).stdout)

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text() if self.log_path else ""

    def stop(self) -> None:
        """SIGTERM and wait; raises when the server does not exit cleanly with 0."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise DevClusterError("devcluster did not stop within 10 s of SIGTERM") from None
        if self.process.returncode != 0:
            raise DevClusterError(f"devcluster exited with {self.process.returncode}: {self.log()[-2000:]}")


def start_devcluster(base: Path, *extra: str, seed: bool = True) -> DevCluster:
    """Start a devcluster in `base` (state dir, ready file, log) and wait for its ready file."""
    base.mkdir(parents=True, exist_ok=True)
    state, ready, log_path = base / "state", base / "ready.json", base / "devcluster.log"
    args = ["start", "--state-dir", str(state), "--kube-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0",
            "--ready-file", str(ready), *(["--seed-demo"] if seed else []), *extra]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(devcluster_cmd(*args), stdout=log, stderr=subprocess.STDOUT,
                                env=devcluster_env())
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None:
            raise DevClusterError(f"devcluster exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise DevClusterError(f"devcluster not ready within {READY_TIMEOUT:.0f} s: {log_path.read_text()}")
        time.sleep(0.02)
    info = json.loads(ready.read_text())
    return DevCluster(state, info["proxy"], info["kube_server"], info["cluster_name"], info["ca_pin"],
                      info["user_ca_pem"], proc, log_path, teleport_proxy=info.get("teleport_proxy", ""),
                      auth_server=info.get("auth_server", ""), host_ca_pem=info.get("host_ca_pem", ""),
                      web_ca_file=info.get("web_ca_file", ""), teleport_version=info.get("teleport_version", ""),
                      suite=info.get("suite", ""), tls_routing=info.get("tls_routing", True))
