"""Wall-clock timestamps as the API shows them: RFC 3339, UTC, second precision."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_unix() -> float:
    return time.time()


def rfc3339_ms(unix_ms: int) -> str:
    """RFC 3339 in UTC with milliseconds, for log lines that arrive many per second."""
    instant = datetime.fromtimestamp(unix_ms / 1000, UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{unix_ms % 1000:03d}Z"


def parse_instant_ms(text: str) -> int:
    """Milliseconds since the epoch from RFC 3339 text or a count of unix ms.

    Raises ValueError for anything else, including a time without a zone offset,
    which would mean a different instant on every host.
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    # RFC 3339 allows a lowercase "t" and "z"; fromisoformat does not.
    instant = datetime.fromisoformat(text.upper())
    if instant.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; end it with Z or an offset")
    return int(instant.timestamp() * 1000)
