"""The two byte-range headers of the registry API, parsed without I/O.

`Range: bytes=<first>-<last>` asks for part of a blob (RFC 9110 section 14.2);
`Content-Range: <first>-<last>` places an upload chunk (OCI distribution spec,
"Pushing a blob in chunks"), where the spec drops RFC 9110's `bytes ` unit and
`/length`; both spellings are accepted. Offsets are inclusive on both ends.
"""

from __future__ import annotations

import re

from .errors import RangeInvalid, RangeNotSatisfiable

_RANGE_RE = re.compile(r"bytes=(?P<first>\d*)-(?P<last>\d*)")
_CONTENT_RANGE_RE = re.compile(
    r"(?:bytes[ =])?(?P<first>\d+)-(?P<last>\d+)(?:/(?:\d+|\*))?"
)


def parse_blob_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte a Range header selects from `size` bytes.

    Returns None when the whole blob should be sent: no header, or one this
    server ignores as RFC 9110 allows (several ranges, another unit, malformed).
    Raises RangeNotSatisfiable when the range lies wholly past the end (a 416).
    """
    if header is None:
        return None
    match = _RANGE_RE.fullmatch(header.strip())
    if not match or (not match["first"] and not match["last"]):
        return None

    if not match["first"]:
        # A suffix range: the last N bytes.
        suffix = int(match["last"])
        if suffix == 0:
            raise _unsatisfiable(header, size)
        return max(size - suffix, 0), size - 1

    first = int(match["first"])
    last = int(match["last"]) if match["last"] else size - 1
    if match["last"] and last < first:
        return None
    if first >= size:
        raise _unsatisfiable(header, size)
    return first, min(last, size - 1)


def parse_content_range(header: str) -> tuple[int, int]:
    """The inclusive (first, last) offsets of an upload chunk's Content-Range."""
    match = _CONTENT_RANGE_RE.fullmatch(header.strip())
    if not match or int(match["last"]) < int(match["first"]):
        raise RangeInvalid(
            f"invalid Content-Range {header!r}: expected '<first>-<last>'",
            detail={"content_range": header},
        )
    return int(match["first"]), int(match["last"])


def _unsatisfiable(header: str, size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"range {header!r} is outside the blob's {size} bytes",
        size=size,
        detail={"range": header},
    )
