"""The codec: msgpack on the bus, JSON for clients, and what each refuses."""

from __future__ import annotations

import threading
from typing import Any

import msgpack
import pytest

from common.codec import dump_client, dump_client_str, load_bus, load_client, pack_bus
from common.errors import ErrorCode, ProtocolError


# Client frames (JSON).


def test_client_frames_round_trip() -> None:
    """A JSON object survives dump_client (bytes or str) and load_client unchanged."""
    frame = {"type": "chat.send", "ref": 7, "text": "héllo ✓", "list": [1, 2.5, None, True]}
    assert load_client(dump_client(frame)) == frame
    assert load_client(dump_client_str(frame)) == frame
    assert isinstance(dump_client(frame), bytes)
    assert isinstance(dump_client_str(frame), str)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        '{"type": "ping"',
        '{"type": ping}',
        "{'type': 'ping'}",
        '{"a": NaN}',
        '{"a": 1} trailing',
        "\ud800",
        b"\xff\xfe",
        b'{"text": "\xc3"}',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_load_client_rejects_malformed_json(text: str | bytes) -> None:
    """Text that is not valid JSON (or not valid UTF-8) is a bad_request ProtocolError."""
    with pytest.raises(ProtocolError) as caught:
        load_client(text)
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert "malformed JSON" in caught.value.message


@pytest.mark.parametrize("text", ["[]", '[{"type": "ping"}]', "1", '"ping"', "null", "true"])
def test_load_client_rejects_json_that_is_not_an_object(text: str) -> None:
    """Valid JSON that is not an object is a bad_request ProtocolError."""
    with pytest.raises(ProtocolError) as caught:
        load_client(text)
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert "object" in caught.value.message


# Bus values (msgpack).


def test_bus_values_round_trip() -> None:
    """A map of strings, numbers, bytes, lists and maps survives pack_bus and load_bus."""
    value: dict[str, Any] = {
        "s": "héllo",
        "i": -(2**63),
        "u": 2**64 - 1,
        "f": 1.5,
        "b": b"\x00\xff",
        "n": None,
        "t": True,
        "l": [1, "two", [3]],
        "m": {"k": {"k": "v"}},
    }
    assert load_bus(pack_bus(value)) == value


def test_bus_strings_and_bytes_stay_distinct() -> None:
    """Text decodes to str and binary to bytes (use_bin_type), so neither is mistaken."""
    decoded = load_bus(pack_bus({"s": "abc", "b": b"abc"}))
    assert decoded == {"s": "abc", "b": b"abc"}
    assert isinstance(decoded["s"], str)
    assert isinstance(decoded["b"], bytes)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="never-used-byte"),
        pytest.param(b"\x92\x01", id="truncated-array"),
        pytest.param(b"\x81\xa1a", id="truncated-map"),
        pytest.param(b"\x81\xa1a\x01\x00", id="extra-data"),
        pytest.param(b"\xa2\xff\xfe", id="invalid-utf8-string"),
        pytest.param(b"\x81\x01\x02", id="integer-map-key"),
        pytest.param(b"\x81\x91\x01\x02", id="array-map-key"),
        pytest.param(b"\xd4\xff\x00", id="bad-timestamp-ext"),
        pytest.param(b"\x91" * 5000 + b"\x00", id="too-deep"),
        pytest.param(b"not msgpack at all, just text", id="text"),
    ],
)
def test_load_bus_rejects_garbage(data: bytes) -> None:
    """Bytes that are not one msgpack value with string keys are a bad_request ProtocolError."""
    with pytest.raises(ProtocolError) as caught:
        load_bus(data)
    assert caught.value.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize(
    "value",
    [[1, 2], "text", b"bytes", 7, None, True, 1.5],
)
def test_load_bus_rejects_values_that_are_not_maps(value: Any) -> None:
    """A well-formed msgpack value that is not a map is a bad_request ProtocolError."""
    with pytest.raises(ProtocolError, match="map") as caught:
        load_bus(msgpack.packb(value, use_bin_type=True))
    assert caught.value.code is ErrorCode.BAD_REQUEST


def test_load_bus_rejects_an_extension_value() -> None:
    """A msgpack extension value at the top level is not a map and is refused."""
    with pytest.raises(ProtocolError):
        load_bus(msgpack.packb(msgpack.ExtType(5, b"x")))


def test_a_value_that_cannot_be_packed_leaves_the_next_one_intact() -> None:
    """The reused packer starts afresh after a failure: no bytes of the failed value leak."""
    with pytest.raises(TypeError):
        pack_bus({"a": 1, "b": {1, 2}})
    assert load_bus(pack_bus({"k": "v"})) == {"k": "v"}


def test_each_thread_packs_with_its_own_packer() -> None:
    """Threads packing at once each get exactly their own values back."""
    values = [{"thread": n, "payload": "x" * (100 + n)} for n in range(8)]
    results: list[list[bytes]] = [[] for _ in values]

    def pack_many(index: int) -> None:
        results[index] = [pack_bus(values[index]) for _ in range(2000)]

    threads = [threading.Thread(target=pack_many, args=(n,)) for n in range(len(values))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for value, packed in zip(values, results, strict=True):
        assert {load_bus(item)["thread"] for item in packed} == {value["thread"]}
        assert all(load_bus(item) == value for item in packed)
