"""Which keys each Lua script of the services touches, as a real Redis sees it run (MONITOR).

A Redis Cluster runs a script only when every key it is given (``KEYS``) and every key it
touches hash to one slot; else ``CROSSSLOT``, or an error inside the script. What a script
touches is not all in its ``KEYS``: the presence scripts build most of their keys from a
prefix. So the audit does not read the scripts: it runs the stores against a real Redis with
MONITOR on, where each ``EVALSHA`` is followed by the commands the script ran (client ``lua``),
and asks Redis which arguments of each are keys (``COMMAND GETKEYS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.client import Monitor
from redis.crc import key_slot
from redis.exceptions import ResponseError

from tests.support.processes import REPO_ROOT


__all__ = [
    "CallKeys",
    "ScriptUse",
    "parse_monitor_line",
    "record_scripts",
    "script_files",
    "summarize",
]

# One MONITOR line: `<time> [<db> <client>] "ARG" "ARG" ...`, each argument quoted, with
# `\"`, `\\` and `\xNN` escapes (and \n, \r, \t, \a, \b).
_LINE = re.compile(r"^\S+ \[\d+ (?P<client>[^\]]+)\] (?P<args>.*)$")
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}
_END = "lua-audit-end"


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        escape = match.group(1)
        if escape.startswith("x"):
            return chr(int(escape[1:], 16))
        return _ESCAPES.get(escape, escape)

    return re.sub(r"\\(x[0-9a-fA-F]{2}|.)", one, text)


def parse_monitor_line(line: str) -> tuple[str, list[str]] | None:
    """The client (``lua`` for a script's commands) and the arguments of one MONITOR line."""
    match = _LINE.match(line)
    if match is None:
        return None
    return match.group("client"), [_unescape(arg) for arg in _ARG.findall(match.group("args"))]


def script_files() -> list[tuple[str, str]]:
    """Every Python service's script, as (package, name): ``*_service/lua/*.lua`` of the
    packages that common/lua.py loads, but the libraries. The Node.js poll service joins
    its scripts its own way (polls_service/src/lua.js): not in this audit yet."""
    return sorted(
        (path.parent.parent.name, path.stem)
        for path in Path(REPO_ROOT).glob("*_service/lua/*.lua")
        if path.stem != "lib" and (path.parent.parent / "__init__.py").is_file()
    )


def _shas() -> dict[str, tuple[str, str]]:
    """(package, name) of every script's SHA1, with its library (lib.lua) or without it (bare),
    as common/lua.py joins them."""
    prelude = (resources.files("common") / "prelude.lua").read_text()
    shas: dict[str, tuple[str, str]] = {}
    for package, name in script_files():
        folder = resources.files(package) / "lua"
        library = (folder / "lib.lua").read_text() if (folder / "lib.lua").is_file() else ""
        own = (folder / f"{name}.lua").read_text()
        for shared in (library, ""):
            source = "\n".join((prelude, shared, own))
            shas[hashlib.sha1(source.encode()).hexdigest()] = (package, name)
    return shas


@dataclass(frozen=True)
class CallKeys:
    """The keys of one script call: those it was given, those it touched, and the channels
    it published to (which count for the slot too on a cluster, published with SPUBLISH)."""

    declared: frozenset[str]
    touched: frozenset[str]
    published: frozenset[str] = frozenset()

    @property
    def keys(self) -> frozenset[str]:
        return self.declared | self.touched | self.published

    def key_slots(self) -> list[tuple[str, int]]:
        """Each key (and channel) and its slot, in key order."""
        return [(key, key_slot(key.encode("latin-1"))) for key in sorted(self.keys)]

    def slots(self) -> set[int]:
        return {slot for _, slot in self.key_slots()}


@dataclass
class ScriptUse:
    """Every recorded call of one script, and the channels it published to."""

    calls: list[CallKeys] = field(default_factory=list)
    #: Channels it published to (PUBLISH now; SPUBLISH on a cluster, where a channel counts
    #: for the slot too).
    published: set[str] = field(default_factory=set)

    def crossing(self) -> list[CallKeys]:
        """The calls whose keys hash to more than one slot: CROSSSLOT on a cluster."""
        return [call for call in self.calls if len(call.slots()) > 1]


@dataclass
class _Call:
    script: tuple[str, str]
    declared: list[str]
    commands: list[list[str]] = field(default_factory=list)


async def _read(monitor: Monitor, lines: list[str]) -> None:
    assert monitor.connection is not None
    while True:
        response = await monitor.connection.read_response()
        line = response.decode("latin-1") if isinstance(response, bytes) else str(response)
        lines.append(line)
        if f'"ECHO" "{_END}"' in line:
            return


@contextlib.asynccontextmanager
async def record_scripts(
    url: str, uses: dict[tuple[str, str], list[tuple[list[str], list[list[str]]]]]
) -> AsyncIterator[None]:
    """Record, while the block runs, each script call on the server at ``url`` into ``uses``:
    (package, name) -> [(its KEYS, the commands it ran)]."""
    watcher = Redis.from_url(url)
    lines: list[str] = []
    try:
        async with watcher.monitor() as monitor:
            reader = asyncio.create_task(_read(monitor, lines))
            yield
            await watcher.echo(_END)
            await asyncio.wait_for(reader, timeout=10)
    finally:
        await watcher.aclose()
    shas = _shas()
    current: _Call | None = None
    for line in lines:
        parsed = parse_monitor_line(line)
        if parsed is None:
            continue
        client, args = parsed
        if client == "lua":
            if current is not None:
                current.commands.append(args)
            continue
        current = None
        if args[:1] and args[0].upper() == "EVALSHA" and args[1] in shas:
            count = int(args[2])
            current = _Call(shas[args[1]], args[3 : 3 + count])
            uses.setdefault(current.script, []).append((current.declared, current.commands))


async def keys_of(redis: Redis, command: list[str]) -> list[str]:
    """The key arguments of ``command``, as Redis finds them (none for PUBLISH)."""
    try:
        keys = await redis.command_getkeys(*command)
    except ResponseError:  # "The command has no key arguments"
        return []
    return [key.decode("latin-1") if isinstance(key, bytes) else str(key) for key in keys]


async def summarize(redis: Redis, calls: Iterable[tuple[list[str], list[list[str]]]]) -> ScriptUse:
    """One script's recorded calls as a :class:`ScriptUse`."""
    use = ScriptUse()
    for declared, commands in calls:
        touched: set[str] = set()
        published: set[str] = set()
        for command in commands:
            touched.update(await keys_of(redis, command))
            if command[0].upper() in ("PUBLISH", "SPUBLISH"):
                published.add(command[1])
        use.published |= published
        use.calls.append(CallKeys(frozenset(declared), frozenset(touched), frozenset(published)))
    return use
