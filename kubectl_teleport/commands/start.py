"""`kubectl-teleport start`: the renewal daemon that keeps an idle bot alive and every cached certificate fresh.

What a renewal cycle does, under the identity's lock exactly as `credentials` takes it (so a daemon and any
number of kubectl calls never renew the same thing twice):

- the bot identity is renewed at every interval tick, at start-up, on SIGHUP and with --oneshot (as tbot does),
  and otherwise when it is due;
- each Kubernetes certificate (every cluster login set up and every `kube/*.cred`) is re-read under the lock and
  renewed only when it is due (less than a third of its lifetime left), because a new certificate makes
  client-go drop its connections; SIGHUP renews every certificate now, --oneshot also those that would become
  due within one interval (so a timer running --oneshot every interval never lets one lapse);
- the recorded `--destination` directories are brought up to date from the caches.

Between cycles the daemon sleeps until the next interval tick (interval ± 10 % jitter) or until the first
certificate becomes due, whichever comes first. A cycle that fails because the issuer is away (or the lock is
busy) is retried after 1, 2, 4, 8 ... 60 s; one that fails for a reason time will not fix (expired or locked
identity, access denied) waits for the next tick, so a new login is picked up without a restart.

SIGHUP: one renewal of everything now. SIGTERM/SIGINT: the step in progress (an atomic write) finishes, then
the daemon exits 0. Logs: one line when a renewal starts and one with its result, on stderr (journald adds the
time; with $JOURNAL_STREAM pointing at stderr the lines carry syslog priority prefixes). Never a secret.

Time and sleeping are injected (`now`, `wait`), so tests drive the loop with a fake clock.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import select
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import clock, errors, fmt
from ..errors import OK, TRANSIENT, AnotherWriter, PluginError, UnsafeState, UsageError
from ..issuer import http, renewal
from ..outputs import destination as outputs
from ..store import identity
from ..store.datadir import ENV_DATA_DIR, DataDir, resolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..store.identity_secret import IdentitySecret

DEFAULT_INTERVAL = 20 * 60
MIN_INTERVAL = 60
JITTER = 0.1  # each interval is drawn from interval * [0.9, 1.1]
BACKOFF_CAP = 60.0
MIN_SLEEP = 10.0  # never wake again sooner after a successful cycle (a certificate already due on arrival)
LOCK_WAIT = 60.0

ALL = frozenset({"*"})


def backoff(failures: int) -> float:
    """Seconds before retry number `failures` (1, 2, 4, 8, ... capped at BACKOFF_CAP)."""
    return min(BACKOFF_CAP, 2.0 ** max(0, failures - 1))


@dataclass
class Outcome:
    """What one cycle did."""

    summary: list[str] = field(default_factory=list)
    errors: list[PluginError] = field(default_factory=list)
    due: list[float] = field(default_factory=list)  # when each renewed/checked thing becomes due next
    identity_failed: bool = False
    failed_clusters: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)  # logged at warning priority even when all went well

    @property
    def transient(self) -> bool:
        return any(isinstance(e, TRANSIENT) or e.code == errors.INTERNAL for e in self.errors)


class Daemon:
    """The renewal loop of one identity, with its clock, sleep and log injected."""

    def __init__(self, dd: DataDir, *, interval: float = DEFAULT_INTERVAL,
                 now: Callable[[], float] = clock.now, wait: Callable[[float], None] | None = None,
                 log: Callable[[str, int], None] | None = None, rng: Callable[[], float] = random.random,
                 timeout: float = http.DEFAULT_DEADLINE, lock_wait: float = LOCK_WAIT,
                 store: IdentitySecret | None = None) -> None:
        self.dd = dd
        self.store = store  # the identity Secret (--store-identity): every identity renewal writes it first
        self.interval = float(interval)
        self.now = now
        self.wait = wait or _sleep
        self.log = log or journal_log
        self.rng = rng
        self.timeout = timeout
        self.lock_wait = lock_wait
        self.stopping = False
        self.reload_requested = False

    # signals (or tests) ----------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the step in progress, then leave the loop (SIGTERM, SIGINT)."""
        self.stopping = True

    def request_reload(self) -> None:
        """Renew everything as soon as possible (SIGHUP)."""
        self.reload_requested = True

    # one cycle -------------------------------------------------------------------------------------------------

    def jittered_interval(self) -> float:
        return self.interval * (1 + JITTER * (2 * self.rng() - 1))

    def cycle(self, *, force_identity: bool, force_clusters: frozenset[str] | set[str] = frozenset(),
              horizon: float = 0.0) -> Outcome:
        """Renew under the lock: the identity (when due or forced), then each cluster due within `horizon`
        seconds or in `force_clusters` (ALL: every one), then the destinations. Never raises PluginError."""
        out = Outcome()
        try:
            lock = self.dd.acquire(self.lock_wait)
        except PluginError as err:
            out.errors.append(err)
            out.identity_failed = force_identity
            out.failed_clusters = set(force_clusters)
            return out
        try:
            self._cycle_locked(out, force_identity, force_clusters, horizon)
        except OSError as exc:  # the data dir refused a write: say so, and retry later
            out.errors.append(UnsafeState(f"cannot write in {self.dd.root} ({exc.strerror or exc}); check the "
                                          "file system (full or read-only?)"))
            out.identity_failed = force_identity
        finally:
            lock.release()
        return out

    def _cycle_locked(self, out: Outcome, force_identity: bool, force_clusters: frozenset[str] | set[str],
                      horizon: float) -> None:
        dd = self.dd
        try:
            dd.remove_stale_temps()
            cfg = dd.load_config()
            before = identity.load(dd).generation
            ident = renewal.current_identity(dd, cfg, self.now(), http.Deadline(self.timeout),
                                             force=force_identity, store=self.store)
        except PluginError as err:
            out.errors.append(err)
            out.identity_failed = True
            out.failed_clusters = set(force_clusters)
            return
        verb = "renewed" if ident.generation != before else "kept"
        if ident.generation == before and ident.hold_until is not None and self.now() < ident.hold_until:
            pending = renewal.pending_state(dd, ident)
            if pending is not None:  # a renewal in doubt: say so on every cycle until it is settled
                out.warnings.append(renewal.ambiguous_note(pending, ident))
        out.summary.append(f"identity {verb} (generation {ident.generation}, valid until "
                           f"{fmt.rfc3339(ident.not_after)})")
        out.due.append(ident.renew_at())
        changed = False
        for name in outputs.clusters_of(dd, cfg):
            if self.stopping:
                out.summary.append("stopping before the remaining clusters")
                break
            forced = force_clusters is ALL or name in force_clusters
            try:
                entry = dd.read_entry(name)
                if entry is not None and not forced and self.now() + horizon < entry.renew_at:
                    out.summary.append(f"{name} fresh (renews at {fmt.rfc3339(entry.renew_at)})")
                    out.due.append(entry.renew_at)
                    continue
                entry, _ = renewal.issue_kube_cert(dd, cfg, name, http.Deadline(self.timeout))
            except PluginError as err:
                out.errors.append(err)
                out.summary.append(f"{name} failed")
                if forced:
                    out.failed_clusters.add(name)
                continue
            changed = True
            out.summary.append(f"{name} renewed (valid until {fmt.rfc3339(entry.not_after)})")
            out.due.append(entry.renew_at)
        try:
            updated = outputs.refresh(dd, cfg) if cfg.destinations else []
        except PluginError as err:
            out.errors.append(err)
            updated = []
        if updated:
            out.summary.append("updated " + ", ".join(updated))
        elif changed and cfg.destinations:
            out.summary.append("destinations unchanged")

    # the loop --------------------------------------------------------------------------------------------------

    def oneshot(self) -> int:
        """Renew once (identity, and every certificate due within one interval); 0 or the first error's code."""
        out = self.cycle(force_identity=True, horizon=self.interval)
        if out.errors:
            raise PluginError("; ".join(str(e) for e in out.errors), out.errors[0].code)
        self.log("renewed: " + "; ".join(out.summary), 6)
        for warning in out.warnings:
            self.log(f"warning: {warning}", 4)
        return OK

    def serve(self) -> int:
        """Run until request_stop(); returns 0."""
        reason = "start"
        failures = 0
        next_tick = self.now()
        retry_identity, retry_clusters = False, set()
        while not self.stopping:
            if self.reload_requested:
                self.reload_requested, reason = False, "reload"
            if reason == "retry":
                force_identity, force_clusters, horizon = retry_identity, retry_clusters, 0.0
            else:
                force_identity = reason in ("start", "interval", "reload")
                force_clusters = ALL if reason == "reload" else frozenset()
                horizon = 0.0
            self.log(f"renewal started ({reason})", 6)
            try:
                out = self.cycle(force_identity=force_identity, force_clusters=force_clusters, horizon=horizon)
            except Exception as exc:  # a bug must not kill the bot's only keeper: report, back off, retry
                if os.environ.get(errors.DEBUG_ENV):
                    raise
                out = Outcome(errors=[PluginError(f"internal error: {type(exc).__name__}: {str(exc)[:200]}",
                                                  errors.INTERNAL)], identity_failed=force_identity,
                              failed_clusters=set(force_clusters))
            taken = next((e for e in out.errors if isinstance(e, AnotherWriter)), None)
            if taken is not None:  # another process renews this bot now: stop, before asking Teleport again
                raise taken
            now = self.now()
            if force_identity and (not out.identity_failed or not out.transient):
                # the tick's renewal happened, or failed for a reason only a new tick (or login) may fix
                next_tick = now + self.jittered_interval()
            if out.transient:
                failures += 1
                delay = backoff(failures)
                retry_identity, retry_clusters = out.identity_failed and force_identity, out.failed_clusters
                wake = now + delay
                self.log(f"renewal failed ({reason}): {'; '.join(str(e) for e in out.errors)}; "
                         f"retrying in {delay:g}s", 3)
                reason_after_wait = "retry"
            else:
                failures = 0
                retry_identity, retry_clusters = False, set()
                if out.errors:
                    self.log(f"renewal failed ({reason}): {'; '.join(str(e) for e in out.errors)}; "
                             f"{'; '.join(out.summary) or 'nothing renewed'}; next attempt in "
                             f"{fmt.format_duration(next_tick - now)}", 3)
                else:
                    self.log(f"renewal done ({reason}): {'; '.join(out.summary)}", 6)
                for warning in out.warnings:
                    self.log(f"warning: {warning}", 4)
                due = [t for t in out.due if math.isfinite(t)]
                wake = min([next_tick, *due])
                wake = max(wake, now + min(MIN_SLEEP, max(0.0, next_tick - now)))
                reason_after_wait = ""
            self._sleep_until(wake)
            if self.stopping:
                break
            if self.reload_requested:
                continue
            reason = reason_after_wait or ("interval" if self.now() >= next_tick else "due")
        self.log("stopped", 6)
        return OK

    def _sleep_until(self, wake: float) -> None:
        while not self.stopping and not self.reload_requested:
            left = wake - self.now()
            if left <= 0:
                return
            self.wait(left)


