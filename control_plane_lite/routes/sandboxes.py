"""Routes: sandboxes and their terminal sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from control_plane_lite.errors import ApiError, InvalidRequest
from control_plane_lite.http_edge import (
    PAGE_QUERY,
    authenticate_user,
    json_body,
    page,
    page_params,
    resource,
)
from control_plane_lite.sandboxes import sandbox_record
from control_plane_lite.terminals import CLOSE_UNAUTHENTICATED, session_record

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane

WAIT_QUERY = frozenset({"status", "timeout_s"})


def routes(cp: ControlPlane) -> list[BaseRoute]:
    async def list_sandboxes(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        limit, cursor = page_params(request)
        return page(cp.sandboxes.list(principal, limit, cursor), limit, sandbox_record)

    async def create_sandbox(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = await cp.sandboxes.create(principal, await json_body(request))
        return JSONResponse(sandbox_record(row), status_code=201)

    async def get_sandbox(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = cp.sandboxes.get(principal, request.path_params["sandbox_id"])
        return JSONResponse(sandbox_record(row))

    async def wait_sandbox(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        status = request.query_params.get("status", "running")
        raw_timeout = request.query_params.get("timeout_s", "60")
        try:
            timeout_s = float(raw_timeout)
        except ValueError:
            raise InvalidRequest(
                f"timeout_s must be a number, not {raw_timeout!r}"
            ) from None
        row = await cp.sandboxes.wait(
            principal, request.path_params["sandbox_id"], status, timeout_s
        )
        return JSONResponse(sandbox_record(row))

    async def delete_sandbox(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = await cp.sandboxes.delete(principal, request.path_params["sandbox_id"])
        return JSONResponse(sandbox_record(row))

    async def create_terminal(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        body = await json_body(request)
        row = cp.terminals.create(principal, request.path_params["sandbox_id"], body)
        return JSONResponse(session_record(row), status_code=201)

    async def list_terminals(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        limit, cursor = page_params(request)
        rows = cp.terminals.list(
            principal, request.path_params["sandbox_id"], limit, cursor
        )
        return page(rows, limit, session_record)

    async def get_terminal(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        params = request.path_params
        row = cp.terminals.get(principal, params["sandbox_id"], params["session_id"])
        return JSONResponse(session_record(row))

    async def delete_terminal(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        params = request.path_params
        await cp.terminals.delete(principal, params["sandbox_id"], params["session_id"])
        return Response(status_code=204)

    async def terminal_stream(websocket: WebSocket) -> None:
        try:
            principal = authenticate_user(cp, websocket)
        except ApiError as exc:
            # Accept first: a close before the handshake reaches the client as a
            # bare HTTP 403, without the close code that says why.
            await websocket.accept()
            await websocket.close(code=CLOSE_UNAUTHENTICATED, reason=exc.message[:120])
            return
        params = websocket.path_params
        await cp.terminals.stream(
            websocket, principal, params["sandbox_id"], params["session_id"]
        )

    sandbox = "/api/sandboxes/{sandbox_id}"
    terminal = sandbox + "/terminal-sessions/{session_id}"
    return [
        resource("/api/sandboxes", PAGE_QUERY, GET=list_sandboxes, POST=create_sandbox),
        resource(sandbox, GET=get_sandbox, DELETE=delete_sandbox),
        resource(sandbox + "/wait", WAIT_QUERY, GET=wait_sandbox),
        resource(
            sandbox + "/terminal-sessions",
            PAGE_QUERY,
            GET=list_terminals,
            POST=create_terminal,
        ),
        resource(terminal, GET=get_terminal, DELETE=delete_terminal),
        WebSocketRoute(terminal + "/stream", terminal_stream),
    ]
