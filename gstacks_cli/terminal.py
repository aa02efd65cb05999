"""The client side of a terminal session's WebSocket stream.

How it works. A terminal session is a command on a PTY, in a sandbox or on a host,
created over HTTP (`POST .../terminal-sessions`). Its bytes travel on one WebSocket,
`.../terminal-sessions/{sid}/stream?offset=N&acks=client`, opened with the same
Bearer header as every API call. The frames are few:

- server to client: first `{"type": "attached", "offset": N}`, the absolute offset
  at which the output about to arrive starts; then binary frames of the PTY's
  output; finally `{"type": "exit", "exit_code": N}`, after which the client closes.
- client to server: binary frames are keystrokes; text frames are JSON, either
  `{"type": "resize", "cols": C, "rows": R}` or `{"type": "ack", "offset": N}`.

Acknowledgements make the stream lossless. Every output byte has an absolute offset
(0 is the first byte the process ever wrote). The client says how far it has come,
at least every ACK_EVERY_BYTES received and whenever output pauses; the agent holds
unacknowledged output in its scrollback and stops reading the PTY when that is full,
so nothing the client has not confirmed is ever dropped. `OutputCursor` keeps this
account, sans-io.

Closing the socket only detaches: the process keeps running on its host for a grace
period. When the link drops (no close frame) or the server says the host is away
(4503), `attach` can reattach by itself with `?offset=<bytes received>` and gets
exactly the rest, retrying with backoff (`ReattachSchedule`) for a bounded time and
saying so on stderr. Other refusals are final: 4401 unauthenticated, 4404 unknown
session, 4409 another client is attached (retried only after a drop, while the
server has not yet noticed that the old link is gone), 4410 the session ended,
4400 a bad query.

`attach` is the thin I/O layer over the codec, in two modes:

- interactive (`stdin_fd` given): the local tty goes into raw mode, so every key,
  ^C included, goes to the remote PTY, and is restored on the way out whatever
  happens. The window size is sent on every (re)attach and on every SIGWINCH.
- exec (`stdin_fd` None): nothing but acknowledgements is sent; output is written
  as it arrives, byte for byte.

Either way `attach` returns the remote command's exit code.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import ssl
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    wrap_client_stream,
)

from gstacks_cli.api_client import error_from_body
from gstacks_cli.errors import (
    CliError,
    ControlPlaneUnreachable,
    TerminalBusy,
    TerminalDisconnected,
    TerminalStreamError,
)

logger = logging.getLogger("gstacks.cli.terminal")

DEFAULT_WINDOW_SIZE = (80, 24)
CONNECT_TIMEOUT_S = 15.0
DISCONNECT_TIMEOUT_S = 5.0
READ_SIZE = 4096
# Output arrives in frames of up to 64 KiB; read the socket in pieces that size.
RECEIVE_BUFFER_BYTES = 64 * 1024
MAX_FRAME_BYTES = 4 * 1024 * 1024
# The agent sends at most 256 KiB ahead of the last acknowledgement: acknowledging
# every quarter of that keeps output flowing without an ack per frame.
ACK_EVERY_BYTES = 64 * 1024
ACK_IDLE_S = 0.05
# How long a shell keeps trying to reattach after its link dropped; the agent keeps
# a detached session for 120 s.
REATTACH_WITHIN_S = 120.0
FIRST_RETRY_DELAY_S = 0.25
MAX_RETRY_DELAY_S = 5.0

# WebSocket close codes (RFC 6455 section 7.4: 1xxx standard, 4xxx the server's own).
CLOSE_GOING_AWAY = 1001
CLOSE_ABNORMAL = 1006
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_ALREADY_ATTACHED = 4409
CLOSE_HOST_UNAVAILABLE = 4503
# Closes after which the session may still run and a reattach may succeed.
REATTACHABLE_CLOSES = frozenset(
    {
        CLOSE_GOING_AWAY,
        CLOSE_ABNORMAL,
        CLOSE_SERVICE_RESTART,
        CLOSE_TRY_AGAIN_LATER,
        CLOSE_HOST_UNAVAILABLE,
    }
)
# The byte a terminal's line discipline turns into end-of-file (termios VEOF).
END_OF_TRANSMISSION = b"\x04"

WindowSize = Callable[[], tuple[int, int]]
Notify = Callable[[str], None]


# -- frame codec and stream accounting (sans-io) ------------------------------------


@dataclass(frozen=True)
class Attached:
    """The server attached us; the output that follows starts at `offset`."""

    offset: int


@dataclass(frozen=True)
class Output:
    """Bytes the remote PTY wrote."""

    data: bytes


@dataclass(frozen=True)
class Exited:
    """The remote command ended; `exit_code` is None when the server had none."""

    exit_code: int | None


def resize_frame(cols: int, rows: int) -> str:
    """The text frame that tells the server the local window's size."""
    if cols < 1 or rows < 1:
        raise ValueError(f"window size must be positive, not {cols}x{rows}")
    return json.dumps({"type": "resize", "cols": cols, "rows": rows})


