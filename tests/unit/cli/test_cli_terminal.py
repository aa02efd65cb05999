"""The terminal stream client: its frame codec and stream accounting, and `attach`
against a real WebSocket server (trio-websocket on 127.0.0.1) in both modes, across
dropped links and reattaches."""

from __future__ import annotations

import fcntl
import functools
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
    wrap_server_stream,
)

from gstacks_cli.errors import (
    ApiError,
    ControlPlaneUnreachable,
    TerminalBusy,
    TerminalDisconnected,
    TerminalStreamError,
)
from gstacks_cli.terminal import (
    ACK_EVERY_BYTES,
    Attached,
    Exited,
    Output,
    OutputCursor,
    ReattachSchedule,
    ack_frame,
    attach,
    parse_server_frame,
    resize_frame,
    resume_target,
    stream_url,
)

KEY = "term-key"


def _exit_frame(code: int | None) -> str:
    return json.dumps({"type": "exit", "exit_code": code})


def _attached_frame(offset: int) -> str:
    return json.dumps({"type": "attached", "offset": offset})


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
    url = stream_url(base, "sandboxes", "sbx_1", "ts_2")

    assert url == f"{expected}/api/sandboxes/sbx_1/terminal-sessions/ts_2/stream"


def test_stream_url_of_a_host_session():
    url = stream_url("http://127.0.0.1:7480", "hosts", "h_1", "ts_2")

    assert url == "ws://127.0.0.1:7480/api/hosts/h_1/terminal-sessions/ts_2/stream"


def test_stream_url_refuses_an_unknown_owner():
    with pytest.raises(ValueError, match="not 'blueprints'"):
        stream_url("http://127.0.0.1:7480", "blueprints", "b_1", "ts_2")


def test_resume_target_asks_for_the_offset_with_client_acks():
    url = "ws://127.0.0.1:7480/api/sandboxes/sbx_1/terminal-sessions/ts_2/stream"

    assert resume_target(url, 1234) == (
        "/api/sandboxes/sbx_1/terminal-sessions/ts_2/stream?offset=1234&acks=client"
    )


def test_attached_frame_carries_the_offset():
    assert parse_server_frame(_attached_frame(42)) == Attached(42)


@pytest.mark.parametrize("offset", [-1, "3", None, True])
def test_attached_frame_without_a_valid_offset_is_refused(offset):
    with pytest.raises(TerminalStreamError, match="attached frame carries offset"):
        parse_server_frame(json.dumps({"type": "attached", "offset": offset}))


def test_ack_frame_is_the_contract_json():
    assert json.loads(ack_frame(65536)) == {"type": "ack", "offset": 65536}


# -- output accounting -------------------------------------------------------------


def test_cursor_acknowledges_every_quarter_window_and_when_output_pauses():
    cursor = OutputCursor()
    cursor.attached(0)

    cursor.accept(b"x" * (ACK_EVERY_BYTES - 1))
    assert cursor.ack_due(idle=False) is None
    cursor.accept(b"x")
    assert cursor.ack_due(idle=False) == ACK_EVERY_BYTES
    assert cursor.ack_due(idle=True) is None

    cursor.accept(b"tail")
    assert cursor.ack_due(idle=False) is None
    assert cursor.ack_due(idle=True) == ACK_EVERY_BYTES + 4


def test_cursor_skips_output_resent_from_before_its_offset():
    cursor = OutputCursor()
    cursor.attached(0)
    assert cursor.accept(b"abcdef") == b"abcdef"

    # The server restarts two bytes early: they are not handed on twice.
    assert cursor.attached(4) == 0
    assert cursor.accept(b"e") == b""
    assert cursor.accept(b"fgh") == b"gh"
    assert cursor.offset == 8


def test_cursor_reports_output_lost_before_a_reattach():
    cursor = OutputCursor()
    cursor.attached(0)
    cursor.accept(b"abc")

    assert cursor.attached(10) == 7
    assert cursor.accept(b"k") == b"k"
    assert cursor.offset == 11


def test_cursor_counts_attachments():
    cursor = OutputCursor()
    cursor.attached(0)
    cursor.attached(0)

    assert cursor.attachments == 2


def test_reattach_delays_double_up_to_a_cap_within_the_budget():
    schedule = ReattachSchedule(budget_s=20)

    delays = [schedule.next_delay(now=0) for _ in range(7)]

    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert schedule.next_delay(now=19.5) == 0.5
    assert schedule.next_delay(now=20) is None


def test_reattach_budget_starts_again_after_the_link_came_back():
    schedule = ReattachSchedule(budget_s=10)
    schedule.next_delay(now=0)
    schedule.next_delay(now=1)

    schedule.reset()

    assert schedule.next_delay(now=100) == 0.25
    assert schedule.next_delay(now=109) == 0.5


