"""Provisioning tokens, and the enrollment that exchanges one for a host identity.

How it works. An operator creates a token for one BYO cluster (`POST
/api/provisioning-tokens`); the answer shows its secret (`gpt_...`) once, and only its
SHA-256 is kept. On the new host, `gstacks-agent enroll` posts the secret to `POST
/api/hosts/enroll`. The token is checked, in this order:

    unknown secret          -> refused (401)
    revoked                 -> refused (401)
    past its expiry         -> refused (401)
    all uses spent          -> refused (401)
    another cluster named   -> refused (403): the host asked to join a cluster the
                               token is not for

and only then is one use counted and a host recorded in the token's cluster and
tenant, with a fresh host credential (`ghc_...`) that the answer shows once. Check,
count and record happen in one synchronous step on the event loop, so two hosts
racing for the last use of a token cannot both win.

Managed clusters are GlobalStacks-run capacity whose hosts the operator provisions;
a token for one is refused when it is created.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from control_plane_lite import ids
from control_plane_lite.auth import Principal, hash_secret, new_secret
from control_plane_lite.clock import now_rfc3339, now_unix, rfc3339
from control_plane_lite.clusters import ClusterService
from control_plane_lite.errors import (
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from control_plane_lite.store import Store

if TYPE_CHECKING:
    from control_plane_lite.hosts import HostService

log = logging.getLogger("gstacks.cp.provisioning")

TOKEN_PREFIX = "gpt"
DEFAULT_TTL_S = 60 * 60
MAX_TTL_S = 30 * 24 * 60 * 60
DEFAULT_MAX_USES = 1
MAX_USES = 1000
MAX_DESCRIPTION_CHARS = 500
MAX_HOST_NAME_CHARS = 253
CREATE_FIELDS = frozenset({"cluster_id", "ttl_s", "max_uses", "description"})
ENROLL_FIELDS = frozenset({"token", "cluster_id", "name", "hostname"})


def token_status(row: dict[str, Any], now: float) -> str:
    """active, revoked, expired or exhausted; the first that applies, in that order."""
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] <= now:
        return "expired"
    if row["uses"] >= row["max_uses"]:
        return "exhausted"
    return "active"


def token_record(row: dict[str, Any]) -> dict[str, Any]:
    """The API's shape of a token row: never the secret, never its hash."""
    return {
        "id": row["id"],
        "cluster_id": row["cluster_id"],
        "description": row["description"],
        "status": token_status(row, now_unix()),
        "max_uses": row["max_uses"],
        "uses": row["uses"],
        "expires_at": rfc3339(row["expires_at"]),
        "created_at": row["created_at"],
        "created_by": row["created_by"],
        "last_used_at": row["last_used_at"],
        "revoked_at": row["revoked_at"],
    }


def _whole_number(body: dict[str, Any], key: str, default: int, high: int) -> int:
    value = body.get(key, default)
    # JSON has one number type: 60.0 is as whole a number as 60.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise InvalidRequest(
            f"{key} must be an integer from 1 to {high}, not {value!r}", field=key
        )
    return value


def _optional_text(body: dict[str, Any], key: str, max_chars: int) -> str:
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > max_chars:
        raise InvalidRequest(
            f"{key} must be a string of at most {max_chars} characters", field=key
        )
    return value