def ack_frame(offset: int) -> str:
    """The text frame that says the client holds all output before `offset`."""
    if offset < 0:
        raise ValueError(f"offset must not be negative, not {offset}")
    return json.dumps({"type": "ack", "offset": offset})


def parse_server_frame(frame: str | bytes) -> Attached | Output | Exited | None:
    """Decode one server frame; None for a text frame of a type we do not know.

    Unknown types are skipped so that a newer server can add frames without
    breaking older clients.
    """
    if isinstance(frame, bytes):
        return Output(frame)

    try:
        message = json.loads(frame)
        kind = message["type"]
    except (ValueError, TypeError, KeyError) as exc:
        raise TerminalStreamError(
            f"the terminal stream sent a text frame that is not a JSON event: "
            f"{frame[:80]!r}"
        ) from exc

    if kind == "attached":
        offset = message.get("offset")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise TerminalStreamError(f"the attached frame carries offset {offset!r}")
        return Attached(offset)
    if kind == "exit":
        exit_code = message.get("exit_code")
        if exit_code is not None and not isinstance(exit_code, int):
            raise TerminalStreamError(f"the exit frame carries exit_code {exit_code!r}")
        return Exited(exit_code)
    return None


class OutputCursor:
    """How far a client has come through a session's output, by absolute offset.

    `offset` counts the bytes handed on so far; it is what a reattach asks for.
    `acknowledged` is the last offset told to the server. Output the server resends
    from before `offset` is dropped here, so a reattach never duplicates a byte.
    """

    def __init__(self, offset: int = 0) -> None:
        if offset < 0:
            raise ValueError(f"offset must not be negative, not {offset}")
        self.offset = offset
        self.acknowledged = offset
        self.attachments = 0
        self._skip = 0

    def attached(self, start: int) -> int:
        """Note where the server's output starts; return how many bytes were lost.

        The server starts at our offset unless our bytes already left its
        scrollback (then the gap is lost) or it starts earlier (then the overlap
        is skipped).
        """
        self.attachments += 1
        self._skip = max(0, self.offset - start)
        lost = max(0, start - self.offset)
        self.offset += lost
        # Everything before the start is settled on the server's side.
        self.acknowledged = max(self.acknowledged, min(start, self.offset))
        return lost

    def accept(self, data: bytes) -> bytes:
        """The part of `data` that is new output; advances `offset` past it."""
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        self.offset += len(data)
        return data

    @property
    def unacknowledged(self) -> int:
        """Bytes handed on but not yet acknowledged to the server."""
        return self.offset - self.acknowledged

    def ack_due(self, *, idle: bool) -> int | None:
        """The offset to acknowledge now, or None; marks it acknowledged.

        An ack is due once ACK_EVERY_BYTES are unacknowledged, or as soon as output
        pauses (`idle`) with anything unacknowledged at all.
        """
        due = self.unacknowledged >= ACK_EVERY_BYTES or (
            idle and self.unacknowledged > 0
        )
        if not due:
            return None
        self.acknowledged = self.offset
        return self.offset


