from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from control_plane_lite.auth import Authenticator, require_registry_access
from control_plane_lite.errors import InvalidRequest, PermissionDenied, Unauthenticated
from control_plane_lite.store import Store


@pytest.fixture
def auth(tmp_path: Path) -> Authenticator:
    return Authenticator(Store(tmp_path / "cp.db"))


def test_admin_key_is_made_once_in_a_private_file(auth: Authenticator, tmp_path: Path):
    key_file = tmp_path / "admin-api-key"
    key = auth.ensure_admin_key(key_file)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert auth.ensure_admin_key(key_file) == key
    assert auth.authenticate_api_key(key).name == "admin"
    # Only the hash is stored.
    rows = auth._store.select("api_keys")
    assert all(key not in str(row) for row in rows)


def test_unknown_keys_and_host_credentials_are_refused(auth: Authenticator):
    with pytest.raises(Unauthenticated):
        auth.authenticate_api_key("gsk_nope")
    host, credential = auth.create_host("h1")
    assert auth.authenticate_host(credential).id == host["id"]
    with pytest.raises(Unauthenticated):
        auth.authenticate_host(credential + "x")
    # A host credential is not an API key.
    with pytest.raises(Unauthenticated):
        auth.authenticate_api_key(credential)


def test_registry_credentials_are_scoped_to_one_repository_and_action(
    auth: Authenticator,
):
    _, pull = auth.issue_registry_credential("t", "lab/app", "pull")
    principal = auth.authenticate_any(pull)
    require_registry_access(principal, "lab/app", "pull")
    with pytest.raises(PermissionDenied):
        require_registry_access(principal, "lab/app", "push")
    with pytest.raises(PermissionDenied):
        require_registry_access(principal, "lab/other", "pull")

    _, push = auth.issue_registry_credential("t", "lab/app", "push")
    require_registry_access(auth.authenticate_any(push), "lab/app", "pull")


def test_expired_registry_credential_is_refused(auth: Authenticator):
    row, secret = auth.issue_registry_credential("t", "lab/app", "pull", ttl_s=1)
    auth._store.update("registry_credentials", row["id"], expires_at=0.0)
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate_any(secret)


@pytest.mark.parametrize(
    "action, ttl_s", [("delete", 60), ("pull", 0), ("pull", 10**9)]
)
def test_bad_credential_requests_are_refused(
    auth: Authenticator, action: str, ttl_s: int
):
    with pytest.raises(InvalidRequest):
        auth.issue_registry_credential("t", "lab/app", action, ttl_s=ttl_s)
