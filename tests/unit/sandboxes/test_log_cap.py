"""A sandbox log over its limit keeps its newest lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from gstacks_agent.sandboxes.log_cap import DROPPED_MARKER, cap_log


def test_a_log_under_its_limit_is_left_alone(tmp_path: Path):
    log = tmp_path / "log"
    log.write_bytes(b"one\ntwo\n")
    assert cap_log(log, max_bytes=100, keep_bytes=10) is False
    assert log.read_bytes() == b"one\ntwo\n"


def test_a_log_over_its_limit_keeps_whole_newest_lines(tmp_path: Path):
    log = tmp_path / "log"
    log.write_bytes(b"".join(f"line {i}\n".encode() for i in range(1000)))
    assert cap_log(log, max_bytes=1000, keep_bytes=30) is True
    kept = log.read_bytes()
    assert kept.startswith(DROPPED_MARKER)
    lines = kept[len(DROPPED_MARKER) :].decode().splitlines()
    assert lines[-1] == "line 999"
    assert all(line.startswith("line ") for line in lines)


def test_appending_after_a_cut_continues_at_the_new_end(tmp_path: Path):
    log = tmp_path / "log"
    log.write_bytes(b"x" * 2000 + b"\nlast\n")
    with open(log, "ab") as writer:  # as runc's O_APPEND descriptor does
        assert cap_log(log, max_bytes=1000, keep_bytes=100)
        writer.write(b"after\n")
    assert log.read_bytes() == DROPPED_MARKER + b"last\nafter\n"


def test_missing_log_and_bad_limits(tmp_path: Path):
    assert cap_log(tmp_path / "absent", max_bytes=10, keep_bytes=5) is False
    with pytest.raises(ValueError):
        cap_log(tmp_path / "absent", max_bytes=10, keep_bytes=10)
