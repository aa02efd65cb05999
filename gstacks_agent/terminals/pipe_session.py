"""One process with pipes instead of a terminal, for non-interactive commands.

A PTY changes bytes on their way out (ONLCR turns "\\n" into "\\r\\n") and has no
end of input but a ^D the program may not read as one. A command whose output goes
to a file or another program wants neither: `PipeSession` runs it with a pipe for
stdin and one pipe for stdout and stderr together, so its bytes pass unchanged and
closing the input pipe is a real end of file. It offers the same reading, writing,
waiting and closing as `PtySession`, so a terminal session can run on either.
"""

from __future__ import annotations

import logging
import signal
import subprocess
from collections.abc import Mapping, Sequence

import trio

from gstacks_agent.terminals.errors import TerminalClosed

log = logging.getLogger("gstacks.agent.terminals")


class PipeSession:
    def __init__(self, process: trio.Process, name: str) -> None:
        self._process = process
        self.name = name
        assert process.stdin is not None and process.stdout is not None
        self._stdin: trio.abc.SendStream | None = process.stdin
        self._stdout = process.stdout

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        name: str = "",
    ) -> PipeSession:
        if not argv:
            raise ValueError("argv must name a program")
        process = await trio.lowlevel.open_process(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            # Its own process group, so closing it reaches whatever it started.
            start_new_session=True,
        )
        log.info(
            "terminal %s: started pid %d without a tty: %s", name, process.pid, argv[0]
        )
        return cls(process, name)

    @property
    def pid(self) -> int:
        return self._process.pid

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to `max_bytes` of output; b"" once the output pipe is closed."""
        try:
            return await self._stdout.receive_some(max_bytes)
        except trio.ClosedResourceError:
            return b""

    def read_ready(self, max_bytes: int) -> bytes:
        """Nothing: pipe reads are already as large as what is ready."""
        return b""

    async def write(self, data: bytes) -> None:
        if self._stdin is None:
            raise TerminalClosed(
                f"terminal {self.name}: input is closed", resource_id=self.name
            )
        try:
            await self._stdin.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise TerminalClosed(
                f"terminal {self.name}: the process stopped reading",
                resource_id=self.name,
            ) from exc

    async def close_input(self) -> None:
        """End of input: the process reads EOF."""
        if self._stdin is not None:
            stdin, self._stdin = self._stdin, None
            await stdin.aclose()

    def resize(self, cols: int, rows: int) -> None:
        """Pipes have no window size; nothing to do."""

    async def wait(self) -> int:
        code = await self._process.wait()
        return 128 - code if code < 0 else code

    async def close(self, grace_s: float = 2.0) -> int:
        """TERM, then KILL after `grace_s`; always reaped. Returns the exit code."""
        with trio.CancelScope(shield=True):
            if self._process.returncode is None:
                self._process.send_signal(signal.SIGTERM)
                with trio.move_on_after(grace_s):
                    await self._process.wait()
            if self._process.returncode is None:
                self._process.kill()
            code = await self.wait()
            await self.close_input()
            await self._stdout.aclose()
        return code
