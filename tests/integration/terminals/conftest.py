"""A standalone lab with one running busybox sandbox, and a small terminal client.

The lab is the one the end-to-end lab tests use (`start_lab`/`stop_lab`); it is shared
by the tests of a module, as is the sandbox, and both are removed afterwards whatever
happened. `TerminalStream` is a deliberately thin client of the stream protocol
(trio-websocket over a TCP stream the test owns), so that a test can do what the CLI
never does: drop the TCP connection in the middle of output, stop reading, or attach
twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from tests.integration.lab.conftest import (  # noqa: F401  (a fixture)
    Lab,
    busybox_layout,
    start_lab,
    stop_lab,
)

ACK_EVERY_BYTES = 64 * 1024
STEP_TIMEOUT_S = 20.0
CLOSE_BUSY = 4409


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory,
    busybox_layout: Path,  # noqa: F811  (the fixture imported above)
) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    # start_lab names the lab's runc root after the state dir: a name of our own
    # keeps another test run's cleanup away from our containers.
    name = f"terminals-{os.getpid()}-{os.urandom(3).hex()}"
    state_dir = tmp_path_factory.mktemp("terminal-lab") / name
    running = start_lab(state_dir, busybox_layout)
    try:
        running.push(busybox_layout, "lab/busybox")
        yield running
    finally:
        stop_lab(running)


@pytest.fixture(scope="module")
def sandbox(lab: Lab) -> Iterator[dict]:
    """One running busybox sandbox for the module's sessions."""
    created = lab.create_sandbox(image="lab/busybox:latest")
    try:
        yield created
    finally:
        with lab.client() as client:
            client.delete(f"/api/sandboxes/{created['id']}")


@pytest.fixture(scope="module")
def host_id(lab: Lab) -> str:
    with lab.client() as client:
        (host,) = client.get("/api/hosts").json()["items"]
    return host["id"]


def create_session(
    lab: Lab, owner: str, owner_id: str, command: list[str] | None = None, **body
) -> str:
    """POST a terminal session on `owner/owner_id` ("sandboxes" or "hosts")."""
    if command is not None:
        body["command"] = command
    with lab.client() as client:
        created = client.post(f"/api/{owner}/{owner_id}/terminal-sessions", json=body)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def get_session(lab: Lab, owner: str, owner_id: str, session_id: str) -> dict:
    with lab.client() as client:
        got = client.get(f"/api/{owner}/{owner_id}/terminal-sessions/{session_id}")
    assert got.status_code == 200, got.text
    return got.json()


class TerminalStream:
    """One attachment to a session's stream, seen from the client side.

    `data` holds the output received on this attachment, `offset` the absolute
    offset reached. With `acks`, it acknowledges every ACK_EVERY_BYTES and on
    `ack()`, as a well-behaved client does.
    """

    def __init__(self, ws: WebSocketConnection, tcp: trio.abc.Stream, acks: bool):
        self.ws = ws
        self.tcp = tcp
        self.acks = acks
        self.attached_at: int | None = None
        self.offset = 0
        self.acknowledged = 0
        self.data = bytearray()
        self.exit_code: int | None = None
        self.exited = False

    async def next_event(self) -> None:
        frame = await self.ws.get_message()
        if isinstance(frame, bytes):
            self.data += frame
            self.offset += len(frame)
            if self.acks and self.offset - self.acknowledged >= ACK_EVERY_BYTES:
                await self.ack()
            return
        message = json.loads(frame)
        if message["type"] == "attached":
            self.attached_at = self.offset = self.acknowledged = message["offset"]
        elif message["type"] == "exit":
            self.exit_code = message["exit_code"]
            self.exited = True

    async def ack(self) -> None:
        if self.acks and self.offset > self.acknowledged:
            self.acknowledged = self.offset
            await self.ws.send_message(
                json.dumps({"type": "ack", "offset": self.offset})
            )

    async def read_until(
        self, needle: bytes, timeout_s: float = STEP_TIMEOUT_S
    ) -> bytes:
        """Read until `needle` is in this attachment's output; all output so far."""
        with trio.fail_after(timeout_s):
            while needle not in self.data:
                assert not self.exited, (
                    f"exited before {needle!r}: {bytes(self.data)!r}"
                )
                await self.next_event()
            await self.ack()
        return bytes(self.data)

    async def read_bytes(self, count: int, timeout_s: float = STEP_TIMEOUT_S) -> None:
        with trio.fail_after(timeout_s):
            while len(self.data) < count and not self.exited:
                await self.next_event()

    async def read_to_exit(self, timeout_s: float = STEP_TIMEOUT_S) -> int | None:
        """Read all output up to the exit frame; the exit code."""
        with trio.fail_after(timeout_s):
            while not self.exited:
                await self.next_event()
            await self.ack()
        return self.exit_code

    async def close_code(self, timeout_s: float = STEP_TIMEOUT_S) -> int | None:
        """Read until the server closes; its close code."""
        with trio.fail_after(timeout_s):
            try:
                while True:
                    await self.next_event()
            except ConnectionClosed as closed:
                return closed.reason.code if closed.reason else None

    async def send(self, keys: bytes) -> None:
        await self.ws.send_message(keys)

    async def resize(self, cols: object, rows: object) -> None:
        await self.ws.send_message(
            json.dumps({"type": "resize", "cols": cols, "rows": rows})
        )

    async def drop(self) -> None:
        """Close the TCP connection without a WebSocket close: a link that died."""
        await self.tcp.aclose()


@asynccontextmanager
async def open_stream(
    lab: Lab,
    owner: str,
    owner_id: str,
    session_id: str,
    *,
    offset: int | None = None,
    acks: bool = True,
    key: str | None = None,
    query: str | None = None,
) -> AsyncIterator[TerminalStream]:
    """Attach to a session's stream; closed (or dropped) when the block ends."""
    if query is None:
        params = {}
        if offset is not None:
            params["offset"] = str(offset)
        if acks:
            params["acks"] = "client"
        query = str(httpx.QueryParams(params))
    resource = f"/api/{owner}/{owner_id}/terminal-sessions/{session_id}/stream"
    if query:
        resource += f"?{query}"
    host, port = lab.address.rsplit(":", 1)
    tcp = await trio.open_tcp_stream(host, int(port))
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(
                nursery,
                tcp,
                lab.address,
                resource,
                extra_headers=[(b"authorization", f"Bearer {key or lab.key}".encode())],
                max_message_size=4 * 1024 * 1024,
                receive_buffer_size=64 * 1024,
            )
            try:
                yield TerminalStream(ws, tcp, acks)
            finally:
                with trio.move_on_after(2) as cleanup:
                    cleanup.shield = True
                    try:
                        await ws.aclose()
                    except (trio.ClosedResourceError, trio.BrokenResourceError):
                        pass
                nursery.cancel_scope.cancel()
    finally:
        await tcp.aclose()


@asynccontextmanager
async def reattach_stream(
    lab: Lab, owner: str, owner_id: str, session_id: str, offset: int
) -> AsyncIterator[TerminalStream]:
    """Attach again at `offset`, once the server has let go of a dropped link (until
    it notices the drop it still counts that link as attached: 4409)."""
    deadline = trio.current_time() + STEP_TIMEOUT_S
    while True:
        async with open_stream(lab, owner, owner_id, session_id, offset=offset) as s:
            try:
                await s.next_event()
                busy = False
            except ConnectionClosed as closed:
                code = closed.reason.code if closed.reason else None
                busy = code == CLOSE_BUSY and trio.current_time() < deadline
                if not busy:
                    raise
            if not busy:
                yield s
                return
        await trio.sleep(0.1)
