"""Runtime networks on one host: make the host match the state the control plane sent.

How it works. The control plane sends the whole NetworkState for this host (see the
proto); `apply` reconciles, in this order, under one lock:

1. expired mesh peers are dropped (the agent enforces a mesh-join's expiry itself,
   even when no newer state comes);
2. with no networks and no peers, everything is removed: the nftables table, every
   bridge and veth named with our prefixes, the DNS listeners, the WireGuard device;
3. otherwise the WireGuard device is brought up with the host's key, port and mesh
   address, and its peers and routes set exactly;
4. each network gets its bridge with the gateway address; bridges of networks that
   are gone are removed;
5. each local member whose veth is missing gets one: created on the host, its far end
   moved into the sandbox's network namespace (`/proc/<pid>/ns/net`), addressed and
   routed there, and the sandbox's resolv.conf pointed at the gateway. A veth whose
   member is gone is removed, which also removes its far end. A member that cannot
   be attached (its sandbox is not running) is reported, and the rest goes on;
6. the nftables ruleset is replaced as a whole (see `ruleset`);
7. the DNS resolver gets the new name table and listens on the new gateways.

Names are derived from ids (see `names`), so after an agent restart the same state
finds the same links and leaves them alone. `diagnose` only reads: device status,
ICMP echoes, DNS questions to our own resolver, and the policy rules evaluated in
Python against the members and ports.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import trio

from gstacks_agent.errors import AgentError, NotFound
from gstacks_agent.mesh import links
from gstacks_agent.mesh.device import MeshDevice, interface_name, open_device
from gstacks_agent.mesh.keys import load_or_create_host_keys
from gstacks_agent.mesh.settings import MeshSettings
from gstacks_agent.mesh.uapi import PeerSettings
from gstacks_agent.networks import probes, ruleset
from gstacks_agent.networks.errors import SandboxNotAttachable
from gstacks_agent.networks.names import (
    BRIDGE_PREFIX,
    HOST_VETH_PREFIX,
    bridge_name,
    host_veth_name,
    peer_veth_name,
)
from gstacks_agent.networks.nftables import Nftables
from gstacks_agent.networks.resolver import NameTable, Resolver, host_upstream
from gstacks_agent.networks.sandbox_resolv import (
    remove_resolv_conf,
    resolv_conf_text,
    write_resolv_conf,
)
from gstacks_agent.sandboxes.manager import SandboxManager
from gstacks_proto import pb

log = logging.getLogger("gstacks.agent.networks")

PROBE_TIMEOUT_S = 1.5
# A join client with no handshake for this long is not connected (WireGuard rekeys
# every 2 minutes while traffic flows; see the whitepaper's timers section).
HANDSHAKE_FRESH_S = 180


class NetworkManager:
    """The host's side of runtime networks and the mesh."""

    def __init__(
        self,
        state_dir: Path,
        host_id: str,
        settings: MeshSettings,
        sandboxes: SandboxManager,
    ) -> None:
        self.host_id = host_id
        self.settings = settings
        self.mesh_dir = state_dir / "mesh"
        self.keys = load_or_create_host_keys(self.mesh_dir)
        self.interface = interface_name(host_id)
        self._sandboxes = sandboxes
        self._device: MeshDevice | None = None
        self._nft: Nftables | None = None
        # Sandboxes whose resolv.conf this process wrote, to take it back when
        # they leave their last network.
        self._resolv_written: set[str] = set()
        upstream = (
            (settings.dns_upstream, 53) if settings.dns_upstream else host_upstream()
        )
        self.resolver = Resolver(upstream)
        self._lock = trio.Lock()
        self._state = pb.NetworkState()
        self._state_changed = trio.Event()

    # ---- lifecycle ------------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve DNS and peer expiry until cancelled; then stop wireguard-go."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.resolver.serve)
                nursery.start_soon(self._expire_peers)
                task_status.started()
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                if self._device is not None and self._device.kind == "userspace":
                    # Our child; the kernel's device and all links outlive us.
                    # Not done yet: adopting a running wireguard-go across an agent
                    # restart. Today traffic between hosts stops while the agent is
                    # down (bridges, veths and local traffic stay) and resumes when
                    # its state is applied again after the next hello.
                    await self._device.down()

    def endpoint(self, control_plane_url: str) -> str:
        """host:port other hosts reach this host's WireGuard on."""
        configured = self.settings.endpoint
        if configured:
            return (
                configured
                if ":" in configured
                else (f"{configured}:{self.settings.listen_port}")
            )
        # The address this host reaches its control plane from is one the others
        # can reach it on as well; connecting a UDP socket sends nothing.
        host = urlsplit(control_plane_url).hostname or "127.0.0.1"
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((host, 9))
                address = probe.getsockname()[0]
        except OSError:
            return ""
        return f"{address}:{self.settings.listen_port}"

    # ---- apply ------------------------------------------------------------------------

    async def apply(self, state: pb.NetworkState) -> pb.NetworkStateApplied:
        """Make the host match `state`; idempotent."""
        async with self._lock:
            self._state = state
            self._state_changed.set()
            self._state_changed = trio.Event()
            return await self._apply_locked(state)

    async def _apply_locked(self, state: pb.NetworkState) -> pb.NetworkStateApplied:
        now = time.time()
        peers = [
            p for p in state.peers if not p.expires_at_unix or p.expires_at_unix > now
        ]
        networks = list(state.networks)
        applied = pb.NetworkStateApplied(generation=state.generation)
        if not networks and not peers:
            await self._teardown()
            return applied

        await self._apply_mesh(state, peers)
        await trio.to_thread.run_sync(links.write_sysctl, "net/ipv4/ip_forward", "1")

        wanted_bridges = {bridge_name(n.network_id): n for n in networks}
        for name, spec in wanted_bridges.items():
            prefix = ipaddress.ip_network(spec.cidr).prefixlen
            await trio.to_thread.run_sync(
                links.ensure_bridge, name, f"{spec.gateway}/{prefix}"
            )

        local = [
            (spec, m)
            for spec in networks
            for m in spec.members
            if m.host_id == self.host_id
        ]
        wanted_veths = {host_veth_name(m.member_id) for _, m in local}
        for name in await trio.to_thread.run_sync(links.link_names, HOST_VETH_PREFIX):
            if name not in wanted_veths:
                await trio.to_thread.run_sync(links.delete_link, name)
                log.info("network veth %s: removed (member detached)", name)
        for name in await trio.to_thread.run_sync(links.link_names, BRIDGE_PREFIX):
            if name not in wanted_bridges:
                await trio.to_thread.run_sync(links.delete_link, name)
                log.info("network bridge %s: removed", name)

        attached_sandboxes: dict[str, list[pb.NetworkSpec]] = {}
        for spec, member in local:
            key = f"{spec.network_id}/{member.sandbox_id}"
            try:
                await self._attach(spec, member)
            except AgentError as exc:
                log.warning(
                    "sandbox %s: cannot attach to network %s: %s",
                    member.sandbox_id,
                    spec.network_id,
                    exc.message,
                )
                applied.failures.append(f"{key}: {exc.message}")
                continue
            applied.attachments.append(key)
            attached_sandboxes.setdefault(member.sandbox_id, []).append(spec)

        for sandbox_id, specs in attached_sandboxes.items():
            await self._write_resolv(sandbox_id, specs)
        await self._take_back_resolv(set(attached_sandboxes))

        await self._nftables().apply(ruleset.build_ruleset(networks))
        self.resolver.table = _name_table(networks)
        await self.resolver.listen_on(spec.gateway for spec in networks)
        log.info(
            "host %s: network state %d applied: %d networks, %d peers, %d local members",
            self.host_id,
            state.generation,
            len(networks),
            len(peers),
            len(applied.attachments),
        )
        return applied

    async def _apply_mesh(
        self, state: pb.NetworkState, peers: Sequence[pb.MeshPeer]
    ) -> None:
        if self._device is None:
            self._device = open_device(self.interface, self.mesh_dir)
        port = state.listen_port or self.settings.listen_port
        await self._device.up(self.keys.private_key, port, f"{state.mesh_address}/32")
        await self._device.set_peers(
            [
                PeerSettings(
                    p.public_key,
                    list(p.allowed_ips),
                    p.endpoint,
                    p.persistent_keepalive_s,
                )
                for p in peers
            ]
        )

    async def _attach(self, spec: pb.NetworkSpec, member: pb.NetworkMember) -> None:
        host_end = host_veth_name(member.member_id)
        if await trio.to_thread.run_sync(links.link_exists, host_end):
            return
        try:
            info = self._sandboxes.get(member.sandbox_id)
        except NotFound as exc:
            raise SandboxNotAttachable(
                f"sandbox {member.sandbox_id} does not exist on this host",
                resource_id=member.sandbox_id,
            ) from exc
        if info.state != "running" or not info.pid:
            raise SandboxNotAttachable(
                f"sandbox {member.sandbox_id} is {info.state}, not running",
                resource_id=member.sandbox_id,
            )
        pid = info.pid
        peer_end = peer_veth_name(member.member_id)

        def plumb() -> str:
            links.delete_link(peer_end)
            links.create_veth(host_end, peer_end, bridge_name(spec.network_id))
            try:
                links.move_to_namespace(peer_end, pid)
                return links.in_namespace_of(
                    pid,
                    lambda: links.configure_sandbox_link(
                        peer_end,
                        address=member.address,
                        gateway=spec.gateway,
                        network_cidr=spec.cidr,
                    ),
                )
            except BaseException:
                links.delete_link(host_end)
                raise

        inner = await trio.to_thread.run_sync(plumb)
        log.info(
            "sandbox %s: attached to network %s as %s (%s, %s)",
            member.sandbox_id,
            spec.name,
            member.address,
            inner,
            host_end,
        )

    async def _write_resolv(
        self, sandbox_id: str, specs: Sequence[pb.NetworkSpec]
    ) -> None:
        try:
            info = self._sandboxes.get(sandbox_id)
        except NotFound:
            return
        if not info.pid:
            return
        text = resolv_conf_text(specs[0].gateway, [s.name for s in specs])
        await trio.to_thread.run_sync(write_resolv_conf, info.pid, text, sandbox_id)
        self._resolv_written.add(sandbox_id)

    async def _take_back_resolv(self, still_attached: set[str]) -> None:
        for sandbox_id in sorted(self._resolv_written - still_attached):
            self._resolv_written.discard(sandbox_id)
            try:
                info = self._sandboxes.get(sandbox_id)
            except NotFound:
                continue
            if info.pid and await trio.to_thread.run_sync(remove_resolv_conf, info.pid):
                log.info(
                    "sandbox %s: left its last network; resolv.conf removed", sandbox_id
                )

    def _nftables(self) -> Nftables:
        if self._nft is None:
            self._nft = Nftables.locate()
        return self._nft

    async def _teardown(self) -> None:
        await self._take_back_resolv(set())
        await self.resolver.listen_on(())
        if self._nft is not None or await trio.to_thread.run_sync(
            links.link_names, BRIDGE_PREFIX
        ):
            await self._nftables().apply(ruleset.build_ruleset(()))
        for prefix in (HOST_VETH_PREFIX, BRIDGE_PREFIX):
            for name in await trio.to_thread.run_sync(links.link_names, prefix):
                await trio.to_thread.run_sync(links.delete_link, name)
        if self._device is not None:
            await self._device.down()
            self._device = None
            log.info("host %s: no networks left; mesh interface removed", self.host_id)

    async def _expire_peers(self) -> None:
        """Reapply the state when a peer in it expires."""
        while True:
            changed = self._state_changed
            now = time.time()
            expiries = [
                p.expires_at_unix
                for p in self._state.peers
                if p.expires_at_unix and p.expires_at_unix > now
            ]
            delay = min(expiries) - now + 0.05 if expiries else math.inf
            with trio.move_on_after(delay) as waited:
                await changed.wait()
            if waited.cancelled_caught:
                async with self._lock:
                    log.info("host %s: a mesh peer expired; removing it", self.host_id)
                    try:
                        await self._apply_locked(self._state)
                    except AgentError as exc:
                        log.warning(
                            "host %s: expiry apply failed: %s", self.host_id, exc
                        )

    # ---- diagnostics ------------------------------------------------------------------

    async def diagnose(self, network_id: str) -> pb.NetworkDiagnosis:
        """Read-only checks of one network from this host."""
        state = self._state
        diagnosis = pb.NetworkDiagnosis(
            host_id=self.host_id,
            network_id=network_id,
            mesh_address=state.mesh_address,
            interface=self.interface,
            implementation=self._device.kind if self._device else "",
        )
        spec = next((n for n in state.networks if n.network_id == network_id), None)
        if spec is None:
            return diagnosis

        member_hosts = {m.host_id for m in spec.members}
        status = None
        if self._device is not None and self._device.is_up():
            try:
                status = await self._device.status()
            except AgentError as exc:
                log.warning("host %s: cannot read mesh status: %s", self.host_id, exc)
        relevant = [
            p
            for p in state.peers
            if p.host_id in member_hosts
            or (p.join_id and p.mesh_address in spec.trusted_addresses)
        ]
        peer_checks = [
            pb.PeerCheck(
                public_key=p.public_key,
                host_id=p.host_id,
                join_id=p.join_id,
                endpoint=p.endpoint,
            )
            for p in relevant
        ]
        member_checks = [
            pb.MemberCheck(
                sandbox_id=m.sandbox_id, host_id=m.host_id, address=m.address
            )
            for m in spec.members
        ]
        alias_checks = [
            pb.AliasCheck(
                name=f"{alias}.{spec.name}.gstacks", expected_address=m.address
            )
            for m in spec.members
            for alias in m.aliases
        ]
        has_bridge = any(m.host_id == self.host_id for m in spec.members)

        async def check_peer(check: pb.PeerCheck, peer: pb.MeshPeer) -> None:
            seen = status.public_peers.get(peer.public_key) if status else None
            if seen is None:
                check.detail = "not configured on the mesh interface"
                return
            check.last_handshake_unix = int(seen.last_handshake_unix)
            if peer.host_id:
                rtt = await probes.ping(peer.mesh_address, PROBE_TIMEOUT_S)
                check.reachable = rtt is not None
                check.rtt_ms = rtt or 0.0
                if rtt is None:
                    check.detail = (
                        f"no echo reply from {peer.mesh_address} over the mesh"
                    )
            else:
                age = time.time() - seen.last_handshake_unix
                check.reachable = age < HANDSHAKE_FRESH_S
                if not check.reachable:
                    check.detail = "no recent handshake from the join client"

        async def check_member(check: pb.MemberCheck) -> None:
            rtt = await probes.ping(check.address, PROBE_TIMEOUT_S)
            check.reachable = rtt is not None
            check.rtt_ms = rtt or 0.0
            if rtt is None:
                where = (
                    "here" if check.host_id == self.host_id else f"on {check.host_id}"
                )
                check.detail = f"no echo reply from {check.address} ({where})"

        async def check_alias(check: pb.AliasCheck) -> None:
            answer = await probes.resolve(
                spec.gateway, check.name, PROBE_TIMEOUT_S, source=spec.gateway
            )
            if answer is None:
                check.detail = f"the resolver on {spec.gateway} did not answer"
                return
            rcode, addresses = answer
            check.resolved_address = addresses[0] if addresses else ""
            check.ok = check.resolved_address == check.expected_address
            if not check.ok:
                check.detail = f"rcode {rcode}, addresses {addresses}"

        async with trio.open_nursery() as nursery:
            for check, peer in zip(peer_checks, relevant, strict=True):
                nursery.start_soon(check_peer, check, peer)
            for check in member_checks:
                nursery.start_soon(check_member, check)
            if has_bridge:
                for check in alias_checks:
                    nursery.start_soon(check_alias, check)

        for source in spec.members:
            for target in spec.members:
                if target.host_id != self.host_id or target is source:
                    continue
                for port in target.ports:
                    verdict = ruleset.evaluate(
                        spec, source.address, target.address, port, "tcp"
                    )
                    diagnosis.policies.append(
                        pb.PolicyCheck(
                            from_sandbox_id=source.sandbox_id,
                            to_sandbox_id=target.sandbox_id,
                            port=port,
                            protocol="tcp",
                            verdict=verdict.verdict,
                            rule_id=verdict.rule_id,
                        )
                    )
        table = await self._nftables().table_text() if self._nft else ""
        diagnosis.rules_installed = f"ip daddr {spec.cidr}" in table
        diagnosis.peers.extend(peer_checks)
        diagnosis.members.extend(member_checks)
        if has_bridge:
            diagnosis.aliases.extend(alias_checks)
        return diagnosis


def _name_table(networks: Sequence[pb.NetworkSpec]) -> NameTable:
    table = NameTable()
    for spec in networks:
        aliases = {alias: m.address for m in spec.members for alias in m.aliases}
        table.add_network(spec.name, spec.gateway, aliases)
        for member in spec.members:
            table.add_member(member.address, spec.name, member.sandbox_id)
    return table
