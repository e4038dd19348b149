"""Crash soak: SIGKILL `credentials` and `login` at random moments during renewal and check what is left.

Each trial makes the cached Kubernetes certificate due and shifts the plugin's clock (kubectl_teleport.clock)
into the bot identity's renewal window, so every run renews the identity (renewal record, GenerateUserCerts
through the devcluster's Teleport proxy, commit) and then issues a Kubernetes certificate. The run is SIGKILLed
after a random delay spread over the measured duration of an uninterrupted renewal (some runs finish first).
After each trial:

- the cache file and identity.pem parse, and each key matches its certificate (old or new, never mixed);
- config.json parses;
- the next ordinary `credentials` call (real clock, the installed plugin) succeeds and serves a matching pair;
- a renewal record left before the request was sent is dropped by that call (nothing to be unsure about), and
  so is one left after the new identity was saved (the kill came between the save and the record's removal);
- a record left *after* it was sent is a renewal in doubt: Teleport may have committed it, and has no idempotent
  retry. The next call keeps the identity (and still issues certificates from it). The soak then settles it as
  the plugin would near the identity's expiry: one more call with the clock past `renewal.retry_at`. If the kill
  landed between the server's answer and the save, that retry meets Teleport's lock (counted, then undone with
  `locks rm` and a new token, and the soak logs in again); otherwise it renews;
- the bot is never locked otherwise (`locks ls`; `bots ls` still lists it), checked every `--check-locks-every`
  trials and at the end.

Run it as `.dev/venv/bin/python -m bench.soak --trials 200 --seed 1` (from the repository root);
tests/e2e/test_crash_soak.py runs a short one.

The killed processes and the checking calls run the kubectl-teleport installed next to this interpreter
(install.sh --dev); the checks themselves use this checkout's modules.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from harness.devcluster import start_devcluster
from kubectl_teleport import cache, pki
from kubectl_teleport.issuer import renewal
from kubectl_teleport.store import identity
from kubectl_teleport.store.datadir import DataDir

KUBE_CLUSTER = "example-k8s-cluster"
VENV_BIN = Path(sys.executable).parent
EXEC_INFO = '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}'
SHIFTED = ("import sys, time\n"
           "from kubectl_teleport import clock\n"
           "offset = float(sys.argv[1])\n"
           "clock.now = lambda: time.time() + offset\n"
           "from kubectl_teleport.cli import main\n"
           "sys.exit(main(sys.argv[2:]))\n")


class SoakFailure(AssertionError):
    """A trial left the state damaged, or the next call failed, or the bot got locked."""


def _pair_matches(cert_pem: str, key_pem: str) -> bool:
    return pki.public_keys_equal(pki.load_cert(cert_pem).public_key(), pki.load_private_key(key_pem).public_key())


def check_state(data: Path) -> None:
    """The cache, identity and config are whole and consistent (raise SoakFailure otherwise)."""
    raw = (data / "kube" / f"{KUBE_CLUSTER}.cred").read_bytes()
    entry = cache.decode(raw)
    if entry is None:
        raise SoakFailure(f"corrupt cache file ({len(raw)} bytes)")
    status = json.loads(entry.status)
    if not _pair_matches(status["clientCertificateData"], status["clientKeyData"]):
        raise SoakFailure("cache: key does not match certificate")
    ident = identity.load(DataDir(data))  # raises when the key does not match
    if not ident.cert_pem:
        raise SoakFailure("empty identity")
    json.loads((data / "config.json").read_bytes())
    leftovers = [p.name for p in data.rglob(".*.tmp")]
    if leftovers:
        # a temp file may be left by a kill between create and rename; it must never be read, only ignored
        for p in data.rglob(".*.tmp"):
            p.unlink()


def make_due(data: Path) -> None:
    """Set the cache entry's renew-at to 0 (expiry and NotAfter kept), written atomically."""
    dd = DataDir(data)
    entry = dd.read_entry(KUBE_CLUSTER)
    if entry is None:
        raise SoakFailure("no cache entry to make due")
    with dd.kube() as kube:
        kube.write(dd.entry_name(KUBE_CLUSTER), cache.encode(0, entry.expires_at, entry.not_after, entry.status))


def clock_offset(data: Path) -> float:
    """Seconds to add to the clock so the identity is due (and not expired)."""
    ident = identity.load(DataDir(data))
    return ident.renew_at() - time.time() + 5


def command(kind: str, data: Path, offset: float) -> list[str]:
    args = (["credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER] if kind == "credentials"
            else ["login", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER])
    return [str(VENV_BIN / "python"), "-I", "-c", SHIFTED, repr(offset), *args]


def next_call(data: Path) -> None:
    out = subprocess.run([str(VENV_BIN / "kubectl-teleport"), "credentials", "--data-dir", str(data),
                          "--kube-cluster", KUBE_CLUSTER], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "KUBERNETES_EXEC_INFO": EXEC_INFO}, check=False)
    if out.returncode != 0:
        raise SoakFailure(f"next credentials call failed ({out.returncode}): {out.stderr.strip()}")
    status = json.loads(out.stdout)["status"]
    if not _pair_matches(status["clientCertificateData"], status["clientKeyData"]):
        raise SoakFailure("next call served a key that does not match its certificate")


