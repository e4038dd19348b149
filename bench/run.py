"""kubectl-teleport benchmarks: cache hit, kubectl get pods, stampedes, cold renewal, a hanging issuer.

    .dev/venv/bin/python -m bench.run [--quick] [--keep]      (from the repository root)

Measures the plugin installed next to this interpreter (`<venv>/bin/kubectl-teleport`, as `install.sh` writes
it) against a devcluster of this checkout that the bench starts and stops itself. Timing is Python's
`time.perf_counter` around fork/execve/`os.wait4`; peak RSS is the child's `ru_maxrss` from `os.wait4`.
Prints the machine, then a table; exits 1 when a correctness check fails (a missed timing target is only
reported), 2 when the set-up fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import yaml
from cryptography import x509

from bench import cases, tbot
from bench.measure import Cmd, Spawner
from harness.devcluster import DevCluster, start_devcluster
from harness.kubectl import ensure_kubectl
from kubectl_teleport import launcher

REPO = Path(__file__).resolve().parent.parent
KUBE_CLUSTER = "example-k8s-cluster"


def machine() -> list[str]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [f"machine: {model}, {cores} cores usable ({os.cpu_count()} online), {platform.system()} "
            f"{platform.release()}",
            f"python:  {platform.python_implementation()} {platform.python_version()} ({sys.executable})",
            f"load average at start: {load}"]


def kubectl_exec_info(kubectl: Path, kubeconfig: dict, tmp: Path) -> str:
    """KUBERNETES_EXEC_INFO exactly as this kubectl sets it: run kubectl once with an exec command that saves it."""
    saved = tmp / "exec-info"
    cfg = json.loads(json.dumps(kubeconfig))
    for u in cfg["users"]:
        if "exec" in u["user"]:
            u["user"]["exec"]["command"] = sys.executable
            u["user"]["exec"]["args"] = ["-I", "-c", "import os, sys; open(sys.argv[1], 'w', newline='')"
                                         ".write(os.environ['KUBERNETES_EXEC_INFO']); sys.exit(1)", str(saved)]
    path = tmp / "capture-kubeconfig.yaml"
    path.write_text(yaml.safe_dump(cfg))
    subprocess.run([str(kubectl), "--kubeconfig", str(path), "--cache-dir", str(tmp / "capture-cache"),
                    "get", "pods", "-n", "demo"], capture_output=True, env={**os.environ, "HOME": str(tmp)},
                   timeout=60, check=False)
    try:
        return saved.read_text()
    except FileNotFoundError:
        sys.exit("bench: kubectl did not run the exec command; cannot capture KUBERNETES_EXEC_INFO")


def installed_differs() -> list[str]:
    """Modules whose installed copy differs from this checkout (the bench measures the installed one)."""
    installed = Path(sysconfig.get_path("purelib")) / "kubectl_teleport"
    checkout = REPO / "kubectl_teleport"
    if installed.resolve() == checkout.resolve():
        return []
    names = sorted({p.relative_to(checkout) for p in checkout.rglob("*.py")} |
                   {p.relative_to(installed) for p in installed.rglob("*.py")})
    return [str(n) for n in names if not (checkout / n).is_file() or not (installed / n).is_file()
            or (checkout / n).read_bytes() != (installed / n).read_bytes()]


def hot_path_imports(s: cases.Setup) -> list[str]:
    """Modules a cache hit loads beyond the bare interpreter, from `python -v` (it reports the modules the launcher
    loads by location too, which `-X importtime` does not see)."""
    def imported(argv: list[str]) -> list[str]:
        env = dict(s.plugin.env)
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        return [ln.split("'")[1] for ln in proc.stderr.splitlines() if ln.startswith("import '")]

    python = launcher.interpreter(s.plugin.argv[0]) or [s.python]  # the launcher's: [python, "-IS"]
    floor = set(imported([s.python, "-I", "-S", "-v", "-c", "pass"]))
    mods = imported([*python, "-v", *s.plugin.argv])
    return [m for m in mods if m not in floor]


def setup(tmp: Path, dc: DevCluster, spawner: Spawner, kubectl: Path) -> tuple[cases.Setup, Path]:
    plugin_bin = Path(sys.executable).parent / "kubectl-teleport"
    if not plugin_bin.exists():
        sys.exit(f"bench: {plugin_bin} not found; run ./install.sh --dev --prefix .dev and use its python")
    bot = dc.add_bot()
    data_dir, kubeconfig_path = tmp / "data", tmp / "kubeconfig.yaml"
    proc = subprocess.run([str(plugin_bin), "login", "--proxy", bot["teleport_proxy"], "--token", bot["token"],
                           "--ca-pin", bot["ca_pins"][0], *(f"--role={r}" for r in bot["roles"]),
                           "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data_dir),
                           "--kubeconfig", str(kubeconfig_path)],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "SSL_CERT_FILE": dc.web_ca_file})
    if proc.returncode != 0:
        sys.exit(f"bench: login failed ({proc.returncode}): {proc.stderr.strip()}")
    kubeconfig = yaml.safe_load(kubeconfig_path.read_text())
    ctx = next(c["context"] for c in kubeconfig["contexts"] if c["name"] == kubeconfig["current-context"])
    user = next(u["user"] for u in kubeconfig["users"] if u["name"] == ctx["user"])
    ex = user["exec"]
    if ex.get("provideClusterInfo"):
        sys.exit("bench: the kubeconfig asks for provideClusterInfo; the bench only builds exec info without it")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env = {**base_env, **{e["name"]: e["value"] for e in ex.get("env") or []},
           "KUBERNETES_EXEC_INFO": kubectl_exec_info(kubectl, kubeconfig, tmp)}
    s = cases.Setup(spawner=spawner, python=sys.executable, tmp=tmp, dc=dc, data_dir=data_dir,
                    cluster=KUBE_CLUSTER, kubeconfig=kubeconfig, plugin=Cmd([ex["command"], *ex.get("args", [])], env),
                    base_env=base_env, user_ca=x509.load_pem_x509_certificate(dc.user_ca_pem.encode()),
                    api_version=ex["apiVersion"])
    return s, kubeconfig_path


def table(rows: list[cases.Row]) -> str:
    head = cases.Row("name", "baseline", "figure", "ratio", "target", "ok")
    cols = list(zip(*[(r.name, r.baseline, r.figure, r.ratio, r.target, r.ok) for r in [head, *rows]], strict=True))
    widths = [max(len(c) for c in col) for col in cols]
    lines = []
    for i, r in enumerate([head, *rows]):
        cells = (r.name, r.baseline, r.figure, r.ratio, r.target, r.ok)
        padded = (c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths, strict=True)))
        lines.append(" | ".join(padded).rstrip())
        if i == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run, noisier figures)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is printed)")
    opts = ap.parse_args()
    hit_rounds, hit_warm, kube_rounds, kube_warm, renewals = (
        (12, 3, 5, 2, 4) if opts.quick else (60, 5, 20, 3, 12))
    hang_calls, stampede_reps = (5, 1) if opts.quick else (10, 3)

    for line in machine():
        print(line)
    tmp = Path(tempfile.mkdtemp(prefix="kubectl-teleport-bench-"))
    dc = None
    try:
        kubectl = ensure_kubectl()
        dc = start_devcluster(tmp / "devcluster")
        scratch = tmp / "scratch"
        scratch.mkdir()
        s, kubeconfig_path = setup(tmp, dc, Spawner(sys.executable, scratch), kubectl)
        stale = installed_differs()
        print(f"plugin:  {' '.join(s.plugin.argv[:1])} (first line: "
              f"{Path(s.plugin.argv[0]).read_text().split(chr(10), 1)[0]})")
        if stale:
            print(f"WARNING: the installed {', '.join(stale[:8])}{' ...' if len(stale) > 8 else ''} differ from "
                  "this checkout; "
                  "re-run ./install.sh --dev --prefix .dev to measure the checkout")
        print(f"kubectl: {kubectl}; it sets KUBERNETES_EXEC_INFO={s.plugin.env['KUBERNETES_EXEC_INFO']!r}")
        mods = hot_path_imports(s)
        print(f"cache hit imports beyond `python -I -S -c pass`: {', '.join(mods) or '(none)'}")
        heavy = [m for m in mods if m.split(".")[0] in cases.HEAVY]
        if heavy:
            s.fail(f"the cache hit imports {', '.join(heavy)}")
        print(flush=True)
        rows = []
        t0 = time.monotonic()
        for step in (lambda: cases.cache_hit(s, hit_rounds, hit_warm),
                     lambda: tbot.tbot_hit(s, hit_rounds, hit_warm),
                     lambda: cases.kubectl_get_pods(s, kubectl, kubeconfig_path, kube_rounds, kube_warm),
                     lambda: cases.stampede(s, 100, stampede_reps),
                     lambda: cases.stampede(s, 300, stampede_reps),
                     lambda: cases.stampede(s, 300, stampede_reps, missing=True),
                     lambda: cases.cold_renewal(s, renewals),
                     lambda: cases.hanging_issuer(s, hang_calls)):
            rows += step()
        print(table(rows))
        print(f"\n(ratios are figure / baseline; {time.monotonic() - t0:.0f} s; load average at end: "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
        for f in s.failures:
            print(f"FAILED: {f}")
        return 1 if s.failures else 0
    finally:
        if dc is not None:
            dc.stop()
        if opts.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
