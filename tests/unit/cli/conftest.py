"""A real HTTP + WebSocket server with scripted answers, for testing the CLI.

`ScriptedControlPlane` is a Starlette app served by hypercorn on 127.0.0.1 in its
own thread and trio loop, so the CLI under test talks real HTTP and WebSocket to
it. Each test scripts the answers it needs with `answer(...)` and reads back the
requests the CLI sent.
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from click.testing import CliRunner, Result
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gstacks_cli.main import cli

API_KEY = "test-key-0123"
STARTUP_TIMEOUT_S = 10


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class TerminalScript:
    """What the stream route does: send `output`, then exit or close."""

    output: list[bytes] = field(default_factory=list)
    exit_code: int | None = 0
    # When set, close with this code instead of sending an exit frame.
    close_code: int | None = None
    # Wait for this many client frames before answering (e.g. a resize).
    expect_frames: int = 0


class ScriptedControlPlane:
    """The server's script (answers per route) and its record of requests."""

    def __init__(self) -> None:
        self.url = ""
        self.api_key = API_KEY
        self._answers: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[Recorded] = []
        self.terminal = TerminalScript()
        self.terminal_frames: list[str | bytes] = []
        self.terminal_headers: dict[str, str] = {}
        self.terminal_path = ""
        self.terminal_query: dict[str, str] = {}
        self.app = Starlette(
            routes=[
                WebSocketRoute(
                    "/api/sandboxes/{sandbox_id}/terminal-sessions/{session_id}/stream",
                    self._stream,
                ),
                WebSocketRoute(
                    "/api/hosts/{host_id}/terminal-sessions/{session_id}/stream",
                    self._stream,
                ),
                Route(
                    "/{path:path}",
                    self._http,
                    methods=["GET", "POST", "DELETE", "PUT", "PATCH"],
                ),
            ]
        )

    def answer(
        self,
        method: str,
        path: str,
        status: int,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Queue an answer for `method path`; the last one queued repeats."""
        data = raw if raw is not None else b"" if body is None else json.dumps(body)
        if isinstance(data, str):
            data = data.encode()
        answers = self._answers.setdefault((method, path), [])
        answers.append(Answer(status, data, content_type))

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if (r.method, r.path) == (method, path)]

    async def _http(self, request: Request) -> Response:
        path = request.scope["raw_path"].decode()
        raw_body = await request.body()
        self.requests.append(
            Recorded(
                method=request.method,
                path=path,
                query=dict(request.query_params),
                headers=dict(request.headers),
                body=json.loads(raw_body) if raw_body else None,
            )
        )

        answers = self._answers.get((request.method, path))
        if not answers:
            message = f"no scripted answer for {request.method} {path}"
            error = {"error": {"code": "not_found", "message": message}}
            return Response(json.dumps(error), 404, media_type="application/json")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return Response(answer.body, answer.status, media_type=answer.content_type)

    async def _stream(self, websocket: WebSocket) -> None:
        self.terminal_headers = dict(websocket.headers)
        self.terminal_path = websocket.url.path
        self.terminal_query = dict(websocket.query_params)
        await websocket.accept()
        script = self.terminal
        await websocket.send_text(json.dumps({"type": "attached", "offset": 0}))

        while len(self.terminal_frames) < script.expect_frames:
            message = await websocket.receive()
            frame = message.get("bytes") or message.get("text")
            # Acknowledgements come and go with the output; keep the rest.
            if not (isinstance(frame, str) and '"ack"' in frame):
                self.terminal_frames.append(frame)
        for chunk in script.output:
            await websocket.send_bytes(chunk)
        if script.close_code is not None:
            await websocket.close(script.close_code)
            return
        await websocket.send_text(
            json.dumps({"type": "exit", "exit_code": script.exit_code})
        )
        await websocket.close(1000)
        try:
            while True:
                await websocket.receive_bytes()
        except (WebSocketDisconnect, RuntimeError):
            return


@pytest.fixture
def control_plane():
    """A ScriptedControlPlane listening on 127.0.0.1, stopped after the test."""
    plane = ScriptedControlPlane()
    started = threading.Event()
    loop: dict[str, Any] = {}

    async def run() -> None:
        stop = trio.Event()
        loop["token"] = trio.lowlevel.current_trio_token()
        loop["stop"] = stop
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.errorlog = None
        config.graceful_timeout = 1
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                functools.partial(serve, plane.app, config, shutdown_trigger=stop.wait)
            )
            plane.url = binds[0]
            started.set()

    def thread_main() -> None:
        try:
            trio.run(run)
        except BaseException as exc:  # reported to the test below
            loop["error"] = exc
            started.set()

    thread = threading.Thread(target=thread_main, name="scripted-control-plane")
    thread.start()
    try:
        assert started.wait(STARTUP_TIMEOUT_S), "the test server did not start"
        assert "error" not in loop, loop.get("error")
        yield plane
    finally:
        if "stop" in loop and "error" not in loop:
            trio.from_thread.run_sync(loop["stop"].set, trio_token=loop["token"])
        thread.join(STARTUP_TIMEOUT_S)
    assert "error" not in loop, loop["error"]


@pytest.fixture
def run_cli(tmp_path):
    """Run `gstacks ARGS...` in-process with a clean HOME and the given env."""
    home = tmp_path / "home"
    home.mkdir()

    def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
        base_env: dict[str, str | None] = {
            "HOME": str(home),
            "XDG_CONFIG_HOME": None,
            "GSTACKS_URL": None,
            "GSTACKS_API_KEY": None,
        }
        runner = CliRunner(env={**base_env, **(env or {})})
        return runner.invoke(cli, list(args), prog_name="gstacks")

    run.home = home
    return run


@pytest.fixture
def gstacks(run_cli, control_plane):
    """Run `gstacks ARGS...` against the scripted control plane."""

    def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
        cp_env = {"GSTACKS_URL": control_plane.url, "GSTACKS_API_KEY": API_KEY}
        return run_cli(*args, env={**cp_env, **(env or {})})

    return run
