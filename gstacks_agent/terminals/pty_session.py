"""One interactive process on a pseudo-terminal, read and written through trio.

How it works: `spawn` opens a PTY pair (openpty(3)) and starts the command with
the slave as its stdin, stdout and stderr. The command is wrapped in util-linux
`setsid --ctty`, which makes the process a session leader with the slave as its
controlling terminal, so that it gets SIGWINCH on resize and SIGHUP on hang-up
(pty(7), credentials(7)). Doing this in the child with `preexec_fn` would run
Python between fork and exec, which is unsafe in a process with threads.

The agent keeps only the master. It is non-blocking and waited on with
`trio.lowlevel.wait_readable`/`wait_writable`, so a quiet terminal costs no
thread. Once every process holding the slave has exited, reading the master
fails with EIO on Linux; `read` reports that as end of file (b"").

A session supports one reading task and one writing task at a time.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import math
import os
import shutil
import signal
import struct
import termios
import tty
from collections.abc import Mapping, Sequence

import trio

from gstacks_agent.errors import MissingCapability
from gstacks_agent.terminals.errors import InvalidTerminalSize, TerminalClosed

log = logging.getLogger("gstacks.agent.terminals")

MAX_DIMENSION = 1000
DEFAULT_COLS = 80
DEFAULT_ROWS = 24


class PtySession:
    """A process running on its own PTY; see the module docstring."""

    def __init__(self, process: trio.Process, master_fd: int, name: str) -> None:
        self._process = process
        self._master = master_fd
        self._closed = False
        self.name = name

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        cols: int = DEFAULT_COLS,
        rows: int = DEFAULT_ROWS,
        name: str = "",
        raw: bool = False,
    ) -> PtySession:
        """Start `argv` on a new PTY of `cols` x `rows`.

        `env` replaces the agent's environment when given. `name` identifies the
        session in log lines (a terminal or sandbox id). `raw` starts the PTY in raw
        mode, for a program that relays another terminal (`runc exec -t`): that one
        already turned "\n" into "\r\n", and ours must not do it a second time.
        runc would switch our PTY to raw itself, but only once it runs; output that
        came earlier would be converted twice.
        """
        if not argv:
            raise ValueError("argv must name a program")
        _check_size(cols, rows)
        setsid = _setsid_path()
        master, slave = os.openpty()
        try:
            if raw:
                tty.setraw(slave)
            _set_size(master, cols, rows)
            os.set_blocking(master, False)
            # The child must not start as a process-group leader: then setsid
            # would fork, and the pid we hold would not be the session's.
            process = await trio.lowlevel.open_process(
                [setsid, "--ctty", "--", *argv],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=dict(env) if env is not None else None,
                cwd=cwd,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            # Only the child keeps the slave, so EOF shows once it is gone.
            os.close(slave)
        log.info("terminal %s: started pid %d: %s", name, process.pid, argv[0])
        return cls(process, master, name)

    @property
    def pid(self) -> int:
        """The session leader's pid."""
        return self._process.pid

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to `max_bytes` of output; b"" once the terminal is hung up."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        while True:
            self._check_open()
            try:
                return os.read(self._master, max_bytes)
            except BlockingIOError:
                pass
            except OSError as exc:
                # Linux reports a slave side closed by everyone as EIO.
                if exc.errno == errno.EIO:
                    return b""
                raise
            await trio.lowlevel.wait_readable(self._master)

    def read_ready(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` already waiting, without blocking; b"" if none.

        The PTY hands out output a few KiB at a time; gathering what is ready
        after one `read` makes fewer, larger messages downstream.
        """
        if self._closed or max_bytes < 1:
            return b""
        try:
            return os.read(self._master, max_bytes)
        except (BlockingIOError, OSError):
            # Nothing ready, or hung up (EIO): the next `read` reports the end.
            return b""

    async def write(self, data: bytes) -> None:
        """Write all of `data` as keyboard input."""
        view = memoryview(data)
        while view:
            self._check_open()
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._master)
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    raise TerminalClosed(
                        f"terminal {self.name} is hung up", resource_id=self.name
                    ) from exc
                raise
            view = view[written:]
        await trio.lowlevel.checkpoint()

    def resize(self, cols: int, rows: int) -> None:
        """Set the window size; the kernel sends SIGWINCH to the foreground job."""
        _check_size(cols, rows)
        self._check_open()
        _set_size(self._master, cols, rows)

    def size(self) -> tuple[int, int]:
        """The window size as (cols, rows)."""
        self._check_open()
        packed = fcntl.ioctl(self._master, termios.TIOCGWINSZ, b"\0" * 8)
        rows, cols, _, _ = struct.unpack("HHHH", packed)
        return cols, rows

    async def wait(self) -> int:
        """Wait for the process; its exit code, 128 + signal when killed."""
        code = await self._process.wait()
        return 128 - code if code < 0 else code

    async def close(self, grace_s: float = 2.0) -> int:
        """End the process and release the PTY; returns its exit code.

        SIGHUP first, as a terminal hang-up would, then SIGTERM, then SIGKILL,
        each after up to half of `grace_s`, sent to the session leader's process
        group; the leader is always reaped.
        """
        with trio.CancelScope(shield=True):
            for sig, wait_s in (
                (signal.SIGHUP, grace_s / 2),
                (signal.SIGTERM, grace_s / 2),
                (signal.SIGKILL, None),
            ):
                if self._process.returncode is not None:
                    break
                self._signal_group(sig)
                with trio.move_on_after(wait_s if wait_s is not None else math.inf):
                    await self._process.wait()
            code = await self.wait()
            if not self._closed:
                self._closed = True
                trio.lowlevel.notify_closing(self._master)
                os.close(self._master)
        log.info("terminal %s: closed, exit code %d", self.name, code)
        return code

    def _signal_group(self, sig: signal.Signals) -> None:
        # The leader itself first: right after spawn it may not have called
        # setsid yet, and then no group of its pid exists. The group takes its
        # children along, which would otherwise linger if they ignore the
        # signal the leader died of. The leader is not reaped yet, so its pid
        # cannot name anyone else's group.
        self._process.send_signal(sig)
        try:
            os.killpg(self._process.pid, sig)
        except ProcessLookupError:
            pass

    def _check_open(self) -> None:
        if self._closed:
            raise TerminalClosed(
                f"terminal {self.name} is closed", resource_id=self.name
            )


@functools.cache
def _setsid_path() -> str:
    # Looked up once per process, like every external binary of the agent.
    found = shutil.which("setsid")
    if found is None:
        raise MissingCapability(
            "setsid is not installed; install it with: apt-get install util-linux"
        )
    return found


def _check_size(cols: int, rows: int) -> None:
    for what, value in (("cols", cols), ("rows", rows)):
        if not isinstance(value, int) or not 1 <= value <= MAX_DIMENSION:
            raise InvalidTerminalSize(
                f"{what} must be between 1 and {MAX_DIMENSION}, not {value!r}"
            )


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
