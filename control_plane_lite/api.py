"""The ASGI app of the lite control plane: every route module, and the one place
where errors become responses.

Every ApiError becomes `{"error": {"code", "message", "details"}}` with its status;
so do Starlette's own 404 and 405, so a client never has to parse an HTML page.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from control_plane_lite.errors import ApiError
from control_plane_lite.http_edge import error_response
from control_plane_lite.routes import (
    agents,
    blueprints,
    clusters,
    credentials,
    hosts,
    registry,
    sandboxes,
    terminals,
)
from control_plane_lite.routes import networks as network_routes
from control_plane_lite.routes import volumes as volume_routes

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane

log = logging.getLogger("gstacks.cp.api")

ROUTE_MODULES = (
    hosts,
    sandboxes,
    terminals,
    blueprints,
    clusters,
    credentials,
    agents,
    volume_routes,
    network_routes,
    registry,
)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, "invalid_argument"
    )
    error = ApiError(str(exc.detail))
    error.status, error.code = exc.status_code, code
    response = error_response(error)
    # 405 must name the allowed methods (RFC 9110 section 15.5.6).
    response.headers.update(exc.headers or {})
    return response


def build_app(cp: ControlPlane) -> Starlette:
    """The ASGI app serving the API, the agent channel and the registry.

    The registry's routes come last: its `/registry` mount matches whole subtrees.
    """
    routes = [route for module in ROUTE_MODULES for route in module.routes(cp)]
    return Starlette(
        routes=routes,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
    )
