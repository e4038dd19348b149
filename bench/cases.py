"""The measurements of bench.run, each returning table rows; correctness failures are collected in `Setup`."""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bench.measure import Cmd, Run, Spawner, median, pair_ratio_median, percentile, walls
from kubectl_teleport import cache

HIT_TARGET = 0.9  # a cache hit against the venv's `python -I -c pass`
HEAVY = ("cryptography", "httpx", "filelock", "platformdirs", "yaml", "json", "re", "pathlib", "argparse")
# pip's console-script template (distlib's ScriptMaker, as pip 23 writes it), used if pip is not importable.
PIP_TEMPLATE = """# -*- coding: utf-8 -*-
import re
import sys
from %(module)s import %(import_name)s
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(%(func)s())
"""


@dataclass
class Row:
    name: str
    baseline: str
    figure: str
    ratio: str
    target: str
    ok: str


@dataclass
class Setup:
    """What every case needs: the spawner, the plugin as the kubeconfig runs it, the devcluster."""

    spawner: Spawner
    python: str
    tmp: Path
    dc: object
    data_dir: Path
    cluster: str
    kubeconfig: dict
    plugin: Cmd
    base_env: dict[str, str]
    user_ca: x509.Certificate
    api_version: str
    failures: list[str] = field(default_factory=list)
    hit_median: float = 0.0
    hit_output: bytes = b""

    def fail(self, what: str) -> None:
        self.failures.append(what)


def ms(s: float) -> str:
    return f"{s * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


# credentials ---------------------------------------------------------------------------------------------

def check_credential(s: Setup, out: bytes, api_version: str) -> str | None:
    """The certificate PEM of a valid ExecCredential (signed by the user CA, key matching, unexpired)."""
    try:
        obj = json.loads(out)
        st = obj["status"]
        if obj["kind"] != "ExecCredential" or obj["apiVersion"] != api_version:
            return None
        cert = x509.load_pem_x509_certificate(st["clientCertificateData"].encode())
        key = serialization.load_pem_private_key(st["clientKeyData"].encode(), None)
        now = time.time()
        if cert.not_valid_after_utc.timestamp() <= now or cert.not_valid_before_utc.timestamp() > now + 60:
            return None
        expiry = st["expirationTimestamp"].replace("Z", "+00:00")
        if datetime.fromisoformat(expiry).timestamp() <= now:
            return None
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        if (key.public_key().public_bytes(serialization.Encoding.DER, pub) !=
                cert.public_key().public_bytes(serialization.Encoding.DER, pub)):
            return None
        cert.verify_directly_issued_by(s.user_ca)
        return st["clientCertificateData"]
    except (ValueError, KeyError, TypeError, AttributeError, x509.InvalidSignature):
        return None


def set_cache(s: Setup, *, expired: bool) -> None:
    """Make the cache entry due (renew_at in the past), and with `expired` also unusable; written atomically."""
    path = cache.cache_path(str(s.data_dir), s.cluster)
    with open(path, "rb") as fh:
        entry = cache.decode(fh.read())
    if entry is None:
        raise SystemExit(f"bench: cannot parse the cache file {path}")
    tmp = path + ".bench-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(cache.encode(0, 0 if expired else entry.expires_at, entry.not_after, entry.status))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def cache_fresh(s: Setup) -> bool:
    with open(cache.cache_path(str(s.data_dir), s.cluster), "rb") as fh:
        entry = cache.decode(fh.read())
    return entry is not None and entry.fresh(time.time())


def all_ok(s: Setup, what: str, runs: list[Run]) -> bool:
    bad = [r for r in runs if not r.ok]
    if bad:
        s.fail(f"{what}: {len(bad)}/{len(runs)} runs failed, e.g. {bad[0].describe()}")
    return not bad


# 1. cache hit ----------------------------------------------------------------------------------------------

def pip_wrapper(s: Setup) -> Path:
    """pip's own console-script wrapper for kubectl_teleport.entry:main, with the venv python in its #! line."""
    try:
        from pip._vendor.distlib.scripts import ScriptMaker
        template = ScriptMaker.script_template
    except ImportError:
        template = PIP_TEMPLATE
    path = s.tmp / "kubectl-teleport-pip-wrapper"
    path.write_text(f"#!{s.python}\n" + template % {"module": "kubectl_teleport.entry", "import_name": "main",
                                                      "func": "main"})
    path.chmod(0o755)
    return path


