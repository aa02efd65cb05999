"""Routes: registry discovery and credentials, and the OCI distribution API itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from control_plane_lite.errors import InvalidRequest
from control_plane_lite.http_edge import authenticate_user, json_body, resource

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane

CREDENTIAL_FIELDS = frozenset({"repository", "action", "artifact", "ttl_s"})


def routes(cp: ControlPlane) -> list[BaseRoute]:
    async def registry_info(request: Request) -> Response:
        authenticate_user(cp, request)
        return JSONResponse(cp.registry_discovery())

    async def registry_credentials(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        body = await json_body(request)
        unknown = sorted(set(body) - CREDENTIAL_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"unknown fields: {', '.join(unknown)}", fields=unknown
            )
        return JSONResponse(
            cp.issue_registry_credential(principal, body), status_code=201
        )

    return [
        resource("/api/registry", GET=registry_info),
        resource("/api/registry/credentials", POST=registry_credentials),
        # The OCI API where the reference puts it, and at /v2/ where every docker-style
        # client looks for it.
        Mount("/registry", app=cp.registry_app),
        Route("/v2/{path:path}", cp.registry_app),
    ]
