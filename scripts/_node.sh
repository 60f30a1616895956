# shellcheck shell=bash
# Sourced by scripts/test after scripts/_venv.sh (whose _venv_as_root it uses): makes sure
# node and npm exist and that node_modules matches package-lock.json in each of
# _NODE_PACKAGES: clients/js (the JavaScript client's test dependencies), tests/wscat
# (the wscat that replays the README's sessions) and polls_service (the Node.js poll
# service's dependencies, which scripts/run needs too).
#
# Node >= 18 is needed (>= 20 for polls_service) (node --test, fetch). Without node or npm on PATH, Debian's nodejs and
# npm packages are installed with apt-get (as root, or through sudo). `npm ci` runs when
# node_modules is missing or the lock file (or this script) changed since the last install,
# judged by a hash stamp kept inside node_modules; otherwise nothing runs, so later calls
# cost a hash. Messages go to stderr.

_NODE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2206 # a space-separated list, set by scripts/run to polls_service only
_NODE_PACKAGES=(${_NODE_PACKAGES_ONLY:-clients/js tests/wscat polls_service})

_node_say() { printf '[node] %s\n' "$*" >&2; }
_node_die() { printf '[node] error: %s\n' "$*" >&2; exit 1; }

_node_install() {
    command -v apt-get >/dev/null 2>&1 \
        || _node_die "node and npm are required (>= 18) and there is no apt-get here; install them yourself"
    _node_say "node or npm is missing; installing nodejs and npm with apt-get"
    _venv_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    _venv_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
}

# npm ci in one package folder (relative to the repository) unless its stamp is current.
_node_install_package() {
    local folder="$_NODE_ROOT/$1" wanted_hash stamp_hash=""
    local stamp="$folder/node_modules/.realtime-install-stamp"
    wanted_hash="$(cat "$folder/package-lock.json" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
    [[ -f $stamp ]] && read -r stamp_hash <"$stamp"
    [[ $stamp_hash == "$wanted_hash" ]] && return 0
    _node_say "installing $1 dependencies (npm ci: package-lock.json changed or first run)"
    (cd "$folder" && npm ci --no-audit --no-fund --loglevel=error >&2)
    printf '%s\n' "$wanted_hash" >"$stamp"
}

_node_ensure() {
    local package
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        _node_install
    fi
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' \
        || _node_die "node >= 18 is required, found $(node --version)"
    for package in "${_NODE_PACKAGES[@]}"; do
        _node_install_package "$package"
    done
}

_node_ensure
