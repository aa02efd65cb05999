"""Routes: provisioning tokens and CLI API keys.

Both show their secret once, in the create answer, and never again.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from control_plane_lite.api_keys import api_key_record
from control_plane_lite.http_edge import (
    PAGE_QUERY,
    authenticate_user,
    json_body,
    page,
    page_params,
    resource,
)
from control_plane_lite.provisioning import token_record

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane

log = logging.getLogger("gstacks.cp.credentials")


def routes(cp: ControlPlane) -> list[BaseRoute]:
    # ---- provisioning tokens ---------------------------------------------------------

    async def list_tokens(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        limit, cursor = page_params(request)
        cluster_id = request.query_params.get("cluster_id") or None
        rows = cp.provisioning.list(principal, limit, cursor, cluster_id)
        return page(rows, limit, token_record)

    async def create_token(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row, secret = cp.provisioning.create(principal, await json_body(request))
        return JSONResponse({**token_record(row), "token": secret}, status_code=201)

    async def get_token(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = cp.provisioning.get(principal, request.path_params["token_id"])
        return JSONResponse(token_record(row))

    async def revoke_token(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = cp.provisioning.revoke(principal, request.path_params["token_id"])
        return JSONResponse(token_record(row))

    # ---- API keys --------------------------------------------------------------------

    async def list_keys(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        limit, cursor = page_params(request)
        return page(cp.api_keys.list(principal, limit, cursor), limit, api_key_record)

    async def create_key(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row, secret = cp.api_keys.create(principal, await json_body(request))
        return JSONResponse({**api_key_record(row), "key": secret}, status_code=201)

    async def revoke_key(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        row = cp.api_keys.revoke(principal, request.path_params["key_id"])
        await end_streams_of(row["id"])
        return JSONResponse(api_key_record(row))

    async def end_streams_of(key_id: str) -> None:
        """Close what the revoked key still has open, so it stops working at once."""
        follows = cp.hosts.end_follows_of(key_id)
        # TerminalService gains revoke_credential with the terminal reattach work;
        # until it has it, open terminal streams of a revoked key run on until they
        # end, though no new request with the key is accepted.
        revoke_terminals = getattr(cp.terminals, "revoke_credential", None)
        if revoke_terminals is not None:
            ended = revoke_terminals(key_id)
            if inspect.isawaitable(ended):
                await ended
        log.info(
            "api key %s: revoked; ended %d log stream(s)%s",
            key_id,
            follows,
            "" if revoke_terminals else " (terminal streams cannot be ended yet)",
        )

    return [
        resource(
            "/api/provisioning-tokens",
            PAGE_QUERY | {"cluster_id"},
            GET=list_tokens,
            POST=create_token,
        ),
        resource(
            "/api/provisioning-tokens/{token_id}", GET=get_token, DELETE=revoke_token
        ),
        resource("/api/api-keys", PAGE_QUERY, GET=list_keys, POST=create_key),
        resource("/api/api-keys/{key_id}", DELETE=revoke_key),
    ]
