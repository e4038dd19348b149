"""`kubectl-teleport demo`: the whole flow on one machine, narrated, against a throwaway devcluster."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import execcred
from ..errors import Unavailable, UsageError
from .login import LoginRequest, login

BOT = "robot"
ROLE = "machine-id-kube-role"
KUBE_CLUSTER = "example-k8s-cluster"


def _say(step: str, text: str = "") -> None:
    print(f"\n==> {step}" + (f"\n    {text}" if text else ""), flush=True)


def _devcluster_cmd() -> list[str]:
    beside = Path(sys.executable).parent / "kubectl-teleport-devcluster"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "kubectl_teleport.devcluster"]


def _start_cluster(work: Path) -> tuple[subprocess.Popen, dict]:
    ready = work / "ready.json"
    log = (work / "devcluster.log").open("wb")
    proc = subprocess.Popen([*_devcluster_cmd(), "start", "--state-dir", str(work / "cluster"), "--seed-demo",
                             "--listen", "127.0.0.1:0", "--kube-listen", "127.0.0.1:0",
                             "--ready-file", str(ready)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise Unavailable(f"the devcluster did not start; see {work / 'devcluster.log'}")
        time.sleep(0.05)
    return proc, json.loads(ready.read_text())


def _admin(work: Path, *args: str) -> str:
    out = subprocess.run([*_devcluster_cmd(), *args, "--state-dir", str(work / "cluster")],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise Unavailable(f"devcluster {args[0]} failed: {out.stderr.strip()}")
    return out.stdout


def _run_kubectl(kubectl: str, kubeconfig: Path, work: Path, *args: str) -> None:
    cmd = [kubectl, "--kubeconfig", str(kubeconfig), "--cache-dir", str(work / "kube-cache"), *args]
    print(f"    $ kubectl {' '.join(args)}", flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    for line in (out.stdout + out.stderr).rstrip().splitlines():
        print(f"    {line}")
    if out.returncode:
        raise Unavailable(f"kubectl {' '.join(args)} failed with exit code {out.returncode}")


def _without_kubectl(kubeconfig: Path) -> None:
    """Show the ExecCredential (secrets redacted) and make kubectl's calls ourselves."""
    import httpx
    import yaml

    cfg = yaml.safe_load(kubeconfig.read_text())
    exec_ = cfg["users"][0]["user"]["exec"]
    env = {**os.environ, execcred.ENV: json.dumps({"kind": "ExecCredential", "apiVersion": execcred.V1,
                                                   "spec": {"interactive": False}})}
    out = subprocess.run([exec_["command"], *exec_["args"]], env=env, capture_output=True, check=True)
    cred = json.loads(out.stdout)
    shown = {**cred, "status": {**cred["status"], "clientCertificateData": "<PEM certificate, redacted>",
                                "clientKeyData": "<PEM private key, redacted>"}}
    print(f"    $ {Path(exec_['command']).name} {' '.join(exec_['args'])}")
    for line in json.dumps(shown, indent=2).splitlines():
        print(f"    {line}")
    cluster = cfg["clusters"][0]["cluster"]
    import base64
    import ssl

    ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    with tempfile.TemporaryDirectory() as tmp:
        pem = Path(tmp) / "client.pem"
        fd = os.open(pem, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, (cred["status"]["clientCertificateData"] + cred["status"]["clientKeyData"]).encode())
        os.close(fd)
        ctx.load_cert_chain(str(pem))
    with httpx.Client(base_url=cluster["server"], verify=ctx, timeout=10) as http:
        sni = {"sni_hostname": cluster["tls-server-name"]} if cluster.get("tls-server-name") else {}
        pods = http.get("/api/v1/namespaces/demo/pods", extensions=sni).json()
        print("    GET /api/v1/namespaces/demo/pods:")
        for item in pods.get("items", []):
            print(f"      {item['metadata']['name']}  {item.get('status', {}).get('phase', '')}")
        review = http.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", extensions=sni,
                           json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).json()
        info = review.get("status", {}).get("userInfo", {})
        print(f"    SelfSubjectReview: user {info.get('username')}, groups {', '.join(info.get('groups', []))}")


def demo(kubectl: str | None, keep: bool = False) -> int:
    """Run the narrated demo; returns the exit code."""
    if kubectl and not shutil.which(kubectl):
        raise UsageError(f"--kubectl {kubectl}: no such executable")
    kubectl = shutil.which(kubectl) if kubectl else shutil.which("kubectl")
    work = Path(tempfile.mkdtemp(prefix="kubectl-teleport-demo-"))
    proc = None
    try:
        _say("1. Start a devcluster: a Teleport stand-in (proxy with TLS routing, auth service, Kubernetes "
             "endpoint) with the demo world",
             "role machine-id-kube-role: groups [example], users [alice]; cluster example-k8s-cluster; "
             "namespace demo")
        proc, ready = _start_cluster(work)
        print(f"    Teleport {ready.get('teleport_version', '')} proxy {ready['teleport_proxy']} (web, auth and "
              f"Kubernetes on one port), cluster {ready['cluster_name']}")
        _say(f"2. An admin adds the bot (like `tctl bots add {BOT} --roles={ROLE}`)",
             "this prints a one-time token and the CA pin to hand to the machine")
        bot = json.loads(_admin(work, "bots", "add", BOT, f"--roles={ROLE}", "--format", "json"))
        print(f"    CA pin {bot['ca_pins'][0]}")
        _say("3. On the machine: kubectl-teleport login --proxy ... --token ... --ca-pin ... "
             f"--role {ROLE} --kube-cluster {KUBE_CLUSTER}",
             "checks the host CA against the pin, joins with the token (once), stores the renewable identity, "
             "gets a Kubernetes certificate impersonating the role, writes a kubeconfig. (The devcluster's web "
             "certificate comes from its own CA, trusted here through SSL_CERT_FILE; a real proxy has a public one.)")
        data_dir = work / "bot"
        previous = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = ready["web_ca_file"]
        try:
            lines = login(LoginRequest(proxy=ready["teleport_proxy"], token=bot["token"], ca_pins=bot["ca_pins"],
                                       roles=list(bot.get("roles") or [ROLE]), kube_clusters=[KUBE_CLUSTER],
                                       data_dir=str(data_dir)))
        finally:
            if previous is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = previous
        for line in lines:
            print(f"    {line}")
        kubeconfig = data_dir / "kubeconfig.yaml"
        if kubectl:
            _say("4. kubectl runs the plugin for a certificate on every call", f"kubectl: {kubectl}")
            _run_kubectl(kubectl, kubeconfig, work, "get", "pods", "-n", "demo")
            _run_kubectl(kubectl, kubeconfig, work, "auth", "whoami")
        else:
            _say("4. No kubectl on PATH (give --kubectl PATH): doing what kubectl would do",
                 "run the exec plugin, then call the Kubernetes API with the certificate it returned")
            _without_kubectl(kubeconfig)
        _say("5. kubectl-teleport status", "what the bot holds now; the next kubectl call is a cache hit")
        from .status import status

        for line in status(str(data_dir), "text"):
            print(f"    {line}")
        _say("Done.", "kubectl renews the certificate through the plugin when a third of its life is left; "
             "`kubectl-teleport status` shows it, and `kubectl-teleport start` keeps an idle bot alive.")
        return 0
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if keep:
            print(f"\nKept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    """`kubectl-teleport demo`."""
    return demo(args.kubectl, keep=args.keep)
