"""Routes: sandboxes and their activity."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from control_plane_lite.activity import activity_record
from control_plane_lite.errors import InvalidRequest
from control_plane_lite.http_edge import (
    PAGE_QUERY,
    authenticate_user,
    json_body,
    page,
    page_params,
    resource,
)
from control_plane_lite.sandboxes import sandbox_record

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

    async def list_activity(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        sandbox_id = request.path_params["sandbox_id"]
        cp.sandboxes.get(principal, sandbox_id)
        limit, cursor = page_params(request)
        return page(cp.activity.list(sandbox_id, limit, cursor), limit, activity_record)

    sandbox = "/api/sandboxes/{sandbox_id}"
    return [
        resource("/api/sandboxes", PAGE_QUERY, GET=list_sandboxes, POST=create_sandbox),
        resource(sandbox, GET=get_sandbox, DELETE=delete_sandbox),
        resource(sandbox + "/wait", WAIT_QUERY, GET=wait_sandbox),
        resource(sandbox + "/activity", PAGE_QUERY, GET=list_activity),
    ]
