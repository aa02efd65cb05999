"""Routes: terminal sessions of sandboxes and of hosts, and their streams."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from control_plane_lite.errors import ApiError
from control_plane_lite.http_edge import (
    PAGE_QUERY,
    authenticate_user,
    json_body,
    page,
    page_params,
    resource,
)
from control_plane_lite.terminals import (
    CLOSE_UNAUTHENTICATED,
    TerminalTarget,
    session_record,
)

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane


def routes(cp: ControlPlane) -> list[BaseRoute]:
    def target(connection: HTTPConnection) -> TerminalTarget:
        params = connection.path_params
        if "sandbox_id" in params:
            return TerminalTarget("sandbox", params["sandbox_id"])
        return TerminalTarget("host", params["host_id"])

    async def create_terminal(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        body = await json_body(request)
        row = cp.terminals.create(principal, target(request), body)
        return JSONResponse(session_record(row), status_code=201)

    async def list_terminals(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        limit, cursor = page_params(request)
        rows = cp.terminals.list(principal, target(request), limit, cursor)
        return page(rows, limit, session_record)

    async def get_terminal(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        session_id = request.path_params["session_id"]
        row = cp.terminals.get(principal, target(request), session_id)
        return JSONResponse(session_record(row))

    async def delete_terminal(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        session_id = request.path_params["session_id"]
        await cp.terminals.delete(principal, target(request), session_id)
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
        session_id = websocket.path_params["session_id"]
        await cp.terminals.stream(websocket, principal, target(websocket), session_id)

    found: list[BaseRoute] = []
    for owner in ("/api/sandboxes/{sandbox_id}", "/api/hosts/{host_id}"):
        collection = owner + "/terminal-sessions"
        one = collection + "/{session_id}"
        found += [
            resource(collection, PAGE_QUERY, GET=list_terminals, POST=create_terminal),
            resource(one, GET=get_terminal, DELETE=delete_terminal),
            WebSocketRoute(one + "/stream", terminal_stream),
        ]
    return found
