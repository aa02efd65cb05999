"""Credentials of the lite control plane: API keys and host credentials.

Every secret is 32 random bytes behind a short kind prefix (`gsk_` for API keys,
`ghc_` for host credentials; registry credentials, `grc_`, live in
registry_credentials.py), shown once when made
and stored only as its SHA-256. A fast hash is enough here because the secrets are
random, not chosen by people, so there is nothing for a dictionary attack to guess.

The standalone lab has one admin API key, created on first start and written to a
0600 file in the state dir, which the CLI on the same host reads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from control_plane_lite import ids
from control_plane_lite.clock import now_rfc3339
from control_plane_lite.errors import Unauthenticated
from control_plane_lite.store import Store

log = logging.getLogger("gstacks.cp.auth")

DEFAULT_TENANT = "tnt_default"
ADMIN_USER_ID = "usr_admin"


@dataclass(frozen=True)
class Principal:
    """Who made a request, after authentication."""

    kind: str  # "user" | "host"
    id: str
    name: str
    tenant_id: str
    # The API key, host credential or registry credential that was presented, so
    # that revoking it can end what it opened.
    credential_id: str | None = None


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
        return Principal(
            "user",
            row["user_id"],
            row["user_name"],
            row["tenant_id"],
            credential_id=row["id"],
        )

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
