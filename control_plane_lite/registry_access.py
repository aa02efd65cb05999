"""Who may use the embedded registry: the control plane's RegistryAuthorizer.

A request presents a secret as HTTP Basic (any username, the secret as password:
`skopeo --creds any:SECRET`) or as a Bearer token; registry_credentials.py turns
it into a grant. Without one, or with one that is not valid (expired, revoked), the
answer is a 401 whose challenge sends token-flow clients to the realm:

    WWW-Authenticate: Bearer realm="http://<host>/api/registry/token",
                      service="gstacks-registry",scope="repository:<name>:pull,push"

The realm's URL is built from the request's own Host, so it is right whatever
address the client used. A valid grant that lacks the action gets 403 DENIED, with
the same challenge and `error="insufficient_scope"` (RFC 6750 section 3.1).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from starlette.requests import Request

from control_plane_lite.errors import PermissionDenied, Unauthenticated
from control_plane_lite.registry.authorization import Action
from control_plane_lite.registry.errors import RegistryDenied, RegistryUnauthorized
from control_plane_lite.registry_credentials import (
    SERVICE,
    RegistryCredentials,
    RegistryGrant,
    is_token,
)

TOKEN_PATH = "/api/registry/token"


def presented_secret(request: Request) -> str | None:
    """The secret in a Basic or Bearer Authorization header, if any."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, _, password = decoded.partition(":")
        return password or None
    return None


def realm_url(request: Request) -> str:
    """The token endpoint, as reachable at the address the client used."""
    host = request.headers.get("host") or request.url.netloc
    return f"{request.url.scheme}://{host}{TOKEN_PATH}"


def challenge(
    request: Request,
    repository: str | None,
    action: Action,
    error: str | None = None,
) -> str:
    """A Bearer challenge naming the realm and the scope this request needs."""
    parts = [f'realm="{realm_url(request)}"', f'service="{SERVICE}"']
    if action == "catalog":
        parts.append('scope="registry:catalog:*"')
    elif repository is not None:
        actions = "pull" if action == "pull" else "pull,push"
        parts.append(f'scope="repository:{repository}:{actions}"')
    if error is not None:
        parts.append(f'error="{error}"')
    return "Bearer " + ",".join(parts)


class ControlPlaneRegistryAuthorizer:
    """API keys, scoped registry credentials and tokens, checked per request.

    With `tokens_only`, secrets other than realm tokens get the 401 challenge, so
    every client goes through the token flow (long-lived secrets then only ever
    reach the realm).
    """

    def __init__(
        self,
        credentials: RegistryCredentials,
        *,
        tokens_only: bool = False,
        deletion_guard: Callable[[str], str | None] | None = None,
    ) -> None:
        self._credentials = credentials
        self._tokens_only = tokens_only
        # Says why a repository's content must not be deleted now, or None.
        self._deletion_guard = deletion_guard

    def grant(
        self, request: Request, repository: str | None, action: Action
    ) -> RegistryGrant:
        """The grant of the request's secret; RegistryUnauthorized if there is none."""
        secret = presented_secret(request)
        if secret is not None and self._tokens_only and not is_token(secret):
            secret = None
        if secret is None:
            raise RegistryUnauthorized(
                "authentication required",
                www_authenticate=challenge(request, repository, action),
            )
        try:
            return self._credentials.authenticate(secret)
        except Unauthenticated as exc:
            raise RegistryUnauthorized(
                exc.message,
                www_authenticate=challenge(
                    request, repository, action, "invalid_token"
                ),
            ) from exc

    async def authorize(
        self, request: Request, repository: str | None, action: Action
    ) -> None:
        grant = self.grant(request, repository, action)
        if repository is None and action == "pull":
            return  # `GET /v2/`: any valid credential may learn that it is valid
        wanted = "push" if action == "delete" else action
        try:
            if action == "catalog":
                if not grant.everything:
                    raise PermissionDenied(
                        f"a registry {grant.kind} cannot list the catalog"
                    )
            else:
                grant.require(repository, wanted, _manifest_digest(request))
            if action == "delete" and repository and self._deletion_guard:
                reason = self._deletion_guard(repository)
                if reason is not None:
                    raise PermissionDenied(reason)
        except PermissionDenied as exc:
            raise RegistryDenied(
                exc.message,
                detail={"repository": repository, "action": action},
                www_authenticate=challenge(
                    request, repository, action, "insufficient_scope"
                ),
            ) from exc


def _manifest_digest(request: Request) -> str | None:
    """The digest a manifest request names, for artifact-scoped credentials."""
    path = request.url.path
    marker = "/manifests/"
    if marker in path:
        reference = path.rsplit(marker, 1)[1]
        return reference if reference.startswith("sha256:") else None
    return None