# process wiring: signals, sleeping, logging --------------------------------------------------------------------

def _sleep(seconds: float) -> None:
    select.select([], [], [], seconds)


class SignalWaiter:
    """A sleep that SIGHUP/SIGTERM/SIGINT cut short: the C-level handler writes to a wakeup pipe we select on,
    so a signal arriving just before the sleep still wakes it. The Python handlers only set flags."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}

    def _handler(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self.daemon.request_reload()
        else:
            self.daemon.request_stop()

    def wait(self, seconds: float) -> None:
        select.select([self._r], [], [], max(0.0, seconds))
        try:
            while os.read(self._r, 512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        signal.set_wakeup_fd(self._old_fd)
        os.close(self._r)
        os.close(self._w)


def _journal_prefix() -> bool:
    """True when stderr is journald's stream (systemd sets $JOURNAL_STREAM to its device:inode)."""
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


_PREFIX = _journal_prefix()


def journal_log(message: str, priority: int = 6) -> None:
    """One line on stderr: `<p>` syslog priority first under journald, `kubectl-teleport: ` otherwise."""
    line = f"<{priority}>{message}\n" if _PREFIX else f"kubectl-teleport: {message}\n"
    sys.stderr.write(line)
    sys.stderr.flush()


def parse_interval(text: str) -> int:
    try:
        seconds = fmt.parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--renewal-interval: {exc}") from None
    if seconds < MIN_INTERVAL:
        raise UsageError(f"--renewal-interval must be at least {MIN_INTERVAL}s")
    return seconds


