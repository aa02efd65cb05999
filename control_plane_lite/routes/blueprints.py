"""Routes: blueprints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from control_plane_lite.http_edge import (
    PAGE_QUERY,
    authenticate_user,
    json_body,
    page,
    page_params,
    resource,
)

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane


def routes(cp: ControlPlane) -> list[BaseRoute]:
    async def list_blueprints(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        limit, cursor = page_params(request)
        rows = cp.blueprints.list(principal, limit, cursor)
        return page(rows, limit, cp.blueprints.record)

    async def create_blueprint(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = await cp.blueprints.create(principal, await json_body(request))
        return JSONResponse(cp.blueprints.record(row), status_code=201)

    async def get_blueprint(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = cp.blueprints.get(principal, request.path_params["blueprint_id"])
        return JSONResponse(cp.blueprints.record(row))

    async def activate_blueprint(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        blueprint_id = request.path_params["blueprint_id"]
        return JSONResponse(
            cp.blueprints.record(
                cp.blueprints.set_active(principal, blueprint_id, True)
            )
        )

    async def deactivate_blueprint(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        blueprint_id = request.path_params["blueprint_id"]
        return JSONResponse(
            cp.blueprints.record(
                cp.blueprints.set_active(principal, blueprint_id, False)
            )
        )

    async def delete_blueprint(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        cp.blueprints.delete(principal, request.path_params["blueprint_id"])
        return Response(status_code=204)

    blueprint = "/api/blueprints/{blueprint_id}"
    return [
        resource(
            "/api/blueprints", PAGE_QUERY, GET=list_blueprints, POST=create_blueprint
        ),
        resource(blueprint, GET=get_blueprint, DELETE=delete_blueprint),
        resource(blueprint + "/activate", POST=activate_blueprint),
        resource(blueprint + "/deactivate", POST=deactivate_blueprint),
    ]
