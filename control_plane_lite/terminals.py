"""Terminal sessions: records, and the relay between a client's WebSocket and an agent.

How it works. `POST .../terminal-sessions` only writes a record; the process starts
when a client first attaches to the session's stream, so no output is produced before
someone is there to read it. A session belongs to a sandbox (the command runs inside
it) or to a host (a shell on the host). Each attach reserves a stream on the host's
channel and asks the agent to open the PTY (first attach) or to reattach to it
(`?offset=N`: the client has N bytes and wants the rest), then moves bytes both ways:

    client  --binary-->  relay  --TerminalData-->   agent  --> PTY
    client  <--binary--  relay  <--TerminalData--   agent  <-- PTY
    client  --{"type":"resize"}-->  relay  --TerminalResize-->  agent
    client  --{"type":"ack","offset":N}-->  relay  --StreamWindow-->  agent

The first frame the client receives is `{"type":"attached","offset":N}`: where the
output it is about to get starts. Flow control is end to end: the agent never has
more than its window of unacknowledged output in flight. A client that connects with
`?acks=client` acknowledges the offsets it has received, which is what makes a
reattach lossless; for other clients the relay acknowledges each chunk once their
socket accepted it.

When the process exits the agent sends TerminalExit; the relay forwards the exit
code as `{"type":"exit","exit_code":N}` and waits for the client to close. When the
client goes away first, the session is only detached: the agent keeps it for a grace
period in which the client may reattach. Revoking the API key a stream was opened
with closes that stream at once.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from control_plane_lite import ids
from control_plane_lite.activity import ActivityLog
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
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CREATE_FIELDS = frozenset({"command", "cols", "rows", "env", "tty"})
DEFAULT_SANDBOX_COMMAND = ["/bin/sh"]

# WebSocket close codes in the private range (RFC 6455 section 7.4.2).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BUSY = 4409
CLOSE_GONE = 4410
CLOSE_INVALID = 4400
CLOSE_UNAVAILABLE = 4503


@dataclass(frozen=True)
class TerminalTarget:
    """What a session runs on: a sandbox, or a host itself."""

    kind: str  # "sandbox" | "host"
    id: str


def session_record(row: dict[str, Any]) -> dict[str, Any]:
    """The API's shape of a terminal session row."""
    return {
        "id": row["id"],
        "sandbox_id": row["sandbox_id"],
        "host_id": row["host_id"],
        "command": row["command"],
        "cols": row["cols"],
        "rows": row["rows"],
        "tty": bool(row["tty"]),
        "status": row["status"],
        "attached": bool(row["attached"]),
        "exit_code": row["exit_code"],
        "created_at": row["created_at"],
        "created_by": row["created_by"],
        "started_at": row["started_at"],
        "closed_at": row["closed_at"],
    }


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
    def __init__(
        self,
        store: Store,
        hub: AgentHub,
        sandboxes: SandboxService,
        activity: ActivityLog,
    ) -> None:
        self._store = store
        self._hub = hub
        self._sandboxes = sandboxes
        self._activity = activity
        self._attached: set[str] = set()
        # Open relays by the credential that opened them, for revocation.
        self._relays_by_credential: dict[str, set[trio.CancelScope]] = defaultdict(set)

    # ---- records -------------------------------------------------------------------

    def create(
        self, principal: Principal, target: TerminalTarget, body: dict[str, Any]
    ) -> dict[str, Any]:
        host_id = self._target_host(principal, target, require_running=True)
        unknown = sorted(set(body) - CREATE_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"unknown fields: {', '.join(unknown)}", fields=unknown
            )
        default = DEFAULT_SANDBOX_COMMAND if target.kind == "sandbox" else []
        command = body.get("command") or default
        if not isinstance(command, list) or not all(
            isinstance(a, str) and a and "\0" not in a for a in command
        ):
            raise InvalidRequest(
                "command must be a list of non-empty strings without NUL bytes"
            )
        env = body.get("env") or {}
        if not isinstance(env, dict) or not all(
            isinstance(k, str)
            and ENV_NAME.fullmatch(k)
            and isinstance(v, str)
            and "\0" not in v
            for k, v in env.items()
        ):
            raise InvalidRequest(
                "env must map variable names (letters, digits, '_') to values "
                "without NUL bytes"
            )
        tty = body.get("tty", True)
        if not isinstance(tty, bool):
            raise InvalidRequest("tty must be true or false")
        row = self._store.insert(
            "terminal_sessions",
            {
                "id": ids.new_id("terminal_session"),
                "tenant_id": principal.tenant_id,
                "sandbox_id": target.id if target.kind == "sandbox" else None,
                "host_id": host_id,
                "command": command,
                "env": env,
                "cols": _dimension(body, "cols", 80),
                "rows": _dimension(body, "rows", 24),
                "tty": int(tty),
                "status": "open",
                "attached": 0,
                "exit_code": None,
                "created_at": now_rfc3339(),
                "created_by": principal.name,
                "started_at": None,
                "closed_at": None,
            },
        )
        log.info(
            "terminal %s: created on %s %s by %s: %s",
            row["id"],
            target.kind,
            target.id,
            principal.name,
            command or "login shell",
        )
        return row

    def get(
        self, principal: Principal, target: TerminalTarget, session_id: str
    ) -> dict[str, Any]:
        self._target_host(principal, target)
        row = self._store.get("terminal_sessions", session_id)
        column = "sandbox_id" if target.kind == "sandbox" else "host_id"
        if (
            row is None
            or row["tenant_id"] != principal.tenant_id
            or row[column] != target.id
            or (target.kind == "host" and row["sandbox_id"] is not None)
        ):
            raise NotFound(
                f"terminal session {session_id} does not exist", session_id=session_id
            )
        return row

    def list(
        self,
        principal: Principal,
        target: TerminalTarget,
        limit: int,
        after_id: str | None,
    ) -> list[dict[str, Any]]:
        self._target_host(principal, target)
        where: dict[str, Any] = {"tenant_id": principal.tenant_id}
        if target.kind == "sandbox":
            where["sandbox_id"] = target.id
        else:
            where.update(host_id=target.id, sandbox_id=None)
        return self._store.select(
            "terminal_sessions", limit=limit, after_id=after_id, **where
        )

    async def delete(
        self, principal: Principal, target: TerminalTarget, session_id: str
    ) -> None:
        """End the session: its process is closed on the host."""
        row = self.get(principal, target, session_id)
        if row["status"] != "open":
            return
        if row["started_at"] is not None:
            await self._close_on_agent(row)
        self._finish(row, "closed", None)

    # ---- agent reports ---------------------------------------------------------------

    def session_ended(self, host_id: str, ended: pb.TerminalExit) -> None:
        """The agent dropped a session nobody collected the exit of."""
        row = self._store.get("terminal_sessions", ended.session_id)
        if row is not None and row["host_id"] == host_id and row["status"] == "open":
            log.info(
                "terminal %s: ended on host %s while detached",
                ended.session_id,
                host_id,
            )
            self._finish(row, "closed", ended.exit_code)

    def agent_connected(self, host_id: str, open_session_ids: list[str]) -> None:
        """Sessions the host no longer has are closed (the agent restarted)."""
        alive = set(open_session_ids)
        for row in self._store.select(
            "terminal_sessions", host_id=host_id, status="open"
        ):
            if row["started_at"] is not None and row["id"] not in alive:
                self._finish(row, "closed", None)

    def revoke_credential(self, credential_id: str) -> None:
        """Close every stream opened with `credential_id`, now."""
        for scope in self._relays_by_credential.pop(credential_id, set()):
            scope.cancel()

    # ---- the stream --------------------------------------------------------------------

    async def stream(
        self,
        websocket: WebSocket,
        principal: Principal,
        target: TerminalTarget,
        session_id: str,
    ) -> None:
        """Relay one attached client until the process exits or the client leaves."""
        # Accept first: a close before the handshake completes reaches the client as a
        # bare HTTP 403, without the close code that says why.
        await websocket.accept()
        try:
            row = self.get(principal, target, session_id)
            offset, client_acks = self._stream_params(websocket)
        except NotFound as exc:
            await websocket.close(code=CLOSE_NOT_FOUND, reason=exc.message[:120])
            return
        except InvalidRequest as exc:
            await websocket.close(code=CLOSE_INVALID, reason=exc.message[:120])
            return
        if row["status"] != "open":
            await websocket.close(code=CLOSE_GONE, reason=f"session is {row['status']}")
            return
        if row["started_at"] is None and offset:
            await websocket.close(
                code=CLOSE_INVALID,
                reason="nothing to resume: the session has not started",
            )
            return
        if session_id in self._attached:
            await websocket.close(
                code=CLOSE_BUSY, reason="session already has a client"
            )
            return
        if not self._hub.is_connected(row["host_id"]):
            await websocket.close(
                code=CLOSE_UNAVAILABLE, reason="the session's host is not connected"
            )
            return

        self._attached.add(session_id)
        self._store.update("terminal_sessions", session_id, attached=1)
        sink = self._hub.open_stream(row["host_id"])
        revoked = trio.CancelScope()
        credential = principal.credential_id or ""
        self._relays_by_credential[credential].add(revoked)
        try:
            with revoked:
                await self._relay(websocket, row, sink, offset, client_acks)
            if revoked.cancelled_caught:
                log.info(
                    "terminal %s: stream closed, its credential was revoked", session_id
                )
                await _close_quietly(
                    websocket, CLOSE_UNAUTHENTICATED, "credential revoked"
                )
                # What a revoked key opened must not wait for anyone to reattach.
                await self._close_on_agent(row)
                self._finish(row, "closed", None)
        finally:
            self._relays_by_credential[credential].discard(revoked)
            self._hub.close_stream(sink)
            self._attached.discard(session_id)
            self._store.update("terminal_sessions", session_id, attached=0)

    def _stream_params(self, websocket: WebSocket) -> tuple[int, bool]:
        query = websocket.query_params
        unknown = sorted(set(query) - {"offset", "acks"})
        if unknown:
            raise InvalidRequest(f"unknown query parameters: {', '.join(unknown)}")
        raw = query.get("offset", "0")
        if not raw.isdigit():
            raise InvalidRequest(f"offset must be a non-negative integer, not {raw!r}")
        acks = query.get("acks", "server")
        if acks not in ("server", "client"):
            raise InvalidRequest(f"acks must be 'server' or 'client', not {acks!r}")
        return int(raw), acks == "client"

    async def _relay(
        self,
        websocket: WebSocket,
        row: dict[str, Any],
        sink: StreamSink,
        offset: int,
        client_acks: bool,
    ) -> None:
        session_id, host_id = row["id"], row["host_id"]
        try:
            start = await self._start_on_agent(row, sink.stream_id, offset)
        except (RemoteError, HostUnavailable, trio.TooSlowError) as exc:
            message = getattr(exc, "message", str(exc))
            log.warning(
                "terminal %s: host %s could not attach it: %s",
                session_id,
                host_id,
                message,
            )
            if isinstance(exc, RemoteError) and exc.code == "ERROR_CODE_NOT_FOUND":
                self._finish(row, "closed", None)
                await _close_quietly(
                    websocket, CLOSE_GONE, "the session no longer exists on its host"
                )
            else:
                await _close_quietly(websocket, CLOSE_UNAVAILABLE, message[:120])
            return

        try:
            await websocket.send_text(json.dumps({"type": "attached", "offset": start}))
        except (WebSocketDisconnect, RuntimeError, OSError):
            await self._detach_on_agent(row)
            return

        progress = _Progress(acknowledged=start, delivered=start)
        exit_code: int | None = None
        # How the relay ends: the client leaves (the default, also when its reader
        # task cancels the relay), the process exits, or the host's channel drops.
        outcome = "client"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                self._client_to_agent,
                websocket,
                row,
                sink.stream_id,
                client_acks,
                progress,
                nursery.cancel_scope,
            )
            async for envelope in sink.receive:
                kind = envelope.WhichOneof("body")
                if kind == "terminal_data":
                    data = envelope.terminal_data.data
                    try:
                        await websocket.send_bytes(data)
                    except (WebSocketDisconnect, RuntimeError, OSError):
                        break
                    progress.delivered += len(data)
                    if not client_acks:
                        await self._acknowledge(
                            host_id, sink.stream_id, progress, progress.delivered
                        )
                elif kind == "terminal_exit":
                    exit_code = envelope.terminal_exit.exit_code
                    outcome = "exit"
                    break
            else:
                outcome = "host"
            nursery.cancel_scope.cancel()

        if outcome == "exit":
            assert exit_code is not None
            self._finish(row, "exited", exit_code)
            log.info("terminal %s: process exited with %s", session_id, exit_code)
            await self._send_exit(websocket, exit_code)
            return
        if outcome == "host":
            log.info(
                "terminal %s: host %s went away; the client may reattach later",
                session_id,
                host_id,
            )
            await _close_quietly(
                websocket, CLOSE_UNAVAILABLE, "the session's host disconnected"
            )
            return
        log.info(
            "terminal %s: client detached at offset %d", session_id, progress.delivered
        )
        await self._detach_on_agent(row)

    async def _start_on_agent(
        self, row: dict[str, Any], stream_id: int, offset: int
    ) -> int:
        """Open the PTY (first attach) or reattach to it; the offset output starts at."""
        if row["started_at"] is None:
            opening = pb.TerminalOpen(
                session_id=row["id"],
                sandbox_id=row["sandbox_id"] or "",
                command=row["command"],
                cols=row["cols"],
                rows=row["rows"],
                env=row["env"],
                initial_window=WINDOW_BYTES,
                no_tty=not row["tty"],
            )
            await self._hub.request(
                row["host_id"], pb.Envelope(stream_id=stream_id, terminal_open=opening)
            )
            self._store.update("terminal_sessions", row["id"], started_at=now_rfc3339())
            if row["sandbox_id"]:
                self._activity.record(
                    row["sandbox_id"],
                    "terminal_opened",
                    {
                        "session_id": row["id"],
                        "command": row["command"],
                        "by": row["created_by"],
                    },
                )
            return 0
        attaching = pb.TerminalAttach(
            session_id=row["id"], offset=offset, initial_window=WINDOW_BYTES
        )
        reply = await self._hub.request(
            row["host_id"], pb.Envelope(stream_id=stream_id, terminal_attach=attaching)
        )
        return reply.terminal_attached.offset

    async def _client_to_agent(
        self,
        websocket: WebSocket,
        row: dict[str, Any],
        stream_id: int,
        client_acks: bool,
        progress: _Progress,
        relay_scope: trio.CancelScope,
    ) -> None:
        host_id = row["host_id"]
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    data = pb.TerminalData(data=message["bytes"])
                    await self._hub.notify(
                        host_id, pb.Envelope(stream_id=stream_id, terminal_data=data)
                    )
                elif message.get("text") is not None:
                    await self._control_frame(
                        message["text"], host_id, stream_id, client_acks, progress
                    )
        except (WebSocketDisconnect, HostUnavailable):
            pass
        relay_scope.cancel()

    async def _control_frame(
        self,
        text: str,
        host_id: str,
        stream_id: int,
        client_acks: bool,
        progress: _Progress,
    ) -> None:
        try:
            control = json.loads(text)
            kind = control.get("type")
            if kind == "resize":
                cols, rows = int(control["cols"]), int(control["rows"])
                if 1 <= cols <= MAX_DIMENSION and 1 <= rows <= MAX_DIMENSION:
                    resize = pb.TerminalResize(cols=cols, rows=rows)
                    await self._hub.notify(
                        host_id,
                        pb.Envelope(stream_id=stream_id, terminal_resize=resize),
                    )
            elif kind == "ack" and client_acks:
                await self._acknowledge(
                    host_id, stream_id, progress, int(control["offset"])
                )
            elif kind == "eof":
                eof = pb.Envelope(
                    stream_id=stream_id, terminal_data=pb.TerminalData(eof=True)
                )
                await self._hub.notify(host_id, eof)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.debug("terminal stream %s: ignoring malformed control frame", stream_id)

    async def _acknowledge(
        self, host_id: str, stream_id: int, progress: _Progress, offset: int
    ) -> None:
        # A client cannot have more than it was sent; a stale ack changes nothing.
        offset = min(offset, progress.delivered)
        if offset > progress.acknowledged:
            window = pb.StreamWindow(increment=offset - progress.acknowledged)
            progress.acknowledged = offset
            await self._hub.notify(
                host_id, pb.Envelope(stream_id=stream_id, stream_window=window)
            )

    async def _close_on_agent(self, row: dict[str, Any]) -> None:
        with trio.move_on_after(5) as cleanup:
            cleanup.shield = True
            try:
                await self._hub.request(
                    row["host_id"],
                    pb.Envelope(terminal_close=pb.TerminalClose(session_id=row["id"])),
                )
            except (RemoteError, HostUnavailable) as exc:
                log.info(
                    "terminal %s: close on host %s: %s", row["id"], row["host_id"], exc
                )

    async def _detach_on_agent(self, row: dict[str, Any]) -> None:
        with trio.move_on_after(5) as cleanup:
            cleanup.shield = True
            try:
                await self._hub.request(
                    row["host_id"],
                    pb.Envelope(
                        terminal_detach=pb.TerminalDetach(session_id=row["id"])
                    ),
                )
            except (RemoteError, HostUnavailable) as exc:
                log.info(
                    "terminal %s: detach on host %s: %s", row["id"], row["host_id"], exc
                )

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

    def _target_host(
        self,
        principal: Principal,
        target: TerminalTarget,
        require_running: bool = False,
    ) -> str:
        """The host a target's sessions run on; NotFound for another tenant's target."""
        if target.kind == "sandbox":
            sandbox = self._sandboxes.get(principal, target.id)
            if require_running and sandbox["status"] != "running":
                raise Conflict(
                    f"sandbox {target.id} is {sandbox['status']}, not running",
                    status=sandbox["status"],
                )
            return sandbox["host_id"]
        host = self._store.get("hosts", target.id)
        if host is None or host["tenant_id"] != principal.tenant_id:
            raise NotFound(f"host {target.id} does not exist", host_id=target.id)
        if require_running and not self._hub.is_connected(target.id):
            raise HostUnavailable(f"host {target.id} is not connected")
        return target.id

    def _finish(self, row: dict[str, Any], status: str, exit_code: int | None) -> None:
        self._store.update(
            "terminal_sessions",
            row["id"],
            status=status,
            exit_code=exit_code,
            closed_at=now_rfc3339(),
        )
        if row["sandbox_id"]:
            details = {
                "session_id": row["id"],
                "status": status,
                "exit_code": exit_code,
            }
            self._activity.record(row["sandbox_id"], "terminal_closed", details)


@dataclass
class _Progress:
    """How far one attachment's output has come, as absolute offsets."""

    acknowledged: int
    delivered: int


async def _close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code=code, reason=reason[:120])
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