# -- exec mode ---------------------------------------------------------------------


async def test_exec_streams_output_and_returns_the_exit_code():
    seen: dict = {}

    async def handler(request: WebSocketRequest) -> None:
        seen["headers"] = dict(request.headers)
        ws = await request.accept()
        await ws.send_message(b"line 1\r\n")
        await ws.send_message(b"line 2\r\n")
        # Exec mode sends nothing but acknowledgements: give it a moment to
        # misbehave.
        with trio.move_on_after(0.2):
            while True:
                frame = await ws.get_message()
                if json.loads(frame)["type"] != "ack":
                    seen["unexpected"] = frame
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


async def test_exec_acknowledges_the_output_it_received():
    total = 3 * ACK_EVERY_BYTES + 1000
    acks: list[int] = []

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(_attached_frame(0))
        for start in range(0, total, 16 * 1024):
            await ws.send_message(b"z" * min(16 * 1024, total - start))
        # The tail is acknowledged once output pauses.
        with trio.fail_after(5):
            while not acks or acks[-1] < total:
                acks.append(json.loads(await ws.get_message())["offset"])
        await ws.send_message(_exit_frame(0))
        await ws.aclose(1000)

    output = io.BytesIO()
    async with stream_server(handler) as url:
        assert await attach(url, KEY, output=output) == 0

    assert len(output.getvalue()) == total
    assert acks == sorted(acks) and acks[-1] == total
    assert acks[0] >= ACK_EVERY_BYTES and len(acks) >= 3


async def test_exec_asks_to_attach_from_zero_with_client_acks():
    seen: dict = {}

    async def handler(request: WebSocketRequest) -> None:
        seen["target"] = request.path
        ws = await request.accept()
        await ws.send_message(_attached_frame(0))
        await ws.send_message(_exit_frame(0))
        await ws.aclose(1000)

    async with stream_server(handler) as url:
        await attach(url, KEY, output=io.BytesIO())

    assert seen["target"].endswith("/stream?offset=0&acks=client")


# -- reattach ----------------------------------------------------------------------

Handler = Callable[[str, WebSocketConnection, trio.abc.Stream], Awaitable[None]]


@asynccontextmanager
async def droppable_server(handler: Handler) -> AsyncIterator[str]:
    """Serve a stream whose handler also holds the TCP connection, to drop it.

    `handler(target, ws, tcp_stream)` gets each connection's request target.
    """

    async def serve_one(stream: trio.SocketStream) -> None:
        async with trio.open_nursery() as nursery:
            request = await wrap_server_stream(nursery, stream)
            ws = await request.accept()
            try:
                await handler(request.path, ws, stream)
            except ConnectionClosed:
                pass
            finally:
                await stream.aclose()
                nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, serve_one, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        yield f"ws://127.0.0.1:{port}/api/sandboxes/sbx_1/terminal-sessions/ts_1/stream"
        nursery.cancel_scope.cancel()


def _offset_of(target: str) -> int:
    return int(target.split("offset=")[1].split("&")[0])


async def test_dropped_link_is_reattached_at_the_received_offset_without_a_gap():
    targets: list[str] = []
    notices: list[str] = []
    output_bytes = bytes(range(256)) * 64

    async def handler(target, ws, tcp) -> None:
        targets.append(target)
        offset = _offset_of(target)
        if len(targets) == 1:
            await ws.send_message(_attached_frame(0))
            await ws.send_message(output_bytes[:5000])
            await ws.get_message()  # the idle ack
            await tcp.aclose()  # no close frame: the link just drops
            return
        # The second attach restarts a little early: the client drops the overlap.
        await ws.send_message(_attached_frame(offset - 100))
        await ws.send_message(output_bytes[offset - 100 :])
        await ws.send_message(_exit_frame(3))
        with trio.move_on_after(5):
            await ws.get_message()

    output = io.BytesIO()
    async with droppable_server(handler) as url:
        code = await attach(
            url, KEY, output=output, reattach_within_s=10, notify=notices.append
        )

    assert code == 3
    assert output.getvalue() == output_bytes
    assert [_offset_of(t) for t in targets] == [0, 5000]
    assert notices[0].startswith("terminal link lost (the connection dropped)")
    assert notices[-1] == "reattached at byte 5000"


async def test_host_away_close_is_retried_until_the_session_comes_back():
    attempts: list[str] = []

    async def handler(target, ws, tcp) -> None:
        attempts.append(target)
        if len(attempts) < 3:
            await ws.aclose(4503, "the session's host is not connected")
            return
        await ws.send_message(_attached_frame(0))
        await ws.send_message(b"back\r\n")
        await ws.send_message(_exit_frame(0))
        with trio.move_on_after(5):
            await ws.get_message()

    output = io.BytesIO()
    notices: list[str] = []
    async with droppable_server(handler) as url:
        code = await attach(
            url, KEY, output=output, reattach_within_s=10, notify=notices.append
        )

    assert code == 0
    assert output.getvalue() == b"back\r\n"
    assert len(attempts) == 3
    assert "host is not connected" in notices[0]


