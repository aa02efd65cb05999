"""Keeping a sandbox's log file bounded.

A sandbox's stdout and stderr go straight into `<bundle>/log`, opened by runc with
O_APPEND, so no agent process sits in the data path and a sandbox survives agent
restarts. The price is that nothing bounds the file as it is written; instead the
agent looks now and then, and a file past its limit keeps only its newest part, the
way logrotate's copytruncate does: read the tail, truncate, write the tail back.
The program goes on appending at the file's new end throughout. Lines written in
the instant between the read and the truncate can be lost; a log is allowed that,
a full disk is not.
"""

from __future__ import annotations

import os
from pathlib import Path

DROPPED_MARKER = b"[gstacks: earlier output dropped to keep the log bounded]\n"


def cap_log(path: Path, max_bytes: int, keep_bytes: int) -> bool:
    """If `path` is over `max_bytes`, keep its last `keep_bytes` from a line start.

    Returns whether the file was cut. A missing file is left alone.
    """
    if not 0 < keep_bytes < max_bytes:
        raise ValueError(
            f"need 0 < keep_bytes < max_bytes, not {keep_bytes}, {max_bytes}"
        )
    try:
        file = open(path, "r+b")
    except FileNotFoundError:
        return False
    with file:
        size = file.seek(0, os.SEEK_END)
        if size <= max_bytes:
            return False
        file.seek(size - keep_bytes)
        tail = file.read(keep_bytes)
        newline = tail.find(b"\n")
        if 0 <= newline < len(tail) - 1:
            tail = tail[newline + 1 :]
        file.truncate(0)
        file.seek(0)
        file.write(DROPPED_MARKER + tail)
    return True
