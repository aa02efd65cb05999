"""The mesh as the control plane keeps it: host keys and addresses, join credentials.

How it works. Every host reports its WireGuard public key and underlay endpoint in
its hello; `host_reported` records them and gives the host an address from the mesh
range 100.64.0.0/10 (RFC 6598 shared address space, which no host's own network is
likely to use) the first time. The address is the host's for good, so a reconnect
or restart changes nothing for its peers.

A mesh-join credential lets a machine outside the cluster into one network for a
while. `issue_join` makes a key pair for it (the private key is in the answer and
nowhere else: only the public key is stored), gives it a mesh address from the same
range, and records when it expires. The hosts that carry the network learn it as a
peer with that expiry; once it passes, the control plane drops the record and pushes
new state, and each agent drops the peer by itself even before that push arrives.
The credential is a WireGuard config in the `wg-quick` format, one [Peer] per host
that carries the network, each allowing exactly that host's members of the network.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from control_plane_lite import ids
from control_plane_lite.auth import Principal
from control_plane_lite.clock import now_rfc3339, rfc3339
from control_plane_lite.errors import InvalidRequest
from control_plane_lite.store import Store
from gstacks_agent.mesh.errors import InvalidMeshConfig
from gstacks_agent.mesh.keys import decode_key, generate_key_pair

log = logging.getLogger("gstacks.cp.mesh")

MESH_RANGE = ipaddress.ip_network("100.64.0.0/10")
DEFAULT_JOIN_TTL_S = 3600
MIN_JOIN_TTL_S = 10
MAX_JOIN_TTL_S = 24 * 3600
PERSISTENT_KEEPALIVE_S = 25


@dataclass(frozen=True)
class JoinPeer:
    """One host a join client talks to, and what it may reach through it."""

    host_id: str
    public_key: str
    endpoint: str
    allowed_ips: Sequence[str]


def join_config_text(
    private_key: str, address: str, peers: Sequence[JoinPeer], expires_at: str
) -> str:
    """A wg-quick style config for a join client."""
    lines = [
        f"# GlobalStacks mesh join; expires {expires_at}",
        "[Interface]",
        f"PrivateKey = {private_key}",
        f"Address = {address}/32",
    ]
    # Not done yet: no DNS line. The resolvers listen only on the networks' gateways,
    # which a join client cannot reach, so it must use addresses from the routes.
    # The peers are the hosts carrying the network now; a host that joins it later
    # is not in a config issued before, so its members stay out of reach.
    for peer in peers:
        lines += [
            "",
            f"# host {peer.host_id}",
            "[Peer]",
            f"PublicKey = {peer.public_key}",
            f"Endpoint = {peer.endpoint}",
            f"AllowedIPs = {', '.join(peer.allowed_ips)}",
            f"PersistentKeepalive = {PERSISTENT_KEEPALIVE_S}",
        ]
    return "\n".join(lines) + "\n"


class MeshService:
    """Host keys, mesh addresses and join credentials."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def host(self, host_id: str) -> dict[str, Any] | None:
        return self._store.get("mesh_hosts", host_id)

    def host_reported(self, host_id: str, public_key: str, endpoint: str) -> bool:
        """Record what a hello says; True if the host's key or endpoint changed."""
        if not public_key:
            return False
        try:
            decode_key(public_key)
        except InvalidMeshConfig:
            log.warning("host %s: ignoring malformed mesh key %r", host_id, public_key)
            return False
        row = self._store.get("mesh_hosts", host_id)
        if row is None:
            address = self._free_address()
            self._store.insert(
                "mesh_hosts",
                {
                    "id": host_id,
                    "public_key": public_key,
                    "mesh_address": address,
                    "endpoint": endpoint,
                    "updated_at": now_rfc3339(),
                },
            )
            log.info("host %s: joined the mesh as %s (%s)", host_id, address, endpoint)
            return True
        if (row["public_key"], row["endpoint"]) == (public_key, endpoint):
            return False
        self._store.update(
            "mesh_hosts",
            host_id,
            public_key=public_key,
            endpoint=endpoint,
            updated_at=now_rfc3339(),
        )
        log.info("host %s: mesh key or endpoint changed (%s)", host_id, endpoint)
        return True

    def _free_address(self) -> str:
        used = {r["mesh_address"] for r in self._store.select("mesh_hosts")}
        used |= {r["mesh_address"] for r in self._store.select("mesh_joins")}
        for address in MESH_RANGE.hosts():
            if str(address) not in used:
                return str(address)
        raise InvalidRequest("the mesh address range is exhausted")

    # ---- join credentials -------------------------------------------------------------

    def issue_join(
        self,
        principal: Principal,
        network_id: str,
        ttl_s: int,
        peers: Sequence[JoinPeer],
    ) -> dict[str, Any]:
        """Record a join client and return its credential (shown only this once)."""
        pair = generate_key_pair()
        address = self._free_address()
        expires_at = time.time() + ttl_s
        row = self._store.insert(
            "mesh_joins",
            {
                "id": ids.new_id("mesh_join"),
                "tenant_id": principal.tenant_id,
                "network_id": network_id,
                "public_key": pair.public_key,
                "mesh_address": address,
                "expires_at": expires_at,
                "created_at": now_rfc3339(),
                "created_by": principal.name,
            },
        )
        log.info(
            "mesh join %s: issued for network %s as %s, expires in %ds",
            row["id"],
            network_id,
            address,
            ttl_s,
        )
        return {
            **join_record(row),
            "config": join_config_text(
                pair.private_key, address, peers, rfc3339(expires_at)
            ),
            "peers": [
                {
                    "host_id": p.host_id,
                    "public_key": p.public_key,
                    "endpoint": p.endpoint,
                    "allowed_ips": list(p.allowed_ips),
                }
                for p in peers
            ],
        }

    def live_joins(self, network_id: str) -> list[dict[str, Any]]:
        now = time.time()
        return [
            r
            for r in self._store.select("mesh_joins", network_id=network_id)
            if r["expires_at"] > now
        ]

    def remove_expired(self) -> set[str]:
        """Drop expired join records; the ids of the networks they were for."""
        now = time.time()
        networks = set()
        for row in self._store.select("mesh_joins"):
            if row["expires_at"] <= now:
                self._store.delete("mesh_joins", row["id"])
                networks.add(row["network_id"])
                log.info("mesh join %s: expired", row["id"])
        return networks

    def forget_network(self, network_id: str) -> None:
        for row in self._store.select("mesh_joins", network_id=network_id):
            self._store.delete("mesh_joins", row["id"])


def join_record(row: dict[str, Any]) -> dict[str, Any]:
    """The API's shape of a join credential, without its secret."""
    return {
        "id": row["id"],
        "network_id": row["network_id"],
        "mesh_address": row["mesh_address"],
        "public_key": row["public_key"],
        "expires_at": rfc3339(row["expires_at"]),
        "created_at": row["created_at"],
    }
