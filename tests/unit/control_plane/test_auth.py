from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from control_plane_lite.auth import Authenticator
from control_plane_lite.errors import Unauthenticated
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
