"""Server text frames built once, checked against websockets' own frame parser."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from realtime_gateway.frames import text_frame


def _parse(data: bytes) -> tuple[Frame, bytes]:
    """The first frame in ``data`` as a client parses it (unmasked), and the bytes after it."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
    else:
        raise AssertionError("the parser wanted more bytes than the frame holds")
    return frame, bytes(reader.buffer)


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_parses_back_to_its_payload(length: int) -> None:
    """A frame of any length class parses as one final, unmasked text frame with the payload."""
    payload = (b'{"type":"event","data":"' + b"x" * length)[:length]
    data = text_frame(payload)
    frame, rest = _parse(data)
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert (frame.rsv1, frame.rsv2, frame.rsv3) == (False, False, False)
    assert frame.data == payload
    assert rest == b"", "the frame is exactly as long as its header says"
    assert data[1] & 0x80 == 0, "a server frame is not masked"


@pytest.mark.parametrize(
    ("length", "header_length"),
    [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (70000, 10)],
)
def test_text_frame_uses_the_shortest_length_encoding(length: int, header_length: int) -> None:
    """Lengths up to 125 fit the first bytes, up to 65535 take 16 bits, beyond that 64 bits."""
    assert len(text_frame(b"a" * length)) == header_length + length


def test_text_frame_with_multibyte_utf8() -> None:
    """A payload with multi-byte characters parses back to the same text."""
    text = '{"text":"héllo ✓ 🎉"}'
    frame, _ = _parse(text_frame(text.encode()))
    assert bytes(frame.data).decode() == text


def test_frames_written_back_to_back_parse_one_after_the_other() -> None:
    """Several frames in one write are each delimited exactly (events share a transport buffer)."""
    payloads = [b"a" * 10, b"b" * 300, b"c" * 70000, b""]
    data = b"".join(text_frame(payload) for payload in payloads)
    for payload in payloads:
        frame, data = _parse(data)
        assert frame.data == payload
    assert data == b""


def test_text_frame_is_what_websockets_would_send() -> None:
    """The bytes match websockets' own serialisation of the same unmasked text frame."""
    for length in (0, 125, 126, 65536):
        payload = b"z" * length
        expected = Frame(Opcode.TEXT, payload).serialize(mask=False)
        assert text_frame(payload) == expected