def _setup(dd: DataDir, destination: str | None, static: bool, url: str | None = None,
           labels: dict[str, str] | None = None) -> IdentitySecret | None:
    """Check that there is an identity, first reading it from the identity Secret (given, or recorded by an earlier
    login or start); record --destination, --store-identity and --secret-label (under the lock) so later starts
    keep them. Returns the identity Secret, if any."""
    if url is None and dd.has_config():
        url = dd.load_config().identity_secret or None
    if url is None and destination is None and labels is None:
        dd.load_config()
        identity.load(dd)
        return None
    lock = dd.acquire(LOCK_WAIT)
    try:
        store = None
        if url is not None:
            from ..store.identity_secret import IdentitySecret, check_apart, recorded_destinations

            check_apart(url, [*recorded_destinations(dd), *([destination] if destination else [])])
            store = IdentitySecret(dd, url)
            store.sync(clock.now(), token=False)
            check_apart(url, recorded_destinations(dd))  # as the Secret recorded them
        cfg = dd.load_config()
        identity.load(dd)
        changed = False
        if url is not None and cfg.identity_secret != url:
            cfg.identity_secret, changed = url, True
        if labels is not None and cfg.secret_labels != labels:
            cfg.secret_labels, changed = labels, True
        if changed:
            dd.save_config(cfg)
        if destination is not None:
            outputs.add(dd, cfg, destination, static=static, default=next(iter(sorted(cfg.kube_clusters)), None))
        if store is not None:
            store.push()  # config.json as recorded now
    finally:
        lock.release()
    return store


