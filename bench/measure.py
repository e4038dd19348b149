"""Run commands through the small spawner process and summarise the timings (medians, percentiles, ratios)."""

from __future__ import annotations

import marshal
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SPAWNER = Path(__file__).resolve().with_name("spawner.py")


@dataclass
class Run:
    """One finished command."""

    wall: float  # seconds, fork to reaped exit (perf_counter)
    maxrss_kb: int  # ru_maxrss of the child (os.wait4)
    status: int  # raw wait status
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0

    def describe(self) -> str:
        how = (f"exit {os.WEXITSTATUS(self.status)}" if os.WIFEXITED(self.status)
               else f"signal {os.WTERMSIG(self.status)}")
        tail = self.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return f"{how}: {tail[0][:200]}"


@dataclass
class Cmd:
    """A command to measure: absolute argv[0] (it is execve'd, no PATH search) and its whole environment."""

    argv: list[str]
    env: dict[str, str]


class Spawner:
    """Client of spawner.py: one `python -I -S spawner.py` per batch (its own start-up is not timed)."""

    def __init__(self, python: str, scratch: Path) -> None:
        self.python = python
        self.scratch = scratch
        self.self_rss_kb = 0
        self.release_time: float | None = None  # wall clock (time.time) of the last gate's release

    def _call(self, mode: str, cmds: list[Cmd]) -> list[Run]:
        runs = []
        for i, c in enumerate(cmds):
            out, err = self.scratch / f"out.{mode}.{i}", self.scratch / f"err.{mode}.{i}"
            if mode == "seq":  # sequential runs can share two files; concurrent ones need their own
                out, err = self.scratch / "out.seq", self.scratch / "err.seq"
            runs.append((c.argv, c.env, str(out), str(err)))
        proc = subprocess.run([self.python, "-I", "-S", str(SPAWNER)], input=marshal.dumps(
            {"mode": mode, "runs": runs}), capture_output=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"bench: the spawner failed: {proc.stderr.decode(errors='replace').strip()[-500:]}")
        reply = marshal.loads(proc.stdout)
        self.self_rss_kb = max(self.self_rss_kb, reply["self_rss_kb"])
        self.release_time = reply["release_time"]
        return [Run(*r) for r in reply["runs"]]

    def seq(self, cmds: list[Cmd]) -> list[Run]:
        """Run the commands one after another, in the given order."""
        return self._call("seq", cmds)

    def gate(self, cmds: list[Cmd]) -> list[Run]:
        """Start all the commands at the same instant; each wall is from that instant to its exit."""
        return self._call("gate", cmds)

    def interleave(self, cmds: dict[str, Cmd], rounds: int, warmup: int) -> dict[str, list[Run]]:
        """`rounds` rounds of every command in turn (A B C A B C ...) after `warmup` untimed rounds."""
        names = list(cmds)
        runs = self.seq([cmds[n] for _ in range(warmup + rounds) for n in names])[warmup * len(names):]
        return {n: runs[i::len(names)] for i, n in enumerate(names)}


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(xs)
    k = max(1, -(-len(s) * p // 100))
    return s[int(k) - 1]


def walls(runs: list[Run]) -> list[float]:
    return [r.wall for r in runs]


def pair_ratio_median(figure: list[Run], baseline: list[Run]) -> float:
    """Median of the per-round ratios figure_i / baseline_i."""
    return median([f.wall / b.wall for f, b in zip(figure, baseline, strict=True)])