async def test_reattach_gives_up_when_its_time_is_spent():
    async def handler(target, ws, tcp) -> None:
        await ws.aclose(4503, "the session's host is not connected")

    notices: list[str] = []
    started = trio.current_time()
    async with droppable_server(handler) as url:
        with pytest.raises(TerminalDisconnected, match="host is not connected"):
            await attach(
                url,
                KEY,
                output=io.BytesIO(),
                reattach_within_s=0.6,
                notify=notices.append,
            )

    assert trio.current_time() - started < 5
    assert len(notices) >= 2


async def test_refusal_is_not_retried_even_with_reattach_on():
    attempts: list[str] = []

    async def handler(target, ws, tcp) -> None:
        attempts.append(target)
        await ws.aclose(4404, "terminal session ts_1 does not exist")

    async with droppable_server(handler) as url:
        with pytest.raises(TerminalStreamError, match="does not exist"):
            await attach(url, KEY, output=io.BytesIO(), reattach_within_s=10)

    assert len(attempts) == 1


async def test_keys_typed_around_a_drop_arrive_once_each():
    received: list[bytes] = []
    read_fd, write_fd = os.pipe()

    async def handler(target, ws, tcp) -> None:
        nonlocal write_fd
        await ws.send_message(_attached_frame(_offset_of(target)))
        if not received:
            while not received:
                message = await ws.get_message()
                if isinstance(message, bytes):
                    received.append(message)
            await ws.send_message(b"1")
            await ws.get_message()  # its ack
            await tcp.aclose()
            return
        os.write(write_fd, b"second")
        os.close(write_fd)
        write_fd = -1
        while len(received) < 3:
            message = await ws.get_message()
            if isinstance(message, bytes):
                received.append(message)
        await ws.send_message(_exit_frame(0))
        with trio.move_on_after(5):
            await ws.get_message()

    os.write(write_fd, b"first")
    try:
        async with droppable_server(handler) as url:
            await attach(
                url,
                KEY,
                output=io.BytesIO(),
                stdin_fd=read_fd,
                window_size=lambda: (80, 24),
                reattach_within_s=10,
                notify=lambda message: None,
            )
    finally:
        os.close(read_fd)
        if write_fd != -1:
            os.close(write_fd)

    assert received == [b"first", b"second", b"\x04"]


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
        await ws.aclose(4410, "session is exited")

    async with stream_server(handler) as url:
        with pytest.raises(TerminalStreamError) as raised:
            await attach(url, KEY, output=io.BytesIO())

    assert raised.value.message.startswith("session is exited (terminal stream ws:")


async def test_host_away_without_reattach_is_a_disconnect():
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.aclose(4503, "the sandbox's host is not connected")

    async with stream_server(handler) as url:
        with pytest.raises(TerminalDisconnected) as raised:
            await attach(url, KEY, output=io.BytesIO())

    assert raised.value.message == "the sandbox's host is not connected"


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
    assert control_plane.terminal_query == {"offset": "0", "acks": "client"}


def test_host_shell_attaches_to_a_host_session_and_exits_with_its_code(
    control_plane, tmp_path
):
    session = {"id": "ts_02", "host_id": "h_01", "status": "open"}
    control_plane.answer("POST", "/api/hosts/h_01/terminal-sessions", 201, session)
    control_plane.terminal.expect_frames = 3
    control_plane.terminal.output = [b"bye\r\n"]
    control_plane.terminal.exit_code = 4
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "GSTACKS_URL": control_plane.url,
        "GSTACKS_API_KEY": control_plane.api_key,
    }

    # A pipe on stdin: a real descriptor, as `gstacks` has when run for real.
    result = subprocess.run(
        [str(Path(sys.executable).parent / "gstacks"), "host", "shell", "h_01"],
        input=b"exit\n",
        env=env,
        capture_output=True,
        timeout=60,
    )

    assert result.returncode == 4, result.stderr
    assert result.stdout == b"bye\r\n"
    (request,) = control_plane.requests
    assert request.body["cols"] >= 1 and "command" not in request.body
    assert (
        control_plane.terminal_path == "/api/hosts/h_01/terminal-sessions/ts_02/stream"
    )
    assert control_plane.terminal_query == {"offset": "0", "acks": "client"}
    frames = control_plane.terminal_frames
    assert sorted(f for f in frames if isinstance(f, bytes)) == [b"\x04", b"exit\n"]
    (resize,) = [json.loads(f) for f in frames if isinstance(f, str)]
    assert resize["type"] == "resize"


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
