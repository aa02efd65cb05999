"""Terminal sessions on the agent: PTYs that outlive a dropped link.

How it works. A session is one process on one PTY, opened by TerminalOpen. Its output
goes into a bounded `Scrollback` addressed by absolute offsets, and from there to at
most one attached stream at a time:

    PTY --reader--> scrollback --sender--> TerminalData on the attached stream

Flow control is end to end. The client acknowledges the offset it has received (the
control plane forwards that as StreamWindow increments), and

- the sender never has more than the stream's window of unacknowledged bytes out;
- the reader stops reading the PTY while the scrollback is full of unacknowledged
  bytes, so the process blocks on its own writes and nothing is ever dropped that the
  client has not confirmed.

A slow or absent client therefore slows only its own session, and memory per session
is bounded by the scrollback's capacity.

When the stream's client goes away (TerminalDetach, or the whole channel drops) the
session keeps running, unattached, for `grace_s`. TerminalAttach with the client's
offset attaches a new stream and resends everything from that offset. A session that
stays unattached past its grace period, or sees no input or output for
`idle_timeout_s`, is closed: hang-up, then TERM, then KILL. When the process exits,
the rest of its output and then TerminalExit with its exit code go to the attached
stream, or wait there for a reattach until the grace period ends.
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
from gstacks_agent.terminals.errors import TerminalClosed
from gstacks_agent.terminals.host_shell import (
    host_shell_argv,
    host_shell_cwd,
    host_shell_env,
)
from gstacks_agent.terminals.limits import TerminalLimits
from gstacks_agent.terminals.pipe_session import PipeSession
from gstacks_agent.terminals.pty_session import PtySession
from gstacks_agent.terminals.scrollback import Scrollback
from gstacks_proto import pb
from gstacks_proto.rpc_peer import ChannelClosed

log = logging.getLogger("gstacks.agent.terminals")

READ_CHUNK = 64 * 1024
GATHER_BYTES = 64 * 1024
RUNC_EXEC_FAILED = 255
SEND_CHUNK = 64 * 1024
DEFAULT_WINDOW = 256 * 1024
MAX_WINDOW = 16 * 1024 * 1024
WATCH_INTERVAL_S = 1.0

Send = Callable[[pb.Envelope], Awaitable[None]]


@dataclass
class _Attachment:
    stream_id: int
    send: Send
    channel: object
    window: int
    sent: int
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class _Session:
    def __init__(
        self, session_id: str, pty: PtySession | PipeSession, limits: TerminalLimits
    ) -> None:
        self.session_id = session_id
        self.pty = pty
        self.scrollback = Scrollback(limits.scrollback_bytes)
        self.acknowledged = 0
        self.exit_code: int | None = None
        self.attachment: _Attachment | None = None
        self.last_activity = trio.current_time()
        self.detached_since: float | None = None
        self.closing = False
        self.finished = False
        input_send, input_receive = trio.open_memory_channel[bytes](math.inf)
        self.input_send = input_send
        self.input_receive = input_receive
        self._changed = trio.Event()

    def changed(self) -> trio.Event:
        """An event set at the next change; take it before checking a condition."""
        return self._changed

    def notify(self) -> None:
        event, self._changed = self._changed, trio.Event()
        event.set()


class TerminalManager:
    """Every terminal session on this host, across channel reconnects."""

    def __init__(
        self,
        runc: Runc,
        sandboxes: SandboxManager,
        limits: TerminalLimits | None = None,
        on_uncollected_exit: Callable[[pb.TerminalExit], None] | None = None,
    ) -> None:
        self._on_uncollected_exit = on_uncollected_exit
        self._runc = runc
        self._sandboxes = sandboxes
        self.limits = limits or TerminalLimits()
        self._sessions: dict[str, _Session] = {}
        self._by_stream: dict[int, _Session] = {}
        self._nursery: trio.Nursery | None = None

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the sessions' tasks; closing it closes every session."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                for session in list(self._sessions.values()):
                    await session.pty.close()

    def session_ids(self) -> list[str]:
        return list(self._sessions)

    # ---- requests ---------------------------------------------------------------------

    async def open(
        self, stream_id: int, request: pb.TerminalOpen, send: Send, channel: object
    ) -> pb.TerminalOpened:
        """Start the session's process and attach the opening stream to it."""
        nursery = self._require_serving()
        if not stream_id:
            raise InvalidArgument(
                "terminal_open needs a stream_id", resource_id=request.session_id
            )
        if request.session_id in self._sessions:
            raise AlreadyExists(
                f"terminal {request.session_id} is already open",
                resource_id=request.session_id,
            )
        command, env = list(request.command), dict(request.env)
        if request.sandbox_id:
            info = self._sandboxes.get(request.sandbox_id)
            if info.state != "running":
                raise InvalidArgument(
                    f"sandbox {request.sandbox_id} is {info.state}, not running",
                    resource_id=request.sandbox_id,
                )
            argv = sandbox_exec_argv(
                self._runc,
                request.sandbox_id,
                command or ["/bin/sh"],
                env,
                tty=not request.no_tty,
            )
            process_env, cwd = None, None
        else:
            argv = command or host_shell_argv()
            process_env = {**host_shell_env(), **env}
            # A host shell starts at home, as a login would, not in the agent's cwd.
            cwd = host_shell_cwd(process_env["HOME"])
        process: PtySession | PipeSession
        if request.no_tty:
            process = await PipeSession.spawn(
                argv, env=process_env, cwd=cwd, name=request.session_id
            )
        else:
            process = await PtySession.spawn(
                argv,
                env=process_env,
                cwd=cwd,
                cols=request.cols or 80,
                rows=request.rows or 24,
                name=request.session_id,
                raw=bool(request.sandbox_id),
            )
        session = _Session(request.session_id, process, self.limits)
        self._sessions[session.session_id] = session
        nursery.start_soon(self._read_output, session)
        nursery.start_soon(self._write_input, session)
        nursery.start_soon(self._watch, session)
        self._attach(session, stream_id, send, channel, 0, request.initial_window)
        log.info(
            "terminal %s: opened in %s, stream %d",
            session.session_id,
            f"sandbox {request.sandbox_id}" if request.sandbox_id else "the host",
            stream_id,
        )
        return pb.TerminalOpened(session_id=session.session_id, pid=process.pid)

    async def attach(
        self, stream_id: int, request: pb.TerminalAttach, send: Send, channel: object
    ) -> pb.TerminalAttached:
        """Attach a new stream, resending output from the client's offset."""
        session = self._session(request.session_id)
        if not stream_id:
            raise InvalidArgument(
                "terminal_attach needs a stream_id", resource_id=request.session_id
            )
        if request.offset > session.scrollback.end:
            raise InvalidArgument(
                f"offset {request.offset} is past the output's end {session.scrollback.end}",
                resource_id=request.session_id,
            )
        attachment = self._attach(
            session, stream_id, send, channel, request.offset, request.initial_window
        )
        if attachment.sent > request.offset:
            log.warning(
                "terminal %s: bytes %d..%d left the scrollback before the reattach",
                session.session_id,
                request.offset,
                attachment.sent,
            )
        log.info(
            "terminal %s: reattached on stream %d from offset %d",
            session.session_id,
            stream_id,
            attachment.sent,
        )
        return pb.TerminalAttached(
            session_id=session.session_id, offset=attachment.sent
        )

    def detach(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None and session.attachment is not None:
            self._detach(session)

    def detach_channel(self, channel: object) -> None:
        """The channel dropped: its streams are gone, their sessions go on."""
        for session in list(self._sessions.values()):
            if session.attachment is not None and session.attachment.channel is channel:
                self._detach(session)

    async def close(self, session_id: str) -> None:
        session = self._session(session_id)
        session.closing = True
        await session.pty.close()

    def on_stream_frame(self, envelope: pb.Envelope) -> None:
        """Route a frame the control plane sent on an attached stream."""
        session = self._by_stream.get(envelope.stream_id)
        if session is None:
            log.debug(
                "frame for unknown terminal stream %d dropped", envelope.stream_id
            )
            return
        kind = envelope.WhichOneof("body")
        if kind == "terminal_data":
            session.last_activity = trio.current_time()
            try:
                if envelope.terminal_data.data:
                    session.input_send.send_nowait(envelope.terminal_data.data)
            except trio.ClosedResourceError:
                log.debug(
                    "terminal %s: input after its end dropped", session.session_id
                )
            if envelope.terminal_data.eof:
                # Queued input is written first; then the writer ends the input.
                session.input_send.close()
        elif kind == "terminal_resize":
            try:
                session.pty.resize(
                    envelope.terminal_resize.cols, envelope.terminal_resize.rows
                )
            except InvalidArgument as exc:
                log.info("terminal %s: resize refused: %s", session.session_id, exc)
            except Exception as exc:  # the PTY is already closed
                log.debug("terminal %s: resize ignored: %s", session.session_id, exc)
        elif kind == "stream_window":
            session.acknowledged = min(
                session.acknowledged + envelope.stream_window.increment,
                session.scrollback.end,
            )
            session.notify()
        elif kind == "stream_close":
            self._detach(session)
        else:
            log.warning("terminal %s: unexpected %s frame", session.session_id, kind)

    # ---- internals ----------------------------------------------------------------------

    def _session(self, session_id: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise NotFound(
                f"terminal {session_id} is not open on this host",
                resource_id=session_id,
            )
        return session

    def _require_serving(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("TerminalManager.serve() is not running")
        return self._nursery

    def _attach(
        self,
        session: _Session,
        stream_id: int,
        send: Send,
        channel: object,
        offset: int,
        window: int,
    ) -> _Attachment:
        if session.attachment is not None:
            self._detach(session)
        # The client holds everything before `offset`: that is an acknowledgement.
        session.acknowledged = max(session.acknowledged, offset)
        attachment = _Attachment(
            stream_id,
            send,
            channel,
            window=min(window or DEFAULT_WINDOW, MAX_WINDOW),
            sent=max(offset, session.scrollback.start),
        )
        session.attachment = attachment
        session.detached_since = None
        self._by_stream[stream_id] = session
        self._require_serving().start_soon(self._send_output, session, attachment)
        session.notify()
        return attachment

    def _detach(self, session: _Session) -> None:
        attachment = session.attachment
        if attachment is None:
            return
        attachment.cancel_scope.cancel()
        self._by_stream.pop(attachment.stream_id, None)
        session.attachment = None
        session.detached_since = trio.current_time()
        log.info(
            "terminal %s: detached from stream %d",
            session.session_id,
            attachment.stream_id,
        )

    def _forget(self, session: _Session) -> None:
        if session.finished:
            return
        session.finished = True
        if session.attachment is not None:
            self._by_stream.pop(session.attachment.stream_id, None)
        self._sessions.pop(session.session_id, None)
        session.input_send.close()
        session.notify()

    async def _read_output(self, session: _Session) -> None:
        try:
            while True:
                while True:
                    changed = session.changed()
                    room = session.scrollback.room(session.acknowledged)
                    if room > 0:
                        break
                    await changed.wait()
                try:
                    data = await session.pty.read(min(READ_CHUNK, room))
                except (trio.ClosedResourceError, TerminalClosed):
                    break  # closed by `close` or the watchdog while we waited
                if not data:
                    break
                # Gather what else is ready, up to the room there is.
                while len(data) < min(GATHER_BYTES, room):
                    more = session.pty.read_ready(min(GATHER_BYTES, room) - len(data))
                    if not more:
                        break
                    data += more
                session.scrollback.append(data)
                session.last_activity = trio.current_time()
                session.notify()
            session.exit_code = _shell_exit_code(
                await session.pty.wait(), session.scrollback
            )
        finally:
            with trio.CancelScope(shield=True):
                code = await session.pty.close()
            if session.exit_code is None:
                session.exit_code = code
            session.notify()
        log.info(
            "terminal %s: process exited with %d", session.session_id, session.exit_code
        )

    async def _write_input(self, session: _Session) -> None:
        async for data in session.input_receive:
            try:
                await session.pty.write(data)
            except Exception as exc:
                # The process went away; the reader reports its exit.
                log.debug("terminal %s: input dropped: %s", session.session_id, exc)
                return
        # The input channel closed: end of input for a pipe (a PTY has no such thing;
        # the client sends ^D itself).
        if isinstance(session.pty, PipeSession) and not session.finished:
            await session.pty.close_input()

    async def _send_output(self, session: _Session, attachment: _Attachment) -> None:
        stream_id = attachment.stream_id
        with attachment.cancel_scope:
            try:
                while not session.finished:
                    changed = session.changed()
                    attachment.sent = max(attachment.sent, session.scrollback.start)
                    credit = attachment.window - (
                        attachment.sent - session.acknowledged
                    )
                    pending = session.scrollback.end - attachment.sent
                    if pending > 0 and credit > 0:
                        chunk = session.scrollback.read(
                            attachment.sent, min(SEND_CHUNK, credit, pending)
                        )
                        await attachment.send(
                            pb.Envelope(
                                stream_id=stream_id,
                                terminal_data=pb.TerminalData(data=chunk),
                            )
                        )
                        attachment.sent += len(chunk)
                        continue
                    if pending == 0 and session.exit_code is not None:
                        await attachment.send(
                            pb.Envelope(
                                stream_id=stream_id,
                                terminal_exit=pb.TerminalExit(
                                    session_id=session.session_id,
                                    exit_code=session.exit_code,
                                    signal=session.exit_code - 128
                                    if session.exit_code > 128
                                    else 0,
                                ),
                            )
                        )
                        self._forget(session)
                        return
                    await changed.wait()
            except ChannelClosed:
                log.info(
                    "terminal %s: stream %d lost with its channel",
                    session.session_id,
                    stream_id,
                )
        if session.attachment is attachment:
            self._detach(session)

    async def _watch(self, session: _Session) -> None:
        """Close a session left unattached past its grace, or idle past its timeout."""
        while not session.finished:
            await trio.sleep(WATCH_INTERVAL_S)
            now = trio.current_time()
            detached_too_long = (
                session.detached_since is not None
                and now - session.detached_since > self.limits.grace_s
            )
            if detached_too_long and session.exit_code is not None:
                log.info(
                    "terminal %s: exit code never collected; dropped",
                    session.session_id,
                )
                self._forget(session)
                if self._on_uncollected_exit is not None:
                    ended = pb.TerminalExit(
                        session_id=session.session_id, exit_code=session.exit_code
                    )
                    self._on_uncollected_exit(ended)
                return
            idle = now - session.last_activity > self.limits.idle_timeout_s
            if (detached_too_long or idle) and not session.closing:
                why = (
                    "left unattached past its grace period"
                    if detached_too_long
                    else "idle too long"
                )
                log.info("terminal %s: %s; closing", session.session_id, why)
                session.closing = True
                await session.pty.close()


def _shell_exit_code(code: int, output: Scrollback) -> int:
    """The exit code a shell would give when runc could not start the program.

    `runc exec` exits 255 with "exec failed: ..." when the program is missing or not
    executable; shells say 127 and 126 for those (POSIX, "Command Search and
    Execution"), and that is what a caller of `exec` checks for.
    """
    if code != RUNC_EXEC_FAILED:
        return code
    tail = output.read(max(output.start, output.end - 1024), 1024).lower()
    if b"exec failed" not in tail:
        return code
    if b"no such file or directory" in tail or b"not found" in tail:
        return 127
    if b"permission denied" in tail:
        return 126
    return code
