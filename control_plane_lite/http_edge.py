"""What every HTTP handler of the control plane shares: authentication, JSON bodies,
pagination, one route per path, and the error body.

Handlers only parse, authenticate, call a service and shape the answer. Every
ApiError becomes `{"error": {"code", "message", "details"}}` with its status, in
`api.py`'s exception handlers, so no handler builds an error response itself.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from control_plane_lite.auth import Principal
from control_plane_lite.errors import (
    ApiError,
    InvalidRequest,
    PayloadTooLarge,
    Unauthenticated,
)

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane

MAX_BODY_BYTES = 1024 * 1024
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
PAGE_QUERY = frozenset({"limit", "cursor"})

Handler = Callable[[Request], Awaitable[Response]]


def error_response(error: ApiError) -> JSONResponse:
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "details": error.details,
        }
    }
    return JSONResponse(body, status_code=error.status)


def bearer_secret(headers: Any) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def authenticate_user(cp: ControlPlane, connection: HTTPConnection) -> Principal:
    """The user behind a request or WebSocket, from its Bearer API key."""
    secret = bearer_secret(connection.headers)
    if secret is None:
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
    return cp.authenticator.authenticate_api_key(secret)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; InvalidRequest for anything else.

    The body is read in chunks and refused as soon as it passes MAX_BODY_BYTES, so
    an oversized upload costs us at most that much memory.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    except RecursionError:
        # json.loads recurses once per nesting level; a few KB of "[[[[" exhaust it.
        raise InvalidRequest("request body is nested too deeply") from None
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


class NdjsonStream(StreamingResponse):
    """A streamed answer of one JSON document per line (`application/x-ndjson`).

    Lines come from `items` until it ends or the client goes away; `close` runs in
    either case, shielded, so whatever feeds `items` is always let go. Unlike its
    base class this owns the watch for the client's disconnect, which is what lets
    `close` run as soon as the client leaves.
    """

    media_type = "application/x-ndjson"

    def __init__(
        self,
        items: AsyncGenerator[Any, None],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(items, media_type=self.media_type)
        self._items = items
        self._close = close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self.raw_headers,
            }
        )
        client_left = False

        async def watch_client(cancel_scope: trio.CancelScope) -> None:
            nonlocal client_left
            while (await receive())["type"] != "http.disconnect":
                pass
            client_left = True
            cancel_scope.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_client, nursery.cancel_scope)
                async with contextlib.aclosing(self._items) as items:
                    async for item in items:
                        line = json.dumps(item, separators=(",", ":")) + "\n"
                        await send(
                            {
                                "type": "http.response.body",
                                "body": line.encode(),
                                "more_body": True,
                            }
                        )
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._close()
        if not client_left:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


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
