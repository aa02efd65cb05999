from __future__ import annotations

import stat
from pathlib import Path

import pytest

from control_plane_lite.auth import Authenticator
from control_plane_lite.errors import InvalidRequest, PermissionDenied, Unauthenticated
from control_plane_lite.registry_credentials import (
    RegistryCredentials,
    parse_scopes,
)
from control_plane_lite.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "cp.db")


@pytest.fixture
def credentials(store: Store, tmp_path: Path) -> RegistryCredentials:
    return RegistryCredentials(store, Authenticator(store), tmp_path / "token-key")


@pytest.fixture
def api_key(store: Store) -> str:
    return Authenticator(store).create_api_key("ops", "usr_ops", "ops")


def token_grant(credentials, secret, *scopes):
    issued = credentials.issue_token(
        credentials.authenticate(secret), parse_scopes(scopes)
    )
    assert issued["token"] == issued["access_token"]
    return credentials.authenticate(issued["token"])


def test_credentials_are_scoped_to_one_repository_and_action(credentials):
    _, pull = credentials.issue("t", "lab/app", "pull")
    grant = credentials.authenticate(pull)
    grant.require("lab/app", "pull", None)
    with pytest.raises(PermissionDenied):
        grant.require("lab/app", "push", None)
    with pytest.raises(PermissionDenied):
        grant.require("lab/other", "pull", None)

    _, push = credentials.issue("t", "lab/app", "push")
    credentials.authenticate(push).require("lab/app", "pull", None)


def test_expired_credential_is_refused(credentials, store):
    row, secret = credentials.issue("t", "lab/app", "pull", ttl_s=1)
    store.update("registry_credentials", row["id"], expires_at=0.0)
    with pytest.raises(Unauthenticated, match="expired"):
        credentials.authenticate(secret)


@pytest.mark.parametrize(
    "action, ttl_s", [("delete", 60), ("pull", 0), ("pull", 10**9)]
)
def test_bad_credential_requests_are_refused(credentials, action, ttl_s):
    with pytest.raises(InvalidRequest):
        credentials.issue("t", "lab/app", action, ttl_s=ttl_s)


@pytest.mark.parametrize(
    "body",
    [
        {"repository": "Lab/App"},
        {"repository": "lab/../etc"},
        {"repository": "lab/app", "artifact": "sha512:abc"},
        {"repository": "lab/app", "ttl_s": True},
        {"repository": "lab/app", "owner": "x"},
    ],
)
def test_bad_credential_bodies_are_refused(credentials, body):
    with pytest.raises(InvalidRequest):
        credentials.issue_from_request("t", "ops", "127.0.0.1:1", body)


def test_artifact_scoped_credential_reads_only_that_digest(credentials):
    digest = "sha256:" + "a" * 64
    _, secret = credentials.issue("t", "lab/app", "pull", artifact=digest)
    grant = credentials.authenticate(secret)
    grant.require("lab/app", "pull", digest)
    with pytest.raises(PermissionDenied, match="artifact"):
        grant.require("lab/app", "pull", "sha256:" + "b" * 64)


def test_pull_credential_asking_for_push_gets_a_pull_only_token(credentials):
    _, pull = credentials.issue("t", "lab/app", "pull")
    grant = token_grant(credentials, pull, "repository:lab/app:pull,push")
    assert grant.kind == "token"
    assert grant.allows("lab/app", "pull")
    assert not grant.allows("lab/app", "push")


def test_token_for_one_repository_cannot_read_another(credentials, api_key):
    grant = token_grant(credentials, api_key, "repository:lab/app:pull")
    assert grant.allows("lab/app", "pull")
    with pytest.raises(PermissionDenied, match="scoped to lab/app"):
        grant.require("lab/other", "pull", None)


def test_api_key_token_covers_several_scopes_and_wildcards(credentials, api_key):
    grant = token_grant(
        credentials,
        api_key,
        "repository:lab/a:pull repository:lab/b:*",
        "repository:lab/c:delete",
        "registry:catalog:*",
        "repository:Bad..Name:pull",
    )
    assert dict(grant.access) == {
        "lab/a": frozenset({"pull"}),
        "lab/b": frozenset({"pull", "push"}),
        "lab/c": frozenset({"pull", "push"}),
    }


def test_tampered_or_expired_tokens_are_refused(credentials, api_key):
    issued = credentials.issue_token(
        credentials.authenticate(api_key), parse_scopes(["repository:lab/a:pull"])
    )
    body, _, signature = issued["token"].partition(".")
    with pytest.raises(Unauthenticated, match="not valid"):
        credentials.authenticate(body + "x." + signature)
    expired = credentials.issue_token(credentials.authenticate(api_key), [], ttl_s=-1)
    with pytest.raises(Unauthenticated, match="expired"):
        credentials.authenticate(expired["token"])


def test_tokens_survive_a_restart_and_the_key_file_is_private(store, tmp_path, api_key):
    key_file = tmp_path / "token-key"
    first = RegistryCredentials(store, Authenticator(store), key_file)
    issued = first.issue_token(first.authenticate(api_key), [])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    second = RegistryCredentials(store, Authenticator(store), key_file)
    assert second.authenticate(issued["token"]).kind == "token"


@pytest.mark.parametrize("text", ["false", "repository:lab/a", "repository::pull", " "])
def test_scopes_outside_the_grammar_are_refused(text):
    with pytest.raises(ValueError):
        parse_scopes([text])


def test_scope_names_may_hold_colons():
    (scope,) = parse_scopes(["repository:host:5000/lab/a:pull,push"])
    assert (scope.name, scope.actions) == ("host:5000/lab/a", {"pull", "push"})
