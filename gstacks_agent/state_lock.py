"""One daemon per state dir.

Two agents on one state dir would both recover, watch and delete the same sandboxes,
and a control plane on the same SQLite file would report hosts wrongly. The daemon
therefore holds an exclusive flock(2) on `<state_dir>/daemon.lock` for its lifetime;
the kernel releases it when the process ends, however it ends, so a crash never
leaves a stale lock behind. The file records the holder's pid for the error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from gstacks_agent.errors import FailedPrecondition

LOCK_FILE = "daemon.lock"


@contextlib.contextmanager
def hold_state_dir(state_dir: Path) -> Iterator[None]:
    """Hold the state dir's lock, or raise FailedPrecondition naming its holder."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FailedPrecondition(
                f"state dir {state_dir} is in use by another gstacks-agent (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
