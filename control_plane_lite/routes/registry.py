"""Routes: registry discovery, credentials, tokens, inventory and garbage collection,
and the OCI distribution API itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from control_plane_lite.errors import InvalidRequest, Unauthenticated
from control_plane_lite.http_edge import (
    PAGE_QUERY,
    authenticate_user,
    json_body,
    page_params,
    resource,
)
from control_plane_lite.registry.garbage import DEFAULT_MIN_AGE_S, GarbageCollector
from control_plane_lite.registry_access import TOKEN_PATH, presented_secret
from control_plane_lite.registry_credentials import RegistryCredentials, parse_scopes

if TYPE_CHECKING:
    from control_plane_lite.server import ControlPlane

# What docker, skopeo and oras send to a token realm (Docker registry token spec).
TOKEN_QUERY = frozenset({"service", "scope", "account", "client_id", "offline_token"})
GC_FIELDS = frozenset({"min_age_s", "dry_run"})


def routes(cp: ControlPlane) -> list[BaseRoute]:
    collector = GarbageCollector(cp.registry_storage)

    async def registry_info(request: Request) -> Response:
        authenticate_user(cp, request)
        return JSONResponse(cp.registry_discovery())

    async def registry_credentials(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        issued = cp.registry_credentials.issue_from_request(
            principal.tenant_id,
            principal.name,
            cp.artifacts.registry_host,
            await json_body(request),
        )
        return JSONResponse(issued, status_code=201)

    async def list_repositories(request: Request) -> Response:
        authenticate_user(cp, request)
        limit, cursor = page_params(request)
        names = await cp.registry_storage.list_repositories()
        if cursor is not None:
            names = [name for name in names if name > cursor]
        items = []
        for name in names[:limit]:
            tags = await cp.registry_storage.list_tags(name)
            items.append({"name": name, "tags": tags})
        return _page(items, limit, lambda item: item["name"])

    async def list_artifacts(request: Request) -> Response:
        principal = authenticate_user(cp, request)
        limit, cursor = page_params(request)
        artifacts = await cp.artifacts.list_artifacts(after=cursor, limit=limit)
        # A blueprint's artifact_ref names the address we had when it was made;
        # `<repository>@<digest>` is what stays the same.
        blueprints = {
            row["artifact_ref"].partition("/")[2]: row["id"]
            for row in cp.store.select("blueprints", tenant_id=principal.tenant_id)
        }
        for artifact in artifacts:
            key = f"{artifact['repository']}@{artifact['digest']}"
            artifact["blueprint_id"] = blueprints.get(key)
        return _page(
            artifacts, limit, lambda item: f"{item['repository']}@{item['digest']}"
        )

    async def collect_garbage(request: Request) -> Response:
        authenticate_user(cp, request)
        body = await json_body(request)
        unknown = sorted(set(body) - GC_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"unknown fields: {', '.join(unknown)}", fields=unknown
            )
        min_age_s = body.get("min_age_s", DEFAULT_MIN_AGE_S)
        dry_run = body.get("dry_run", False)
        if not isinstance(min_age_s, int | float) or isinstance(min_age_s, bool):
            raise InvalidRequest("min_age_s must be a number of seconds")
        if min_age_s < 0:
            raise InvalidRequest(f"min_age_s must be at least 0, not {min_age_s}")
        if not isinstance(dry_run, bool):
            raise InvalidRequest("dry_run must be true or false")
        report = await collector.collect(min_age_s=min_age_s, dry_run=dry_run)
        return JSONResponse(report.as_dict())

    return [
        resource("/api/registry", GET=registry_info),
        resource("/api/registry/credentials", POST=registry_credentials),
        token_route(cp.registry_credentials),
        resource("/api/registry/repositories", PAGE_QUERY, GET=list_repositories),
        resource("/api/registry/artifacts", PAGE_QUERY, GET=list_artifacts),
        resource("/api/registry/gc", POST=collect_garbage),
        # The OCI API where the reference puts it, and at /v2/ where every docker-style
        # client looks for it.
        Mount("/registry", app=cp.registry_app),
        Route("/v2/{path:path}", cp.registry_app),
    ]


def token_route(credentials: RegistryCredentials) -> BaseRoute:
    """The realm of the token flow: Basic or Bearer with any registry secret."""

    async def registry_token(request: Request) -> Response:
        secret = presented_secret(request)
        if secret is None:
            raise Unauthenticated(
                "log in with HTTP Basic (password: an API key or a registry "
                "credential) or a Bearer secret"
            )
        grant = credentials.authenticate(secret)
        try:
            scopes = parse_scopes(request.query_params.getlist("scope"))
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        return JSONResponse(credentials.issue_token(grant, scopes))

    return resource(TOKEN_PATH, TOKEN_QUERY, GET=registry_token)


def _page(items: list[dict[str, Any]], limit: int, key: Any) -> JSONResponse:
    """A page in the API's list shape; the cursor is the last item's sort key."""
    page = items[:limit]
    next_cursor = key(page[-1]) if len(items) >= limit and page else None
    return JSONResponse({"items": page, "next_cursor": next_cursor})
