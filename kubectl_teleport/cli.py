"""The full command line (everything except a `credentials` cache hit, which entry.py answers)."""

from __future__ import annotations

import argparse
import importlib
import math
from collections.abc import Callable, Sequence

from . import __version__, errors

PROG = errors.PROG


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as our one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise errors.UsageError(f"{message} (see `{self.prog} --help`)")


def _exit_codes_epilog() -> str:
    return "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in errors.EXIT_CODES.items())


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="kubectl exec credential plugin for machine identities (bots).",
                epilog=_exit_codes_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    login = sub.add_parser("login", help="join a Teleport cluster with a bot's one-time token and write a kubeconfig")
    login.add_argument("--proxy", help="the Teleport proxy's web address, HOST:PORT (e.g. teleport.example.com:443)")
    login.add_argument("--token", help="the bot's one-time join token (or set $KUBECTL_TELEPORT_TOKEN)")
    login.add_argument("--ca-pin", action="append", default=[], metavar="sha256:HEX",
                       help="pin of the cluster's host CA, checked before the token is sent; repeat during a CA "
                            "rotation")
    login.add_argument("--role", action="append", default=[], metavar="NAME",
                       help="a role the bot may impersonate, for the Kubernetes certificates; repeat for several "
                            "(default: every role the bot's role allows, read from Teleport after the join)")
    login.add_argument("--kube-cluster", action="append", default=[], metavar="NAME",
                       help="Kubernetes cluster to set up; repeat for several")
    login.add_argument("--auth-server", metavar="HOST:PORT",
                       help="reach the auth service at its own address (usually port 3025) instead of through the "
                            "proxy's TLS routing")
    login.add_argument("--insecure", action="store_true",
                       help="do not verify the proxy's web certificate (labs only: prints a warning)")
    login.add_argument("--data-dir", help="identity directory (default: per proxy in the user data dir)")
    where = login.add_mutually_exclusive_group()
    where.add_argument("--kubeconfig", metavar="PATH", help="write the kubeconfig entries to PATH")
    where.add_argument("--merge", action="store_true",
                       help="merge into $KUBECONFIG's first file or ~/.kube/config")
    login.add_argument("--context", help="context name (default <teleport-cluster>-<kube-cluster>)")
    login.add_argument("--ttl", metavar="DURATION", help="certificate lifetime to ask for (default 1h)")
    login.add_argument("--timeout", type=_seconds(3600), default=15.0, metavar="SECONDS",
                       help="bound on all network calls (default 15)")
    login.add_argument("--destination", metavar="DIR",
                       help="also write tbot's Kubernetes output files (identity, tlscert, key, ..., kubeconfig.yaml) "
                            "to DIR, or to a Secret: kubernetes-secret://NAMESPACE/NAME")
    login.add_argument("--static", action="store_true",
                       help="with --destination: embed the certificate in DIR/kubeconfig.yaml instead of exec")
    _secret_flags(login)

    cred = sub.add_parser("credentials", help="print an ExecCredential (what kubectl runs)")
    cred.add_argument("--data-dir", help="the identity's data dir (with --kube-cluster)")
    cred.add_argument("--kube-cluster")
    cred.add_argument("--tbot-dir", metavar="DIR", help="instead: read the credentials a running tbot writes to DIR")
    cred.add_argument("--cache-dir", metavar="CDIR",
                      help="with --tbot-dir: where the pre-rendered entry is kept (default: user cache dir)")
    cred.add_argument("--lock-timeout", type=_seconds(3600), default=30.0, metavar="SECONDS",
                      help="how long to wait for another renewal when no valid certificate is cached")
    cred.add_argument("--timeout", type=_seconds(3600), default=15.0, metavar="SECONDS",
                      help="bound on all network calls (default 15)")

    status = sub.add_parser("status", help="show the identity and each cluster's certificate")
    status.add_argument("--data-dir")
    status.add_argument("-o", "--output", choices=["text", "json"], default="text")

    logout = sub.add_parser("logout", help="remove the identity, certificates and kubeconfig entries")
    logout.add_argument("--data-dir")

    kube = sub.add_parser("kube", help="Kubernetes clusters of the identity")
    kube_sub = kube.add_subparsers(dest="kube_command", metavar="SUBCOMMAND", parser_class=_Parser)
    kube_ls = kube_sub.add_parser("ls", help="list the Kubernetes clusters the roles grant (Teleport's ListResources), "
                                            "marking those set up here, with their roles, users and groups")
    kube_ls.add_argument("--data-dir")
    kube_ls.add_argument("-o", "--output", choices=["text", "json"], default="text")
    kube_ls.add_argument("--offline", action="store_true",
                         help="do not ask Teleport: list only the clusters set up in the data dir")
    kube_ls.add_argument("--timeout", type=_seconds(3600), default=15.0, metavar="SECONDS",
                         help="network deadline for asking Teleport (default 15)")

    init = sub.add_parser("init", help="prepare a data dir for a bot user and a reader user (like tbot init)")
    init.add_argument("--data-dir", required=True)
    init.add_argument("--bot-user", required=True, help="the user that runs kubectl-teleport start/login")
    init.add_argument("--reader-user", required=True, help="the user whose kubectl reads the credentials")
    init.add_argument("--owner", metavar="USER:GROUP", help="owner of the directory (default: --bot-user)")
    init.add_argument("--acls", choices=["required", "try", "off"], default="try",
                      help="POSIX ACLs: fail without them, use them when possible (default), or never")

    start = sub.add_parser("start", help="keep the identity and every cached certificate renewed (daemon)")
    start.add_argument("--data-dir")
    start.add_argument("--oneshot", action="store_true", help="renew once and exit")
    start.add_argument("--renewal-interval", default="20m", metavar="DURATION",
                       help="how often to renew (default 20m, with jitter)")
    start.add_argument("--destination", metavar="DIR",
                       help="also keep tbot's Kubernetes output files in DIR (or kubernetes-secret://NAMESPACE/NAME) "
                            "up to date")
    start.add_argument("--static", action="store_true", help="with --destination: static kubeconfig")
    _secret_flags(start)

    unit = sub.add_parser("systemd-unit", help="print a systemd unit that runs `kubectl-teleport start`")
    unit.add_argument("--data-dir", required=True)
    unit.add_argument("--user", help="the user the service runs as")

    kcfg = sub.add_parser("kubeconfig", help="write a kubeconfig that reads a tbot destination with this plugin")
    kcfg.add_argument("--tbot-dir", metavar="DIR", required=True, help="tbot's Kubernetes output directory")
    kcfg_where = kcfg.add_mutually_exclusive_group()
    kcfg_where.add_argument("--kubeconfig", metavar="PATH", help="write the entries to PATH (default: stdout)")
    kcfg_where.add_argument("--merge", action="store_true",
                            help="merge into $KUBECONFIG's first file or ~/.kube/config")
    kcfg.add_argument("--context", help="context name (default: tbot's, <teleport-cluster>-<kube-cluster>)")
    kcfg.add_argument("--cache-dir", metavar="CDIR", help="the entry cache (default: user cache dir)")

    demo = sub.add_parser("demo", help="run the whole flow against a throwaway devcluster")
    demo.add_argument("--kubectl", metavar="PATH", help="kubectl binary (default: from PATH)")
    demo.add_argument("--keep", action="store_true", help="keep the temporary directory")

    doctor = sub.add_parser("doctor", help="check everything a kubectl call depends on, one line per check")
    doctor.add_argument("--data-dir")
    doctor.add_argument("--kubeconfig", metavar="PATH", help="the kubeconfig to check (default: login's)")
    doctor.add_argument("-o", "--output", choices=["text", "json"], default="text")

    completion = sub.add_parser("completion", help="print a shell completion script (bash or zsh)")
    completion.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete for")
    return p


