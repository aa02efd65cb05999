"""Terminal sessions: records, and the relay between a client's WebSocket and an agent.

How it works. `POST .../terminal-sessions` only writes a record; the process starts
when a client attaches to the session's stream, so no output is produced before
someone is there to read it. On attach the relay reserves a stream on the host's
channel, asks the agent to open a PTY running the session's command, and then moves
bytes both ways:

    client  --binary-->  relay  --TerminalData-->   agent  --> PTY
    client  <--binary--  relay  <--TerminalData--   agent  <-- PTY
    client  --{"type":"resize"}-->  relay  --TerminalResize-->  agent

Output is flow controlled end to end: the agent may have `WINDOW_BYTES` unacknowledged
bytes in flight, and the relay grants more (StreamWindow) only after the client's
socket accepted what it had, so a slow client slows its own PTY and nothing else.

When the process exits the agent sends TerminalExit; the relay forwards the exit code
as a final text frame `{"type":"exit","exit_code":N}` and closes the socket. When the
client goes away first, the relay closes the PTY on the agent.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from control_plane_lite import ids
from control_plane_lite.agent_hub import AgentHub, StreamSink
from control_plane_lite.auth import Principal
from control_plane_lite.clock import now_rfc3339
from control_plane_lite.errors import (
    Conflict,
    HostUnavailable,
    InvalidRequest,
    NotFound,
)
from control_plane_lite.sandboxes import SandboxService
from control_plane_lite.store import Store
from gstacks_proto import pb
from gstacks_proto.rpc_peer import RemoteError

log = logging.getLogger("gstacks.cp.terminals")

WINDOW_BYTES = 256 * 1024
CLIENT_CLOSE_GRACE_S = 5.0
MAX_DIMENSION = 1000
CREATE_FIELDS = frozenset({"command", "cols", "rows", "env"})
DEFAULT_COMMAND = ["/bin/sh"]

# WebSocket close codes in the private range (RFC 6455 section 7.4.2).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BUSY = 4409
CLOSE_UNAVAILABLE = 4503


def session_record(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in row if key not in ("tenant_id", "host_id")}


def _dimension(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 1 <= value <= MAX_DIMENSION
    ):
        raise InvalidRequest(
            f"{key} must be an integer from 1 to {MAX_DIMENSION}, not {value!r}"
        )
    return value


class TerminalService:
    def __init__(self, store: Store, hub: AgentHub, sandboxes: SandboxService) -> None:
        self._store = store
        self._hub = hub
        self._sandboxes = sandboxes
        self._attached: set[str] = set()
        # Environment of sessions not yet attached; it is passed to the process once.
        self._env: dict[str, dict[str, str]] = {}

    def create(
        self, principal: Principal, sandbox_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        sandbox = self._sandboxes.get(principal, sandbox_id)
        unknown = sorted(set(body) - CREATE_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"unknown fields: {', '.join(unknown)}", fields=unknown
            )
        if sandbox["status"] != "running":
            raise Conflict(
                f"sandbox {sandbox_id} is {sandbox['status']}, not running",
                status=sandbox["status"],
            )
        command = body.get("command") or DEFAULT_COMMAND
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(a, str) and a for a in command)
        ):
            raise InvalidRequest(
                "command must be a non-empty list of non-empty strings"
            )
        env = body.get("env") or {}
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise InvalidRequest("env must map strings to strings")
        row = self._store.insert(
            "terminal_sessions",
            {
                "id": ids.new_id("terminal_session"),
                "tenant_id": principal.tenant_id,
                "sandbox_id": sandbox_id,
                "host_id": sandbox["host_id"],
                "command": command,
                "cols": _dimension(body, "cols", 80),
                "rows": _dimension(body, "rows", 24),
                "status": "open",
                "exit_code": None,
                "created_at": now_rfc3339(),
                "created_by": principal.name,
                "closed_at": None,
            },
        )
        self._env[row["id"]] = env
        log.info(
            "terminal %s: opened on sandbox %s by %s: %s",
            row["id"],
            sandbox_id,
            principal.name,
            command,
        )
        return row

    def get(
        self, principal: Principal, sandbox_id: str, session_id: str
    ) -> dict[str, Any]:
        row = self._store.get("terminal_sessions", session_id)
        if (
            row is None
            or row["tenant_id"] != principal.tenant_id
            or row["sandbox_id"] != sandbox_id
        ):
            raise NotFound(
                f"terminal session {session_id} does not exist", session_id=session_id
            )
        return row

    def list(
        self, principal: Principal, sandbox_id: str, limit: int, after_id: str | None
    ) -> list[dict[str, Any]]:
        self._sandboxes.get(principal, sandbox_id)
        return self._store.select(
            "terminal_sessions",
            tenant_id=principal.tenant_id,
            sandbox_id=sandbox_id,
            limit=limit,
            after_id=after_id,
        )

    async def delete(
        self, principal: Principal, sandbox_id: str, session_id: str
    ) -> None:
        row = self.get(principal, sandbox_id, session_id)
        if row["status"] == "open" and session_id in self._attached:
            try:
                await self._hub.request(
                    row["host_id"],
                    pb.Envelope(terminal_close=pb.TerminalClose(session_id=session_id)),
                )
            except (RemoteError, HostUnavailable) as exc:
                log.info(
                    "terminal %s: close on host %s: %s", session_id, row["host_id"], exc
                )
        if row["status"] == "open":
            self._finish(session_id, "closed", None)

    async def stream(
        self,
        websocket: WebSocket,
        principal: Principal,
        sandbox_id: str,
        session_id: str,
    ) -> None:
        """Relay one attached client until the process exits or the client leaves."""
        # Accept first: a close before the handshake completes reaches the client as a
        # bare HTTP 403, without the close code that says why.
        await websocket.accept()
        try:
            row = self.get(principal, sandbox_id, session_id)
        except NotFound as exc:
            await websocket.close(code=CLOSE_NOT_FOUND, reason=exc.message[:120])
            return
        if row["status"] != "open" or session_id in self._attached:
            await websocket.close(
                code=CLOSE_BUSY,
                reason=f"session is {row['status']} or already attached",
            )
            return
        if not self._hub.is_connected(row["host_id"]):
            await websocket.close(
                code=CLOSE_UNAVAILABLE, reason="the sandbox's host is not connected"
            )
            return

        self._attached.add(session_id)
        sink = self._hub.open_stream(row["host_id"])
        try:
            await self._relay(websocket, row, sink)
        finally:
            self._hub.close_stream(sink)
            self._attached.discard(session_id)
            self._env.pop(session_id, None)

    async def _relay(
        self, websocket: WebSocket, row: dict[str, Any], sink: StreamSink
    ) -> None:
        session_id, host_id = row["id"], row["host_id"]
        opening = pb.Envelope(
            stream_id=sink.stream_id,
            terminal_open=pb.TerminalOpen(
                session_id=session_id,
                sandbox_id=row["sandbox_id"],
                command=row["command"],
                cols=row["cols"],
                rows=row["rows"],
                env=self._env.get(session_id, {}),
                initial_window=WINDOW_BYTES,
            ),
        )
        try:
            await self._hub.request(host_id, opening)
        except (RemoteError, HostUnavailable) as exc:
            log.warning(
                "terminal %s: host %s could not open it: %s", session_id, host_id, exc
            )
            self._finish(session_id, "closed", None)
            await websocket.close(code=CLOSE_UNAVAILABLE, reason=str(exc)[:120])
            return

        exit_code: int | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                self._client_to_agent,
                websocket,
                host_id,
                sink.stream_id,
                nursery.cancel_scope,
            )
            async for envelope in sink.receive:
                kind = envelope.WhichOneof("body")
                if kind == "terminal_data":
                    try:
                        await websocket.send_bytes(envelope.terminal_data.data)
                    except (WebSocketDisconnect, RuntimeError, OSError):
                        break
                    await self._hub.notify(
                        host_id,
                        pb.Envelope(
                            stream_id=sink.stream_id,
                            stream_window=pb.StreamWindow(
                                increment=len(envelope.terminal_data.data)
                            ),
                        ),
                    )
                elif kind == "terminal_exit":
                    exit_code = envelope.terminal_exit.exit_code
                    break
            nursery.cancel_scope.cancel()

        if exit_code is not None:
            self._finish(session_id, "exited", exit_code)
            log.info("terminal %s: process exited with %s", session_id, exit_code)
            await self._send_exit(websocket, exit_code)
            return

        # The client left, or the host went away: end the process if we still can.
        log.info("terminal %s: client detached; closing the session", session_id)
        self._finish(session_id, "closed", None)
        with trio.move_on_after(5) as cleanup:
            cleanup.shield = True
            try:
                await self._hub.request(
                    host_id,
                    pb.Envelope(terminal_close=pb.TerminalClose(session_id=session_id)),
                )
            except (RemoteError, HostUnavailable, trio.TooSlowError) as exc:
                log.info("terminal %s: close on host %s: %s", session_id, host_id, exc)

    async def _send_exit(self, websocket: WebSocket, exit_code: int) -> None:
        """Send the exit frame and let the client close first.

        The client closes as soon as it reads the exit code; closing from our side at
        the same moment races with it. Only a client that stays silent for
        CLIENT_CLOSE_GRACE_S is closed by us.
        """
        try:
            await websocket.send_text(
                json.dumps({"type": "exit", "exit_code": exit_code})
            )
            with trio.move_on_after(CLIENT_CLOSE_GRACE_S):
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass
                return
            await websocket.close(code=1000)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass

    async def _client_to_agent(
        self,
        websocket: WebSocket,
        host_id: str,
        stream_id: int,
        relay_scope: trio.CancelScope,
    ) -> None:
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    envelope = pb.Envelope(
                        stream_id=stream_id,
                        terminal_data=pb.TerminalData(data=message["bytes"]),
                    )
                elif message.get("text") is not None:
                    envelope = self._control_frame(message["text"], stream_id)
                    if envelope is None:
                        continue
                else:
                    continue
                await self._hub.notify(host_id, envelope)
        except (WebSocketDisconnect, HostUnavailable):
            pass
        relay_scope.cancel()

    def _control_frame(self, text: str, stream_id: int) -> pb.Envelope | None:
        try:
            control = json.loads(text)
            if control.get("type") != "resize":
                return None
            cols, rows = int(control["cols"]), int(control["rows"])
        except (ValueError, KeyError, TypeError, AttributeError):
            log.debug("terminal stream %s: ignoring malformed control frame", stream_id)
            return None
        if not (1 <= cols <= MAX_DIMENSION and 1 <= rows <= MAX_DIMENSION):
            return None
        return pb.Envelope(
            stream_id=stream_id, terminal_resize=pb.TerminalResize(cols=cols, rows=rows)
        )

    def _finish(self, session_id: str, status: str, exit_code: int | None) -> None:
        self._store.update(
            "terminal_sessions",
            session_id,
            status=status,
            exit_code=exit_code,
            closed_at=now_rfc3339(),
        )
