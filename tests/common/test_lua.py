"""The Lua loader against a real Redis: scripts sent by SHA1, loaded again after NOSCRIPT."""

from __future__ import annotations

import hashlib

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from common.lua import ScriptCall, Scripts, text


# presence's list script: read-only, bare (no lib.lua), and answers {1, count, 0} when asked
# about an empty channel by nobody in particular.
_LIST = ScriptCall("list", ("presence:ch:chat:nobody",), ("", "10"))


@pytest.fixture
async def scripts(redis: Redis) -> Scripts:
    """The presence scripts, loaded."""
    loaded = Scripts(redis, "presence_service", ("list", "track"), bare=("list",))
    await loaded.load()
    return loaded


def test_every_script_starts_with_the_prelude_and_bare_ones_skip_the_library(
    scripts: Scripts,
) -> None:
    """The prelude comes first in every script; lib.lua only in those not bare."""
    prelude = next(iter(scripts.sources.values())).splitlines()[0]
    assert all(source.startswith(prelude) for source in scripts.sources.values())
    assert "local function add_member" in scripts.sources["track"]
    assert "local function add_member" not in scripts.sources["list"]


async def test_a_call_after_a_script_flush_loads_the_scripts_and_runs(
    scripts: Scripts, redis: Redis
) -> None:
    """A single call that meets NOSCRIPT loads the scripts again and gets its result."""
    await redis.script_flush()
    assert await scripts.call(_LIST.script, _LIST.keys, _LIST.args) == [1, 0, 0]
    assert await redis.script_exists(*_shas(scripts)) == [True, True]


async def test_a_pipeline_after_a_script_flush_runs_every_call_in_order(
    scripts: Scripts, redis: Redis
) -> None:
    """Every call of a pipeline that met NOSCRIPT is sent again once the scripts are loaded."""
    assert await scripts.pipeline([]) == []
    await redis.script_flush()
    calls = [_LIST, ScriptCall("list", ("presence:ch:chat:other",), ("", "0")), _LIST]
    assert await scripts.pipeline(calls) == [[1, 0, 0]] * 3


async def test_a_failing_script_gives_its_error_in_place(scripts: Scripts) -> None:
    """A script error is returned in place of that call's result, the others still run."""
    # track without the prelude's arguments: the script fails before it writes anything.
    broken = ScriptCall("track", ("presence:conn:x",), ())
    ok, failed = await scripts.pipeline([_LIST, broken])
    assert ok == [1, 0, 0]
    assert isinstance(failed, ResponseError)


def test_text_decodes_what_scripts_return() -> None:
    """Bytes, strings and integers of a script's result all read as strings."""
    assert [text(b"a"), text("b"), text(3)] == ["a", "b", "3"]


def _shas(scripts: Scripts) -> list[str]:
    return [hashlib.sha1(source.encode()).hexdigest() for source in scripts.sources.values()]
