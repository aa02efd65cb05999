"""Terminal streams on the agent: PTY sessions bridged onto the control channel.

How it works. The control plane opens a stream with TerminalOpen (its `stream_id`
names the stream from then on). The relay starts the command on a new PTY, inside
the sandbox through `runc exec` or on the host, and runs one pump per session:

- output: read the PTY, send TerminalData, but never more bytes than the window the
  control plane granted (`initial_window`, then every StreamWindow). With no credit
  left the pump stops reading, the PTY's buffer fills and the process blocks on its
  own writes: a slow reader slows its own session and nothing else.
- input: TerminalData from the control plane is queued and written in order by a
  writer task, so a process that does not read its input never blocks the channel.
- end: at EOF the pump reaps the process and sends TerminalExit with its exit code.

Sessions live as long as the channel that opened them; when the channel drops, each
PTY is closed (hang-up, then TERM, then KILL) and its process reaped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from gstacks_agent.errors import AlreadyExists, InvalidArgument, NotFound
from gstacks_agent.sandboxes.manager import SandboxManager
from gstacks_agent.sandboxes.runc import Runc, sandbox_exec_argv
from gstacks_agent.terminals.host_shell import host_shell_argv, host_shell_env
from gstacks_agent.terminals.pty_session import PtySession
from gstacks_proto import pb

log = logging.getLogger("gstacks.agent.terminals")

READ_CHUNK = 64 * 1024
DEFAULT_WINDOW = 256 * 1024
MAX_WINDOW = 16 * 1024 * 1024

Send = Callable[[pb.Envelope], Awaitable[None]]


@dataclass
class _Stream:
    session_id: str
    stream_id: int
    pty: PtySession
    credit: int
    credit_granted: trio.Event = field(default_factory=trio.Event)
    input_send: trio.MemorySendChannel[bytes] | None = None


class TerminalRelay:
    """Every terminal stream of one control channel."""

    def __init__(self, runc: Runc, sandboxes: SandboxManager) -> None:
        self._runc = runc
        self._sandboxes = sandboxes
        self._streams: dict[int, _Stream] = {}
        self._by_session: dict[str, _Stream] = {}

    async def open(
        self,
        nursery: trio.Nursery,
        stream_id: int,
        request: pb.TerminalOpen,
        send: Send,
    ) -> pb.TerminalOpened:
        """Start the session's process and its pumps in `nursery`."""
        if not stream_id:
            raise InvalidArgument(
                "terminal_open needs a stream_id", resource_id=request.session_id
            )
        if stream_id in self._streams or request.session_id in self._by_session:
            raise AlreadyExists(
                f"terminal {request.session_id} is already open",
                resource_id=request.session_id,
            )
        command = list(request.command)
        env = dict(request.env)
        if request.sandbox_id:
            info = self._sandboxes.get(request.sandbox_id)
            if info.state != "running":
                raise InvalidArgument(
                    f"sandbox {request.sandbox_id} is {info.state}, not running",
                    resource_id=request.sandbox_id,
                )
            argv = sandbox_exec_argv(
                self._runc, request.sandbox_id, command or ["/bin/sh"], env
            )
            process_env = None
        else:
            argv = command or host_shell_argv()
            process_env = {**host_shell_env(), **env}
        pty = await PtySession.spawn(
            argv,
            env=process_env,
            cols=request.cols or 80,
            rows=request.rows or 24,
            name=request.session_id,
        )
        window = min(request.initial_window or DEFAULT_WINDOW, MAX_WINDOW)
        stream = _Stream(request.session_id, stream_id, pty, credit=window)
        self._streams[stream_id] = stream
        self._by_session[request.session_id] = stream
        input_send, input_receive = trio.open_memory_channel[bytes](math.inf)
        stream.input_send = input_send
        nursery.start_soon(self._write_input, stream, input_receive)
        nursery.start_soon(self._pump_output, stream, send)
        log.info(
            "terminal %s: stream %d open in %s",
            request.session_id,
            stream_id,
            f"sandbox {request.sandbox_id}" if request.sandbox_id else "the host",
        )
        return pb.TerminalOpened(session_id=request.session_id, pid=pty.pid)

    def on_stream_frame(self, envelope: pb.Envelope) -> None:
        """Route a frame the control plane sent on an open stream."""
        stream = self._streams.get(envelope.stream_id)
        if stream is None:
            log.debug(
                "frame for unknown terminal stream %d dropped", envelope.stream_id
            )
            return
        kind = envelope.WhichOneof("body")
        if kind == "terminal_data":
            if stream.input_send is not None:
                stream.input_send.send_nowait(envelope.terminal_data.data)
        elif kind == "terminal_resize":
            resize = envelope.terminal_resize
            try:
                stream.pty.resize(resize.cols, resize.rows)
            except InvalidArgument as exc:
                log.info("terminal %s: resize refused: %s", stream.session_id, exc)
        elif kind == "stream_window":
            stream.credit = min(
                stream.credit + envelope.stream_window.increment, MAX_WINDOW
            )
            stream.credit_granted.set()
        else:
            log.warning("terminal %s: unexpected %s frame", stream.session_id, kind)

    async def close(self, session_id: str) -> None:
        stream = self._by_session.get(session_id)
        if stream is None:
            raise NotFound(f"terminal {session_id} is not open", resource_id=session_id)
        await stream.pty.close()

    async def close_all(self) -> None:
        with trio.CancelScope(shield=True):
            for stream in list(self._streams.values()):
                await stream.pty.close()

    async def _write_input(
        self, stream: _Stream, receive: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        async for data in receive:
            try:
                await stream.pty.write(data)
            except (
                Exception
            ) as exc:  # the process went away; output pump reports the exit
                log.debug("terminal %s: input dropped: %s", stream.session_id, exc)
                return

    async def _pump_output(self, stream: _Stream, send: Send) -> None:
        exit_code = -1
        try:
            while True:
                while stream.credit <= 0:
                    stream.credit_granted = trio.Event()
                    await stream.credit_granted.wait()
                data = await stream.pty.read(min(READ_CHUNK, stream.credit))
                if not data:
                    break
                stream.credit -= len(data)
                await send(
                    pb.Envelope(
                        stream_id=stream.stream_id,
                        terminal_data=pb.TerminalData(data=data),
                    )
                )
            exit_code = await stream.pty.wait()
        finally:
            with trio.CancelScope(shield=True):
                await stream.pty.close()
                self._streams.pop(stream.stream_id, None)
                self._by_session.pop(stream.session_id, None)
                if stream.input_send is not None:
                    stream.input_send.close()
        log.info("terminal %s: exited with %d", stream.session_id, exit_code)
        await send(
            pb.Envelope(
                stream_id=stream.stream_id,
                terminal_exit=pb.TerminalExit(
                    session_id=stream.session_id,
                    exit_code=exit_code,
                    signal=exit_code - 128 if exit_code > 128 else 0,
                ),
            )
        )