def _data_dir(data_dir: str | None, url: str | None) -> DataDir:
    """--data-dir, else the one identity under the user data dir, else (with --store-identity) the one of the
    proxy that the identity Secret names."""
    if url and not (data_dir or os.environ.get(ENV_DATA_DIR)):
        from ..store import identity_secret

        proxy = identity_secret.proxy_of(url)
        if proxy:
            return resolve(None, proxy)
    return resolve(data_dir)


def start(data_dir: str | None, *, oneshot: bool = False, interval: str = "20m", destination: str | None = None,
          static: bool = False, store_identity: str | None = None, secret_labels: list[str] | None = None) -> int:
    """`kubectl-teleport start`."""
    seconds = parse_interval(interval)
    if static and not destination:
        raise UsageError("--static applies to --destination DIR: give both")
    url = labels = None
    if store_identity or secret_labels:
        from ..store import identity_secret

        url = identity_secret.check_url(store_identity) if store_identity else None
        labels = identity_secret.parse_labels(secret_labels) if secret_labels else None
    dd = _data_dir(data_dir, url)
    if url is None or dd.exists():  # with --store-identity, a fresh (emptyDir) data dir is filled from the Secret
        dd.check()
        if not dd.writable():
            raise UnsafeState(f"this user can only read {dd.root}; renewing is the bot user's job: run "
                              "`kubectl-teleport start` as the owner of the data dir")
    daemon = Daemon(dd, interval=seconds)
    if oneshot:
        daemon.store = _setup(dd, destination, static, url, labels)
        return daemon.oneshot()
    waiter = SignalWaiter(daemon)  # before anything slow, so an early SIGTERM is honoured too
    try:
        daemon.wait = waiter.wait
        daemon.store = _setup(dd, destination, static, url, labels)
        cfg = dd.load_config()
        dests = ", ".join(d.path for d in cfg.destinations) or "none"
        kept = f", identity kept in Secret {cfg.identity_secret}" if cfg.identity_secret else ""
        daemon.log(f"started for {dd.root}: renewal interval {fmt.format_duration(seconds)} "
                   f"(±{JITTER:.0%}), destinations: {dests}{kept}", 6)
        return daemon.serve()
    finally:
        waiter.close()


def run(args: argparse.Namespace) -> int:
    """`kubectl-teleport start`."""
    return start(args.data_dir, oneshot=args.oneshot, interval=args.renewal_interval,
                 destination=args.destination, static=args.static, store_identity=args.store_identity,
                 secret_labels=args.secret_label)
