"""Routes: the caller's session and the hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from control_plane_lite.errors import NotFound
from control_plane_lite.http_edge import (
    PAGE_QUERY,
    authenticate_user,
    page,
    page_params,
    resource,
)

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane


def host_record(row: dict[str, Any]) -> dict[str, Any]:
    """The API's shape of a host row."""
    return {
        "id": row["id"],
        "name": row["name"],
        "hostname": row["hostname"],
        "status": row["status"],
        "agent_version": row["agent_version"],
        "last_seen_at": row["last_seen_at"],
        "created_at": row["created_at"],
        "capabilities": row["capabilities"],
        "overview": row["overview"],
        "cached_images": row["cached_images"],
    }


def routes(cp: ControlPlane) -> list[BaseRoute]:
    async def auth_session(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        return JSONResponse(
            {
                "authenticated": True,
                "user": {"id": principal.id, "name": principal.name},
                "tenant_id": principal.tenant_id,
                "auth_method": "api_key",
                "expires_at": None,
            }
        )

    async def list_hosts(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        limit, cursor = page_params(request)
        rows = cp.store.select(
            "hosts", tenant_id=principal.tenant_id, limit=limit, after_id=cursor
        )
        return page(rows, limit, host_record)

    async def get_host(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        host_id = request.path_params["host_id"]
        row = cp.store.get("hosts", host_id)
        if row is None or row["tenant_id"] != principal.tenant_id:
            raise NotFound(f"host {host_id} does not exist", host_id=host_id)
        return JSONResponse(host_record(row))

    return [
        resource("/api/auth/session", GET=auth_session),
        resource("/api/hosts", PAGE_QUERY, GET=list_hosts),
        resource("/api/hosts/{host_id}", GET=get_host),
    ]
