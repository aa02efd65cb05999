"""The terminal stream client: its frame codec, and `attach` against a real
WebSocket server (trio-websocket on 127.0.0.1) in both modes."""

from __future__ import annotations

import fcntl
import io
import json
import os
import signal
import socket
import struct
import termios
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
from trio_websocket import WebSocketRequest, serve_websocket

from gstacks_cli.errors import (
    ApiError,
    ControlPlaneUnreachable,
    TerminalBusy,
    TerminalStreamError,
)
from gstacks_cli.terminal import (
    Exited,
    Output,
    attach,
    parse_server_frame,
    resize_frame,
    stream_url,
)

KEY = "term-key"


def _exit_frame(code: int | None) -> str:
    return json.dumps({"type": "exit", "exit_code": code})


@asynccontextmanager
async def stream_server(
    handler: Callable[[WebSocketRequest], Awaitable[None]],
) -> AsyncIterator[str]:
    """Serve `handler` on a loopback port; yield the stream's ws:// URL."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        yield f"ws://127.0.0.1:{server.port}/api/sandboxes/sbx_1/terminal-sessions/ts_1/stream"
        nursery.cancel_scope.cancel()


# -- codec -------------------------------------------------------------------------


def test_binary_frame_is_output():
    assert parse_server_frame(b"\x1b[1mhi") == Output(b"\x1b[1mhi")


def test_exit_frame_carries_the_code():
    assert parse_server_frame(_exit_frame(3)) == Exited(3)
    assert parse_server_frame(_exit_frame(None)) == Exited(None)


def test_unknown_text_frame_is_skipped():
    assert parse_server_frame('{"type": "title", "text": "sh"}') is None


@pytest.mark.parametrize("frame", ["not json", "[1, 2]", '{"no": "type"}'])
def test_text_frame_that_is_no_event_is_refused(frame):
    with pytest.raises(TerminalStreamError):
        parse_server_frame(frame)


def test_exit_code_that_is_no_integer_is_refused():
    with pytest.raises(TerminalStreamError, match="exit_code '3'"):
        parse_server_frame('{"type": "exit", "exit_code": "3"}')


def test_resize_frame_is_the_contract_json():
    assert json.loads(resize_frame(120, 40)) == {
        "type": "resize",
        "cols": 120,
        "rows": 40,
    }


def test_resize_frame_refuses_an_empty_window():
    with pytest.raises(ValueError, match="must be positive, not 0x24"):
        resize_frame(0, 24)


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:7480", "ws://127.0.0.1:7480"),
        ("https://cp.example:443/prefix", "wss://cp.example:443/prefix"),
    ],
)
def test_stream_url_sits_beside_the_api(base, expected):
    url = stream_url(base, "sbx_1", "ts_2")

    assert url == f"{expected}/api/sandboxes/sbx_1/terminal-sessions/ts_2/stream"


# -- exec mode ---------------------------------------------------------------------


async def test_exec_streams_output_and_returns_the_exit_code():
    seen: dict = {}

    async def handler(request: WebSocketRequest) -> None:
        seen["headers"] = dict(request.headers)
        ws = await request.accept()
        await ws.send_message(b"line 1\r\n")
        await ws.send_message(b"line 2\r\n")
        # Exec mode must send nothing: give it a moment to misbehave.
        with trio.move_on_after(0.1):
            seen["unexpected"] = await ws.get_message()
        await ws.send_message(_exit_frame(7))
        await ws.aclose(1000)

    output = io.BytesIO()
    async with stream_server(handler) as url:
        code = await attach(url, KEY, output=output)

    assert code == 7
    assert output.getvalue() == b"line 1\r\nline 2\r\n"
    assert seen["headers"][b"authorization"] == f"Bearer {KEY}".encode()
    assert "unexpected" not in seen


async def test_exit_without_a_code_counts_as_failure():
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(_exit_frame(None))
        await ws.aclose(1000)

    async with stream_server(handler) as url:
        assert await attach(url, KEY, output=io.BytesIO()) == 1


# -- interactive mode --------------------------------------------------------------


async def test_interactive_sends_size_then_stdin_then_end_of_input():
    received: list = []

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        while len(received) < 3:
            received.append(await ws.get_message())
        await ws.send_message(b"$ ")
        await ws.send_message(_exit_frame(0))
        await ws.aclose(1000)

    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"echo hi\n")
        os.close(write_fd)
        write_fd = -1
        output = io.BytesIO()
        async with stream_server(handler) as url:
            code = await attach(
                url, KEY, output=output, stdin_fd=read_fd, window_size=lambda: (100, 30)
            )
    finally:
        os.close(read_fd)
        if write_fd != -1:
            os.close(write_fd)

    assert code == 0
    assert json.loads(received[0]) == {"type": "resize", "cols": 100, "rows": 30}
    assert received[1:] == [b"echo hi\n", b"\x04"]
    assert output.getvalue() == b"$ "


# -- how a stream can fail ---------------------------------------------------------


async def test_close_4409_means_another_client_is_attached():
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.aclose(4409, "already attached")

    async with stream_server(handler) as url:
        with pytest.raises(TerminalBusy, match="already attached$"):
            await attach(url, KEY, output=io.BytesIO())


async def test_refusal_close_code_shows_the_servers_sentence():
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.aclose(4503, "the sandbox's host is not connected")

    async with stream_server(handler) as url:
        with pytest.raises(TerminalStreamError) as raised:
            await attach(url, KEY, output=io.BytesIO())

    assert raised.value.message.startswith("the sandbox's host is not connected (")


async def test_close_without_exit_frame_is_a_stream_error():
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(b"partial")
        await ws.aclose(1011, "agent went away")

    output = io.BytesIO()
    async with stream_server(handler) as url:
        with pytest.raises(TerminalStreamError) as raised:
            await attach(url, KEY, output=output)

    assert "closed without an exit status (close code 1011: agent went away)" in (
        raised.value.message
    )
    assert output.getvalue() == b"partial"


async def test_rejected_attach_carries_the_servers_sentence():
    body = {"error": {"code": "not_found", "message": "terminal session ts_1 is gone"}}

    async def handler(request: WebSocketRequest) -> None:
        await request.reject(404, body=json.dumps(body).encode())

    async with stream_server(handler) as url:
        with pytest.raises(ApiError) as raised:
            await attach(url, KEY, output=io.BytesIO())

    assert (raised.value.status, raised.value.message) == (
        404,
        "terminal session ts_1 is gone",
    )


async def test_closed_port_is_unreachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(ControlPlaneUnreachable, match="cannot reach the control plane"):
        await attach(f"ws://127.0.0.1:{port}/x", KEY, output=io.BytesIO())


# -- through the CLI ---------------------------------------------------------------


def test_sandbox_exec_exits_with_the_remote_exit_code(gstacks, control_plane):
    session = {"id": "ts_01", "sandbox_id": "sbx_0a1b", "status": "open"}
    control_plane.answer(
        "POST", "/api/sandboxes/sbx_0a1b/terminal-sessions", 201, session
    )
    control_plane.terminal.output = [b"hello\r\n"]
    control_plane.terminal.exit_code = 7

    result = gstacks("sandbox", "exec", "sbx_0a1b", "--", "sh", "-c", "exit 7")

    assert result.exit_code == 7, result.output
    assert result.stdout_bytes == b"hello\r\n"
    (request,) = control_plane.requests
    assert request.body["command"] == ["sh", "-c", "exit 7"]
    assert request.body["cols"] >= 1 and request.body["rows"] >= 1
    assert control_plane.terminal_headers["authorization"] == (
        f"Bearer {control_plane.api_key}"
    )


def test_sandbox_exec_of_a_missing_sandbox_is_one_line(gstacks, control_plane):
    message = "sandbox sbx_0a1b does not exist"
    control_plane.answer(
        "POST",
        "/api/sandboxes/sbx_0a1b/terminal-sessions",
        404,
        {"error": {"code": "not_found", "message": message}},
    )

    result = gstacks("sandbox", "exec", "sbx_0a1b", "--", "true")

    assert (result.exit_code, result.stderr) == (1, f"gstacks: {message}\n")


def test_sandbox_shell_without_a_stdin_descriptor_is_one_line(gstacks, control_plane):
    result = gstacks("sandbox", "shell", "sbx_0a1b")

    assert result.exit_code == 1
    assert (
        result.stderr
        == "gstacks: sandbox shell needs stdin to be a terminal or a pipe\n"
    )
    assert control_plane.requests == []


# -- interactive mode on a real terminal ---------------------------------------------


def _set_window(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@pytest.fixture
def pty_pair():
    """A pseudo-terminal: (controller fd, terminal fd), both closed afterwards."""
    controller, terminal = os.openpty()
    try:
        yield controller, terminal
    finally:
        os.close(controller)
        os.close(terminal)


async def test_shell_on_a_tty_is_raw_resizes_on_sigwinch_and_restores(pty_pair):
    controller, tty_fd = pty_pair
    _set_window(tty_fd, 100, 30)
    cooked = termios.tcgetattr(tty_fd)
    seen: dict = {}

    def window_size() -> tuple[int, int]:
        size = os.get_terminal_size(tty_fd)
        return size.columns, size.lines

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        seen["first"] = json.loads(await ws.get_message())
        seen["lflag"] = termios.tcgetattr(tty_fd)[3]

        # The window changes: the kernel would send SIGWINCH to the foreground
        # process group; this process is not in that session, so send it here.
        _set_window(tty_fd, 120, 40)
        os.kill(os.getpid(), signal.SIGWINCH)
        seen["second"] = json.loads(await ws.get_message())

        # A key typed on the terminal arrives at once, without a newline.
        os.write(controller, b"q")
        seen["key"] = await ws.get_message()

        await ws.send_message(_exit_frame(5))
        await ws.aclose(1000)

    async with stream_server(handler) as url:
        code = await attach(
            url, KEY, output=io.BytesIO(), stdin_fd=tty_fd, window_size=window_size
        )

    assert code == 5
    assert seen["first"] == {"type": "resize", "cols": 100, "rows": 30}
    assert seen["second"] == {"type": "resize", "cols": 120, "rows": 40}
    assert seen["key"] == b"q"
    assert not seen["lflag"] & (termios.ICANON | termios.ECHO)
    assert termios.tcgetattr(tty_fd) == cooked
