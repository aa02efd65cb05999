"""Network records, validation and the state each host gets, without any agent."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane_lite.auth import DEFAULT_TENANT, Principal
from control_plane_lite.errors import Conflict, InvalidRequest, NotFound
from control_plane_lite.mesh import MESH_RANGE, JoinPeer
from control_plane_lite.server import ControlPlane, ControlPlaneConfig
from gstacks_agent.mesh.keys import generate_key_pair, public_key_of

ADMIN = Principal("user", "usr_admin", "admin", DEFAULT_TENANT)


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(ControlPlaneConfig(tmp_path, port=0))
    try:
        yield plane
    finally:
        plane.close()


def _host(cp: ControlPlane, name: str, endpoint: str) -> tuple[str, str]:
    row, _ = cp.authenticator.create_host(name, name)
    key = generate_key_pair().public_key
    assert cp.networks.mesh.host_reported(row["id"], key, endpoint)
    return row["id"], key


def _member(cp: ControlPlane, network: dict, host_id: str, aliases: list[str]) -> dict:
    sandbox_id = (
        f"sbx_{len(aliases):04x}{abs(hash(host_id + str(aliases))) % 16**12:012x}"
    )
    cp.store.insert(
        "sandboxes",
        {
            "id": sandbox_id,
            "tenant_id": DEFAULT_TENANT,
            "name": aliases[0],
            "status": "running",
            "image": "lab/busybox",
            "image_digest": "sha256:" + "0" * 64,
            "artifact_ref": "x",
            "host_id": host_id,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        },
    )
    members = cp.networks._members(network["id"])
    return cp.store.insert(
        "network_members",
        {
            "id": f"nm_{sandbox_id[4:]}",
            "network_id": network["id"],
            "sandbox_id": sandbox_id,
            "host_id": host_id,
            "address": cp.networks._free_address(network, members),
            "aliases": aliases,
            "ports": [8080],
            "created_at": "2026-01-01T00:00:00Z",
        },
    )


def test_networks_get_disjoint_default_ranges_and_overlaps_are_refused(cp):
    first = cp.networks.create(ADMIN, {"name": "shop"})
    second = cp.networks.create(ADMIN, {"name": "lab"})
    assert first["gateway"] == str(next(ipaddress.ip_network(first["cidr"]).hosts()))
    assert not ipaddress.ip_network(first["cidr"]).overlaps(
        ipaddress.ip_network(second["cidr"])
    )
    with pytest.raises(Conflict, match="overlaps"):
        cp.networks.create(ADMIN, {"name": "clash", "cidr": first["cidr"]})
    with pytest.raises(Conflict, match="reserved"):
        cp.networks.create(ADMIN, {"name": "meshy", "cidr": "100.64.5.0/24"})
    with pytest.raises(InvalidRequest, match="DNS label"):
        cp.networks.create(ADMIN, {"name": "Not_A_Label"})
    with pytest.raises(Conflict, match="already exists"):
        cp.networks.create(ADMIN, {"name": "shop"})
    assert cp.networks.get(ADMIN, "shop")["id"] == first["id"]


def test_state_gives_each_host_its_peers_members_and_trusted_addresses(cp):
    host_a, key_a = _host(cp, "a", "198.18.0.2:51820")
    host_b, key_b = _host(cp, "b", "198.18.0.3:51820")
    host_c, _ = _host(cp, "c", "198.18.0.4:51820")
    shop = cp.networks.create(ADMIN, {"name": "shop"})
    web = _member(cp, shop, host_a, ["web"])
    client = _member(cp, shop, host_b, ["client"])

    state_a = cp.networks.state_for(host_a)
    assert state_a.mesh_address == cp.networks.mesh.host(host_a)["mesh_address"]
    assert ipaddress.ip_address(state_a.mesh_address) in MESH_RANGE
    (peer,) = state_a.peers
    assert (peer.host_id, peer.public_key, peer.endpoint) == (
        host_b,
        key_b,
        "198.18.0.3:51820",
    )
    mesh_b = cp.networks.mesh.host(host_b)["mesh_address"]
    assert list(peer.allowed_ips) == [f"{mesh_b}/32", f"{client['address']}/32"]
    (spec,) = state_a.networks
    assert {m.address for m in spec.members} == {web["address"], client["address"]}
    assert set(spec.trusted_addresses) == {state_a.mesh_address, mesh_b}

    # A host that carries no network has no peers and no networks.
    state_c = cp.networks.state_for(host_c)
    assert not state_c.peers and not state_c.networks
    assert cp.networks.state_for(host_b).peers[0].public_key == key_a


def test_mesh_join_config_carries_a_fresh_key_and_only_member_routes(cp):
    host_a, key_a = _host(cp, "a", "198.18.0.2:51820")
    shop = cp.networks.create(ADMIN, {"name": "shop"})
    web = _member(cp, shop, host_a, ["web"])
    credential = cp.networks.mesh.issue_join(
        ADMIN,
        shop["id"],
        60,
        [JoinPeer(host_a, key_a, "198.18.0.2:51820", [f"{web['address']}/32"])],
    )
    config = credential["config"]
    private = next(
        line.split(" = ")[1]
        for line in config.splitlines()
        if line.startswith("PrivateKey")
    )
    assert public_key_of(private) == credential["public_key"]
    assert f"AllowedIPs = {web['address']}/32" in config
    assert f"PublicKey = {key_a}" in config
    assert "private" not in str(cp.store.select("mesh_joins")).lower()

    state = cp.networks.state_for(host_a)
    join_peer = next(p for p in state.peers if p.join_id)
    assert join_peer.public_key == credential["public_key"]
    assert join_peer.expires_at_unix > 0
    assert credential["mesh_address"] in state.networks[0].trusted_addresses


def test_unknown_network_is_not_found(cp):
    with pytest.raises(NotFound):
        cp.networks.get(ADMIN, "net_0000000000000000")
