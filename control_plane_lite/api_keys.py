"""CLI API keys: create (the secret is shown once), list, revoke.

A key is `gsk_` and 32 random bytes; only its SHA-256 is stored (see auth.py for why
a fast hash suffices). A key belongs to a tenant and a user. A key made by a user is
that user's; the standalone admin may also make a key for another tenant, which gets
a user of its own, so a lab can show what one tenant cannot see of another.

Revoking sets `revoked_at`. Every request authenticates afresh, so the key stops
working on the next request; streams already open with it (terminal WebSockets,
followed host logs) are ended by the services that hold them, which the route that
revokes asks to do so.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from control_plane_lite import ids
from control_plane_lite.auth import (
    ADMIN_USER_ID,
    Principal,
    hash_secret,
    new_secret,
)
from control_plane_lite.clock import now_rfc3339
from control_plane_lite.errors import InvalidRequest, NotFound, PermissionDenied
from control_plane_lite.store import Store

log = logging.getLogger("gstacks.cp.api_keys")

KEY_PREFIX = "gsk"
MAX_NAME_CHARS = 100
CREATE_FIELDS = frozenset({"name", "tenant_id"})

_TENANT_RE = re.compile(r"^tnt_[a-z0-9][a-z0-9_-]{0,62}$")


def api_key_record(row: dict[str, Any]) -> dict[str, Any]:
    """The API's shape of a key row: never the secret, never its hash."""
    return {
        "id": row["id"],
        "name": row["name"],
        "tenant_id": row["tenant_id"],
        "user_id": row["user_id"],
        "user_name": row["user_name"],
        "created_at": row["created_at"],
        "revoked_at": row["revoked_at"],
    }


class ApiKeyService:
    """Issues, lists and revokes the API keys of the caller's tenant."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def create(
        self, principal: Principal, body: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """Record a key; returns the row and its secret."""
        unknown = sorted(set(body) - CREATE_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"unknown fields: {', '.join(unknown)}", fields=unknown
            )
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
            raise InvalidRequest(
                f"name is required: a string of 1 to {MAX_NAME_CHARS} characters"
            )
        tenant_id = body.get("tenant_id", principal.tenant_id)
        if not isinstance(tenant_id, str) or not _TENANT_RE.match(tenant_id):
            raise InvalidRequest(
                f"tenant_id must look like 'tnt_example', not {tenant_id!r}"
            )

        if tenant_id == principal.tenant_id:
            user_id, user_name = principal.id, principal.name
        elif principal.id == ADMIN_USER_ID:
            # Another tenant's first user, named for the key.
            user_id, user_name = ids.new_id("user"), name
        else:
            raise PermissionDenied(
                "only the standalone admin may create keys for another tenant"
            )

        secret = new_secret(KEY_PREFIX)
        row = self._store.insert(
            "api_keys",
            {
                "id": ids.new_id("api_key"),
                "name": name,
                "key_hash": hash_secret(secret),
                "user_id": user_id,
                "user_name": user_name,
                "tenant_id": tenant_id,
                "created_at": now_rfc3339(),
                "revoked_at": None,
            },
        )
        log.info(
            "api key %s: created %r for %s in %s by %s",
            row["id"],
            name,
            user_id,
            tenant_id,
            principal.name,
        )
        return row, secret

    def get(self, principal: Principal, key_id: str) -> dict[str, Any]:
        row = self._store.get("api_keys", key_id)
        if row is None or row["tenant_id"] != principal.tenant_id:
            raise NotFound(f"API key {key_id} does not exist", key_id=key_id)
        return row

    def list(
        self, principal: Principal, limit: int, after_id: str | None
    ) -> list[dict[str, Any]]:
        return self._store.select(
            "api_keys", tenant_id=principal.tenant_id, limit=limit, after_id=after_id
        )

    def revoke(self, principal: Principal, key_id: str) -> dict[str, Any]:
        """Refuse the key from now on; revoking twice changes nothing."""
        row = self.get(principal, key_id)
        if row["revoked_at"] is not None:
            return row
        revoked = self._store.update("api_keys", key_id, revoked_at=now_rfc3339())
        assert revoked is not None
        log.info("api key %s: revoked by %s", key_id, principal.name)
        return revoked