def cache_hit(s: Setup, rounds: int, warmup: int) -> list[Row]:
    args = s.plugin.argv[1:]
    cmds = {
        "baseline": Cmd([s.python, "-I", "-c", "pass"], s.plugin.env),
        "plugin": s.plugin,
        "floor": Cmd([s.python, "-I", "-S", "-c", "pass"], s.plugin.env),
        "pip": Cmd([str(pip_wrapper(s)), *args], s.plugin.env),
    }
    floor_kb = max(r.maxrss_kb for r in s.spawner.seq([Cmd(["/bin/true"], s.plugin.env)] * 3))
    runs = s.spawner.interleave(cmds, rounds, warmup)
    for name, rs in runs.items():
        all_ok(s, f"cache hit ({name})", rs)
    outs = {r.stdout for r in runs["plugin"] + runs["pip"]}
    if len(outs) != 1:
        s.fail(f"cache hit: {len(outs)} different outputs; a fresh cache must be served byte-identical")
    s.hit_output = runs["plugin"][0].stdout
    if check_credential(s, s.hit_output, s.api_version) is None:
        s.fail("cache hit: the output is not a valid ExecCredential")
    base, hit = median(walls(runs["baseline"])), median(walls(runs["plugin"]))
    s.hit_median = hit
    r_med, r_pair = hit / base, pair_ratio_median(runs["plugin"], runs["baseline"])
    peak_kb = max(r.maxrss_kb for r in runs["plugin"])
    base_kb = max(r.maxrss_kb for r in runs["baseline"])
    pip, floor = median(walls(runs["pip"])), median(walls(runs["floor"]))
    rss_note = f" (floor {floor_kb / 1000:.1f})"
    return [
        Row(f"1. cache hit, median of {rounds} (ratio of medians)", ms(base), ms(hit), f"{r_med:.2f}x",
            f"<= {HIT_TARGET}x", verdict(r_med <= HIT_TARGET)),
        Row("   cache hit, median of per-pair ratios", "", "", f"{r_pair:.2f}x", f"<= {HIT_TARGET}x",
            verdict(r_pair <= HIT_TARGET)),
        Row("   cache hit, peak RSS (ru_maxrss)" + rss_note, f"{base_kb / 1000:.1f} MB", f"{peak_kb / 1000:.1f} MB",
            f"{peak_kb / base_kb:.2f}x", "<= 15 MB", verdict(peak_kb * 1024 <= 15e6)),
        Row("   (info) pip's console-script wrapper", ms(base), ms(pip), f"{pip / base:.2f}x", "", ""),
        Row("   (info) interpreter without site: -I -S", ms(base), ms(floor), f"{floor / base:.2f}x", "", ""),
        Row("   (info) cache hit vs -I -S floor", ms(floor), ms(hit), f"{hit / floor:.2f}x", "", ""),
    ]


# 2. kubectl get pods ---------------------------------------------------------------------------------------

def static_kubeconfig(s: Setup) -> Path:
    """The login kubeconfig with its user's exec stanza replaced by the cached certificate and key."""
    st = json.loads(s.hit_output)["status"]
    cfg = json.loads(json.dumps(s.kubeconfig))
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    for u in cfg["users"]:
        u["user"] = {"client-certificate-data": b64(st["clientCertificateData"]),
                     "client-key-data": b64(st["clientKeyData"])}
    path = s.tmp / "static-kubeconfig.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(cfg, fh)
    return path


def kubectl_get_pods(s: Setup, kubectl: Path, login_kubeconfig: Path, rounds: int, warmup: int) -> list[Row]:
    home = s.tmp / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    env = {k: v for k, v in s.base_env.items() if k != "KUBECONFIG"}
    env["HOME"] = str(home)
    cache_dir = s.tmp / "kube-cache"

    def cmd(kubeconfig: Path) -> Cmd:
        return Cmd([str(kubectl), "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache_dir),
                    "get", "pods", "-n", "demo"], env)

    runs = s.spawner.interleave({"static": cmd(static_kubeconfig(s)), "plugin": cmd(login_kubeconfig)},
                                rounds, warmup)
    ok = all_ok(s, "kubectl get pods (static)", runs["static"]) & all_ok(s, "kubectl get pods (plugin)",
                                                                            runs["plugin"])
    # the pod names (first column); AGE moves on between runs
    outs = {tuple(line.split(b" ", 1)[0] for line in r.stdout.splitlines()) for r in runs["static"] + runs["plugin"]}
    if ok and (len(outs) != 1 or next(iter(outs))[:1] != (b"NAME",) or len(next(iter(outs))) < 2):
        s.fail("kubectl get pods: the outputs differ between the two kubeconfigs, or list no pods")
    base, fig = median(walls(runs["static"])), median(walls(runs["plugin"]))
    r_pair = pair_ratio_median(runs["plugin"], runs["static"])
    return [
        Row(f"2. kubectl get pods -n demo, median of {rounds}", ms(base), ms(fig), f"{fig / base:.2f}x",
            "<= 1.25x", verdict(fig / base <= 1.25)),
        Row("   kubectl get pods, median of per-pair ratios", "", "", f"{r_pair:.2f}x", "<= 1.25x",
            verdict(r_pair <= 1.25)),
    ]