class ReattachSchedule:
    """Delays between reattach attempts: doubling from FIRST_RETRY_DELAY_S up to
    MAX_RETRY_DELAY_S, until `budget_s` have passed since the link was lost."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self._lost_at: float | None = None
        self._delay = FIRST_RETRY_DELAY_S

    def reset(self) -> None:
        """The link is up again: the next loss starts a fresh budget."""
        self._lost_at = None
        self._delay = FIRST_RETRY_DELAY_S

    def next_delay(self, now: float) -> float | None:
        """How long to wait before the next attempt; None once the budget is spent."""
        if self._lost_at is None:
            self._lost_at = now
        remaining = self._lost_at + self.budget_s - now
        if remaining <= 0:
            return None
        delay = min(self._delay, remaining)
        self._delay = min(self._delay * 2, MAX_RETRY_DELAY_S)
        return delay


def stream_url(base_url: str, owner: str, owner_id: str, session_id: str) -> str:
    """The WebSocket URL of a session's stream, beside the HTTP API's base URL.

    `owner` is the collection the session belongs to: "sandboxes" or "hosts".
    """
    if owner not in ("sandboxes", "hosts"):
        raise ValueError(f"owner must be 'sandboxes' or 'hosts', not {owner!r}")
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}[parts.scheme]
    path = (
        f"{parts.path.rstrip('/')}/api/{owner}/{quote(owner_id, safe='')}"
        f"/terminal-sessions/{quote(session_id, safe='')}/stream"
    )
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def resume_target(url: str, offset: int) -> str:
    """The request target (path and query) that attaches at `offset` with our acks."""
    path = urlsplit(url).path or "/"
    return f"{path}?{urlencode({'offset': offset, 'acks': 'client'})}"


def local_window_size() -> tuple[int, int]:
    """(cols, rows) of the terminal on stdout or stdin, else 80x24."""
    for fd in (1, 0):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        if size.columns > 0 and size.lines > 0:
            return size.columns, size.lines
    return DEFAULT_WINDOW_SIZE


# -- I/O -----------------------------------------------------------------------------


class _Keyboard:
    """Local input across reattaches: a chunk read but not yet sent is kept.

    `tty` says whether the remote end is a terminal. Without one, the end of local
    input is sent as an `eof` frame (the process reads end-of-file); on a terminal
    it is sent as ^D, the byte a line discipline turns into end-of-file.
    """

    def __init__(self, fd: int | None, tty: bool = True) -> None:
        self.fd = fd
        self.tty = tty
        self.pending = b""
        self.ended = False
        self.eof_sent = False


async def attach(
    url: str,
    api_key: str,
    *,
    output: BinaryIO,
    stdin_fd: int | None = None,
    window_size: WindowSize = local_window_size,
    reattach_within_s: float = 0.0,
    notify: Notify | None = None,
    tty: bool = True,
) -> int:
    """Attach to a session's stream at `url` and return the remote exit code.

    With `stdin_fd` local input is forwarded (see the module essay); without it,
    none is. Output bytes go to `output` as they arrive. `tty` False is for a
    session without a terminal: the local tty stays as it is, and the end of
    input (at once, without `stdin_fd`) is sent as an `eof` frame. With
    `reattach_within_s` > 0, a dropped link is reattached for that long after
    each loss, and `notify` (default: a line on stderr) hears about it.
    """
    cursor = OutputCursor()
    keyboard = _Keyboard(stdin_fd, tty)
    schedule = ReattachSchedule(reattach_within_s)
    with _raw_mode(stdin_fd if tty else None) as raw:
        say = notify or stderr_notifier(raw)
        while True:
            attachments = cursor.attachments
            try:
                return await _attach_once(
                    url, api_key, cursor, keyboard, output, window_size, say
                )
            except (TerminalDisconnected, ControlPlaneUnreachable, TerminalBusy) as exc:
                if cursor.attachments > attachments:
                    schedule.reset()
                if reattach_within_s <= 0 or not _reattachable(exc, cursor):
                    raise
                delay = schedule.next_delay(trio.current_time())
                if delay is None:
                    raise
                say(
                    f"terminal link lost ({exc.message}); "
                    f"reattaching at byte {cursor.offset} in {delay:.2g} s"
                )
                logger.debug("terminal stream %s: retry in %.2f s", url, delay)
                await trio.sleep(delay)


def _reattachable(exc: CliError, cursor: OutputCursor) -> bool:
    if isinstance(exc, TerminalDisconnected):
        return True
    # Only once attached: then the control plane may be restarting, or it has not
    # yet noticed that our previous link is gone and still counts it as attached.
    return cursor.attachments > 0


def stderr_notifier(raw: bool) -> Notify:
    """A notifier that writes `gstacks: <message>` lines on stderr."""
    # In raw mode the tty does not turn "\n" into "\r\n" for us.
    end = "\r\n" if raw else "\n"

    def notice(message: str) -> None:
        sys.stderr.write(f"gstacks: {message}{end}")
        sys.stderr.flush()

    return notice


async def _attach_once(
    url: str,
    api_key: str,
    cursor: OutputCursor,
    keyboard: _Keyboard,
    output: BinaryIO,
    window_size: WindowSize,
    say: Notify,
) -> int:
    parts = urlsplit(url)
    stream = await _open_stream(url)
    try:
        return await _run_session(
            stream,
            host_header=parts.netloc,
            resource=resume_target(url, cursor.offset),
            api_key=api_key,
            url=url,
            cursor=cursor,
            keyboard=keyboard,
            output=output,
            window_size=window_size,
            say=say,
        )
    finally:
        # trio-websocket 0.12 never closes a client's TCP stream when the server
        # closes first (it waits for the server's TCP close, then stops reading),
        # so the stream is ours to close.
        await stream.aclose()


async def _open_stream(url: str) -> trio.abc.Stream:
    parts = urlsplit(url)
    tls = parts.scheme == "wss"
    port = parts.port or (443 if tls else 80)
    try:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            if tls:
                return await trio.open_ssl_over_tcp_stream(
                    parts.hostname,
                    port,
                    ssl_context=ssl.create_default_context(),
                    https_compatible=True,
                )
            return await trio.open_tcp_stream(parts.hostname, port)
    except trio.TooSlowError as exc:
        raise ControlPlaneUnreachable(
            f"cannot reach the control plane at {url}: "
            f"no connection within {CONNECT_TIMEOUT_S:g} s"
        ) from exc
    except OSError as exc:
        raise ControlPlaneUnreachable(
            f"cannot reach the control plane at {url}: {exc}"
        ) from exc


async def _run_session(
    stream: trio.abc.Stream,
    *,
    host_header: str,
    resource: str,
    api_key: str,
    url: str,
    cursor: OutputCursor,
    keyboard: _Keyboard,
    output: BinaryIO,
    window_size: WindowSize,
    say: Notify,
) -> int:
    headers = [(b"authorization", f"Bearer {api_key}".encode())]
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                ws = await wrap_client_stream(
                    nursery,
                    stream,
                    host_header,
                    resource,
                    extra_headers=headers,
                    max_message_size=MAX_FRAME_BYTES,
                    receive_buffer_size=RECEIVE_BUFFER_BYTES,
                )
            try:
                if keyboard.fd is not None:
                    # The senders stop quietly when the stream closes, so the
                    # receiver alone tells how the session ended.
                    if keyboard.tty:
                        nursery.start_soon(_send_window_sizes, ws, window_size)
                    nursery.start_soon(_send_keys, ws, keyboard)
                elif not keyboard.tty and not keyboard.eof_sent:
                    # No input at all: the process reads end-of-file at once.
                    await ws.send_message(json.dumps({"type": "eof"}))
                    keyboard.eof_sent = True
                exit_code = await _receive_until_exit(ws, url, cursor, output, say)
            finally:
                with trio.move_on_after(DISCONNECT_TIMEOUT_S) as cleanup:
                    cleanup.shield = True
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _translate_group(group, url) from None

    # A command killed without a status (the server sends null) still failed.
    return 1 if exit_code is None else exit_code


def _translate_group(group: BaseExceptionGroup, url: str) -> BaseException:
    """The one exception to raise for what the session's nursery raised.

    The nursery wraps everything in a group: our own errors from its body, and
    a refused handshake from trio-websocket's reader task.
    """
    leaves = _leaves(group)
    for kind in (KeyboardInterrupt, CliError, ConnectionRejected, trio.TooSlowError):
        found = next((exc for exc in leaves if isinstance(exc, kind)), None)
        if found is None:
            continue
        if isinstance(found, ConnectionRejected):
            request = f"GET {urlsplit(url).path}"
            error = error_from_body(
                found.status_code, found.body or b"", request=request
            )
            if found.status_code in (502, 503, 504):
                # A proxy in front of a control plane that is restarting.
                return TerminalDisconnected(error.message)
            return error
        if isinstance(found, trio.TooSlowError):
            return ControlPlaneUnreachable(
                f"the WebSocket handshake with {url} did not finish "
                f"within {CONNECT_TIMEOUT_S:g} s"
            )
        return found
    return group


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves += _leaves(exc)
        else:
            leaves.append(exc)
    return leaves


async def _receive_until_exit(
    ws: WebSocketConnection,
    url: str,
    cursor: OutputCursor,
    output: BinaryIO,
    say: Notify,
) -> int | None:
    while True:
        # Wait for output; when it pauses with bytes unacknowledged, say so.
        wait_s = ACK_IDLE_S if cursor.unacknowledged else math.inf
        with trio.move_on_after(wait_s) as paused:
            try:
                frame = await ws.get_message()
            except ConnectionClosed as exc:
                raise _closed_early(exc, url) from exc
        if paused.cancelled_caught:
            await _acknowledge(ws, cursor, idle=True)
            continue

        event = parse_server_frame(frame)
        if isinstance(event, Output):
            data = cursor.accept(event.data)
            # A blocking write: stdout may be the same tty file description as
            # stdin, and making it non-blocking for trio would change stdin too.
            output.write(data)
            output.flush()
            await _acknowledge(ws, cursor, idle=False)
        elif isinstance(event, Attached):
            lost = cursor.attached(event.offset)
            if lost:
                say(f"{lost} bytes of output left the scrollback before the reattach")
            if cursor.attachments > 1:
                say(f"reattached at byte {cursor.offset}")
            logger.debug("terminal stream %s: attached at %d", url, event.offset)
        elif isinstance(event, Exited):
            await _acknowledge(ws, cursor, idle=True)
            logger.debug("terminal stream %s: exit code %s", url, event.exit_code)
            return event.exit_code


async def _acknowledge(
    ws: WebSocketConnection, cursor: OutputCursor, *, idle: bool
) -> None:
    offset = cursor.ack_due(idle=idle)
    if offset is None:
        return
    try:
        await ws.send_message(ack_frame(offset))
    except ConnectionClosed:
        # The next read reports how the stream ended; an ack lost with it is
        # repaired by the offset of the reattach.
        return


def _closed_early(exc: ConnectionClosed, url: str) -> TerminalStreamError:
    reason = exc.reason
    code = reason.code if reason is not None else None
    sentence = reason.reason if reason is not None else None
    if code == CLOSE_ALREADY_ATTACHED:
        return TerminalBusy(
            f"cannot attach to the terminal session at {url}: "
            f"{sentence or 'another client is already attached'}"
        )
    if code is None or code in REATTACHABLE_CLOSES:
        detail = "the connection dropped" if code in (None, CLOSE_ABNORMAL) else ""
        return TerminalDisconnected(
            sentence or detail or f"the stream closed with code {code}"
        )
    # The server's refusals (4401, 4404, 4410, ...) carry a sentence as reason.
    if 4000 <= code <= 4999 and sentence:
        return TerminalStreamError(f"{sentence} (terminal stream {url})")
    detail = f"close code {code}"
    if sentence:
        detail += f": {sentence}"
    return TerminalStreamError(
        f"the terminal stream at {url} closed without an exit status ({detail})"
    )


async def _send_window_sizes(ws: WebSocketConnection, window_size: WindowSize) -> None:
    with trio.open_signal_receiver(signal.SIGWINCH) as resizes:
        try:
            await ws.send_message(resize_frame(*window_size()))
            async for _ in resizes:
                await ws.send_message(resize_frame(*window_size()))
        except ConnectionClosed:
            # The receiving task reports how the stream ended.
            return


async def _send_keys(ws: WebSocketConnection, keyboard: _Keyboard) -> None:
    assert keyboard.fd is not None
    try:
        while keyboard.pending or not keyboard.ended:
            if not keyboard.pending:
                keyboard.pending = await _read_chunk(keyboard.fd)
            if not keyboard.pending:
                keyboard.ended = True
                if not keyboard.tty:
                    await ws.send_message(json.dumps({"type": "eof"}))
                    keyboard.eof_sent = True
                    return
                # stdin was a pipe or a file and it ended. A tty in raw mode never
                # gets here: its ^D arrives as a byte. Pass the end on the way a
                # keyboard would, so a remote shell reading the PTY sees
                # end-of-file and exits.
                keyboard.pending = END_OF_TRANSMISSION
            await ws.send_message(keyboard.pending)
            keyboard.pending = b""
    except ConnectionClosed:
        # Kept in `pending`: a reattach sends it.
        return


async def _read_chunk(fd: int) -> bytes:
    try:
        await trio.lowlevel.wait_readable(fd)
    except PermissionError:
        # epoll refuses regular files (epoll_ctl(2), EPERM); they never block.
        await trio.lowlevel.checkpoint()
    return os.read(fd, READ_SIZE)


@contextmanager
def _raw_mode(fd: int | None) -> Iterator[bool]:
    """Put the tty on `fd` in raw mode for the block; restore it on any exit.

    Yields whether the terminal is in raw mode.
    """
    if fd is None or not os.isatty(fd):
        yield False
        return

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
