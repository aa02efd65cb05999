"""The HTTP and WebSocket edge of the lite control plane (an ASGI app).

Handlers only parse, authenticate, call a service and shape the answer. Every
ApiError becomes `{"error": {"code", "message", "details"}}` with its status in one
exception handler; so do Starlette's own 404 and 405, so a client never has to parse
an HTML error page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from control_plane_lite.auth import Principal
from control_plane_lite.blueprints import blueprint_record
from control_plane_lite.errors import (
    ApiError,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)
from control_plane_lite.sandboxes import sandbox_record
from control_plane_lite.terminals import session_record

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane

log = logging.getLogger("gstacks.cp.api")

MAX_BODY_BYTES = 1024 * 1024
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
CREDENTIAL_FIELDS = frozenset({"repository", "action", "artifact", "ttl_s"})


def error_response(error: ApiError) -> JSONResponse:
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "details": error.details,
        }
    }
    return JSONResponse(body, status_code=error.status)


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


def bearer_secret(headers: Any) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; InvalidRequest for anything else."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest(f"request body exceeds {MAX_BODY_BYTES} bytes")
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def page_params(request: Request) -> tuple[int, str | None]:
    raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidRequest(f"limit must be an integer, not {raw!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be from 1 to {MAX_LIMIT}, not {limit}")
    return limit, request.query_params.get("cursor") or None


def page(items: list[dict[str, Any]], limit: int, shape: Any) -> JSONResponse:
    next_cursor = items[-1]["id"] if len(items) == limit else None
    return JSONResponse(
        {"items": [shape(i) for i in items], "next_cursor": next_cursor}
    )


def build_app(cp: ControlPlane) -> Starlette:
    """The ASGI app serving the API, the agent channel and the registry."""

    def user(request: Request | WebSocket) -> Principal:
        secret = bearer_secret(request.headers)
        if secret is None:
            raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
        return cp.authenticator.authenticate_api_key(secret)

    # ---- session and hosts ---------------------------------------------------------

    async def auth_session(request: Request) -> Response:
        principal = user(request)
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
        principal = user(request)
        limit, cursor = page_params(request)
        rows = cp.store.select(
            "hosts", tenant_id=principal.tenant_id, limit=limit, after_id=cursor
        )
        return page(rows, limit, host_record)

    async def get_host(request: Request) -> Response:
        principal = user(request)
        host_id = request.path_params["host_id"]
        row = cp.store.get("hosts", host_id)
        if row is None or row["tenant_id"] != principal.tenant_id:
            raise NotFound(f"host {host_id} does not exist", host_id=host_id)
        return JSONResponse(host_record(row))

    # ---- sandboxes -----------------------------------------------------------------

    async def list_sandboxes(request: Request) -> Response:
        limit, cursor = page_params(request)
        return page(
            cp.sandboxes.list(user(request), limit, cursor), limit, sandbox_record
        )

    async def create_sandbox(request: Request) -> Response:
        principal = user(request)
        row = await cp.sandboxes.create(principal, await json_body(request))
        return JSONResponse(sandbox_record(row), status_code=201)

    async def get_sandbox(request: Request) -> Response:
        row = cp.sandboxes.get(user(request), request.path_params["sandbox_id"])
        return JSONResponse(sandbox_record(row))

    async def wait_sandbox(request: Request) -> Response:
        principal = user(request)
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
        row = await cp.sandboxes.delete(
            user(request), request.path_params["sandbox_id"]
        )
        return JSONResponse(sandbox_record(row))

    # ---- terminal sessions -----------------------------------------------------------

    async def create_terminal(request: Request) -> Response:
        principal = user(request)
        body = await json_body(request)
        row = cp.terminals.create(principal, request.path_params["sandbox_id"], body)
        return JSONResponse(session_record(row), status_code=201)

    async def list_terminals(request: Request) -> Response:
        limit, cursor = page_params(request)
        rows = cp.terminals.list(
            user(request), request.path_params["sandbox_id"], limit, cursor
        )
        return page(rows, limit, session_record)

    async def get_terminal(request: Request) -> Response:
        params = request.path_params
        row = cp.terminals.get(
            user(request), params["sandbox_id"], params["session_id"]
        )
        return JSONResponse(session_record(row))

    async def delete_terminal(request: Request) -> Response:
        params = request.path_params
        await cp.terminals.delete(
            user(request), params["sandbox_id"], params["session_id"]
        )
        return Response(status_code=204)

    async def terminal_stream(websocket: WebSocket) -> None:
        try:
            principal = user(websocket)
        except ApiError as exc:
            await websocket.accept()
            await websocket.close(code=4401, reason=exc.message[:120])
            return
        params = websocket.path_params
        await cp.terminals.stream(
            websocket, principal, params["sandbox_id"], params["session_id"]
        )

    # ---- blueprints -------------------------------------------------------------------

    async def list_blueprints(request: Request) -> Response:
        limit, cursor = page_params(request)
        return page(
            cp.blueprints.list(user(request), limit, cursor), limit, blueprint_record
        )

    async def create_blueprint(request: Request) -> Response:
        principal = user(request)
        row = await cp.blueprints.create(principal, await json_body(request))
        return JSONResponse(blueprint_record(row), status_code=201)

    async def get_blueprint(request: Request) -> Response:
        row = cp.blueprints.get(user(request), request.path_params["blueprint_id"])
        return JSONResponse(blueprint_record(row))

    async def activate_blueprint(request: Request) -> Response:
        row = cp.blueprints.set_active(
            user(request), request.path_params["blueprint_id"], True
        )
        return JSONResponse(blueprint_record(row))

    async def deactivate_blueprint(request: Request) -> Response:
        row = cp.blueprints.set_active(
            user(request), request.path_params["blueprint_id"], False
        )
        return JSONResponse(blueprint_record(row))

    async def delete_blueprint(request: Request) -> Response:
        cp.blueprints.delete(user(request), request.path_params["blueprint_id"])
        return Response(status_code=204)

    # ---- registry discovery and credentials ------------------------------------------

    async def registry_info(request: Request) -> Response:
        user(request)
        return JSONResponse(cp.registry_discovery())

    async def registry_credentials(request: Request) -> Response:
        principal = user(request)
        body = await json_body(request)
        unknown = sorted(set(body) - CREDENTIAL_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"unknown fields: {', '.join(unknown)}", fields=unknown
            )
        return JSONResponse(
            cp.issue_registry_credential(principal, body), status_code=201
        )

    # ---- agent channel ----------------------------------------------------------------

    async def agent_connect(websocket: WebSocket) -> None:
        secret = bearer_secret(websocket.headers)
        try:
            if secret is None:
                raise Unauthenticated("agents authenticate with their host credential")
            principal = cp.authenticator.authenticate_host(secret)
        except ApiError as exc:
            await websocket.accept()
            await websocket.close(code=4401, reason=exc.message[:120])
            return
        await websocket.accept()
        await cp.hub.serve_agent(websocket, principal)

    sandbox = "/api/sandboxes/{sandbox_id}"
    terminal = sandbox + "/terminal-sessions/{session_id}"
    blueprint = "/api/blueprints/{blueprint_id}"
    routes: list[BaseRoute] = [
        resource("/api/auth/session", GET=auth_session),
        resource("/api/hosts", PAGE_QUERY, GET=list_hosts),
        resource("/api/hosts/{host_id}", GET=get_host),
        resource("/api/sandboxes", PAGE_QUERY, GET=list_sandboxes, POST=create_sandbox),
        resource(sandbox, GET=get_sandbox, DELETE=delete_sandbox),
        resource(sandbox + "/wait", WAIT_QUERY, GET=wait_sandbox),
        resource(
            sandbox + "/terminal-sessions",
            PAGE_QUERY,
            GET=list_terminals,
            POST=create_terminal,
        ),
        resource(terminal, GET=get_terminal, DELETE=delete_terminal),
        WebSocketRoute(terminal + "/stream", terminal_stream),
        resource(
            "/api/blueprints", PAGE_QUERY, GET=list_blueprints, POST=create_blueprint
        ),
        resource(blueprint, GET=get_blueprint, DELETE=delete_blueprint),
        resource(blueprint + "/activate", POST=activate_blueprint),
        resource(blueprint + "/deactivate", POST=deactivate_blueprint),
        resource("/api/registry", GET=registry_info),
        resource("/api/registry/credentials", POST=registry_credentials),
        WebSocketRoute("/api/agents/connect", agent_connect),
        # The OCI API where the reference puts it, and at /v2/ where every docker-style
        # client looks for it.
        Mount("/registry", app=cp.registry_app),
        Route("/v2/{path:path}", cp.registry_app),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
    )


Handler = Callable[[Request], Awaitable[Response]]


PAGE_QUERY = frozenset({"limit", "cursor"})
WAIT_QUERY = frozenset({"status", "timeout_s"})


def resource(
    path: str, query: frozenset[str] = frozenset(), **handlers: Handler
) -> Route:
    """One route per path, dispatching on the method.

    A single route per path lets Starlette answer any other method with 405 and an
    `Allow` header that lists every method the path has, not only one route's.
    Query parameters other than `query` are refused, so a misspelt `limt=5` is an
    error rather than silently ignored.
    """

    async def dispatch(request: Request) -> Response:
        unknown = sorted(set(request.query_params) - query)
        if unknown:
            names = ", ".join(repr(name) for name in unknown)
            raise InvalidRequest(
                f"unknown query parameters: {names}", parameters=unknown
            )
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    dispatch.__name__ = "_".join(h.__name__ for h in handlers.values())
    return Route(path, dispatch, methods=list(handlers))


def host_record(row: dict[str, Any]) -> dict[str, Any]:
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