# 3. stampede -----------------------------------------------------------------------------------------------

def remove_cache(s: Setup) -> None:
    """Delete the cluster's cache file: the certificate is simply absent (one unlink is atomic)."""
    os.unlink(cache.cache_path(str(s.data_dir), s.cluster))


def stampede_once(s: Setup, n: int, missing: bool, label: str) -> tuple[list[float], float, int, int]:
    """One release of `n` processes; checks the outcome, returns the walls, when the renewal was committed
    (seconds after the release, from the cache file's mtime) and the issuances it caused."""
    with open(cache.cache_path(str(s.data_dir), s.cluster), "rb") as fh:
        old = cache.decode(fh.read())
    before_cert = json.loads(old.status)["clientCertificateData"] if old is not None else None
    if missing:
        remove_cache(s)
    else:
        set_cache(s, expired=True)
    before = s.dc.stats()
    runs = s.spawner.gate([s.plugin] * n)
    committed = os.stat(cache.cache_path(str(s.data_dir), s.cluster)).st_mtime - (s.spawner.release_time or 0.0)
    after = s.dc.stats()
    kube = after["kube_certs_issued"] - before["kube_certs_issued"]
    ident = after["identity_renewals"] - before["identity_renewals"]
    all_ok(s, label, runs)
    certs = {check_credential(s, r.stdout, s.api_version) for r in runs if r.ok}
    if None in certs or len(certs) != 1 or before_cert in certs:
        s.fail(f"{label}: expected one new valid certificate for all {n}, got {len(certs)} distinct "
               f"(invalid: {None in certs}, old one served: {before_cert in certs})")
    if kube != 1:
        s.fail(f"{label}: {kube} kube certificate issuances, expected exactly 1")
    if ident > 1:
        s.fail(f"{label}: {ident} identity renewals, expected at most 1")
    if not cache_fresh(s):
        s.fail(f"{label}: the cache is not fresh afterwards")
    return walls(runs), committed, kube, ident


def stampede(s: Setup, n: int, reps: int, *, missing: bool = False) -> list[Row]:
    """`n` `credentials` released at once on an expired cache entry, or with `missing` on no cache file,
    `reps` times; each time right after `n` cache hits released at once (the baseline: starting `n`
    processes on this machine, with nothing to renew)."""
    what = "missing certificate" if missing else "expired cache"
    label = f"stampede ({n}, {'missing' if missing else 'expired'})"
    hit_p50, hit_p99, p50s, p99s, maxes, commits = [], [], [], [], [], []
    kube_total = ident_total = 0
    for _ in range(reps):
        hits = s.spawner.gate([s.plugin] * n)
        all_ok(s, f"{label}, baseline", hits)
        other = [r.stdout for r in hits if r.stdout != s.hit_output]
        if other:
            s.fail(f"{label}, baseline: {len(other)} of {n} concurrent cache hits served another credential "
                   f"than the cached one ({len(set(other))} distinct, e.g. {other[0][:160]!r})")
        hit_p50.append(percentile(walls(hits), 50))
        hit_p99.append(percentile(walls(hits), 99))
        w, committed, kube, ident = stampede_once(s, n, missing, label)
        commits.append(committed)
        kube_total, ident_total = kube_total + kube, ident_total + ident
        p50s.append(percentile(w, 50))
        p99s.append(percentile(w, 99))
        maxes.append(max(w))
        s.hit_output = stampede_hit_output(s)
    b50, b99, p50, p99 = median(hit_p50), median(hit_p99), median(p50s), median(p99s)
    each = " / ".join(f"{x:.2f}" for x in p99s)
    return [
        Row(f"3. stampede: {n} concurrent, {what}, p50 (median of {reps})", ms(b50), ms(p50), f"{p50 / b50:.2f}x",
            "", ""),
        Row(f"   stampede p99 (each run: {each} s; max {max(maxes) * 1000:.0f} ms)", ms(b99), ms(p99),
            f"{p99 / b99:.2f}x", "<= 2 s", verdict(p99 <= 2.0)),
        Row("   stampede: kube issuances / identity renewals", "", f"{kube_total} / {ident_total}", "",
            f"{reps} / <= {reps}", verdict(kube_total == reps and ident_total <= reps)),
        Row("   (info) renewal committed after the release (cache mtime)", "", ms(median(commits)), "", "", ""),
    ]


