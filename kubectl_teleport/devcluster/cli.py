"""kubectl-teleport-devcluster: run the reference cluster and administer it (a small `tctl`).

Every subcommand takes `--state-dir DIR`; admin commands work while the server runs (state is SQLite).

Exit codes:
    0  success
    1  internal error (a bug)
    2  usage error: bad flags or values, invalid role file, cluster name conflict
    3  state directory missing or not initialised (run `start` or `init` first)
    4  not found: unknown bot, role, lock or Kubernetes cluster
    5  cannot listen on the requested address (start)
    6  a library the devcluster needs is missing (grpcio: install with the devcluster extra; start)
Errors are one line on stderr: `kubectl-teleport-devcluster: error: ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from .. import __version__

PROG = "kubectl-teleport-devcluster"
DEFAULT_PROXY_PORT = 3080
OK, INTERNAL, USAGE, NOT_INITIALISED, NOT_FOUND, CANNOT_LISTEN, MISSING_DEPENDENCY = 0, 1, 2, 3, 4, 5, 6


class CliError(Exception):
    """An expected failure: one line on stderr, exit `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see `{self.prog} --help`)", USAGE)


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _labels(text: str) -> dict[str, str]:
    out = {}
    for item in _csv(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"invalid label {item!r}: use key=value[,key=value]", USAGE)
        out[key.strip()] = value.strip()
    return out


def _print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [headers, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _emit(args: argparse.Namespace, data: Any, headers: list[str], rows: list[list[Any]]) -> None:
    if args.format == "json":
        print(json.dumps(data, indent=2))
    elif rows:
        _print_table(headers, rows)
    else:
        print("(none)")


def _conn(args: argparse.Namespace):
    from . import store

    return store.opened(Path(args.state_dir))


def _only_cluster(conn: Any) -> str | None:
    from . import store

    clusters = store.list_kube_clusters(conn)
    return clusters[0][0] if len(clusters) == 1 else None


# commands ---------------------------------------------------------------------------------------------------

def cmd_init(args: argparse.Namespace) -> int:
    from .bootstrap import initialise

    name, created = initialise(Path(args.state_dir), args.cluster_name)
    print(f"{'initialised' if created else 'already initialised'}: cluster {name} in {args.state_dir}")
    return OK


def cmd_start(args: argparse.Namespace) -> int:
    from .roles import RoleError, parse_duration
    from .server import ServingConfig, parse_hostport, serve
    from .versions import ProfileError, make_profile

    try:
        kube_listen, auth_listen = parse_hostport(args.kube_listen), parse_hostport(args.auth_listen)
        proxy_listen = parse_hostport(args.proxy_listen)
        profile = make_profile(args.teleport_version, args.suite, tls_routing=not args.no_tls_routing)
    except (ValueError, ProfileError) as e:
        raise CliError(str(e), USAGE) from None
    offset = args.clock_offset.strip()
    sign = -1 if offset.startswith("-") else 1
    try:
        seconds = 0 if offset.lstrip("+-") in ("", "0") else parse_duration(offset.lstrip("+-"))
    except RoleError as e:
        raise CliError(f"--clock-offset: {e}", USAGE) from None
    return serve(ServingConfig(Path(args.state_dir), kube_listen, args.cluster_name,
                               Path(args.ready_file) if args.ready_file else None, args.seed_demo,
                               clock_offset=sign * seconds, proxy_listen=proxy_listen, auth_listen=auth_listen,
                               profile=profile))


def cmd_create(args: argparse.Namespace) -> int:
    from . import store
    from .roles import parse_roles

    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read {args.file}: {getattr(e, 'strerror', None) or e}", USAGE) from None
    roles = parse_roles(text)
    with _conn(args) as conn, store.transaction(conn):
        results = [(r.name, store.put_role(conn, r.name, text if len(roles) == 1 else "", r.to_dict()))
                   for r in roles]
    for name, new in results:
        print(f"role {name!r} has been {'created' if new else 'updated'}")
    return OK


def cmd_roles_ls(args: argparse.Namespace) -> int:
    from . import store

    with _conn(args) as conn:
        roles = store.get_roles(conn)
    rows = [[r["name"], ",".join(f"{k}={'|'.join(v)}" for k, v in r["kubernetes_labels"].items()) or "-",
             ",".join(r["kubernetes_users"]) or "-", ",".join(r["kubernetes_groups"]) or "-",
             f"{r['max_session_ttl']}s"] for r in roles]
    _emit(args, roles, ["NAME", "KUBE LABELS", "KUBE USERS", "KUBE GROUPS", "MAX TTL"], rows)
    return OK


def cmd_roles_rm(args: argparse.Namespace) -> int:
    from . import store

    with _conn(args) as conn, store.transaction(conn):
        if not store.delete_role(conn, args.name):
            raise CliError(f"no role named {args.name!r}", NOT_FOUND)
    print(f"role {args.name!r} has been deleted")
    return OK


def cmd_bots_add(args: argparse.Namespace) -> int:
    import shlex

    from .. import pki
    from . import store
    from .authority import Authority, rfc3339
    from .roles import RoleError, parse_duration

    try:
        ttl = parse_duration(args.token_ttl)
    except RoleError as e:
        raise CliError(f"--token-ttl: {e}", USAGE) from None
    state = Path(args.state_dir)
    with _conn(args) as conn:
        proxy = store.get_setting(conn, "teleport_proxy") or "<proxy HOST:PORT>"
        web_ca_file = store.get_setting(conn, "web_ca_file")
        pin = pki.spki_pin(pki.load_cert(store.get_ca(conn, "host")[0]))
        cluster = _only_cluster(conn) or "<kube-cluster>"
    roles = _csv(args.roles)
    try:
        token, expires = Authority(state).add_bot(args.name, roles, ttl)
    except LookupError as e:
        raise CliError(str(e.args[0]), NOT_FOUND) from None
    except ValueError as e:
        raise CliError(str(e), USAGE) from None
    # The Teleport proxy's web certificate comes from the devcluster's web CA: SSL_CERT_FILE makes it trusted.
    login = " ".join([
        *([f"SSL_CERT_FILE={shlex.quote(web_ca_file)}"] if web_ca_file else []),
        f"kubectl-teleport login --proxy {proxy} --token {token} --ca-pin {pin} --kube-cluster {cluster}",
        *(f"--role {shlex.quote(r)}" for r in roles)])
    if args.format == "json":
        # "proxy"/"teleport_proxy" and "login_command"/"teleport_login_command" are the same: both names are read
        print(json.dumps({"bot": args.name, "token": token, "ca_pins": [pin], "proxy": proxy,
                          "expires": rfc3339(expires), "kube_cluster": cluster, "login_command": login,
                          "roles": roles, "teleport_proxy": proxy, "web_ca_file": web_ca_file,
                          "teleport_login_command": login}, indent=2))
        return OK
    minutes = max(1, round(ttl / 60))
    if not roles:  # as `tctl bots add` without --roles warns
        print("Warning: no roles specified: the bot cannot issue Kubernetes certificates until it may impersonate "
              "a role (bots add again with --roles).", file=sys.stderr)
    print(f"The bot token: {token}\nThis token will expire in {minutes} minute{'s' * (minutes != 1)} "
          f"({rfc3339(expires)}); it can be used once.\n\nCA pin: {pin}\n\n"
          f"Run this on the machine that runs kubectl (it impersonates the roles {', '.join(roles) or 'none'}):"
          f"\n\n{login}")
    return OK


def cmd_bots_ls(args: argparse.Namespace) -> int:
    from . import store

    with _conn(args) as conn:
        bots = [{"name": b["name"], "roles": json.loads(b["roles"]), "generation": b["generation"],
                 "locked": bool(b["locked"])} for b in store.list_bots(conn)]
    rows = [[b["name"], ",".join(b["roles"]), b["generation"], "yes" if b["locked"] else "no"] for b in bots]
    _emit(args, bots, ["NAME", "ROLES", "GENERATION", "LOCKED"], rows)
    return OK


def cmd_bots_instances(args: argparse.Namespace) -> int:
    from . import store

    with _conn(args) as conn:
        if args.name and store.get_bot(conn, args.name) is None:
            raise CliError(f"no bot named {args.name!r}", NOT_FOUND)
        found = [{"id": i["id"], "bot": i["bot"], "generation": i["generation"],
                  "created": datetime.fromtimestamp(i["created_at"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
                 for i in store.list_instances(conn, args.name)]
    _emit(args, found, ["BOT", "INSTANCE", "GENERATION", "CREATED"],
          [[i["bot"], i["id"], i["generation"], i["created"]] for i in found])
    return OK


def cmd_bots_rm(args: argparse.Namespace) -> int:
    from . import store

    with _conn(args) as conn, store.transaction(conn):
        if not store.delete_bot(conn, args.name):
            raise CliError(f"no bot named {args.name!r}", NOT_FOUND)
    print(f"bot {args.name!r} has been deleted (its identity and tokens no longer work)")
    return OK


def cmd_locks_ls(args: argparse.Namespace) -> int:
    from . import store

    with _conn(args) as conn:
        locks = [{"bot": b["name"], "reason": b["lock_reason"] or "",
                  "locked_at": datetime.fromtimestamp(b["locked_at"] or 0, timezone.utc).strftime(
                      "%Y-%m-%dT%H:%M:%SZ")}
                 for b in store.list_bots(conn) if b["locked"]]
    _emit(args, locks, ["BOT", "LOCKED AT", "REASON"], [[x["bot"], x["locked_at"], x["reason"]] for x in locks])
    return OK


def _set_lock(args: argparse.Namespace, locked: bool) -> None:
    from .. import pki
    from . import store

    with _conn(args) as conn, store.transaction(conn):
        bot = store.get_bot(conn, args.name)
        if bot is None:
            raise CliError(f"no bot named {args.name!r}", NOT_FOUND)
        if not locked and not bot["locked"]:
            raise CliError(f"bot {args.name!r} is not locked", NOT_FOUND)
        store.set_lock(conn, args.name, locked, "locked by an admin" if locked else None,
                       int(pki.utcnow().timestamp()))


def cmd_locks_add(args: argparse.Namespace) -> int:
    _set_lock(args, True)
    print(f"bot {args.name!r} is locked")
    return OK


def cmd_locks_rm(args: argparse.Namespace) -> int:
    _set_lock(args, False)
    print(f"bot {args.name!r} is unlocked")
    return OK


def cmd_kube_add(args: argparse.Namespace) -> int:
    from . import store
    from .roles import NAME_RE

    if not NAME_RE.match(args.name):
        raise CliError(f"invalid cluster name {args.name!r}: use letters, digits, '.', '_' or '-'", USAGE)
    labels = _labels(args.labels or "")
    with _conn(args) as conn, store.transaction(conn):
        new = store.put_kube_cluster(conn, args.name, labels)
    print(f"Kubernetes cluster {args.name!r} has been {'added' if new else 'updated'}")
    return OK


def cmd_kube_ls(args: argparse.Namespace) -> int:
    from . import store

    with _conn(args) as conn:
        clusters = [{"name": n, "labels": labels} for n, labels in store.list_kube_clusters(conn)]
    rows = [[c["name"], ",".join(f"{k}={v}" for k, v in c["labels"].items()) or "-"] for c in clusters]
    _emit(args, clusters, ["NAME", "LABELS"], rows)
    return OK


def cmd_kube_rm(args: argparse.Namespace) -> int:
    from . import store

    with _conn(args) as conn, store.transaction(conn):
        if not store.delete_kube_cluster(conn, args.name):
            raise CliError(f"no Kubernetes cluster named {args.name!r}", NOT_FOUND)
    print(f"Kubernetes cluster {args.name!r} has been removed")
    return OK


def _cluster_arg(conn: Any, args: argparse.Namespace) -> str:
    from . import store

    if args.kube_cluster:
        if store.get_kube_cluster(conn, args.kube_cluster) is None:
            raise CliError(f"no Kubernetes cluster named {args.kube_cluster!r}", NOT_FOUND)
        return args.kube_cluster
    only = _only_cluster(conn)
    if only is None:
        raise CliError("--kube-cluster is required (there is not exactly one Kubernetes cluster)", USAGE)
    return only


def cmd_rolebindings_add(args: argparse.Namespace) -> int:
    from . import store
    from .rbac import KNOWN_VERBS

    verbs, resources = _csv(args.verbs), _csv(args.resources)
    bad = [v for v in verbs if v not in KNOWN_VERBS]
    if not verbs or bad:
        raise CliError(f"--verbs: unknown verb(s) {', '.join(bad) or '(none given)'}; use "
                       f"{', '.join(KNOWN_VERBS)}", USAGE)
    if not resources:
        raise CliError("--resources needs at least one resource, e.g. pods,deployments", USAGE)
    namespace = "" if args.cluster_wide else args.namespace
    kind, subject = ("Group", args.group) if args.group else ("User", args.user)
    with _conn(args) as conn, store.transaction(conn):
        cluster = _cluster_arg(conn, args)
        store.add_rolebinding(conn, cluster, namespace, verbs, resources, kind, subject)
    scope = f"namespace {namespace!r}" if namespace else "all namespaces and the cluster scope"
    print(f"{kind} {subject!r} may {','.join(verbs)} {','.join(resources)} in {scope} of {cluster!r}")
    return OK


def cmd_rolebindings_ls(args: argparse.Namespace) -> int:
    from . import store

    with _conn(args) as conn:
        bindings = store.list_rolebindings(conn, args.kube_cluster)
    rows = [[b["cluster"], b["namespace"] or "*", f"{b['subject_kind']}:{b['subject_name']}", ",".join(b["verbs"]),
             ",".join(b["resources"])] for b in bindings]
    _emit(args, bindings, ["CLUSTER", "NAMESPACE", "SUBJECT", "VERBS", "RESOURCES"], rows)
    return OK


def cmd_stats(args: argparse.Namespace) -> int:
    from . import store

    with _conn(args) as conn:
        counters = store.counters(conn)
    if args.format == "json":
        print(json.dumps(counters, indent=2, sort_keys=True))
    else:
        _print_table(["COUNTER", "VALUE"], [[k, v] for k, v in sorted(counters.items())])
    return OK


# parser -----------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Reference Teleport-style cluster (proxy, auth service, Kubernetes "
                "endpoint) for kubectl-teleport: run it and administer it.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str,
                parent: Any = sub, fmt: bool = False) -> argparse.ArgumentParser:
        c = parent.add_parser(name, help=help, description=help)
        c.add_argument("--state-dir", required=True, metavar="DIR", help="the devcluster's state directory")
        if fmt:
            c.add_argument("--format", choices=("text", "json"), default="text")
        c.set_defaults(func=func)
        return c

    c = command("init", cmd_init, "initialise a state directory (CAs) without serving")
    c.add_argument("--cluster-name", help="Teleport cluster name (default: devcluster)")

    c = command("start", cmd_start, "serve the Teleport proxy, the auth service and the Kubernetes endpoint")
    c.add_argument("--kube-listen", default="127.0.0.1:3026", metavar="HOST:PORT",
                   help="Kubernetes endpoint address (default 127.0.0.1:3026)")
    c.add_argument("--cluster-name", help="Teleport cluster name, set on first start (default: devcluster)")
    c.add_argument("--ready-file", metavar="FILE", help="write the addresses, CA pin and user CA here (JSON) "
                   "once serving")
    c.add_argument("--seed-demo", action="store_true", help="create the demo role, cluster, pods and "
                   "rolebindings (idempotent)")
    c.add_argument("--clock-offset", default="0", metavar="[-]DURATION",
                   help="run the cluster's clock ahead (or, with '-', behind) this machine's, e.g. 10m or -5m: "
                   "for trying clock skew")
    c.add_argument("--proxy-listen", default=f"127.0.0.1:{DEFAULT_PROXY_PORT}", metavar="HOST:PORT",
                   help="the Teleport proxy's one TLS port (web API, auth and Kubernetes routed by ClientHello; "
                   f"port 0: any free port; default 127.0.0.1:{DEFAULT_PROXY_PORT})")
    # --listen: the older name of the proxy's address, still taken (a start script may pass it)
    c.add_argument("--listen", dest="proxy_listen", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    c.add_argument("--auth-listen", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="the auth service's own gRPC port (what --auth-server connects to; default: a free "
                   "loopback port)")
    c.add_argument("--no-tls-routing", action="store_true",
                   help="make the proxy port a plain web API port (no ALPN/SNI routes), as a proxy with separate "
                   "listeners")
    c.add_argument("--teleport-version", metavar="16|17|18",
                   help="the Teleport version to behave as (default 17; a full version like 17.5.0 works too)")
    c.add_argument("--suite", choices=("legacy", "balanced-v1"),
                   help="the signature algorithm suite: which key algorithm clients must use (default balanced-v1 "
                   "for 17 and 18; 16 has no suites and takes RSA 2048 keys)")

    c = command("create", cmd_create, "create or update roles from a Teleport role v5 YAML file")
    c.add_argument("-f", "--file", required=True, metavar="FILE", help="role YAML ('-' reads stdin)")

    roles = sub.add_parser("roles", help="list or remove roles").add_subparsers(dest="sub", required=True,
                                                                                metavar="COMMAND")
    command("ls", cmd_roles_ls, "list roles", roles, fmt=True)
    command("rm", cmd_roles_rm, "remove a role", roles).add_argument("name")

    bots = sub.add_parser("bots", help="manage bots").add_subparsers(dest="sub", required=True, metavar="COMMAND")
    c = command("add", cmd_bots_add, "add a bot (or re-issue a token) and print its one-time join token", bots,
                fmt=True)
    c.add_argument("name")
    c.add_argument("--roles", default="", metavar="R1[,R2]",
                   help="the roles the bot may impersonate (none: it can issue nothing until it gets some)")
    c.add_argument("--token-ttl", default="1h", metavar="DURATION", help="token lifetime (default 1h)")
    command("ls", cmd_bots_ls, "list bots", bots, fmt=True)
    c = command("instances", cmd_bots_instances, "list bot instances (Teleport 16.2+: one per join, each with "
                "its own generation)", bots, fmt=True)
    c.add_argument("name", nargs="?", help="only this bot's instances")
    command("rm", cmd_bots_rm, "remove a bot: its identity stops working", bots).add_argument("name")

    locks = sub.add_parser("locks", help="bot locks").add_subparsers(dest="sub", required=True, metavar="COMMAND")
    command("ls", cmd_locks_ls, "list locked bots", locks, fmt=True)
    command("add", cmd_locks_add, "lock a bot", locks).add_argument("name")
    command("rm", cmd_locks_rm, "unlock a bot", locks).add_argument("name")

    kube = sub.add_parser("kube", help="Kubernetes clusters").add_subparsers(dest="sub", required=True,
                                                                             metavar="COMMAND")
    c = command("add", cmd_kube_add, "add (or relabel) a Kubernetes cluster", kube)
    c.add_argument("name")
    c.add_argument("--labels", metavar="k=v[,k=v]", help="cluster labels (roles match them)")
    command("ls", cmd_kube_ls, "list Kubernetes clusters", kube, fmt=True)
    command("rm", cmd_kube_rm, "remove a Kubernetes cluster with its objects and rolebindings",
            kube).add_argument("name")

    rb = sub.add_parser("rolebindings", help="Kubernetes RBAC").add_subparsers(dest="sub", required=True,
                                                                               metavar="COMMAND")
    c = command("add", cmd_rolebindings_add, "let a user or group use verbs on resources in a namespace", rb)
    scope = c.add_mutually_exclusive_group(required=True)
    scope.add_argument("--namespace", "-n", metavar="NS")
    scope.add_argument("--cluster-wide", action="store_true", help="every namespace and the cluster scope "
                       "(like a ClusterRoleBinding)")
    c.add_argument("--verbs", required=True, metavar="get,list")
    c.add_argument("--resources", required=True, metavar="pods,deployments")
    who = c.add_mutually_exclusive_group(required=True)
    who.add_argument("--group")
    who.add_argument("--user")
    c.add_argument("--kube-cluster", metavar="NAME", help="default: the only cluster, if there is exactly one")
    c = command("ls", cmd_rolebindings_ls, "list rolebindings", rb, fmt=True)
    c.add_argument("--kube-cluster", metavar="NAME")

    c = command("stats", cmd_stats, "print the request counters", fmt=True)
    return p


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    from . import store
    from .bootstrap import ClusterNameConflict
    from .roles import RoleError

    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except CliError as e:
        return _fail(str(e), e.code)
    except store.NotInitialised:
        return _fail(f"{args.state_dir} is not an initialised devcluster state directory; run "
                     f"`{PROG} start --state-dir {args.state_dir}` (or `init`) first", NOT_INITIALISED)
    except (RoleError, ClusterNameConflict) as e:
        return _fail(str(e), USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", INTERNAL)
    except Exception as e:
        from .files import UnsafePath
        from .server import ListenError, MissingDependency

        if isinstance(e, ListenError):
            return _fail(str(e), CANNOT_LISTEN)
        if isinstance(e, MissingDependency):
            return _fail(str(e), MISSING_DEPENDENCY)
        if isinstance(e, UnsafePath):
            return _fail(str(e), NOT_INITIALISED)
        return _fail(f"internal error: {type(e).__name__}: {e}", INTERNAL)
