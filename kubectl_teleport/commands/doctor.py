"""`kubectl-teleport doctor`: one line per check (ok / warning / problem, with the fix) for everything a kubectl
call depends on. Exit 0 when nothing is a problem, else the first problem's usual exit code. Never prints a key,
token or certificate body: only paths, modes, times and counts."""

from __future__ import annotations

import argparse
import json
import os
import pwd
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from .. import errors, fmt, launcher, policy
from ..errors import PluginError
from ..store import acl, files
from ..store.datadir import DataDir, resolve

OK, WARNING, PROBLEM = "ok", "warning", "problem"
CLOCK_WARN = 30  # seconds of offset worth a warning; above policy.BACKDATE it is a problem
HIT_TIMEOUT = 30.0
SYSTEMD_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system",
                "~/.config/systemd/user")


class Report:
    """The checks' results in order."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, check: str, level: str, message: str, code: int = 0) -> None:
        self.rows.append({"check": check, "level": level, "message": message,
                          **({"code": code} if level == PROBLEM else {})})

    def exit_code(self) -> int:
        return next((r["code"] for r in self.rows if r["level"] == PROBLEM), errors.OK)


# the kubeconfig's exec command ---------------------------------------------------------------------------------

def _exec_users(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for user in doc.get("users") or []:
        ex = ((user or {}).get("user") or {}).get("exec") if isinstance(user, dict) else None
        if isinstance(ex, dict) and "credentials" in (ex.get("args") or []):
            found.append((str(user.get("name")), ex))
    return found


def _arg(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _is_shim(path: str) -> bool:
    return "shims" in Path(path).parts or os.path.basename(path) == "env"


def check_command(rep: Report, name: str, ex: dict[str, Any], readers: list[pwd.struct_passwd]) -> bool:
    """The exec command exists, this user (and the reader) may run it, and it starts the interpreter directly."""
    from .init import unreachable_for

    command = str(ex.get("command") or "")
    check = f"exec command ({name})"
    if not os.path.isabs(command):
        rep.add(check, WARNING, f"{command!r} is looked up on PATH at every call; run `kubectl-teleport login` "
                "again to write the absolute path")
    if not os.path.isfile(command if os.path.isabs(command) else (shutil_which(command) or "")):
        rep.add(check, PROBLEM, f"{command} does not exist; reinstall kubectl-teleport (./install.sh) and run "
                "`kubectl-teleport login` again", errors.NOT_LOGGED_IN)
        return False
    path = command if os.path.isabs(command) else str(shutil_which(command))
    if not os.access(path, os.X_OK):
        rep.add(check, PROBLEM, f"{path} is not executable by this user; run: chmod a+rx {path}", errors.UNSAFE_STATE)
        return False
    python = launcher.interpreter(path)
    for pw in readers:
        for target in [path] + ([python[0]] if python else []):
            blocked = unreachable_for(target, pw)
            if blocked:
                rep.add(check, PROBLEM, f"the reader user {pw.pw_name} cannot run {target}: {blocked} is not "
                        "executable for it; install where both users can run it (./install.sh --prefix "
                        "/opt/kubectl-teleport) and run `kubectl-teleport init` again", errors.UNSAFE_STATE)
                return False
    if _is_shim(path) or (python and (not os.path.isabs(python[0]) or _is_shim(python[0]))):
        via = python[0] if python else path
        rep.add(check, WARNING, f"{path} starts Python through {via}, a shim or PATH lookup that adds ~150 ms to "
                "every kubectl call; run `kubectl-teleport login` again from the installed launcher "
                "(./install.sh) so the kubeconfig names it")
        return True
    rep.add(check, OK, f"{path} runs {python[0] if python else 'its interpreter'} directly")
    return True


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


# the data dir --------------------------------------------------------------------------------------------------

def _named_users(path: Path) -> list[int]:
    try:
        raw = os.getxattr(path, acl.ACL_ACCESS, follow_symlinks=False)
    except (OSError, AttributeError):
        return []
    return [ident for tag, _perm, ident in acl.decode_acl(raw) if tag == acl.ACL_USER]


def check_datadir(rep: Report, dd: DataDir) -> list[pwd.struct_passwd]:
    """Owner, modes and ACLs of the directory and its files; stray temp files. Returns the ACL's reader users."""
    try:
        st = os.lstat(dd.root)
    except FileNotFoundError:
        rep.add("data dir", PROBLEM, f"{dd.root} does not exist; run `kubectl-teleport login`", errors.NOT_LOGGED_IN)
        return []
    readers = []
    for uid in _named_users(dd.root):
        try:
            pw = pwd.getpwuid(uid)
        except KeyError:
            continue
        if uid != os.geteuid():
            readers.append(pw)
    if stat.S_ISLNK(st.st_mode):
        rep.add("data dir", PROBLEM, f"{dd.root} is a symlink; point --data-dir at the directory itself",
                errors.UNSAFE_STATE)
        return readers
    try:
        dd.check()
    except PluginError as err:
        rep.add("data dir", PROBLEM, str(err), err.code)
        return readers
    bad = []
    for base, _dirs, found in os.walk(dd.root):
        for name in found:
            p = Path(base, name)
            try:
                fst = os.lstat(p)
            except OSError:
                continue
            bits = stat.S_IMODE(fst.st_mode)
            if stat.S_ISLNK(fst.st_mode) or bits & 0o007 or (bits & 0o070 and not _named_users(p)):
                bad.append(f"{p} ({'symlink' if stat.S_ISLNK(fst.st_mode) else f'mode {bits:o}'})")
    if bad:
        rep.add("data dir", PROBLEM, f"{', '.join(bad[:3])} readable by others or a symlink; run: chmod go-rwx "
                f"{dd.root}/* (or log in again)", errors.UNSAFE_STATE)
        return readers
    owner = pwd.getpwuid(st.st_uid).pw_name if _uid_known(st.st_uid) else str(st.st_uid)
    shared = f", shared by ACL with {', '.join(p.pw_name for p in readers)}" if readers else ""
    rep.add("data dir", OK, f"{dd.root}: owner {owner}, mode {stat.S_IMODE(st.st_mode):o}{shared}")
    temps: list[str] = []
    live: list[str] = []  # a running writer's (a renewal in progress): not stray
    for sub in (dd.root, dd.kube_dir):
        try:
            names = os.listdir(sub)
        except OSError:
            continue
        for n in names:
            m = files._TEMP_RE.match(n)
            if m:
                (temps if not files._pid_alive(int(m.group("pid"))) else live).append(f"{sub}/{n}")
    if temps:
        rep.add("temp files", WARNING, f"{len(temps)} stray temp file(s) (may hold a key): {', '.join(temps[:3])}; "
                "the next renewal removes those of dead writers, or run `kubectl-teleport start --oneshot`")
    else:
        rep.add("temp files", OK, f"none stray{f' ({len(live)} of a running writer)' if live else ''}")
    return readers


