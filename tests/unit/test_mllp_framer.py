"""MLLP de-framing (connectors.hl7v2.mllp.MllpFramer): frames across chunk boundaries, junk
and torn frames discarded and counted, whitespace between frames tolerated, a frame too
large refused; hypothesis checks that any split of a stream yields the same frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medbridge.connectors.hl7v2.mllp import END, START, FrameTooLarge, MllpFramer


def framed(*messages: bytes) -> bytes:
    return b"".join(START + m + END for m in messages)


def test_frames_split_anywhere_are_reassembled() -> None:
    stream = framed(b"MSH|one", b"MSH|two") + b"\n"
    framer = MllpFramer(1024)
    got: list[bytes] = []
    for i in range(len(stream)):
        got += framer.feed(stream[i : i + 1])
    assert got == [b"MSH|one", b"MSH|two"]
    assert framer.take_discarded() == (0, 0)  # the newline is not junk


def test_junk_outside_frames_is_discarded_and_counted() -> None:
    framer = MllpFramer(1024)
    assert framer.feed(b"garbage" + framed(b"MSH|ok") + b"more") == [b"MSH|ok"]
    assert framer.take_discarded() == (len(b"garbage") + len(b"more"), 0)
    assert framer.take_discarded() == (0, 0)


def test_a_torn_frame_is_dropped_when_a_new_one_starts() -> None:
    framer = MllpFramer(1024)
    assert framer.feed(START + b"MSH|torn" + framed(b"MSH|whole")) == [b"MSH|whole"]
    assert framer.take_discarded() == (0, 1)


def test_end_bytes_split_across_chunks() -> None:
    framer = MllpFramer(1024)
    assert framer.feed(START + b"MSH|a\x1c") == []
    assert framer.feed(b"\x0d") == [b"MSH|a"]


def test_a_frame_larger_than_the_limit_is_refused() -> None:
    framer = MllpFramer(16)
    with pytest.raises(FrameTooLarge):
        framer.feed(START + b"x" * 64)


def test_a_stream_of_start_bytes_is_junk_not_frames() -> None:
    framer = MllpFramer(1 << 20)
    assert framer.feed(START * 10_000 + framed(b"MSH|ok")) == [b"MSH|ok"]
    assert framer.take_discarded() == (0, 10_000)


messages = st.lists(
    st.binary(min_size=1, max_size=40).map(
        lambda b: b.replace(START, b"").replace(b"\x1c", b"") or b"x"
    ),
    max_size=8,
)


@given(messages, st.lists(st.integers(min_value=1, max_value=50), max_size=20))
def test_any_split_of_a_stream_yields_the_same_frames(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = framed(*payloads)
    framer = MllpFramer(1 << 20)
    got: list[bytes] = []
    at = 0
    for cut in cuts:
        got += framer.feed(stream[at : at + cut])
        at += cut
    got += framer.feed(stream[at:])
    assert got == payloads
