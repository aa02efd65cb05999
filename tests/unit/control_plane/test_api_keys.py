"""CLI API keys: shown once, stored hashed, scoped to a tenant, revocable."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane_lite.api_keys import ApiKeyService, api_key_record
from control_plane_lite.auth import DEFAULT_TENANT, Authenticator, Principal
from control_plane_lite.errors import (
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from control_plane_lite.store import Store

ADMIN = Principal("user", "usr_admin", "admin", DEFAULT_TENANT)
ALICE = Principal("user", "usr_alice", "alice", DEFAULT_TENANT)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "cp.db")


def test_created_key_authenticates_as_its_creator_and_only_its_hash_is_kept(store):
    keys = ApiKeyService(store)

    row, secret = keys.create(ALICE, {"name": "ci"})

    principal = Authenticator(store).authenticate_api_key(secret)
    assert (principal.id, principal.tenant_id) == ("usr_alice", DEFAULT_TENANT)
    assert principal.credential_id == row["id"]
    assert all(secret not in str(r) for r in store.select("api_keys"))
    assert "key_hash" not in api_key_record(row)


def test_revoked_key_is_refused_on_the_next_request(store):
    keys = ApiKeyService(store)
    row, secret = keys.create(ALICE, {"name": "ci"})

    revoked = keys.revoke(ALICE, row["id"])

    assert revoked["revoked_at"] is not None
    assert keys.revoke(ALICE, row["id"])["revoked_at"] == revoked["revoked_at"]
    with pytest.raises(Unauthenticated):
        Authenticator(store).authenticate_api_key(secret)


def test_admin_makes_a_key_for_another_tenant_with_a_user_of_its_own(store):
    keys = ApiKeyService(store)

    row, secret = keys.create(ADMIN, {"name": "tenant-b", "tenant_id": "tnt_b"})

    principal = Authenticator(store).authenticate_api_key(secret)
    assert principal.tenant_id == "tnt_b"
    assert principal.id.startswith("usr_") and principal.id != ADMIN.id
    # The other tenant's key is not among this tenant's keys, nor revocable by it.
    assert [k["id"] for k in keys.list(ADMIN, 10, None)] == []
    with pytest.raises(NotFound):
        keys.revoke(ADMIN, row["id"])


def test_only_the_admin_makes_keys_for_another_tenant(store):
    with pytest.raises(PermissionDenied):
        ApiKeyService(store).create(ALICE, {"name": "x", "tenant_id": "tnt_b"})


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 101},
        {"name": 7},
        {"name": "ok", "tenant_id": "default"},
        {"name": "ok", "scopes": ["all"]},
    ],
)
def test_bad_key_requests_are_refused(store, body):
    with pytest.raises(InvalidRequest):
        ApiKeyService(store).create(ADMIN, body)
