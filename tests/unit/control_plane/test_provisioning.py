"""Provisioning tokens: who may make them, and which ones enroll a host."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane_lite.auth import DEFAULT_TENANT, Principal, hash_secret
from control_plane_lite.clusters import ClusterService
from control_plane_lite.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from control_plane_lite.hosts import HostService
from control_plane_lite.provisioning import ProvisioningService, token_record
from control_plane_lite.store import Store

ADMIN = Principal("user", "usr_admin", "admin", DEFAULT_TENANT, credential_id="k1")
OTHER_TENANT = Principal("user", "usr_b", "bob", "tnt_other", credential_id="k2")


class Services:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.clusters = ClusterService(store)
        # Registration needs no hub or sandbox service: nothing here connects.
        self.hosts = HostService(store, hub=None, sandboxes=None)  # type: ignore[arg-type]
        self.provisioning = ProvisioningService(store, self.clusters, self.hosts)

    def byo_cluster(self, name: str = "edge") -> str:
        return self.clusters.create(ADMIN, {"name": name})["id"]


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return Services(Store(tmp_path / "cp.db"))


def test_token_enrolls_a_host_into_its_cluster_and_counts_the_use(services):
    cluster_id = services.byo_cluster()
    token, secret = services.provisioning.create(
        ADMIN, {"cluster_id": cluster_id, "max_uses": 2}
    )

    host, credential = services.provisioning.enroll(
        {"token": secret, "name": "edge-1", "hostname": "edge-1.lan"}
    )

    assert host["cluster_id"] == cluster_id
    assert host["tenant_id"] == DEFAULT_TENANT
    assert host["provisioning_token_id"] == token["id"]
    assert host["credential_hash"] == hash_secret(credential)
    record = token_record(services.provisioning.get(ADMIN, token["id"]))
    assert (record["uses"], record["status"]) == (1, "active")


def test_only_the_hash_of_a_token_is_stored(services):
    _, secret = services.provisioning.create(
        ADMIN, {"cluster_id": services.byo_cluster()}
    )

    rows = services.store.select("provisioning_tokens")
    assert secret.startswith("gpt_")
    assert all(secret not in str(row) for row in rows)
    assert "token_hash" not in token_record(rows[0])


def test_token_used_past_its_limit_is_refused(services):
    _, secret = services.provisioning.create(
        ADMIN, {"cluster_id": services.byo_cluster(), "max_uses": 1}
    )
    services.provisioning.enroll({"token": secret})

    with pytest.raises(Unauthenticated, match="used 1 of 1 times"):
        services.provisioning.enroll({"token": secret})
    assert services.store.count("hosts") == 1


def test_expired_token_is_refused(services):
    token, secret = services.provisioning.create(
        ADMIN, {"cluster_id": services.byo_cluster(), "ttl_s": 60}
    )
    services.store.update("provisioning_tokens", token["id"], expires_at=1.0)

    with pytest.raises(Unauthenticated, match="expired"):
        services.provisioning.enroll({"token": secret})
    assert services.store.count("hosts") == 0


def test_revoked_token_is_refused_and_revoking_twice_changes_nothing(services):
    token, secret = services.provisioning.create(
        ADMIN, {"cluster_id": services.byo_cluster()}
    )
    first = services.provisioning.revoke(ADMIN, token["id"])
    second = services.provisioning.revoke(ADMIN, token["id"])

    assert first["revoked_at"] is not None
    assert second["revoked_at"] == first["revoked_at"]
    with pytest.raises(Unauthenticated, match="revoked"):
        services.provisioning.enroll({"token": secret})


def test_token_for_another_cluster_is_refused_without_spending_a_use(services):
    token, secret = services.provisioning.create(
        ADMIN, {"cluster_id": services.byo_cluster("edge")}
    )
    other = services.byo_cluster("core")

    with pytest.raises(PermissionDenied, match="is for cluster"):
        services.provisioning.enroll({"token": secret, "cluster_id": other})
    assert services.provisioning.get(ADMIN, token["id"])["uses"] == 0


def test_unknown_token_is_refused(services):
    with pytest.raises(Unauthenticated, match="not valid"):
        services.provisioning.enroll({"token": "gpt_nothing"})


def test_token_for_a_managed_cluster_is_refused_at_creation(services):
    managed = services.clusters.create(ADMIN, {"name": "cloud", "kind": "managed"})

    with pytest.raises(InvalidRequest, match="only target BYO clusters"):
        services.provisioning.create(ADMIN, {"cluster_id": managed["id"]})
    assert services.store.count("provisioning_tokens") == 0


@pytest.mark.parametrize(
    "body",
    [
        {"ttl_s": 0},
        {"ttl_s": 31 * 24 * 3600},
        {"ttl_s": "60"},
        {"max_uses": 0},
        {"max_uses": 1001},
        {"max_uses": True},
        {"description": 5},
        {"colour": "red"},
    ],
)
def test_bad_token_fields_are_refused(services, body):
    with pytest.raises(InvalidRequest):
        services.provisioning.create(
            ADMIN, {"cluster_id": services.byo_cluster(), **body}
        )


def test_another_tenants_cluster_and_tokens_are_invisible(services):
    cluster_id = services.byo_cluster()
    token, _ = services.provisioning.create(ADMIN, {"cluster_id": cluster_id})

    with pytest.raises(NotFound):
        services.provisioning.create(OTHER_TENANT, {"cluster_id": cluster_id})
    with pytest.raises(NotFound):
        services.provisioning.get(OTHER_TENANT, token["id"])
    assert services.provisioning.list(OTHER_TENANT, 10, None) == []


def test_cluster_with_hosts_cannot_be_deleted_and_takes_its_tokens_when_empty(
    services,
):
    cluster_id = services.byo_cluster()
    _, secret = services.provisioning.create(ADMIN, {"cluster_id": cluster_id})
    host, _ = services.provisioning.enroll({"token": secret})

    with pytest.raises(Conflict, match="enrolled host"):
        services.clusters.delete(ADMIN, cluster_id)

    services.store.delete("hosts", host["id"])
    services.clusters.delete(ADMIN, cluster_id)
    assert services.store.count("provisioning_tokens") == 0


def test_default_cluster_is_made_once_and_adopts_hosts_without_one(services):
    services.store.insert(
        "hosts",
        {
            "id": "host_00aa",
            "name": "old",
            "tenant_id": DEFAULT_TENANT,
            "credential_hash": "h",
            "status": "disconnected",
            "created_at": "2026-01-01T00:00:00Z",
        },
    )

    first = services.clusters.ensure_default(DEFAULT_TENANT)
    second = services.clusters.ensure_default(DEFAULT_TENANT)

    assert first == second
    assert services.clusters.get(ADMIN, first)["kind"] == "byo"
    assert services.store.get("hosts", "host_00aa")["cluster_id"] == first


def test_cluster_names_are_dns_labels_and_unique(services):
    services.byo_cluster("edge")
    with pytest.raises(Conflict):
        services.byo_cluster("edge")
    with pytest.raises(InvalidRequest):
        services.clusters.create(ADMIN, {"name": "Edge_1"})
    with pytest.raises(InvalidRequest):
        services.clusters.create(ADMIN, {"name": "x", "kind": "cloud"})
