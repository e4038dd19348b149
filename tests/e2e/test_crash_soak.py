"""Crash safety: a short run of the soak (harness/soak.py; `python -m bench.soak` runs long ones). SIGKILL
during renewal never corrupts anything, and the bot is locked only when a kill landed between Teleport's answer
and the save, which the soak counts. A killed lock holder leaves no lock behind (the kernel releases the flock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from harness import soak
from kubectl_teleport.store import lock as locking
from kubectl_teleport.store.datadir import DataDir
from tests.conftest import REPO


def test_sigkill_during_renewal_never_corrupts_or_locks(tmp_path):
    figures = soak.soak(20, seed=5, base=tmp_path, check_locks_every=0, log=lambda _: None)
    killed = sum(n for k, n in figures["outcomes"].items() if k.endswith("killed"))
    assert killed >= 5, figures  # the kills do land during the runs
    assert figures["trials_that_renewed_the_identity"] >= 1, figures
    # a lock only ever comes from retrying a renewal in doubt (the kill landed between the answer and the save)
    in_doubt = sum(n for k, n in figures["outcomes"].items() if k.startswith("renewal in doubt"))
    assert figures["locks_from_a_kill_between_answer_and_save"] <= in_doubt and figures["other_locks"] == 0


def test_a_killed_lock_holder_leaves_no_lock(tmp_path):
    dd = DataDir(tmp_path / "bot")
    dd.create()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from kubectl_teleport.store.datadir import DataDir\n"
         f"lock = DataDir({str(dd.root)!r}).acquire(5)\n"
         "print('held', flush=True)\ntime.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(locking.Timeout):
            dd.lock().acquire(timeout=0)  # really held by the child
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(10) == -signal.SIGKILL
        lock = dd.lock()
        lock.acquire(timeout=0)  # no stale lock: the kernel released the flock
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
