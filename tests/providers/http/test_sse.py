"""The incremental SSE parser: framing, comments, multi-line data, split chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.providers.http.sse import SSEDecoder, SSEError, SSEEvent, aiter_sse

STREAM = (
    b": keepalive\n"
    b"event: message_start\n"
    b'data: {"type":"message_start"}\n'
    b"\n"
    b"data: first line\n"
    b"data:second line\n"
    b"data\n"
    b"id: 7\n"
    b"retry: 1000\n"
    b"\n"
    b": another comment\n"
    b"\n"
    b"data: [DONE]\n"
    b"\n"
)

EXPECTED = [
    SSEEvent(data='{"type":"message_start"}', event="message_start"),
    SSEEvent(data="first line\nsecond line\n", event="message", id="7"),
    SSEEvent(data="[DONE]", event="message", id="7"),
]


def parse(*chunks: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.close()


def test_events_comments_and_multiline_data() -> None:
    assert parse(STREAM) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert parse(*chunks) == EXPECTED


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"])
def test_every_line_ending_frames_events(newline: bytes) -> None:
    stream = STREAM.replace(b"\n", newline)
    one_byte_chunks = [stream[i : i + 1] for i in range(len(stream))]
    assert parse(stream) == EXPECTED
    assert parse(*one_byte_chunks) == EXPECTED


def test_crlf_split_across_chunks_is_one_line_break() -> None:
    # Were the CR taken as a break and the LF as a second one, the blank line
    # between them would dispatch `a` early and `b` separately.
    assert parse(b"data: a\r", b"\ndata: b\r\n\r\n") == [SSEEvent(data="a\nb")]


def test_a_held_back_cr_at_the_end_is_a_line_break() -> None:
    assert parse(b"data: a\n\r") == [SSEEvent(data="a")]


def test_an_event_cut_off_by_the_end_is_dropped() -> None:
    assert parse(b"data: whole\n\ndata: cut") == [SSEEvent(data="whole")]
    assert parse(b"data: whole\n\ndata: cut\n") == [SSEEvent(data="whole")]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert parse(b"\n\nevent: ping\n\n: c\n\n") == []


def test_bom_and_split_utf8_characters() -> None:
    text = "data: héllo ✓\n\n".encode()
    stream = b"\xef\xbb\xbf" + text
    assert parse(*[stream[i : i + 1] for i in range(len(stream))]) == [SSEEvent(data="héllo ✓")]


def test_field_without_space_and_value_with_colons() -> None:
    assert parse(b"data:a: b\n\n") == [SSEEvent(data="a: b")]


def test_an_endless_line_is_refused() -> None:
    decoder = SSEDecoder(max_event_chars=16)
    with pytest.raises(SSEError):
        decoder.feed(b"data: " + b"x" * 32)


def test_endless_data_across_lines_is_refused() -> None:
    decoder = SSEDecoder(max_event_chars=16)
    with pytest.raises(SSEError):
        decoder.feed(b"data: 0123456789\ndata: 0123456789\n")


async def test_aiter_sse_over_an_async_byte_stream() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(STREAM), 10):
            yield STREAM[i : i + 10]

    assert [event async for event in aiter_sse(chunks())] == EXPECTED
