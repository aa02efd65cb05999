"""Routes: runtime networks, their members, routes, policies, mesh join, diagnostics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from control_plane_lite.networks import policy_record

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane


def _items(items: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"items": items, "next_cursor": None})


def routes(cp: ControlPlane) -> list[BaseRoute]:
    networks = cp.networks

    async def list_networks(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        limit, cursor = page_params(request)
        return page(networks.list(principal, limit, cursor), limit, networks.record)

    async def create_network(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = networks.create(principal, await json_body(request))
        return JSONResponse(networks.record(row), status_code=201)

    async def get_network(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = networks.get(principal, request.path_params["network_id"])
        return JSONResponse(networks.record(row))

    async def delete_network(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        networks.delete(principal, request.path_params["network_id"])
        return Response(status_code=204)

    async def list_members(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        return _items(networks.members(principal, request.path_params["network_id"]))

    async def list_routes(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        return _items(networks.routes(principal, request.path_params["network_id"]))

    async def list_policies(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        rows = networks.policies(principal, request.path_params["network_id"])
        return _items([policy_record(r) for r in rows])

    async def set_policies(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        rows = await networks.set_policies(
            principal, request.path_params["network_id"], await json_body(request)
        )
        return _items([policy_record(r) for r in rows])

    async def mesh_join(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        credential = await networks.mesh_join(
            principal, request.path_params["network_id"], await json_body(request)
        )
        return JSONResponse(credential, status_code=201)

    async def diagnostics(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        report = await networks.diagnostics(
            principal, request.path_params["network_id"]
        )
        return JSONResponse(report)

    async def attach(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        member, created = await networks.attach(
            principal,
            request.path_params["sandbox_id"],
            request.path_params["network_id"],
            await json_body(request),
        )
        return JSONResponse(member, status_code=201 if created else 200)

    async def detach(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        member = await networks.detach(
            principal,
            request.path_params["sandbox_id"],
            request.path_params["network_id"],
        )
        return JSONResponse(member)

    network = "/api/networks/{network_id}"
    membership = "/api/sandboxes/{sandbox_id}/networks/{network_id}"
    return [
        resource("/api/networks", PAGE_QUERY, GET=list_networks, POST=create_network),
        resource(network, GET=get_network, DELETE=delete_network),
        resource(network + "/members", GET=list_members),
        resource(network + "/routes", GET=list_routes),
        resource(network + "/policies", GET=list_policies, PUT=set_policies),
        resource(network + "/mesh-join", POST=mesh_join),
        resource(network + "/diagnostics", POST=diagnostics),
        resource(membership + "/attach", POST=attach),
        resource(membership + "/detach", POST=detach),
    ]
