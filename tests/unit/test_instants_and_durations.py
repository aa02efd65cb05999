"""Times as the API reads them (`since`) and as an operator types them (`10m`)."""

from __future__ import annotations

import pytest

from control_plane_lite.clock import parse_instant_ms, rfc3339_ms
from gstacks_cli.durations import parse_duration_s, since_parameter


@pytest.mark.parametrize(
    ("text", "unix_ms"),
    [
        ("1796396400250", 1796396400250),
        ("2026-12-04T15:00:00Z", 1796396400000),
        ("2026-12-04t15:00:00.250z", 1796396400250),
        ("2026-12-04T16:00:00.250+01:00", 1796396400250),
    ],
)
def test_since_accepts_rfc3339_and_unix_milliseconds(text, unix_ms):
    assert parse_instant_ms(text) == unix_ms


@pytest.mark.parametrize("text", ["yesterday", "2026-12-04T15:00:00", "-5", ""])
def test_since_refuses_other_text_and_times_without_a_zone(text):
    with pytest.raises(ValueError):
        parse_instant_ms(text)


def test_log_times_carry_milliseconds():
    assert rfc3339_ms(1796396400005) == "2026-12-04T15:00:00.005Z"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800)],
)
def test_durations_in_seconds(text, seconds):
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "1.5h", "h", "10 minutes", "-1m"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="90s, 15m, 2h or 7d"):
        parse_duration_s(text)


def test_since_a_duration_means_that_long_ago_in_unix_ms():
    assert since_parameter("10m", now_s=1000.0) == str(400_000)
    # Anything else is passed on for the server to read.
    assert since_parameter("2026-12-04T15:00:00Z") == "2026-12-04T15:00:00Z"
    assert since_parameter("1796396400250") == "1796396400250"
