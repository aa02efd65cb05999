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
