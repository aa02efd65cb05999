"""Routes: infrastructure clusters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from control_plane_lite.clusters import cluster_record
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
    def shape(row: dict[str, Any]) -> dict[str, Any]:
        return cluster_record(row, cp.clusters.host_count(row["id"]))

    async def list_clusters(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        limit, cursor = page_params(request)
        return page(cp.clusters.list(principal, limit, cursor), limit, shape)

    async def create_cluster(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = cp.clusters.create(principal, await json_body(request))
        return JSONResponse(shape(row), status_code=201)

    async def get_cluster(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = cp.clusters.get(principal, request.path_params["cluster_id"])
        return JSONResponse(shape(row))

    async def delete_cluster(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        cp.clusters.delete(principal, request.path_params["cluster_id"])
        return Response(status_code=204)

    return [
        resource("/api/clusters", PAGE_QUERY, GET=list_clusters, POST=create_cluster),
        resource("/api/clusters/{cluster_id}", GET=get_cluster, DELETE=delete_cluster),
    ]
