"""A terminal's recent output, addressed by absolute byte offsets.

Offset 0 is the first byte the process ever wrote; `end` is one past the last. The
buffer holds the newest `capacity` bytes, `[start, end)`. A client that reattaches
says how many bytes it has (its offset) and is sent the rest from there, as long as
`start` has not passed it; the session stops reading the PTY before unacknowledged
bytes would be pushed out (see `room`), so a client that keeps acknowledging what it
receives never loses a byte.
"""

from __future__ import annotations


class Scrollback:
    """A bounded byte buffer with absolute offsets. Pure: no I/O, no time."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, not {capacity}")
        self.capacity = capacity
        self._data = bytearray()
        self._start = 0

    @property
    def start(self) -> int:
        """Offset of the oldest byte still held."""
        return self._start

    @property
    def end(self) -> int:
        """Offset one past the newest byte: how many bytes were ever appended."""
        return self._start + len(self._data)

    def room(self, acknowledged: int) -> int:
        """How many bytes may be appended without dropping any past `acknowledged`."""
        return max(0, self.capacity - (self.end - max(acknowledged, self._start)))

    def append(self, data: bytes) -> None:
        """Add output; the oldest bytes beyond `capacity` are dropped."""
        self._data += data
        excess = len(self._data) - self.capacity
        if excess > 0:
            del self._data[:excess]
            self._start += excess

    def read(self, offset: int, max_bytes: int) -> bytes:
        """Up to `max_bytes` from `offset`, which must lie in `[start, end]`."""
        if not self._start <= offset <= self.end:
            raise ValueError(f"offset {offset} is outside [{self._start}, {self.end}]")
        begin = offset - self._start
        return bytes(self._data[begin : begin + max_bytes])
