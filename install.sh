#!/usr/bin/env bash
# Install kubectl-teleport from this checkout into its own virtualenv and link its commands onto PATH.
#
#   ./install.sh                      venv in ~/.local/share/kubectl-teleport/venv, links in ~/.local/bin
#   ./install.sh --prefix DIR         venv in DIR/venv, links in DIR/bin
#   ./install.sh --dev --prefix .dev  also the test dependencies (the README's test command)
#   ./install.sh --uninstall [...]    remove the venv and the links this script made, nothing else
#
# Re-running upgrades in place: new or changed dependency requirements are installed and this package is always
# reinstalled, so code changes land even when the version number did not move. A healthy venv is never recreated.
# Two runs on one venv take turns (flock on the venv's parent directory, where flock(1) exists).
# Exit codes: 0 done, 1 failed (one line on stderr says why and what to do), 2 bad usage.
set -euo pipefail

readonly COMMANDS="kubectl-teleport kubectl-teleport-devcluster"
readonly MARKER_NAME=".kubectl-teleport-install"
readonly PROG="install.sh"

usage() {
    cat <<EOF
Usage: ./install.sh [--prefix DIR] [--bin-dir DIR] [--python PATH] [--dev] [--quiet]
       ./install.sh --uninstall [--prefix DIR] [--bin-dir DIR]

Installs kubectl-teleport from this checkout into a virtualenv and links its two
commands (kubectl-teleport, kubectl-teleport-devcluster) into a bin directory.

Options:
  --prefix DIR    put the venv at DIR/venv and the links in DIR/bin
                  (default venv: \${XDG_DATA_HOME:-~/.local/share}/kubectl-teleport/venv,
                   default links: ~/.local/bin)
  --bin-dir DIR   put the links in DIR (overrides the default and --prefix's DIR/bin)
  --python PATH   interpreter to build the venv from (default: python3 on PATH, or the
                  newest python3.1x found when that is older than 3.10); pyenv shims
                  are resolved to the real interpreter
  --dev           also install the test dependencies (the "test" extra)
  --uninstall     remove the venv and the two links (only links that point into the venv)
  -q, --quiet     print only warnings and errors
  -h, --help      show this help

Re-running upgrades in place. Exit codes: 0 done, 1 failed, 2 bad usage.
EOF
}

QUIET=0
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s (see ./install.sh --help)\n' "$PROG" "$*" >&2; exit 2; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
say() { if [[ $QUIET == 0 ]]; then printf '%s\n' "$*"; fi; }

# Absolute, symlink-free form of a path whose tail may not exist yet (portable: no readlink -f / realpath -m).
abspath() {
    local p=$1 rest=""
    [[ $p == /* ]] || p="$PWD/$p"
    while [[ $p != / && $p == */ ]]; do p=${p%/}; done
    while [[ ! -d $p ]]; do
        rest="/${p##*/}$rest"
        p=${p%/*}
        [[ -n $p ]] || p=/
    done
    p=$(cd "$p" && pwd -P)
    [[ $p == / && -n $rest ]] && p=""
    printf '%s%s\n' "$p" "$rest"
}

# Is DIR one of the entries of $PATH (compared as resolved paths)?
on_path() {
    local dir=$1 entry
    local IFS=:
    for entry in $PATH; do
        [[ -n $entry ]] || continue
        if [[ $entry == "$dir" ]] || { [[ -d $entry ]] && [[ $(cd "$entry" && pwd -P) == "$dir" ]]; }; then
            return 0
        fi
    done
    return 1
}

# ---- options ---------------------------------------------------------------------------------------------
PREFIX="" BIN_DIR="" PYTHON="" DEV=0 UNINSTALL=0
need_arg() { [[ $# -ge 2 && -n $2 ]] || usage_error "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --prefix) need_arg "$@"; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --bin-dir) need_arg "$@"; BIN_DIR=$2; shift 2 ;;
        --bin-dir=*) BIN_DIR=${1#*=}; shift ;;
        --python) need_arg "$@"; PYTHON=$2; shift 2 ;;
        --python=*) PYTHON=${1#*=}; shift ;;
        --dev) DEV=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        -q | --quiet) QUIET=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage_error "unknown option: $1" ;;
    esac
done
if [[ $UNINSTALL == 1 && ( $DEV == 1 || -n $PYTHON ) ]]; then
    usage_error "--uninstall takes only --prefix, --bin-dir and --quiet"
fi

[[ -n ${HOME:-} || ( -n $PREFIX && -n $BIN_DIR ) ]] || die "HOME is not set; pass --prefix DIR and --bin-dir DIR"
if [[ -n $PREFIX ]]; then
    PREFIX=$(abspath "$PREFIX")
    VENV="$PREFIX/venv"
    BIN_DIR=${BIN_DIR:-$PREFIX/bin}
else
    VENV="${XDG_DATA_HOME:-$HOME/.local/share}/kubectl-teleport/venv"
    BIN_DIR=${BIN_DIR:-$HOME/.local/bin}
fi
VENV=$(abspath "$VENV")
BIN_DIR=$(abspath "$BIN_DIR")
MARKER="$VENV/$MARKER_NAME"

# One install.sh at a time per venv: a second run waits instead of racing pip in the same venv.
lock_install() {
    command -v flock >/dev/null 2>&1 || return 0
    [[ -d ${VENV%/*} ]] || return 0
    exec 9<"${VENV%/*}"
    if ! flock -n 9; then
        say "waiting for another install.sh working on $VENV ..."
        flock 9
    fi
}

# ---- uninstall -------------------------------------------------------------------------------------------
if [[ $UNINSTALL == 1 ]]; then
    lock_install
    removed=0
    for name in $COMMANDS; do
        link="$BIN_DIR/$name"
        if [[ -L $link ]]; then
            target=$(readlink "$link")
            if [[ $target == "$VENV/"* ]]; then
                rm -f "$link"
                say "removed link  $link"
                removed=1
            else
                warn "left $link alone: it points to $target, not into $VENV"
            fi
        elif [[ -e $link ]]; then
            warn "left $link alone: it is not a link made by install.sh"
        fi
    done
    if [[ -f $MARKER ]]; then
        rm -rf "$VENV"
        say "removed venv  $VENV"
        removed=1
        # The default venv lives in our own data directory: drop that too if nothing else is in it.
        # (Identities from 'kubectl-teleport login' live there as well and are never touched.)
        if [[ -z $PREFIX ]]; then rmdir "${VENV%/*}" 2>/dev/null || true; fi
    elif [[ -e $VENV ]]; then
        warn "left $VENV alone: it was not made by install.sh"
    fi
    if [[ $removed == 0 ]]; then
        say "nothing to remove: no kubectl-teleport install at $VENV"
    else
        say "kubectl-teleport uninstalled (identities and kubeconfigs from 'kubectl-teleport login' are kept;"
        say "run 'kubectl-teleport logout' before uninstalling to remove those)"
    fi
    exit 0
fi

# ---- source checkout -------------------------------------------------------------------------------------
[[ -n ${BASH_SOURCE[0]:-} && -f ${BASH_SOURCE[0]} ]] \
    || die "run install.sh from a kubectl-teleport checkout (./install.sh), not from a pipe"
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
[[ -f $SRC/pyproject.toml && -d $SRC/kubectl_teleport ]] \
    || die "$SRC is not a kubectl-teleport checkout (no pyproject.toml / kubectl_teleport/)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/kubectl-teleport-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PROBE_ERR_FILE="$TMP/probe.err"

# ---- interpreter -----------------------------------------------------------------------------------------
# One call tells the version, whether venv + ensurepip exist, and the real binary behind the name: a pyenv
# shim execs the real interpreter, so sys.executable is the real one; realpath drops any remaining symlinks.
# Written so that Python 2 can answer it too (and then be refused).
readonly PROBE='import os, sys
try:
    import venv, ensurepip
    ok = "yes"
except ImportError:
    ok = "no"
v = sys.version_info
sys.stdout.write("%d %d %d %s %s\n" % (v[0], v[1], v[2], ok, os.path.realpath(sys.executable or "")))'

PY_MAJOR="" PY_MINOR="" PY_PATCH="" PY_VENV="" PY_REAL="" PROBE_ERR=""
probe() {  # probe NAME_OR_PATH -> sets PY_*; returns 1 (PROBE_ERR: its last stderr line) if it does not run
    local out
    out=$("$1" -c "$PROBE" 2>"$PROBE_ERR_FILE") || {
        # the first line says it (pyenv: "python3.12: command not found"), except for a traceback's last
        PROBE_ERR=$(grep -v '^[[:space:]]*$' "$PROBE_ERR_FILE" | head -n 1) || true
        if [[ $PROBE_ERR == Traceback* ]]; then PROBE_ERR=$(tail -n 1 "$PROBE_ERR_FILE"); fi
        return 1
    }
    read -r PY_MAJOR PY_MINOR PY_PATCH PY_VENV PY_REAL <<<"$out" || return 1
    [[ -n $PY_REAL ]]
}
new_enough() { [[ $PY_MAJOR -gt 3 || ( $PY_MAJOR -eq 3 && $PY_MINOR -ge 10 ) ]]; }

choose_python() {
    local cand path first="" first_version=""
    if [[ -n $PYTHON ]]; then
        path=$(command -v -- "$PYTHON") || die "--python $PYTHON: no such interpreter"
        probe "$path" || die "--python $PYTHON: $path does not run as a Python interpreter${PROBE_ERR:+ ($PROBE_ERR)}"
    else
        for cand in python3 python3.14 python3.13 python3.12 python3.11 python3.10; do
            path=$(command -v -- "$cand") || continue
            probe "$path" || continue
            if [[ -z $first ]]; then first=$path; first_version="$PY_MAJOR.$PY_MINOR.$PY_PATCH"; fi
            if new_enough; then break; fi
        done
        [[ -n $first ]] || die "no python3 found on PATH; install Python >= 3.10 or pass --python PATH"
        if ! new_enough; then
            die "Python >= 3.10 is required, but $first is Python $first_version; install Python 3.10+ or pass --python PATH"
        fi
    fi
    new_enough || die "Python >= 3.10 is required, but $path is Python $PY_MAJOR.$PY_MINOR.$PY_PATCH; install Python 3.10+ or pass --python PATH"
    case $PY_REAL in
        */shims/*) die "could not resolve the pyenv shim $path to a real interpreter; pass --python \$(pyenv which python3)" ;;
    esac
    [[ $PY_VENV == yes ]] || die "$PY_REAL has no venv/ensurepip module; on Debian/Ubuntu run: apt-get install python3-venv (or python3.$PY_MINOR-venv), then re-run"
}

# Does the venv exist, carry our marker, and run? Sets VENV_PY_REAL (its base interpreter) and VENV_VERSION.
VENV_PY_REAL="" VENV_VERSION=""
venv_healthy() {
    local out
    [[ -f $MARKER && -x $VENV/bin/python ]] || return 1
    out=$("$VENV/bin/python" -c 'import os, sys, pip
sys.stdout.write("%d.%d.%d %s\n" % (sys.version_info[:3] + (os.path.realpath(sys.executable),)))' 2>/dev/null) \
        || return 1
    read -r VENV_VERSION VENV_PY_REAL <<<"$out"
}

# ---- venv ------------------------------------------------------------------------------------------------
# Refuse what cannot work before making anything: the interpreter (unless an install of ours is there to
# reuse) and a directory at the venv path that is not ours.
chosen=0
if [[ -n $PYTHON || ! -f $MARKER ]]; then choose_python; chosen=1; fi
if [[ ! -f $MARKER && -e $VENV ]] && [[ ! -d $VENV || -n $(ls -A "$VENV") ]]; then
    die "$VENV exists and was not made by install.sh; remove it or choose another --prefix"
fi

mkdir -p "${VENV%/*}"
lock_install

venv_state="created"
if venv_healthy; then
    venv_state="reused"
    if [[ $chosen == 1 && -n $PYTHON && $PY_REAL != "$VENV_PY_REAL" ]]; then
        venv_state="recreated"  # --python names another interpreter than the venv's
    else
        PY_REAL=$VENV_PY_REAL
        IFS=. read -r PY_MAJOR PY_MINOR PY_PATCH <<<"$VENV_VERSION"
    fi
elif [[ -f $MARKER ]]; then
    venv_state="recreated"  # ours but broken (interrupted install, interpreter removed or upgraded)
    if [[ $chosen == 0 ]]; then choose_python; fi
elif [[ -e $VENV ]] && [[ ! -d $VENV || -n $(ls -A "$VENV") ]]; then
    die "$VENV exists and was not made by install.sh; remove it or choose another --prefix"  # appeared meanwhile
fi

if [[ $venv_state != reused ]]; then
    say "creating venv $VENV from $PY_REAL (Python $PY_MAJOR.$PY_MINOR.$PY_PATCH)"
    [[ $venv_state == recreated ]] && rm -rf "$VENV"
    mkdir -p "$VENV"
    # The marker goes in first, so an interrupted run is recognised as ours and redone next time.
    printf 'kubectl-teleport venv made by %s/install.sh\n' "$SRC" >"$MARKER"
    if ! err=$("$PY_REAL" -m venv "$VENV" 2>&1); then
        die "creating the venv failed: ${err##*$'\n'} (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
fi
VPY="$VENV/bin/python"

# ---- package ---------------------------------------------------------------------------------------------
# Build outside the checkout: setuptools would otherwise keep a build/ tree in it whose stale files (modules
# since deleted) end up in the wheel, and two installs from one checkout would share it.
cat >"$TMP/setup.cfg" <<EOF
[build]
build_base = $TMP/build
[egg_info]
egg_base = $TMP
EOF

PIP=("$VPY" -m pip --disable-pip-version-check --no-input)

say "building kubectl-teleport from $SRC"
DIST_EXTRA_CONFIG="$TMP/setup.cfg" "${PIP[@]}" wheel -q --no-deps -w "$TMP/dist" "$SRC" >/dev/null \
    || die "building the package from $SRC failed (pip's output is above)"
wheels=("$TMP"/dist/kubectl_teleport-*.whl)
[[ -f ${wheels[0]} ]] || die "building the package from $SRC produced no wheel"
WHEEL=${wheels[0]}

# The devcluster extra (grpcio, for the devcluster's auth gRPC service) always: `kubectl-teleport demo` needs it.
extra="[devcluster]" with_test=""
[[ $DEV == 1 ]] && extra="[devcluster,test]" with_test=" with the test extra"
say "installing dependencies${with_test:+ (with the test extra)}"
"${PIP[@]}" install -q --upgrade-strategy only-if-needed "$WHEEL$extra" \
    || die "installing the dependencies failed (pip's output is above); check the network or a proxy and re-run"
"${PIP[@]}" install -q --force-reinstall --no-deps "$WHEEL" \
    || die "installing kubectl-teleport into $VENV failed (pip's output is above)"
# The wheel's kubectl-teleport is the fast launcher (scripts/kubectl-teleport, kubectl_teleport/launcher.py): a
# #!/bin/sh script that execs the venv's python -IS, since pip and pipx cannot know the interpreter. We do: point
# its #! line at it, so every kubectl call starts python directly (unless the venv path is too long for a #! line).
"$VPY" -m kubectl_teleport.launcher "$VENV/bin/kubectl-teleport" \
    || say "kept the launcher's #!/bin/sh line: the venv path is too long for a #! line (each call takes ~0.5 ms more)"
VERSION=$("$VPY" -c 'import importlib.metadata as m; print(m.version("kubectl-teleport"))' 2>/dev/null) || VERSION="?"

# ---- links -----------------------------------------------------------------------------------------------
mkdir -p "$BIN_DIR"
links=""
for name in $COMMANDS; do
    target="$VENV/bin/$name"
    link="$BIN_DIR/$name"
    [[ -x $target ]] || die "the package did not install $target"
    if [[ -L $link ]]; then
        old=$(readlink "$link")
        if [[ $old != "$target" && $old != "$VENV/"* ]]; then warn "replacing $link (it pointed to $old)"; fi
    elif [[ -e $link ]]; then
        die "$link exists and is not a link; remove it or pass --bin-dir DIR"
    fi
    ln -sfn "$target" "$link"
    links+="  $link -> $target"$'\n'
done

# ---- report ----------------------------------------------------------------------------------------------
say ""
say "kubectl-teleport $VERSION installed$with_test"
say "  venv:        $VENV ($venv_state)"
say "  interpreter: $PY_REAL (Python $PY_MAJOR.$PY_MINOR.$PY_PATCH)"
say "  links:"
say "${links%$'\n'}"

# Other users (the bot and reader users of `kubectl-teleport init`) must be able to run the interpreter and
# the launcher: an interpreter under a 0700 home (a pyenv, say) works for this user only.
blocked_for_others() {
    local path=$1 here="" part
    local IFS=/
    for part in $path; do
        [[ -z $part ]] && continue
        here+="/$part"
        if [[ $(stat -c %A "$here" 2>/dev/null || stat -f %Sp "$here" 2>/dev/null) != ????????[xt]* ]]; then
            printf '%s' "$here"
            return 0
        fi
    done
    return 1
}
for runnable in "$PY_REAL" "$VENV/bin/kubectl-teleport"; do
    if blocked=$(blocked_for_others "$(abspath "$runnable")"); then
        warn "other users cannot run $runnable ($blocked is not executable or searchable for them), so the users of \`kubectl-teleport init\` could not either; install with --python /usr/bin/python3 (or another interpreter they can run) and a shared --prefix"
        break
    fi
done

next="kubectl-teleport demo"
if ! on_path "$BIN_DIR"; then
    warn "$BIN_DIR is not on PATH; add it, e.g. in ~/.bashrc or ~/.zshrc:"
    # shellcheck disable=SC2016 # $PATH is meant literally: it is the line to paste
    printf '  export PATH="%s:$PATH"\n' "$BIN_DIR" >&2
    next="$BIN_DIR/kubectl-teleport demo"
else
    found=$(command -v kubectl-teleport 2>/dev/null || true)
    if [[ -n $found && $found != "$BIN_DIR/kubectl-teleport" && $(abspath "$found") != "$BIN_DIR/kubectl-teleport" ]]; then
        warn "another kubectl-teleport comes first on PATH: $found"
    fi
fi
say ""
say "next: $next"
