"""Who may use the embedded registry: the control plane's RegistryAuthorizer.

Clients present either a user API key (full access for its tenant) or a registry
credential from `POST /api/registry/credentials` (one repository, pull or push, for a
short time). Both travel as HTTP Basic, where the password is the secret and the
username is ignored (`skopeo --creds any:SECRET`), or as a Bearer token.
"""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request

from control_plane_lite.auth import Authenticator, Principal, require_registry_access
from control_plane_lite.errors import PermissionDenied, Unauthenticated
from control_plane_lite.registry.authorization import Action
from control_plane_lite.registry.errors import RegistryDenied, RegistryUnauthorized

CHALLENGE = 'Basic realm="gstacks-registry", charset="UTF-8"'


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


class ControlPlaneRegistryAuthorizer:
    """API keys and scoped registry credentials, checked against the store."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    def principal(self, request: Request) -> Principal:
        secret = presented_secret(request)
        if secret is None:
            raise RegistryUnauthorized(
                "authentication required", www_authenticate=CHALLENGE
            )
        try:
            return self._auth.authenticate_any(secret)
        except Unauthenticated as exc:
            raise RegistryUnauthorized(exc.message, www_authenticate=CHALLENGE) from exc

    async def authorize(
        self, request: Request, repository: str | None, action: Action
    ) -> None:
        principal = self.principal(request)
        if repository is None and action == "pull":
            return  # `GET /v2/`: any valid credential may learn that it is valid
        wanted = "push" if action == "delete" else action
        if action == "catalog" and principal.kind != "user":
            raise RegistryDenied("registry credentials cannot list the catalog")
        digest = _manifest_digest(request)
        try:
            require_registry_access(principal, repository, wanted, digest)
        except PermissionDenied as exc:
            raise RegistryDenied(exc.message) from exc


def _manifest_digest(request: Request) -> str | None:
    """The digest a manifest request names, for artifact-scoped credentials."""
    path = request.url.path
    marker = "/manifests/"
    if marker in path:
        reference = path.rsplit(marker, 1)[1]
        return reference if reference.startswith("sha256:") else None
    return None