def login(dc, bot: dict, data: Path) -> None:
    """Log in through the devcluster's Teleport proxy with the bot's token (its web CA trusted)."""
    out = subprocess.run([str(VENV_BIN / "kubectl-teleport"), "login", "--proxy", bot["teleport_proxy"], "--token",
                          bot["token"], "--ca-pin", bot["ca_pins"][0], *(f"--role={r}" for r in bot["roles"]),
                          "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data)], capture_output=True, text=True,
                         env={**os.environ, "SSL_CERT_FILE": dc.web_ca_file}, check=False)
    if out.returncode != 0:
        raise SoakFailure(f"login failed: {out.stderr}")


def in_doubt(data: Path) -> str:
    """The renewal record left behind: "" (none), "unsent", "sent" (in doubt), or "committed" (the new identity
    was saved and the kill came before the record was removed)."""
    pending = identity.load_pending(DataDir(data)) if (data / "identity.pending.json").exists() else None
    if pending is None:
        return ""
    if pending.for_generation != identity.load(DataDir(data)).generation:
        return "committed"
    return "sent" if pending.sent else "unsent"


def settle(dc, bot: dict, data: Path) -> str:
    """Retry a renewal in doubt as the plugin does near expiry; "renewed" or "locked" (then unlocked, re-joined)."""
    ident = identity.load(DataDir(data))
    make_due(data)
    offset = renewal.retry_at(ident) - time.time() + 5
    run = subprocess.run(command("credentials", data, offset), capture_output=True, text=True,
                         env={**os.environ, "KUBERNETES_EXEC_INFO": EXEC_INFO}, check=False)
    if run.returncode == 0 and identity.load(DataDir(data)).generation == ident.generation + 1:
        return "renewed"
    if "lock" not in run.stderr:
        raise SoakFailure(f"the retry of a renewal in doubt neither renewed nor met the lock: {run.stderr.strip()}")
    dc.admin("locks", "rm", bot["bot"])
    login(dc, dc.add_bot(bot["bot"], roles=",".join(bot["roles"])), data)
    return "locked"


def check_not_locked(dc, bot: str) -> None:
    locks = dc.admin("locks", "ls", "--format", "json").stdout
    if bot in locks:
        raise SoakFailure(f"the bot is locked: {locks.strip()}")
    if bot not in dc.admin("bots", "ls", "--format", "json").stdout:
        raise SoakFailure("the bot disappeared")


def soak(trials: int, seed: int, base: Path, *, check_locks_every: int = 1,
         log=print) -> dict:
    """Run the soak; returns the figures. Raises SoakFailure on the first broken invariant."""
    rng = random.Random(seed)
    dc = start_devcluster(base / "devcluster")
    try:
        bot = dc.add_bot()
        data = base / "bot"
        login(dc, bot, data)
        # measure an uninterrupted renewal of each kind
        durations: dict[str, float] = {}
        for kind in ("credentials", "login"):
            samples = []
            for _ in range(2):
                make_due(data)
                start = time.monotonic()
                run = subprocess.run(command(kind, data, clock_offset(data)), capture_output=True, text=True,
                                     env={**os.environ, "KUBERNETES_EXEC_INFO": EXEC_INFO}, check=False)
                samples.append(time.monotonic() - start)
                if run.returncode != 0:
                    raise SoakFailure(f"uninterrupted {kind} failed: {run.stderr}")
            durations[kind] = statistics.median(samples)
        outcomes: Counter[str] = Counter()
        renewals = 0
        for i in range(trials):
            kind = rng.choice(("credentials", "login"))
            before = identity.load(DataDir(data)).generation
            make_due(data)
            delay = rng.uniform(0.0, durations[kind] * 1.3)
            proc = subprocess.Popen(command(kind, data, clock_offset(data)), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL,
                                    env={**os.environ, "KUBERNETES_EXEC_INFO": EXEC_INFO})
            time.sleep(delay)
            killed = proc.poll() is None
            if killed:
                proc.send_signal(signal.SIGKILL)
            rc = proc.wait()
            outcomes[f"{kind} {'killed' if killed else 'finished' if rc == 0 else f'exit {rc}'}"] += 1
            if not killed and rc != 0:
                raise SoakFailure(f"trial {i}: {kind} exited {rc} without being killed")
            left = in_doubt(data)
            check_state(data)
            next_call(data)
            renewals += identity.load(DataDir(data)).generation != before
            if left in ("unsent", "committed"):
                outcomes[f"record left {'before the request was sent' if left == 'unsent' else 'after the commit'}"
                         " (dropped by the next call)"] += 1
                if (data / "identity.pending.json").exists():
                    raise SoakFailure(f"trial {i}: the next call kept a record of a renewal that was "
                                      f"{'never sent' if left == 'unsent' else 'committed'}")
            elif left == "sent":
                if identity.load(DataDir(data)).generation != before:
                    raise SoakFailure(f"trial {i}: a renewal in doubt was retried at once")
                outcomes[f"renewal in doubt, its retry near expiry {settle(dc, bot, data)}"] += 1
            if check_locks_every and (i + 1) % check_locks_every == 0:
                check_not_locked(dc, bot["bot"])
        check_not_locked(dc, bot["bot"])
        stats = dc.stats()
        locks = outcomes.get("renewal in doubt, its retry near expiry locked", 0)
        figures = {"trials": trials, "seed": seed, "outcomes": dict(sorted(outcomes.items())),
                   "renewal_seconds": {k: round(v, 3) for k, v in durations.items()},
                   "trials_that_renewed_the_identity": renewals,
                   "server_identity_renewals": stats.get("identity_renewals"),
                   "locks_from_a_kill_between_answer_and_save": locks,
                   "lock_rate": round(locks / trials, 4), "other_locks": 0}
        log(json.dumps(figures, indent=2))
        return figures
    finally:
        dc.stop()