class ProvisioningService:
    """Issues, lists and revokes provisioning tokens; enrolls hosts with them."""

    def __init__(
        self, store: Store, clusters: ClusterService, hosts: HostService
    ) -> None:
        self._store = store
        self._clusters = clusters
        self._hosts = hosts

    def create(
        self, principal: Principal, body: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """Record a token for a BYO cluster; returns the row and its secret."""
        unknown = sorted(set(body) - CREATE_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"unknown fields: {', '.join(unknown)}", fields=unknown
            )
        cluster_id = body.get("cluster_id")
        if not isinstance(cluster_id, str) or not cluster_id:
            raise InvalidRequest("cluster_id is required and must be a string")
        cluster = self._clusters.get(principal, cluster_id)
        if cluster["kind"] != "byo":
            raise InvalidRequest(
                f"cluster {cluster_id} is {cluster['kind']}; provisioning tokens "
                "can only target BYO clusters",
                cluster_id=cluster_id,
                kind=cluster["kind"],
            )
        ttl_s = _whole_number(body, "ttl_s", DEFAULT_TTL_S, MAX_TTL_S)
        max_uses = _whole_number(body, "max_uses", DEFAULT_MAX_USES, MAX_USES)
        description = _optional_text(body, "description", MAX_DESCRIPTION_CHARS)

        secret = new_secret(TOKEN_PREFIX)
        row = self._store.insert(
            "provisioning_tokens",
            {
                "id": ids.new_id("provisioning_token"),
                "tenant_id": principal.tenant_id,
                "cluster_id": cluster_id,
                "token_hash": hash_secret(secret),
                "description": description,
                "max_uses": max_uses,
                "uses": 0,
                "expires_at": now_unix() + ttl_s,
                "created_at": now_rfc3339(),
                "created_by": principal.name,
                "last_used_at": None,
                "revoked_at": None,
            },
        )
        log.info(
            "provisioning token %s: for cluster %s by %s, %d use(s), %ss",
            row["id"],
            cluster_id,
            principal.name,
            max_uses,
            ttl_s,
        )
        return row, secret

    def get(self, principal: Principal, token_id: str) -> dict[str, Any]:
        row = self._store.get("provisioning_tokens", token_id)
        if row is None or row["tenant_id"] != principal.tenant_id:
            raise NotFound(
                f"provisioning token {token_id} does not exist", token_id=token_id
            )
        return row

    def list(
        self,
        principal: Principal,
        limit: int,
        after_id: str | None,
        cluster_id: str | None = None,
    ) -> list[dict[str, Any]]:
        where: dict[str, Any] = {"tenant_id": principal.tenant_id}
        if cluster_id is not None:
            where["cluster_id"] = cluster_id
        return self._store.select(
            "provisioning_tokens", limit=limit, after_id=after_id, **where
        )

    def revoke(self, principal: Principal, token_id: str) -> dict[str, Any]:
        """Refuse every later use of the token; revoking twice changes nothing."""
        row = self.get(principal, token_id)
        if row["revoked_at"] is not None:
            return row
        log.info("provisioning token %s: revoked by %s", token_id, principal.name)
        revoked = self._store.update(
            "provisioning_tokens", token_id, revoked_at=now_rfc3339()
        )
        assert revoked is not None
        return revoked

    def enroll(self, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Exchange a token for a new host in its cluster; returns host row and secret."""
        unknown = sorted(set(body) - ENROLL_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"unknown fields: {', '.join(unknown)}", fields=unknown
            )
        secret = body.get("token")
        if not isinstance(secret, str) or not secret:
            raise InvalidRequest("token is required and must be a string")
        wanted_cluster = body.get("cluster_id")
        if wanted_cluster is not None and not isinstance(wanted_cluster, str):
            raise InvalidRequest("cluster_id must be a string")
        hostname = _optional_text(body, "hostname", MAX_HOST_NAME_CHARS)
        name = _optional_text(body, "name", MAX_HOST_NAME_CHARS) or hostname

        token = self._redeem(secret, wanted_cluster)
        host, credential = self._hosts.register(
            token["tenant_id"],
            token["cluster_id"],
            name or "host",
            hostname,
            provisioning_token_id=token["id"],
        )
        log.info(
            "host %s: enrolled into cluster %s with provisioning token %s (use %d of %d)",
            host["id"],
            token["cluster_id"],
            token["id"],
            token["uses"],
            token["max_uses"],
        )
        return host, credential

    def _redeem(self, secret: str, wanted_cluster: str | None) -> dict[str, Any]:
        """Check the token and count one use; raise if it may not be used."""
        row = self._store.find_one(
            "provisioning_tokens", token_hash=hash_secret(secret)
        )
        if row is None:
            raise Unauthenticated("the provisioning token is not valid")
        status = token_status(row, now_unix())
        if status != "active":
            log.warning(
                "provisioning token %s: refused an enrollment: it is %s",
                row["id"],
                status,
            )
            reason = {
                "revoked": "has been revoked",
                "expired": f"expired at {rfc3339(row['expires_at'])}",
                "exhausted": f"has been used {row['uses']} of {row['max_uses']} times",
            }[status]
            raise Unauthenticated(
                f"provisioning token {row['id']} {reason}",
                token_id=row["id"],
                status=status,
            )
        if wanted_cluster is not None and wanted_cluster != row["cluster_id"]:
            log.warning(
                "provisioning token %s: refused enrollment into cluster %s",
                row["id"],
                wanted_cluster,
            )
            raise PermissionDenied(
                f"provisioning token {row['id']} is for cluster {row['cluster_id']}, "
                f"not {wanted_cluster}",
                token_id=row["id"],
                cluster_id=row["cluster_id"],
            )
        used = self._store.update(
            "provisioning_tokens",
            row["id"],
            uses=row["uses"] + 1,
            last_used_at=now_rfc3339(),
        )
        assert used is not None
        return used
