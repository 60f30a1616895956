# shellcheck shell=bash
# Sourced by scripts/test after scripts/_venv.sh (whose _venv_as_root it uses): makes sure
# promtool is on PATH, for tests/deploy/test_observability.py (`promtool check rules` on the
# alert rules, `promtool check metrics` on every process's /metrics). It comes with Debian's
# `prometheus` package; when missing it is installed with apt-get (as root, or through sudo),
# and the package's own server is not started. Otherwise this costs one PATH lookup.
# Messages go to stderr.

if ! command -v promtool >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 \
        || _venv_die "promtool is missing and there is no apt-get; install prometheus (promtool) yourself"
    printf '[prometheus] promtool is missing; installing prometheus with apt-get\n' >&2
    _venv_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    _venv_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends prometheus >&2
fi
