"""Credentials of the lite control plane: API keys, host credentials, registry tokens.

Every secret is 32 random bytes behind a short kind prefix (`gsk_` for API keys,
`ghc_` for host credentials, `grc_` for registry credentials), shown once when made
and stored only as its SHA-256. A fast hash is enough here because the secrets are
random, not chosen by people, so there is nothing for a dictionary attack to guess.

The standalone lab has one admin API key, created on first start and written to a
0600 file in the state dir, which the CLI on the same host reads.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from control_plane_lite import ids
from control_plane_lite.clock import now_rfc3339, now_unix
from control_plane_lite.errors import InvalidRequest, PermissionDenied, Unauthenticated
from control_plane_lite.store import Store

log = logging.getLogger("gstacks.cp.auth")

DEFAULT_TENANT = "tnt_default"
ADMIN_USER_ID = "usr_admin"
REGISTRY_ACTIONS = ("pull", "push")
DEFAULT_REGISTRY_TTL_S = 15 * 60
MAX_REGISTRY_TTL_S = 12 * 60 * 60


@dataclass(frozen=True)
class Principal:
    """Who made a request, after authentication."""

    kind: str  # "user" | "host" | "registry_credential"
    id: str
    name: str
    tenant_id: str
    # For registry credentials: the one repository, its actions and optional digest.
    repository: str | None = None
    actions: frozenset[str] = field(default_factory=frozenset)
    artifact: str | None = None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def write_secret_file(path: Path, secret: str) -> None:
    """Write `secret` to `path` with mode 0600, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (secret + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Authenticator:
    """Issues and checks every credential the control plane accepts."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # ---- API keys -------------------------------------------------------------

    def ensure_admin_key(self, key_file: Path) -> str:
        """Return the standalone admin key, creating it and its 0600 file on first start."""
        if key_file.exists():
            secret = key_file.read_text().strip()
            if self._store.find_one(
                "api_keys", key_hash=hash_secret(secret), revoked_at=None
            ):
                return secret
            log.warning(
                "admin key file %s holds no valid key; issuing a new one", key_file
            )
        secret = self.create_api_key("standalone-admin", ADMIN_USER_ID, "admin")
        write_secret_file(key_file, secret)
        log.info("created standalone admin API key in %s", key_file)
        return secret

    def create_api_key(self, name: str, user_id: str, user_name: str) -> str:
        secret = new_secret("gsk")
        self._store.insert(
            "api_keys",
            {
                "id": ids.new_id("api_key"),
                "name": name,
                "key_hash": hash_secret(secret),
                "user_id": user_id,
                "user_name": user_name,
                "tenant_id": DEFAULT_TENANT,
                "created_at": now_rfc3339(),
            },
        )
        return secret

    def authenticate_api_key(self, secret: str) -> Principal:
        row = self._store.find_one("api_keys", key_hash=hash_secret(secret))
        if row is None or row["revoked_at"] is not None:
            raise Unauthenticated("the API key is not valid")
        return Principal("user", row["user_id"], row["user_name"], row["tenant_id"])

    # ---- host credentials ----------------------------------------------------------

    def create_host(self, name: str, hostname: str = "") -> tuple[dict, str]:
        """Register a host record and return it with its credential (shown once)."""
        secret = new_secret("ghc")
        row = self._store.insert(
            "hosts",
            {
                "id": ids.new_id("host"),
                "name": name,
                "tenant_id": DEFAULT_TENANT,
                "hostname": hostname,
                "credential_hash": hash_secret(secret),
                "status": "disconnected",
                "created_at": now_rfc3339(),
            },
        )
        return row, secret

    def authenticate_host(self, secret: str) -> Principal:
        row = self._store.find_one("hosts", credential_hash=hash_secret(secret))
        if row is None:
            raise Unauthenticated("the host credential is not valid")
        return Principal("host", row["id"], row["name"], row["tenant_id"])

    # ---- registry credentials ------------------------------------------------------

    def issue_registry_credential(
        self,
        tenant_id: str,
        repository: str,
        action: str,
        artifact: str | None = None,
        ttl_s: int = DEFAULT_REGISTRY_TTL_S,
    ) -> tuple[dict, str]:
        """A credential for one repository and action; push implies pull."""
        if action not in REGISTRY_ACTIONS:
            raise InvalidRequest(
                f"action must be one of {', '.join(REGISTRY_ACTIONS)}, not {action!r}"
            )
        if not 1 <= ttl_s <= MAX_REGISTRY_TTL_S:
            raise InvalidRequest(
                f"ttl_s must be between 1 and {MAX_REGISTRY_TTL_S}, not {ttl_s}"
            )
        actions = ["pull", "push"] if action == "push" else ["pull"]
        secret = new_secret("grc")
        now = now_unix()
        row = self._store.insert(
            "registry_credentials",
            {
                "id": ids.new_id("registry_credential"),
                "token_hash": hash_secret(secret),
                "tenant_id": tenant_id,
                "repository": repository,
                "actions": actions,
                "artifact": artifact,
                "expires_at": now + ttl_s,
                "created_at": now_rfc3339(),
            },
        )
        # Expired rows are worthless; sweeping them here keeps the table small.
        self._store.delete_where(
            "registry_credentials", "expires_at < ?", (now - 3600,)
        )
        return row, secret

    def authenticate_registry_credential(self, secret: str) -> Principal:
        row = self._store.find_one(
            "registry_credentials", token_hash=hash_secret(secret)
        )
        if row is None:
            raise Unauthenticated("the registry credential is not valid")
        if row["expires_at"] <= now_unix():
            raise Unauthenticated("the registry credential has expired")
        return Principal(
            "registry_credential",
            row["id"],
            row["id"],
            row["tenant_id"],
            repository=row["repository"],
            actions=frozenset(row["actions"]),
            artifact=row["artifact"],
        )

    def authenticate_any(self, secret: str) -> Principal:
        """A user API key or a registry credential, told apart by prefix."""
        if secret.startswith("grc_"):
            return self.authenticate_registry_credential(secret)
        return self.authenticate_api_key(secret)


def require_registry_access(
    principal: Principal, repository: str | None, action: str, digest: str | None = None
) -> None:
    """Raise PermissionDenied unless `principal` may do `action` on `repository`."""
    if principal.kind == "user":
        return
    if principal.kind != "registry_credential":
        raise PermissionDenied("this credential cannot use the registry")
    if repository is None or repository != principal.repository:
        raise PermissionDenied(
            f"the credential is scoped to repository {principal.repository!r}"
        )
    if action not in principal.actions:
        raise PermissionDenied(f"the credential does not allow {action}")
    if (
        principal.artifact
        and digest
        and not hmac.compare_digest(principal.artifact, digest)
    ):
        raise PermissionDenied(
            f"the credential is scoped to artifact {principal.artifact}"
        )
