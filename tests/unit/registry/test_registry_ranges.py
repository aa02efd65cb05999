import pytest

from control_plane_lite.registry.errors import RangeInvalid, RangeNotSatisfiable
from control_plane_lite.registry.ranges import parse_blob_range, parse_content_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 9)),
        ("bytes=5-", (5, 99)),
        ("bytes=90-200", (90, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-500", (0, 99)),
    ],
)
def test_single_blob_ranges_select_inclusive_offsets(header, expected):
    assert parse_blob_range(header, 100) == expected


@pytest.mark.parametrize(
    "header", [None, "bytes=0-1,5-6", "items=0-1", "bytes=9-3", "bytes=-", "junk"]
)
def test_ranges_the_server_ignores_serve_the_whole_blob(header):
    assert parse_blob_range(header, 100) is None


def test_range_past_the_end_is_unsatisfiable_and_names_the_size():
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_blob_range("bytes=100-", 100)
    assert caught.value.status == 416
    assert caught.value.headers() == {"Content-Range": "bytes */100"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [("0-99", (0, 99)), ("bytes 5-9/10", (5, 9)), ("bytes=5-9/*", (5, 9))],
)
def test_content_range_spellings_are_accepted(header, expected):
    assert parse_content_range(header) == expected


@pytest.mark.parametrize("header", ["", "5", "9-5", "a-b", "-5"])
def test_malformed_content_range_is_refused(header):
    with pytest.raises(RangeInvalid):
        parse_content_range(header)
