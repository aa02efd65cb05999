"""The agent's recent log records, kept in memory for `GET /api/hosts/{id}/logs`.

How it works. `LogBuffer` is a `logging.Handler` on the root logger (installed by
the CLI's `setup_logging`). Each record it receives becomes a `LogEntry` with a
sequence number, in a ring of `capacity` entries, so memory stays bounded however
long the agent runs and however much it logs: the oldest entries fall off.

Readers take a snapshot (`lines`), or follow: they remember the sequence number of
the last entry they saw, ask for everything after it (`entries_after`), and sleep in
`wait_beyond` until a newer entry arrives. A follower slower than the ring is told
how many entries it missed instead of silently getting a gap.

Records can be emitted from any thread (trio.to_thread workers log too), so the ring
is guarded by the handler's own lock, and a waiting trio task is woken through its
run's TrioToken, which is safe to call from any thread.

Anything a follower does per entry must not log at a level the buffer keeps, or
every line sent would make another line to send.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import trio

DEFAULT_CAPACITY = 5000

_installed: LogBuffer | None = None


@dataclass(frozen=True)
class LogEntry:
    """One log record, as it goes over the channel."""

    seq: int
    time_unix_ms: int
    level: str
    logger: str
    message: str


class _Waiter:
    """One trio task waiting for entries beyond a sequence number."""

    def __init__(self, after_seq: int) -> None:
        self.after_seq = after_seq
        self.event = trio.Event()
        self.token = trio.lowlevel.current_trio_token()

    def wake(self) -> None:
        try:
            self.token.run_sync_soon(self.event.set)
        except trio.RunFinishedError:
            pass


class LogBuffer(logging.Handler):
    """A bounded ring of the most recent log records, readable and followable."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        super().__init__()
        self.capacity = capacity
        self._entries: deque[LogEntry] = deque(maxlen=capacity)
        self._last_seq = 0
        self._waiters: set[_Waiter] = set()

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest entry (0 before the first)."""
        return self._last_seq

    def emit(self, record: logging.LogRecord) -> None:
        """Keep one record; `logging` holds `self.lock` around this call."""
        try:
            message = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._last_seq += 1
        self._entries.append(
            LogEntry(
                self._last_seq,
                int(record.created * 1000),
                record.levelname,
                record.name,
                message,
            )
        )
        for waiter in [w for w in self._waiters if w.after_seq < self._last_seq]:
            self._waiters.discard(waiter)
            waiter.wake()

    def lines(self, since_ms: int = 0, limit: int = 0) -> tuple[list[LogEntry], int]:
        """The newest `limit` entries (all if 0) at or after `since_ms`.

        Also returns the newest sequence number, from where a follower continues.
        """
        with self.lock:
            matching = [e for e in self._entries if e.time_unix_ms >= since_ms]
            last_seq = self._last_seq
        if limit:
            matching = matching[-limit:]
        return matching, last_seq

    def entries_after(self, seq: int) -> tuple[list[LogEntry], int]:
        """Entries newer than `seq`, and how many of those already fell off the ring."""
        with self.lock:
            newer = [e for e in self._entries if e.seq > seq]
            last_seq = self._last_seq
        first = newer[0].seq if newer else last_seq + 1
        return newer, first - seq - 1

    async def wait_beyond(self, seq: int) -> None:
        """Return once an entry newer than `seq` exists."""
        with self.lock:
            if self._last_seq > seq:
                return
            waiter = _Waiter(seq)
            self._waiters.add(waiter)
        try:
            await waiter.event.wait()
        finally:
            with self.lock:
                self._waiters.discard(waiter)


def install(level: int | str, capacity: int = DEFAULT_CAPACITY) -> LogBuffer:
    """Add a LogBuffer at `level` to the root logger, once; return it."""
    global _installed
    if _installed is None:
        _installed = LogBuffer(capacity)
        logging.getLogger().addHandler(_installed)
    _installed.setLevel(level)
    return _installed


def installed() -> LogBuffer | None:
    """The LogBuffer `install` put on the root logger, if any."""
    return _installed
