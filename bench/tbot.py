"""The tbot reader's hit (`credentials --tbot-dir DIR --cache-dir CDIR`) against `python -I -c pass`.

The destination is laid out as tbot writes it (harness/tbotdest.py) around the certificate and key of the login's
cache hit; the command measured is exactly the exec stanza `kubectl-teleport kubeconfig --tbot-dir` writes.
"""

from __future__ import annotations

import base64
import json
import subprocess

import yaml

from bench.cases import Row, Setup, all_ok, check_credential, ms, verdict
from bench.measure import Cmd, median, pair_ratio_median, walls
from harness import tbotdest
from kubectl_teleport import pki

TARGET = 1.0


def destination(s: Setup) -> Cmd:
    """Write a tbot-like destination from the login's certificate; the exec command reading it."""
    status = json.loads(s.hit_output)["status"]
    cluster = s.kubeconfig["clusters"][0]["cluster"]
    ca_pems = [base64.b64decode(cluster["certificate-authority-data"]).decode()]
    ssh_ca = tbotdest.CA.make("ec")
    key = pki.load_private_key(status["clientKeyData"])
    dest = s.tmp / "tbot-dest"
    dest.mkdir(mode=0o700)
    tbotdest.write_in_place(dest / "identity", tbotdest.identity_text(
        status["clientKeyData"], status["clientCertificateData"], ca_pems, ssh_ca.ssh_cert_line(key),
        [ssh_ca.ssh_ca_line()]))
    tbotdest.write_kubeconfig(dest, server=cluster["server"], ca_pems=ca_pems,
                              tls_server_name=cluster.get("tls-server-name", ""), kube_cluster=s.cluster)
    target = s.tmp / "tbot-kubeconfig.yaml"
    proc = subprocess.run([s.plugin.argv[0], "kubeconfig", "--tbot-dir", str(dest), "--kubeconfig", str(target),
                           "--cache-dir", str(s.tmp / "tbot-cache")], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench: kubeconfig --tbot-dir failed ({proc.returncode}): {proc.stderr.strip()}")
    ex = yaml.safe_load(target.read_text())["users"][0]["user"]["exec"]
    return Cmd([ex["command"], *ex["args"]], s.plugin.env)


def tbot_hit(s: Setup, rounds: int, warmup: int) -> list[Row]:
    runs = s.spawner.interleave({"baseline": Cmd([s.python, "-I", "-c", "pass"], s.plugin.env),
                                 "tbot": destination(s)}, rounds, warmup)
    all_ok(s, "tbot destination hit", runs["tbot"])
    outs = {r.stdout for r in runs["tbot"]}
    if len(outs) != 1 or check_credential(s, runs["tbot"][0].stdout, s.api_version) is None:
        s.fail(f"tbot destination hit: {len(outs)} different outputs, or not a valid ExecCredential")
    base, hit = median(walls(runs["baseline"])), median(walls(runs["tbot"]))
    r_med, r_pair = hit / base, pair_ratio_median(runs["tbot"], runs["baseline"])
    return [
        Row(f"1b. tbot destination hit (--tbot-dir), median of {rounds}", ms(base), ms(hit), f"{r_med:.2f}x",
            f"<= {TARGET:.1f}x", verdict(r_med <= TARGET)),
        Row("   tbot destination hit, median of per-pair ratios", "", "", f"{r_pair:.2f}x", f"<= {TARGET:.1f}x",
            verdict(r_pair <= TARGET)),
    ]
