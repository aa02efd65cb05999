"""Routes: the agent channel."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from control_plane_lite.errors import ApiError, Unauthenticated
from control_plane_lite.http_edge import bearer_secret
from control_plane_lite.terminals import CLOSE_UNAUTHENTICATED

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane


def routes(cp: ControlPlane) -> list[BaseRoute]:
    async def agent_connect(websocket: WebSocket) -> None:
        secret = bearer_secret(websocket.headers)
        try:
            if secret is None:
                raise Unauthenticated("agents authenticate with their host credential")
            principal = cp.authenticator.authenticate_host(secret)
        except ApiError as exc:
            await websocket.accept()
            await websocket.close(code=CLOSE_UNAUTHENTICATED, reason=exc.message[:120])
            return
        await websocket.accept()
        await cp.hub.serve_agent(websocket, principal)

    return [WebSocketRoute("/api/agents/connect", agent_connect)]
