"""Reading a mount table (proc(5) `mountinfo`) into mount points and their types."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    mount_point: str
    fstype: str
    source: str


def read_mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[MountEntry]:
    """Every mount in `mountinfo`, in table order (parents before children)."""
    entries = []
    for line in mountinfo.read_text().splitlines():
        # Fields: id parent major:minor root mount-point options [optional...] -
        # fstype source super-options; the "-" ends the optional fields.
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 2:
            continue
        entries.append(MountEntry(_unescape(fields[4]), rest[0], _unescape(rest[1])))
    return entries


def is_mount_point(path: str, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    return any(entry.mount_point == path for entry in read_mounts(mountinfo))


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash as \ooo octal escapes.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)
