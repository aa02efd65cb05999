"""The client side of a terminal session's WebSocket stream.

How it works. A terminal session is a command on a PTY inside a sandbox, created
over HTTP (`POST .../terminal-sessions`). Its bytes travel on one WebSocket,
`/api/sandboxes/{id}/terminal-sessions/{sid}/stream`, opened with the same Bearer
header as every API call. The frames are few:

- client to server: binary frames are keystrokes (stdin bytes); text frames are
  JSON `{"type": "resize", "cols": N, "rows": N}`;
- server to client: binary frames are the PTY's output; one final text frame
  `{"type": "exit", "exit_code": N}`, then the server closes with 1000. A close
  with 4409 means another client is already attached; other 4xxx closes are
  refusals whose reason is a readable sentence.

The frame codec below is plain functions (no sockets), so it is tested alone;
`attach` is the thin I/O layer around it, in two modes:

- interactive (`stdin_fd` given): the local tty goes into raw mode, so every key,
  ^C included, goes to the remote PTY, and is restored on the way out whatever
  happens. The window size is sent once at start and again on every SIGWINCH.
- exec (`stdin_fd` None): nothing is sent; output is written as it arrives.

Either way `attach` returns the remote command's exit code.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
import termios
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote, urlsplit, urlunsplit

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
    TerminalStreamError,
)

logger = logging.getLogger("gstacks.cli.terminal")

DEFAULT_WINDOW_SIZE = (80, 24)
CONNECT_TIMEOUT_S = 15.0
DISCONNECT_TIMEOUT_S = 5.0
READ_SIZE = 4096
CLOSE_ALREADY_ATTACHED = 4409
# The byte a terminal's line discipline turns into end-of-file (termios VEOF).
END_OF_TRANSMISSION = b"\x04"

WindowSize = Callable[[], tuple[int, int]]


# -- frame codec (sans-io) ---------------------------------------------------------


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


def parse_server_frame(frame: str | bytes) -> Output | Exited | None:
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
    if kind != "exit":
        return None

    exit_code = message.get("exit_code")
    if exit_code is not None and not isinstance(exit_code, int):
        raise TerminalStreamError(f"the exit frame carries exit_code {exit_code!r}")
    return Exited(exit_code)


def stream_url(base_url: str, sandbox_id: str, session_id: str) -> str:
    """The WebSocket URL of a session's stream, beside the HTTP API's base URL."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}[parts.scheme]
    path = (
        f"{parts.path.rstrip('/')}/api/sandboxes/{quote(sandbox_id, safe='')}"
        f"/terminal-sessions/{quote(session_id, safe='')}/stream"
    )
    return urlunsplit((scheme, parts.netloc, path, "", ""))


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


async def attach(
    url: str,
    api_key: str,
    *,
    output: BinaryIO,
    stdin_fd: int | None = None,
    window_size: WindowSize = local_window_size,
) -> int:
    """Attach to a session's stream at `url` and return the remote exit code.

    With `stdin_fd` this is an interactive session (see the module essay);
    without it, exec mode. Output bytes go to `output` as they arrive.
    """
    parts = urlsplit(url)
    stream = await _open_stream(url)
    try:
        return await _run_session(
            stream,
            host_header=parts.netloc,
            resource=parts.path or "/",
            api_key=api_key,
            url=url,
            output=output,
            stdin_fd=stdin_fd,
            window_size=window_size,
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
    output: BinaryIO,
    stdin_fd: int | None,
    window_size: WindowSize,
) -> int:
    headers = [(b"authorization", f"Bearer {api_key}".encode())]
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                ws = await wrap_client_stream(
                    nursery, stream, host_header, resource, extra_headers=headers
                )
            try:
                with _raw_mode(stdin_fd):
                    if stdin_fd is not None:
                        # The senders stop quietly when the stream closes, so the
                        # receiver alone tells how the session ended.
                        nursery.start_soon(_send_window_sizes, ws, window_size)
                        nursery.start_soon(_send_stdin, ws, stdin_fd)
                    exit_code = await _receive_until_exit(ws, url, output)
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
            return error_from_body(
                found.status_code, found.body or b"", request=request
            )
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
    ws: WebSocketConnection, url: str, output: BinaryIO
) -> int | None:
    while True:
        try:
            frame = await ws.get_message()
        except ConnectionClosed as exc:
            raise _closed_early(exc, url) from exc

        event = parse_server_frame(frame)
        if isinstance(event, Output):
            # A blocking write: stdout may be the same tty file description as
            # stdin, and making it non-blocking for trio would change stdin too.
            output.write(event.data)
            output.flush()
        elif isinstance(event, Exited):
            logger.debug("terminal stream %s: exit code %s", url, event.exit_code)
            return event.exit_code


def _closed_early(exc: ConnectionClosed, url: str) -> TerminalStreamError:
    reason = exc.reason
    code = reason.code if reason is not None else None
    sentence = reason.reason if reason is not None else None
    if code == CLOSE_ALREADY_ATTACHED:
        return TerminalBusy(
            f"cannot attach to the terminal session at {url}: "
            f"{sentence or 'another client is already attached'}"
        )
    # The server's refusals (4401, 4404, 4503, ...) carry a sentence as reason.
    if code is not None and 4000 <= code <= 4999 and sentence:
        return TerminalStreamError(f"{sentence} (terminal stream {url})")
    detail = "no close code" if code is None else f"close code {code}"
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


async def _send_stdin(ws: WebSocketConnection, stdin_fd: int) -> None:
    try:
        while data := await _read_chunk(stdin_fd):
            await ws.send_message(data)

        # stdin was a pipe or a file and it ended. A tty in raw mode never gets
        # here: its ^D arrives as a byte. Pass the end on the way a keyboard would,
        # so a remote shell reading the PTY sees end-of-file and exits.
        await ws.send_message(END_OF_TRANSMISSION)
    except ConnectionClosed:
        return


async def _read_chunk(fd: int) -> bytes:
    try:
        await trio.lowlevel.wait_readable(fd)
    except PermissionError:
        # epoll refuses regular files (epoll_ctl(2), EPERM); they never block.
        await trio.lowlevel.checkpoint()
    return os.read(fd, READ_SIZE)


@contextmanager
def _raw_mode(fd: int | None) -> Iterator[None]:
    """Put the tty on `fd` in raw mode for the block; restore it on any exit."""
    if fd is None or not os.isatty(fd):
        yield
        return

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