def _secret_flags(parser: argparse.ArgumentParser) -> None:
    """--store-identity and --secret-label, shared by login and start."""
    parser.add_argument("--store-identity", metavar="kubernetes-secret://NAMESPACE/NAME",
                        help="keep the bot's renewable identity in this Secret too, so a pod restarted with an empty "
                             "data dir resumes without a new token (one writer: see docs/cli.md)")
    parser.add_argument("--secret-label", action="append", default=[], metavar="KEY=VALUE",
                        help="a label for the Secrets written (destination and identity); repeat for several")


def _seconds(limit: float) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds in [0, limit]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number of seconds") from None
        if not math.isfinite(value) or not 0 <= value <= limit:
            raise argparse.ArgumentTypeError(f"{text[:40]!r}: give seconds between 0 and {limit:g}")
        return value
    return parse


# command name (or "kube ls") -> module in kubectl_teleport.commands; each has run(args) -> int
COMMANDS = {
    "login": "login", "credentials": "credentials", "status": "status", "logout": "logout",
    "kube ls": "kube", "init": "init", "start": "start", "systemd-unit": "systemd_unit", "demo": "demo",
    "kubeconfig": "kubeconfig_cmd", "completion": "completion", "doctor": "doctor",
}


def _run(args: argparse.Namespace) -> int:
    name = args.command if args.command != "kube" else f"kube {args.kube_command}"
    module = COMMANDS.get(name or "")
    if module is None:
        build_parser().print_help()
        return errors.USAGE
    return importlib.import_module(f".commands.{module}", __package__).run(args)


def main(argv: Sequence[str] | None = None, run: Callable[[argparse.Namespace], int] = _run) -> int:
    """Parse and run; expected failures become one line on stderr with a documented exit code."""
    return errors.guarded(lambda: run(build_parser().parse_args(argv)))
