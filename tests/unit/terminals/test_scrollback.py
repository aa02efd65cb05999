"""The scrollback's offsets, bounds and the room it leaves for unacknowledged output."""

from __future__ import annotations

import pytest

from gstacks_agent.terminals.scrollback import Scrollback


def test_offsets_count_every_byte_ever_appended():
    buffer = Scrollback(capacity=8)
    buffer.append(b"hello")
    buffer.append(b" world")
    assert (buffer.start, buffer.end) == (3, 11)
    assert buffer.read(3, 100) == b"lo world"
    assert buffer.read(6, 3) == b"wor"
    assert buffer.read(11, 10) == b""


def test_reading_before_the_start_or_past_the_end_is_refused():
    buffer = Scrollback(capacity=4)
    buffer.append(b"abcdef")
    with pytest.raises(ValueError):
        buffer.read(1, 1)
    with pytest.raises(ValueError):
        buffer.read(7, 1)


def test_room_never_lets_unacknowledged_bytes_fall_out():
    buffer = Scrollback(capacity=10)
    buffer.append(b"0123456789")
    assert buffer.room(acknowledged=0) == 0
    assert buffer.room(acknowledged=4) == 4
    buffer.append(b"wxyz")
    # The four new bytes pushed out exactly the four acknowledged ones.
    assert buffer.start == 4
    assert buffer.read(4, 10) == b"456789wxyz"
    assert buffer.room(acknowledged=4) == 0


def test_an_acknowledgement_older_than_the_buffer_counts_from_its_start():
    buffer = Scrollback(capacity=4)
    buffer.append(b"abcdefgh")
    assert buffer.room(acknowledged=0) == 0
    assert buffer.room(acknowledged=8) == 4


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        Scrollback(capacity=0)
