"""Routes: the caller's session, the hosts, their enrollment and their logs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from control_plane_lite.clock import parse_instant_ms
from control_plane_lite.errors import InvalidRequest
from control_plane_lite.http_edge import (
    PAGE_QUERY,
    NdjsonStream,
    authenticate_user,
    json_body,
    page,
    page_params,
    resource,
)

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane

DEFAULT_LOG_LINES = 200
MAX_LOG_LINES = 10_000
LOG_QUERY = frozenset({"since", "limit", "follow"})
BOOLEANS = {"true": True, "false": False}
MAX_UNIX_MS = 2**63 - 1


def host_record(
    row: dict[str, Any], mesh: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The API's shape of a host row, with its mesh record when it has joined the mesh."""
    return {
        "id": row["id"],
        "name": row["name"],
        "hostname": row["hostname"],
        "cluster_id": row["cluster_id"],
        "status": row["status"],
        "agent_version": row["agent_version"],
        "last_seen_at": row["last_seen_at"],
        "created_at": row["created_at"],
        "capabilities": row["capabilities"],
        "overview": row["overview"],
        "routing": {
            "addresses": row["addresses"],
            "mesh_address": mesh["mesh_address"] if mesh else None,
            "endpoint": row["endpoint"] or (mesh or {}).get("endpoint") or None,
        },
        "cached_images": row["cached_images"],
    }


def _host_id(request: Request) -> str:
    host_id = request.path_params["host_id"]
    # `/api/hosts/enroll` is its own resource, reached first for POST; its other
    # methods fall through to this route and must still get 405, not "no such host".
    if host_id == "enroll":
        raise HTTPException(405, headers={"Allow": "POST"})
    return host_id


def _boolean(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false")
    if raw not in BOOLEANS:
        raise InvalidRequest(f"{name} must be true or false, not {raw!r}")
    return BOOLEANS[raw]


def _log_query(request: Request) -> tuple[int, int, bool]:
    """since (unix ms, 0 for all), limit and follow from the query string."""
    since_ms = 0
    since = request.query_params.get("since")
    if since:
        try:
            since_ms = parse_instant_ms(since)
        except (ValueError, OverflowError, OSError):
            raise InvalidRequest(
                f"since must be an RFC 3339 time or unix milliseconds, not {since!r}"
            ) from None
        # Past the end of int64 on the wire: no line is that new.
        since_ms = max(0, min(since_ms, MAX_UNIX_MS))
    raw = request.query_params.get("limit", str(DEFAULT_LOG_LINES))
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidRequest(f"limit must be an integer, not {raw!r}") from None
    if not 1 <= limit <= MAX_LOG_LINES:
        raise InvalidRequest(f"limit must be from 1 to {MAX_LOG_LINES}, not {limit}")
    return since_ms, limit, _boolean(request, "follow")


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
        cluster_id = request.query_params.get("cluster_id") or None
        rows = cp.hosts.list(principal, limit, cursor, cluster_id)
        return page(
            rows, limit, lambda row: host_record(row, cp.networks.mesh.host(row["id"]))
        )

    async def get_host(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = cp.hosts.get(principal, _host_id(request))
        return JSONResponse(host_record(row, cp.networks.mesh.host(row["id"])))

    async def delete_host(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        host_id = _host_id(request)
        cp.hosts.get(principal, host_id)
        force = _boolean(request, "force")
        await cp.hosts.delete(principal, host_id, force=force)
        return Response(status_code=204)

    async def enroll_host(request: Request) -> Response:
        # No API key: the provisioning token in the body is the credential.
        host, credential = cp.provisioning.enroll(await json_body(request))
        return JSONResponse(
            {
                "host_id": host["id"],
                "cluster_id": host["cluster_id"],
                "name": host["name"],
                "credential": credential,
            },
            status_code=201,
        )

    async def host_logs(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        host_id = _host_id(request)
        cp.hosts.get(principal, host_id)
        since_ms, limit, follow = _log_query(request)
        if not follow:
            lines = await cp.hosts.logs(principal, host_id, since_ms, limit)
            return JSONResponse({"items": lines})
        opened = await cp.hosts.open_log_follow(principal, host_id, since_ms, limit)
        return NdjsonStream(
            cp.hosts.follow_lines(opened), lambda: cp.hosts.close_follow(opened)
        )

    host = "/api/hosts/{host_id}"
    return [
        resource("/api/auth/session", GET=auth_session),
        resource("/api/hosts", PAGE_QUERY | {"cluster_id"}, GET=list_hosts),
        # Before `/api/hosts/{host_id}`, which would otherwise claim "enroll".
        resource("/api/hosts/enroll", POST=enroll_host),
        resource(host, frozenset({"force"}), GET=get_host, DELETE=delete_host),
        resource(host + "/logs", LOG_QUERY, GET=host_logs),
    ]
