# shellcheck shell=bash
# Sourced by scripts/test after scripts/_venv.sh (whose _venv_as_root it uses): makes sure
# Debian's chromium is installed, for the browser tests (tests/browser drive
# /usr/bin/chromium through Playwright; Playwright's own browser download is not used).
# When it is missing it is installed with apt-get (as root, or through sudo); otherwise this
# costs one file test. Messages go to stderr.

if [[ ! -x /usr/bin/chromium ]]; then
    command -v apt-get >/dev/null 2>&1 \
        || _venv_die "/usr/bin/chromium is missing and there is no apt-get; install chromium yourself"
    printf '[chromium] /usr/bin/chromium is missing; installing chromium with apt-get\n' >&2
    _venv_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    _venv_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi
