"""Durations and instants as an operator types them: `90s`, `15m`, `2h`, `7d`.

`--ttl 2h` becomes 7200 seconds; `--since 10m` becomes the instant ten minutes ago,
while an RFC 3339 time or a count of unix milliseconds is passed on as given, for
the control plane to read.
"""

from __future__ import annotations

import re
import time

UNIT_S = {"s": 1, "m": 60, "h": 60 * 60, "d": 24 * 60 * 60}

_DURATION_RE = re.compile(r"^(?P<count>\d+)(?P<unit>[smhd]?)$")


def parse_duration_s(text: str) -> int:
    """Whole seconds from `N`, `Ns`, `Nm`, `Nh` or `Nd`; ValueError otherwise."""
    match = _DURATION_RE.match(text.strip())
    if match is None:
        raise ValueError(
            f"expected a duration such as 90s, 15m, 2h or 7d, not {text!r}"
        )
    return int(match["count"]) * UNIT_S[match["unit"] or "s"]


def since_parameter(text: str, now_s: float | None = None) -> str:
    """The `since` query value for `--since TEXT`.

    A duration (`10m`) means that long ago and becomes unix milliseconds; anything
    else (an RFC 3339 time, unix milliseconds) is left for the server to check.
    """
    match = _DURATION_RE.match(text.strip())
    if match is None or not match["unit"]:
        return text
    now_s = time.time() if now_s is None else now_s
    return str(int((now_s - parse_duration_s(text)) * 1000))