def _uid_known(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


# the identity and certificates ---------------------------------------------------------------------------------

def check_identity(rep: Report, dd: DataDir) -> Any:
    """The identity (expiry, renewal due, generation, a renewal in doubt) and every cached certificate."""
    from . import status

    try:
        info = status.gather(str(dd.root))
    except PluginError as err:
        rep.add("identity", PROBLEM, str(err), err.code)
        return None
    ident = info["identity"]
    if "error" in ident:
        level = WARNING if info.get("reader") else PROBLEM
        rep.add("identity", level, ident["error"], errors.NOT_LOGGED_IN)
    elif ident["expired"]:
        rep.add("identity", PROBLEM, f"generation {ident['generation']} expired at {ident['expires']}; log in again "
                "with a new token (`kubectl-teleport login`)", errors.IDENTITY_REJECTED)
    else:
        left = fmt.format_duration(ident["seconds_left"])
        doubt = ident.get("renewal_in_doubt")
        if doubt:
            rep.add("identity", WARNING, f"generation {ident['generation']}, {left} left; a renewal sent "
                    f"{doubt['sent'] or 'earlier'} is in doubt, held until {doubt['retry_after']}: log in again "
                    "with a new token now to avoid a possible lock")
        else:
            due = "; renewal due (the next kubectl call or `start` renews it)" if ident["renewal_due"] else ""
            rep.add("identity", OK, f"generation {ident['generation']}, valid until {ident['expires']} ({left} "
                    f"left{due})")
    for item in info["kube_clusters"]:
        check = f"certificate {item['name']}"
        if "expires" not in item:
            rep.add(check, WARNING if item.get("state", "").startswith("no certificate") else PROBLEM,
                    item["state"], errors.UNSAFE_STATE)
        elif item["seconds_left"] <= 0:
            rep.add(check, WARNING, f"expired at {item['expires']}; the next kubectl call renews it")
        else:
            due = "; renewal due" if not item["cached"] else ""
            rep.add(check, OK, f"valid until {item['not_after']} ({fmt.format_duration(item['seconds_left'])} "
                    f"left for kubectl{due})")
    return info


# the cluster ---------------------------------------------------------------------------------------------------

def check_cluster(rep: Report, dd: DataDir) -> bool:
    """Reachable, TLS verified, server version and suite, and the clock offset. False when the proxy could not
    be reached at all (the auth checks are then not tried)."""
    try:
        cfg = dd.load_config()
    except PluginError:
        return False  # named by the identity check
    from ..issuer import http, webapi

    try:
        with webapi.WebClient(cfg.proxy, deadline=http.Deadline(10.0)) as client:
            found = client.find()
    except PluginError as err:
        check = "clock" if err.code == errors.TRUST and "clock" in str(err) else "cluster"
        rep.add(check, PROBLEM, str(err), err.code)
        return err.code == errors.TRUST  # it answered, with a certificate we refuse: the auth route may tell more
    if found.cluster_name != cfg.cluster_name:
        rep.add("cluster", PROBLEM, f"{cfg.proxy} answers for Teleport cluster {found.cluster_name!r}, but this "
                f"identity is of {cfg.cluster_name!r}; check the proxy address (--proxy) and log in again",
                errors.TRUST)
    else:
        rep.add("cluster", OK, f"{cfg.proxy} reachable, TLS verified; Teleport {found.server_version or 'unknown'}, "
                f"cluster {found.cluster_name}, signature algorithm suite {found.suite or 'none'}")
    offset = found.clock_offset
    side = "behind" if offset > 0 else "ahead of"
    text = f"this machine's clock is {fmt.format_duration(abs(int(offset)))} {side} the cluster's"
    if abs(offset) > policy.BACKDATE:
        rep.add("clock", PROBLEM, f"{text}: more than the minute certificates are backdated; sync the clock "
                "(chrony / systemd-timesyncd)", errors.TRUST)
    elif abs(offset) > CLOCK_WARN:
        rep.add("clock", WARNING, f"{text}; sync the clock (chrony / systemd-timesyncd)")
    else:
        rep.add("clock", OK, f"offset {round(offset)} s")
    return True


# the auth service: its TLS against the pinned CA, and whether the bot is locked ---------------------------------

def _pins(pems: list[str]) -> str:
    from .. import pki

    return ", ".join(pki.spki_pin(pki.load_cert(p)) for p in pems)


def _ca_cluster(pem: str) -> str:
    """The cluster a Teleport CA certificate names (its O, as Teleport writes it; else its CN)."""
    from cryptography.x509.oid import NameOID

    from .. import pki

    subject = pki.load_cert(pem).subject
    for oid in (NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME):
        found = subject.get_attributes_for_oid(oid)
        if found:
            return str(found[0].value)
    return ""


def explain_mismatch(route: Any, cfg: Any, fetch: Any, fallback: str) -> str:
    """Why the auth service's certificate does not chain to the pinned host CA: its cluster's CA changed (a
    rotation, or someone posing as it) or another cluster answers. `fetch(route)` reads the CA it offers over an
    unverified connection (nothing is sent but the request for the public CA); `fallback` when it cannot."""
    try:
        theirs = fetch(route)
    except PluginError:
        return fallback
    names = sorted({_ca_cluster(p) for p in theirs} - {""})
    where, pinned = route.via, _pins(cfg.ca_pems)
    if cfg.cluster_name in names:
        return (f"the host CA of cluster {cfg.cluster_name} at {where} is not the one pinned at login ({pinned}): "
                f"it now has {_pins(theirs)}; if an admin rotated the CA, check that pin (`tctl status`) and log "
                "in again with a new token and --ca-pin; if not, something else answers for the cluster")
    return (f"another cluster answers at {where}: its host CA is of {', '.join(names) or 'an unnamed cluster'} "
            f"({_pins(theirs)}), not of {cfg.cluster_name} ({pinned}); check the proxy address (--proxy, "
            "--auth-server) and log in again")


def check_auth(rep: Report, dd: DataDir, info: Any, reachable: bool) -> None:
    """The auth service on the route login recorded (TLS routing through the proxy, or --auth-server): its TLS
    verified against the pinned host CA, then, with a usable identity, `Ping` as the bot, which Teleport refuses
    for a locked bot. Unreachable is a warning: the credentials' own checks name an outage."""
    try:
        cfg = dd.load_config()
    except PluginError:
        return
    if not reachable:
        rep.add("lock", WARNING, "not asked: the cluster is unreachable (above), so whether the bot is locked is "
                "unknown")
        return
    from ..issuer import auth, http, renewal, teleport

    try:
        target = renewal.auth_target(dd, cfg)
    except PluginError as err:
        rep.add("auth TLS", PROBLEM, str(err), err.code)
        return
    ident = (info or {}).get("identity") or {}
    usable = "error" not in ident and not ident.get("expired", True)
    route = target.route
    try:
        if usable:
            found = teleport.ping(target, http.Deadline(10.0))
        else:  # no client certificate to offer: the TLS check alone
            teleport.fetch_host_cas(route, cfg.ca_pems, http.Deadline(10.0))
    except PluginError as err:
        status = getattr(err, "grpc_code", None)
        if status is None and err.code == errors.TRUST:
            message = str(err)
            if cfg.ca_pems and "clock" not in message:
                message = explain_mismatch(route, cfg, lambda r: teleport.get_cluster_ca(
                    r, auth.pin_context(), http.Deadline(5.0)), message)
            rep.add("auth TLS", PROBLEM, message, errors.TRUST)
        elif status is None:  # not reached: refused, reset, timed out, no h2 on the route
            rep.add("auth TLS", WARNING, f"{err}")
        else:  # a gRPC status: the TLS handshake went through
            rep.add("auth TLS", OK, _tls_ok(route, cfg))
            if err.code == errors.IDENTITY_REJECTED:
                rep.add("lock", PROBLEM, str(err), err.code)
            else:
                rep.add("lock", WARNING, f"unknown: {err}")
            return
        rep.add("lock", WARNING, "not asked: the auth service was not reached over verified TLS (above)")
        return
    rep.add("auth TLS", OK, _tls_ok(route, cfg))
    if usable:
        rep.add("lock", OK, f"not locked: {route.via} answered as the bot {cfg.bot} (Teleport "
                f"{found.server_version or 'unknown'}, cluster {found.cluster_name})")
    else:
        rep.add("lock", WARNING, "not asked: the identity is expired or unreadable (above), so the bot cannot "
                "authenticate")


def _tls_ok(route: Any, cfg: Any) -> str:
    how = f"ALPN {route.alpn[0]}" if route.alpn and route.alpn[0] != "h2" else "direct"
    return f"{route.via} ({how}): certificate verified against the pinned host CA {_pins(cfg.ca_pems)}"


# the identity Secret (--store-identity) --------------------------------------------------------------------------

def check_identity_secret(rep: Report, dd: DataDir) -> None:
    """With `--store-identity`: the Secret exists and holds what this data dir last wrote (one writer)."""
    try:
        cfg = dd.load_config()
    except PluginError:
        return
    if not cfg.identity_secret:
        return
    from ..store import identity_secret as ids

    store = ids.IdentitySecret(dd, cfg.identity_secret, timeout=10.0)
    try:
        standing, info = store.standing()
    except PluginError as err:
        rep.add("identity Secret", WARNING, f"{store.url} could not be read ({err}); a pod restarted now may not "
                "resume from it")
        return
    url = store.url
    if standing == ids.GONE:
        rep.add("identity Secret", WARNING, f"{url} does not exist, so a pod restarted now would need a new join "
                f"token; `kubectl-teleport start --store-identity {url}` writes it again from this data dir")
    elif standing == ids.UNREAD:
        rep.add("identity Secret", WARNING, f"{url} exists but this data dir never read it; run `kubectl-teleport "
                f"start --store-identity {url}` to resume from it")
    elif standing == ids.OTHER_WRITER:
        version = info.resource_version if info else "?"
        rep.add("identity Secret", PROBLEM, f"{url} was written by another process since this data dir last read "
                f"or wrote it (now at version {version}): only one process may renew a bot, so this one stops at "
                "its next write; run one replica per identity Secret and restart this pod to resume from it",
                errors.UNSAFE_STATE)
    else:
        generation = info.annotations.get(ids.GENERATION_ANNOTATION, "?") if info else "?"
        if standing == ids.BEHIND:
            rep.add("identity Secret", WARNING, f"{url} (generation {generation}) does not hold this data dir's "
                    "latest state yet (a write failed or is due); `start` writes it at its next cycle")
        else:
            rep.add("identity Secret", OK, f"{url}: version {info.resource_version if info else '?'}, generation "
                    f"{generation}, as this data dir last wrote it")


# the daemon ----------------------------------------------------------------------------------------------------

def _same_dir(value: str | None, root: Path) -> bool:
    return bool(value) and os.path.realpath(os.path.expanduser(str(value))) == os.path.realpath(root)


def unit_files(root: Path) -> list[str]:
    found = []
    for d in SYSTEMD_DIRS:
        d = os.path.expanduser(d)
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            if not name.endswith(".service"):
                continue
            try:
                text = Path(d, name).read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                words = line.replace("=", " ", 1).replace('"', " ").split()
                if words[:1] == ["ExecStart"] and "start" in words and any(w.endswith("kubectl-teleport")
                                                                           for w in words) \
                        and _same_dir(_arg(words, "--data-dir"), root):
                    found.append(f"{d}/{name}")
                    break
    return found


def check_daemon(rep: Report, dd: DataDir, proc: Path = Path("/proc")) -> None:
    """Something renews an idle bot: a `start` process whose data dir (however it was given, `procscan`) is
    this one, or a systemd unit that runs one for it."""
    from .. import procscan

    running = procscan.start_processes(proc)
    pids = [p.pid for p in running if p.data_dir is not None and _same_dir(str(p.data_dir), dd.root)]
    if pids:
        rep.add("daemon", OK, f"`kubectl-teleport start` runs for this data dir (pid {', '.join(map(str, pids))})")
        return
    units = unit_files(dd.root)
    if units:
        rep.add("daemon", OK, f"systemd unit {units[0]} runs `kubectl-teleport start` for this data dir")
        return
    unknown = [p for p in running if p.data_dir is None]
    if unknown:
        rep.add("daemon", WARNING, f"`kubectl-teleport start` runs (pid {unknown[0].pid}) but its data dir cannot "
                f"be told: {unknown[0].unknown}; run doctor as its user (or root), or give it --data-dir "
                f"{dd.root}")
        return
    rep.add("daemon", WARNING, "nothing renews the identity while no kubectl runs, so an idle bot expires; run "
            f"`kubectl-teleport start --data-dir {dd.root}` (or `kubectl-teleport systemd-unit --data-dir "
            f"{dd.root}`)")


# a real cache hit ----------------------------------------------------------------------------------------------

def check_hit(rep: Report, name: str, ex: dict[str, Any]) -> None:
    """Run the exact exec command as kubectl would and time it."""
    api = str(ex.get("apiVersion") or "client.authentication.k8s.io/v1")
    info = json.dumps({"kind": "ExecCredential", "apiVersion": api, "spec": {"interactive": False}},
                      separators=(",", ":"))
    env = {**os.environ, **{str(e.get("name")): str(e.get("value")) for e in ex.get("env") or []
                           if isinstance(e, dict)}, "KUBERNETES_EXEC_INFO": info}
    argv = [str(ex.get("command")), *map(str, ex.get("args") or [])]
    check = f"kubectl call ({name})"
    start = time.monotonic()
    try:
        out = subprocess.run(argv, capture_output=True, env=env, timeout=HIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        rep.add(check, PROBLEM, f"running {argv[0]} failed ({exc.__class__.__name__}); see the exec command check",
                errors.UNAVAILABLE)
        return
    ms = (time.monotonic() - start) * 1000
    if out.returncode != 0:
        line = out.stderr.decode("utf-8", "replace").strip().splitlines()
        rep.add(check, PROBLEM, f"exit {out.returncode}: {line[-1] if line else 'no message'}",
                out.returncode if out.returncode in errors.EXIT_CODES else errors.INTERNAL)
        return
    try:
        status = json.loads(out.stdout)["status"]
        ok = bool(status.get("clientCertificateData")) and bool(status.get("clientKeyData"))
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        rep.add(check, PROBLEM, "the exec command printed no ExecCredential with a certificate", errors.INTERNAL)
        return
    warn = out.stderr.decode("utf-8", "replace").strip().splitlines()
    level = WARNING if warn else OK
    rep.add(check, level, f"ExecCredential in {ms:.0f} ms" + (f"; it warned: {warn[-1]}" if warn else ""))


# the command ---------------------------------------------------------------------------------------------------

def _kubeconfig_paths(dd: DataDir | None, given: str | None) -> list[Path]:
    if given:
        return [Path(given)]
    paths = []
    if dd is not None:
        try:
            paths = [Path(k.path) for k in dd.load_config().kubeconfigs]
        except PluginError:
            paths = []
        if dd.kubeconfig_path.exists() and dd.kubeconfig_path not in paths:
            paths.append(dd.kubeconfig_path)
    return list(dict.fromkeys(paths))


def diagnose(data_dir: str | None, kubeconfig_path: str | None) -> Report:
    """Every check, in the order a kubectl call meets them."""
    from ..outputs import kubeconfig

    rep = Report()
    users: list[tuple[str, dict[str, Any]]] = []
    for path in _kubeconfig_paths(resolve(data_dir) if data_dir or not kubeconfig_path else None, kubeconfig_path):
        try:
            doc = kubeconfig.load(path)
        except PluginError as err:
            rep.add("kubeconfig", PROBLEM, str(err), err.code)
            continue
        users += _exec_users(doc)
    if data_dir is None and users:
        data_dir = _arg([str(a) for a in users[0][1].get("args") or []], "--data-dir")
    dd = resolve(data_dir)
    if not users:
        rep.add("kubeconfig", WARNING, f"no kubeconfig entry runs kubectl-teleport for {dd.root}; pass "
                "--kubeconfig PATH or run `kubectl-teleport login`")
    mine = [(n, ex) for n, ex in users
            if _same_dir(_arg([str(a) for a in ex.get("args") or []], "--data-dir"), dd.root)] or users
    readers = check_datadir(rep, dd)
    runnable = {n: check_command(rep, n, ex, readers) for n, ex in mine}
    info = check_identity(rep, dd)
    reachable = check_cluster(rep, dd)
    check_auth(rep, dd, info, reachable)
    check_identity_secret(rep, dd)
    check_daemon(rep, dd)
    for n, ex in mine:
        if runnable[n]:
            check_hit(rep, n, ex)
    return rep


def run(args: argparse.Namespace) -> int:
    """`kubectl-teleport doctor`."""
    rep = diagnose(args.data_dir, args.kubeconfig)
    if args.output == "json":
        print(json.dumps({"checks": rep.rows, "exit_code": rep.exit_code()}, indent=2))
    else:
        width = max((len(r["check"]) for r in rep.rows), default=0)
        for r in rep.rows:
            print(f"{r['level']:<8} {r['check']:<{width}}  {r['message']}")
    return rep.exit_code()
