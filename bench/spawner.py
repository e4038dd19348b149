"""A tiny process that starts the measured commands: fork, execve, os.wait4, time.perf_counter.

Why a separate process: on Linux a child's `ru_maxrss` is at least the resident size of the process it was
forked from (the kernel carries the old address space's high-water mark across execve, and vfork/posix_spawn
share the parent's address space outright). The bench driver has yaml, cryptography and friends loaded, so
its children would all report tens of MB. This helper runs as `python -I -S spawner.py` and imports only
built-in modules (`os`, `sys`, `time`, `marshal`), so what it passes on is a few MB, well under what any
Python child reaches by itself; it reports its own resident size so the driver can say so.

Protocol: one marshal-encoded request on stdin, one marshal-encoded reply on stdout.
  {"mode": "seq" | "gate", "runs": [(argv, env, out_path, err_path), ...]}
  -> {"runs": [(wall_seconds, maxrss_kb, wait_status, stdout_bytes, stderr_bytes), ...], "self_rss_kb": int,
      "release_time": time.time() at the release of a "gate" batch, or None}
"seq" runs the commands one after another; "gate" forks them all, each blocked on a pipe, then releases them
at once and times each from the release to its exit (reaped as it exits).
"""

import marshal
import os
import sys
import time

MAX_OUTPUT = 1 << 20
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def _child(argv, env, out_fd, err_fd, gate_fd=-1, gate_w=-1):
    """In the forked child: wait for the gate (if any), wire stdout/stderr, exec. Never returns."""
    try:
        if gate_w >= 0:
            os.close(gate_w)
        if gate_fd >= 0:
            os.read(gate_fd, 1)  # EOF when the parent closes the write end: everyone starts together
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.execve(argv[0], argv, env)
    finally:
        os._exit(127)


def _read(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, MAX_OUTPUT)
    finally:
        os.close(fd)


def run_seq(runs):
    results = []
    for argv, env, out_path, err_path in runs:
        out_fd, err_fd = os.open(out_path, _WRITE, 0o600), os.open(err_path, _WRITE, 0o600)
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(argv, env, out_fd, err_fd)
        _, status, ru = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
        os.close(out_fd)
        os.close(err_fd)
        results.append((wall, ru.ru_maxrss, status, _read(out_path), _read(err_path)))
    return results


def run_gate(runs):
    """Returns the results and the release instant on the wall clock (to place file times on the walls)."""
    gate_r, gate_w = os.pipe()
    pids = {}
    fds = []
    for i, (argv, env, out_path, err_path) in enumerate(runs):
        out_fd, err_fd = os.open(out_path, _WRITE, 0o600), os.open(err_path, _WRITE, 0o600)
        fds += [out_fd, err_fd]
        pid = os.fork()
        if pid == 0:
            _child(argv, env, out_fd, err_fd, gate_r, gate_w)
        pids[pid] = i
    for fd in fds:
        os.close(fd)
    os.close(gate_r)
    done = [None] * len(runs)
    release_time = time.time()
    t0 = time.perf_counter()
    os.close(gate_w)  # release them all
    while pids:
        pid, status, ru = os.wait4(-1, 0)
        wall = time.perf_counter() - t0
        i = pids.pop(pid)
        done[i] = (wall, ru.ru_maxrss, status)
    return [(*d, _read(r[2]), _read(r[3])) for d, r in zip(done, runs, strict=True)], release_time


def self_rss_kb():
    with open("/proc/self/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return -1


def main():
    req = marshal.loads(sys.stdin.buffer.read())
    runs, release_time = run_gate(req["runs"]) if req["mode"] == "gate" else (run_seq(req["runs"]), None)
    sys.stdout.buffer.write(marshal.dumps({"runs": runs, "self_rss_kb": self_rss_kb(), "release_time": release_time}))


if __name__ == "__main__":
    main()