def stampede_hit_output(s: Setup) -> bytes:
    """What a cache hit serves now (the stampede replaced the certificate)."""
    [run] = s.spawner.seq([s.plugin])
    if not run.ok:
        s.fail(f"cache hit after a stampede: {run.describe()}")
    return run.stdout


# 4. cold renewal -------------------------------------------------------------------------------------------

def cold_renewal(s: Setup, n: int) -> list[Row]:
    before = s.dc.stats()
    runs, certs = [], []
    for _ in range(n):
        set_cache(s, expired=False)
        [run] = s.spawner.seq([s.plugin])
        runs.append(run)
        if run.ok:
            certs.append(check_credential(s, run.stdout, s.api_version))
            if not cache_fresh(s):
                s.fail("cold renewal: the cache is not fresh after a renewal")
    after = s.dc.stats()
    kube = after["kube_certs_issued"] - before["kube_certs_issued"]
    ident = after["identity_renewals"] - before["identity_renewals"]
    all_ok(s, "cold renewal", runs)
    if None in certs or len(set(certs)) != n:
        s.fail(f"cold renewal: expected {n} distinct valid certificates, got {len(set(certs) - {None})}")
    if kube != n:
        s.fail(f"cold renewal: {kube} kube issuances for {n} renewals")
    fig = median(walls(runs))
    return [
        Row(f"4. cold renewal (cert due, loopback), median of {n}", ms(s.hit_median), ms(fig),
            f"{fig / s.hit_median:.1f}x", "<= 300 ms", verdict(fig <= 0.3)),
        Row("   cold renewal: kube issuances / identity renewals", "", f"{kube} / {ident}", "", f"{n} / -",
            verdict(kube == n)),
    ]


# 5. due certificate, hanging issuer ----------------------------------------------------------------------

def replace_file(path: Path, data: bytes) -> None:
    """Write `path` atomically (temp file 0600, fsync, rename), as the plugin writes its state."""
    tmp = path.with_name(f".{path.name}.bench-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def hanging_issuer(s: Setup, n: int) -> list[Row]:
    """A due but valid certificate while the issuer accepts connections and never answers: `n` calls, one
    after another, each must serve the cached certificate with exactly one warning line."""
    from harness.faults import TcpFaultProxy

    config_path = s.data_dir / "config.json"
    original = config_path.read_bytes()
    cfg = json.loads(original)
    before = s.dc.stats()
    runs: list[Run] = []
    served_ok = warned_once = 0
    with TcpFaultProxy(cfg["proxy"], "hang") as hang:
        replace_file(config_path, json.dumps({**cfg, "proxy": hang.address}, indent=2, sort_keys=True).encode()
                     + b"\n")
        try:
            for _ in range(n):
                set_cache(s, expired=False)
                with open(cache.cache_path(str(s.data_dir), s.cluster), "rb") as fh:
                    cached = cache.decode(fh.read())
                [run] = s.spawner.seq([s.plugin])
                runs.append(run)
                if not run.ok:
                    continue
                served = check_credential(s, run.stdout, s.api_version)
                if served is None or cached is None or served != json.loads(cached.status)["clientCertificateData"]:
                    s.fail("hanging issuer: the output is not the cached certificate")
                else:
                    served_ok += 1
                lines = run.stderr.decode(errors="replace").splitlines()
                if len(lines) != 1 or "warning" not in lines[0]:
                    s.fail(f"hanging issuer: expected exactly one warning line on stderr, got {len(lines)}: "
                           f"{lines[:3]!r}")
                else:
                    warned_once += 1
        finally:
            replace_file(config_path, original)
        connections = hang.connections
    after = s.dc.stats()
    kube = after["kube_certs_issued"] - before["kube_certs_issued"]
    all_ok(s, "hanging issuer", runs)
    if connections < n:
        s.fail(f"hanging issuer: {connections} connections to the hanging issuer for {n} calls; the calls did "
               "not try to renew")
    if kube != 0:
        s.fail(f"hanging issuer: {kube} kube issuances reached the devcluster, expected 0")
    w = walls(runs)
    fig, worst = median(w), max(w)
    return [
        Row(f"5. due cert, hanging issuer: median of {n}", ms(s.hit_median), ms(fig), f"{fig / s.hit_median:.0f}x",
            "<= 2.5 s", verdict(fig <= 2.5)),
        Row(f"   due cert, hanging issuer: max of {n}", "", ms(worst), "", "<= 2.5 s", verdict(worst <= 2.5)),
        Row("   due cert, hanging issuer: exit 0 / cached cert / 1 warning line", "",
            f"{sum(r.ok for r in runs)} / {served_ok} / {warned_once}", "", f"{n} / {n} / {n}",
            verdict(sum(r.ok for r in runs) == served_ok == warned_once == n)),
    ]
