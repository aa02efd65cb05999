"""Routes: volumes and their attachments.

Attachments have no PATCH or PUT: they are immutable, so a change is a DELETE and
a POST, and any other method is answered 405 with the methods the path has.
"""

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
from control_plane_lite.volumes import attachment_record

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane


def routes(cp: ControlPlane) -> list[BaseRoute]:
    async def list_volumes(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        limit, cursor = page_params(request)
        rows = cp.volumes.list(principal, limit, cursor)
        return page(rows, limit, cp.volumes.record)

    async def create_volume(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = cp.volumes.create(principal, await json_body(request))
        return JSONResponse(cp.volumes.record(row), status_code=201)

    async def get_volume(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = cp.volumes.get(principal, request.path_params["volume_id"])
        return JSONResponse(cp.volumes.record(row))

    async def delete_volume(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        await cp.volumes.delete(principal, request.path_params["volume_id"])
        return Response(status_code=204)

    async def list_attachments(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        limit, cursor = page_params(request)
        rows = cp.volumes.list_attachments(
            principal, request.path_params["volume_id"], limit, cursor
        )
        return page(rows, limit, attachment_record)

    async def create_attachment(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        body = await json_body(request)
        row = await cp.volumes.attach(principal, request.path_params["volume_id"], body)
        return JSONResponse(attachment_record(row), status_code=201)

    async def get_attachment(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        params = request.path_params
        row = cp.volumes.get_attachment(
            principal, params["volume_id"], params["attachment_id"]
        )
        return JSONResponse(attachment_record(row))

    async def delete_attachment(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        params = request.path_params
        await cp.volumes.detach(principal, params["volume_id"], params["attachment_id"])
        return Response(status_code=204)

    volume = "/api/volumes/{volume_id}"
    return [
        resource("/api/volumes", PAGE_QUERY, GET=list_volumes, POST=create_volume),
        resource(volume, GET=get_volume, DELETE=delete_volume),
        resource(
            volume + "/attachments",
            PAGE_QUERY,
            GET=list_attachments,
            POST=create_attachment,
        ),
        resource(
            volume + "/attachments/{attachment_id}",
            GET=get_attachment,
            DELETE=delete_attachment,
        ),
    ]
