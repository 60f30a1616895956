"""The normative docs against the code: protocol.md's tables and bus.md's examples.

Clients and services in other languages are written from docs/protocol.md and docs/bus.md,
so a code table that gains, loses or changes an entry must change the doc in the same
commit; these tests fail until it does.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from common.codec import load_bus, pack_bus
from common.envelope import parse_envelope
from common.errors import CLOSE_RECONNECT, CloseCode, ErrorCode
from common.redis_client import MAX_BLOCK
from common.registry import Announcement
from common.settings import BusSettings, Env, ServiceSettings
from tests.support.registry import BUILT_IN_OFFERS


DOCS = Path(__file__).resolve().parents[2] / "docs"


def _section(name: str, heading: str) -> str:
    """The text of one ``## heading`` section of a doc, up to the next heading of that level."""
    text = (DOCS / name).read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"{name} has no section '## {heading}'"
    return match.group(1)


def _table(section: str, first_header: str) -> list[list[str]]:
    """The body rows of the markdown table whose header row starts with ``first_header``."""
    lines = section.splitlines()
    header = f"| {first_header} |"
    starts = [n for n, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"expected one table headed {header!r}, found {len(starts)}"
    rows = []
    for line in lines[starts[0] + 2 :]:  # past the header and its --- row
        if not line.startswith("|"):
            break
        # A cell may hold an escaped pipe (\|); no cell here does, but splitting must not break.
        cells = line.replace("\\|", "\0").strip().strip("|").split("|")
        rows.append([cell.strip().replace("\0", "|") for cell in cells])
    assert rows, f"the table headed {header!r} is empty"
    return rows


def _code(cell: str) -> str:
    """The one inline-code span a cell is made of (`like_this`)."""
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match is not None, f"expected a single `code` cell, got {cell!r}"
    return match.group(1)


def _error_rows() -> list[list[str]]:
    return _table(_section("protocol.md", "Error codes"), "Code | Meaning")


def _close_rows() -> list[list[str]]:
    return _table(_section("protocol.md", "Close codes"), "Code | Name")


def test_the_error_code_table_is_errorcode() -> None:
    """docs/protocol.md lists every ErrorCode, once each, and no code the code lacks."""
    documented = [_code(row[0]) for row in _error_rows()]
    assert len(documented) == len(set(documented)), "a code is listed twice"
    assert set(documented) == {code.value for code in ErrorCode}


def test_the_close_code_table_is_closecode() -> None:
    """docs/protocol.md lists every CloseCode, once each, by its number and its name."""
    rows = _close_rows()
    numbers = [int(row[0]) for row in rows]
    assert len(numbers) == len(set(numbers)), "a code is listed twice"
    assert set(numbers) == {int(code) for code in CloseCode}
    for row in rows:
        code = CloseCode(int(row[0]))
        assert row[1] == code.name.lower().replace("_", " "), row


def test_the_close_code_table_gives_close_reconnects_advice() -> None:
    """The Reconnect? column says yes exactly where CLOSE_RECONNECT says a client reconnects."""
    for row in _close_rows():
        code = CloseCode(int(row[0]))
        advice = row[3].split()[0].strip(",.;").lower()
        assert advice in ("yes", "no"), f"{code}: the advice must start with yes or no"
        assert (advice == "yes") is CLOSE_RECONNECT[code], f"{code}: {row[3]!r}"


def test_the_request_table_is_what_the_built_ins_announce() -> None:
    """docs/protocol.md lists every client request the built-in services announce, with
    exactly its fields."""
    rows = _table(_section("protocol.md", "Client → server messages"), "Request | Fields")
    documented: dict[str, frozenset[str]] = {}
    for row in rows:
        kind = _code(row[0])
        assert kind not in documented, f"{kind} is listed twice"
        fields = [] if row[1] == "—" else [_code(cell.strip()) for cell in row[1].split(",")]
        documented[kind] = frozenset(fields)
    announced = {k: v for offer in BUILT_IN_OFFERS.values() for k, v in offer.requests.items()}
    assert documented == announced


def _bus_commands() -> str:
    return _section("bus.md", "Requests: the stream and the consumer group")


def test_the_bus_commands_use_the_workers_defaults() -> None:
    """XADD, XREADGROUP and XAUTOCLAIM in docs/bus.md carry the settings' default numbers."""
    text = _bus_commands()
    service = ServiceSettings.from_env("chat", 0, Env({}))
    bus = BusSettings.from_env(Env({}))
    assert f"MAXLEN ~ {bus.stream_maxlen} *" in text
    read = re.search(r"XREADGROUP GROUP \S+ \S+ COUNT (\d+) BLOCK (\d+) STREAMS", text)
    assert read is not None
    block_ms = int(min(service.claim_interval, MAX_BLOCK) * 1000)
    assert (int(read.group(1)), int(read.group(2))) == (service.batch, block_ms)
    claim = re.search(r"XAUTOCLAIM \S+ \S+ \S+ (\d+) 0-0 COUNT (\d+)", text)
    assert claim is not None
    assert (int(claim.group(1)), int(claim.group(2))) == (service.claim_idle_ms, service.batch)


def _worked_examples() -> list[tuple[bytes, dict[str, Any]]]:
    """Each hex dump of bus.md's worked example with the Python value shown after it."""
    text = _section("bus.md", "Worked example")
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    examples = []
    for (lang, body), (next_lang, shown) in itertools.pairwise(blocks):
        if lang == "" and next_lang == "python":
            value = ast.literal_eval(shown.strip())
            examples.append((bytes.fromhex("".join(body.split())), value))
    assert len(examples) == 3, "a request, a reply and an event"
    return examples


@pytest.mark.parametrize("index", range(3), ids=["request", "reply", "event"])
def test_the_worked_example_bytes_are_what_the_code_makes(index: int) -> None:
    """Each hex dump decodes to the value shown, the code encodes that value to the same bytes,
    and the bus reader accepts it."""
    raw, shown = _worked_examples()[index]
    assert load_bus(raw) == shown
    envelope = parse_envelope(shown)
    assert pack_bus(envelope.to_wire()) == raw


def _lua_code(text: str) -> list[str]:
    """The lines of Lua code in ``text``: comments and blank lines left out."""
    return [line for line in text.splitlines() if line.strip() and not line.startswith("--")]


def test_the_announce_script_in_bus_md_is_the_one_that_runs() -> None:
    """docs/bus.md gives the announce script's exact source (with the prelude's now_ms), so
    that a service in another language can announce from the doc alone."""
    section = _section("bus.md", "Namespace registry")
    (documented,) = re.findall(r"```lua\n(.*?)```", section, re.S)
    common = DOCS.parent / "common"
    prelude = (common / "prelude.lua").read_text()
    now_ms = re.search(r"^local function now_ms\(\).*?^end\n", prelude, re.M | re.S)
    assert now_ms is not None
    script = (common / "lua" / "announce.lua").read_text()
    assert _lua_code(documented) == _lua_code(now_ms.group(0) + script)


def test_the_announcement_fields_table_is_the_wire_form() -> None:
    """docs/bus.md's announcement table lists exactly the fields an announcement carries."""
    rows = _table(_section("bus.md", "Namespace registry"), "Field | Type | Meaning")
    # As a service announces it: with its partitions.
    offer = dataclasses.replace(BUILT_IN_OFFERS["bids"], partitions=1)
    assert [_code(row[0]) for row in rows] == list(Announcement(offer, "i").to_wire())
