"""Who may do what in the registry: the hook the routes call before acting.

Every request is checked once, before it touches storage, with the repository it
names and one action:

    pull      read manifests, blobs and tags (GET, HEAD)
    push      start or write uploads, put manifests, mount blobs
    delete    delete manifests, tags and blobs
    catalog   list repositories (`repository` is None)

`GET /v2/` asks for "pull" with `repository` None: the client only wants to know
whether its credential is accepted at all (OCI distribution spec, "Determining
support"), so an authorizer should pass any valid credential there. A cross-
repository mount asks for "push" on the target and "pull" on the source.

An authorizer raises RegistryUnauthorized (401, with the challenge to send) when
the caller has no valid credential, and RegistryDenied (403) when the credential
is valid but does not grant the action. Returning means allowed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Literal, Protocol

from starlette.requests import Request

from .errors import RegistryDenied, RegistryUnauthorized

Action = Literal["pull", "push", "delete", "catalog"]


class RegistryAuthorizer(Protocol):
    """Decides whether a request may perform `action` on `repository`."""

    async def authorize(
        self, request: Request, repository: str | None, action: Action
    ) -> None:
        """Return if allowed; raise RegistryUnauthorized or RegistryDenied if not."""
        ...


class AllowAllAuthorizer:
    """Allows everything. For tests and a lab that listens on loopback only."""

    async def authorize(
        self, request: Request, repository: str | None, action: Action
    ) -> None:
        return None


class StaticBasicAuthorizer:
    """Accepts one fixed username and password over HTTP Basic (RFC 7617).

    A test helper that proves the 401 challenge path end to end with real clients
    (`skopeo --creds`); the control plane's own authorizer issues scoped tokens.
    `read_only` turns every non-pull action into a 403, to exercise RegistryDenied.
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        realm: str = "gstacks-registry",
        read_only: bool = False,
    ) -> None:
        if not username or ":" in username:
            raise ValueError(
                f"username must be non-empty without ':', not {username!r}"
            )
        self._expected = f"{username}:{password}".encode()
        self._challenge = f'Basic realm="{realm}", charset="UTF-8"'
        self._read_only = read_only

    async def authorize(
        self, request: Request, repository: str | None, action: Action
    ) -> None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            raise RegistryUnauthorized(
                "authentication required", www_authenticate=self._challenge
            )
        try:
            presented = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RegistryUnauthorized(
                "malformed Basic credentials", www_authenticate=self._challenge
            ) from exc
        if not hmac.compare_digest(presented, self._expected):
            raise RegistryUnauthorized(
                "invalid username or password", www_authenticate=self._challenge
            )
        if self._read_only and action != "pull":
            raise RegistryDenied(
                f"{action} is not allowed with this credential",
                detail={"repository": repository, "action": action},
            )
