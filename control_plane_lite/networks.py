"""Runtime networks: records, members and aliases, policies, and their realization.

How it works. A network is a tenant's named address range (`cidr`); its first host
address is the gateway every host gives the network's bridge. Attaching a sandbox
makes it a member: the next free address of the range, its aliases (DNS labels,
unique within the network, resolving as `<alias>.<network>.gstacks`) and the ports
it publishes. Policies are an ordered list of allow/deny rules between members
(`*`, an alias or a sandbox id) on ports; the first match decides, and anything no
rule matches is allowed within the network. Nothing crosses between networks.

Realization is by whole state, not by steps. For each host, `state_for` computes
everything it must have: its mesh address, its peers (the other hosts that carry a
network it carries, each allowed that host's members, and the join clients of those
networks), and each network it carries with all members and resolved policies. Any
change pushes the new state to the hosts it concerns; a host that was away gets its
state when it says hello again. So nothing a host missed is ever lost, and sending
the same state twice changes nothing.

Attach is the one change that must be confirmed: the member's record is written,
the state pushed to the sandbox's host, and only if that host reports the member
attached is the change kept and pushed to the other hosts. Otherwise the record is
deleted, the host gets its previous state back, and the caller gets the error:
nothing is left half-applied. Members of sandboxes that ended are dropped by the
maintenance loop (`run`), which also retires expired mesh-join credentials.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

import trio

from control_plane_lite import ids
from control_plane_lite.agent_hub import AgentHub
from control_plane_lite.auth import Principal
from control_plane_lite.clock import now_rfc3339, rfc3339
from control_plane_lite.errors import (
    AgentFailed,
    Conflict,
    HostUnavailable,
    InvalidRequest,
    NotFound,
)
from control_plane_lite.mesh import (
    DEFAULT_JOIN_TTL_S,
    MAX_JOIN_TTL_S,
    MIN_JOIN_TTL_S,
    PERSISTENT_KEEPALIVE_S,
    JoinPeer,
    MeshService,
)
from control_plane_lite.sandboxes import SandboxService
from control_plane_lite.store import Store
from gstacks_proto import pb
from gstacks_proto.rpc_peer import RemoteError

log = logging.getLogger("gstacks.cp.networks")

DOMAIN = "gstacks"
# Default ranges come from here, one /24 per network.
DEFAULT_POOL = ipaddress.ip_network("10.88.0.0/14")
MIN_PREFIX, MAX_PREFIX = 16, 28
RESERVED = (
    ipaddress.ip_network("100.64.0.0/10"),  # the mesh
    ipaddress.ip_network("198.18.0.0/15"),  # benchmark and lab underlays
    ipaddress.ip_network("127.0.0.0/8"),
)
PRIVATE_SPACE = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
MAX_ALIASES = 16
MAX_PORTS = 32
MAX_RULES = 100
APPLY_TIMEOUT_S = 60.0
DIAGNOSE_TIMEOUT_S = 20.0
MAINTENANCE_INTERVAL_S = 1.0
LIVE_SANDBOX = ("creating", "running")

CREATE_FIELDS = frozenset({"name", "cidr", "description"})
ATTACH_FIELDS = frozenset({"aliases", "ports"})
RULE_FIELDS = frozenset({"action", "from", "to", "ports", "protocol", "description"})
# A stored rule's own columns, as opposed to its row's id, network and position.
RULE_COLUMNS = frozenset(
    {"action", "from_selector", "to_selector", "ports", "protocol", "description"}
)
JOIN_FIELDS = frozenset({"ttl_s"})

_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SANDBOX_ID_RE = re.compile(r"^sbx_[0-9a-f]{16}$")
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CIDR_RE = re.compile(rf"^({_OCTET}\.){{3}}{_OCTET}/[0-9]{{1,2}}$")


def network_record(row: dict[str, Any], member_count: int) -> dict[str, Any]:
    """The API's shape of a network."""
    return {
        "id": row["id"],
        "name": row["name"],
        "cidr": row["cidr"],
        "gateway": row["gateway"],
        "domain": f"{row['name']}.{DOMAIN}",
        "description": row["description"],
        "member_count": member_count,
        "created_at": row["created_at"],
    }


def member_record(row: dict[str, Any], network_name: str) -> dict[str, Any]:
    """The API's shape of a member."""
    return {
        "id": row["id"],
        "network_id": row["network_id"],
        "sandbox_id": row["sandbox_id"],
        "host_id": row["host_id"],
        "address": row["address"],
        "aliases": row["aliases"],
        "names": [f"{a}.{network_name}.{DOMAIN}" for a in row["aliases"]],
        "ports": row["ports"],
        "created_at": row["created_at"],
    }


def policy_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "action": row["action"],
        "from": row["from_selector"],
        "to": row["to_selector"],
        "ports": row["ports"],
        "protocol": row["protocol"] or None,
        "description": row["description"],
    }


def _check_label(value: object, what: str) -> str:
    if not isinstance(value, str) or not _LABEL_RE.match(value):
        raise InvalidRequest(
            f"{what} must be a DNS label (lowercase letters, digits, '-', at most "
            f"63 characters), not {value!r}"
        )
    return value


def _check_ports(value: object, what: str) -> list[int]:
    if not isinstance(value, list) or len(value) > MAX_PORTS:
        raise InvalidRequest(f"{what} must be a list of at most {MAX_PORTS} ports")
    ports = []
    for port in value:
        if (
            isinstance(port, bool)
            or not isinstance(port, int)
            or not 1 <= port <= 65535
        ):
            raise InvalidRequest(f"{what} must hold ports 1..65535, not {port!r}")
        ports.append(port)
    return sorted(set(ports))


def _check_selector(value: object, what: str) -> str:
    if value == "*" or (
        isinstance(value, str)
        and (_LABEL_RE.match(value) or _SANDBOX_ID_RE.match(value))
    ):
        return str(value)
    raise InvalidRequest(f"{what} must be '*', an alias or a sandbox id, not {value!r}")


def _check_fields(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown fields: {', '.join(unknown)}", fields=unknown)


class NetworkService:
    """Networks of every tenant, and the state each host must have for them."""

    def __init__(
        self,
        store: Store,
        hub: AgentHub,
        sandboxes: SandboxService,
        mesh: MeshService,
    ) -> None:
        self._store = store
        self._hub = hub
        self._sandboxes = sandboxes
        self.mesh = mesh
        self._nursery: trio.Nursery | None = None
        self._host_locks: dict[str, trio.Lock] = {}
        self._generation = time.time_ns() // 1000

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Own background pushes; retire expired joins and ended members."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(MAINTENANCE_INTERVAL_S)
                changed = {
                    host
                    for network_id in self.mesh.remove_expired()
                    for host in self._hosts_of(network_id)
                }
                changed |= self._prune_ended_members()
                if changed:
                    self._push_soon(changed)

    # ---- records ----------------------------------------------------------------------

    def _members(self, network_id: str) -> list[dict[str, Any]]:
        return self._store.select("network_members", network_id=network_id)

    def _hosts_of(self, network_id: str) -> set[str]:
        return {m["host_id"] for m in self._members(network_id)}

    def _prune_ended_members(self) -> set[str]:
        """Drop members whose sandbox is gone; the hosts whose state changed."""
        hosts: set[str] = set()
        for member in self._store.select("network_members"):
            sandbox = self._store.get("sandboxes", member["sandbox_id"])
            if sandbox is None or sandbox["status"] not in LIVE_SANDBOX:
                self._store.delete("network_members", member["id"])
                hosts |= self._hosts_of(member["network_id"]) | {member["host_id"]}
                log.info(
                    "network %s: member %s left (sandbox %s ended)",
                    member["network_id"],
                    member["id"],
                    member["sandbox_id"],
                )
        return hosts

    def get(self, principal: Principal, ref: str) -> dict[str, Any]:
        """A network by id or name; NotFound for another tenant's."""
        row = self._store.get("networks", ref)
        if row is None:
            row = self._store.find_one(
                "networks", tenant_id=principal.tenant_id, name=ref
            )
        if row is None or row["tenant_id"] != principal.tenant_id:
            raise NotFound(f"network {ref} does not exist", network_id=ref)
        return row

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        return network_record(
            row, self._store.count("network_members", network_id=row["id"])
        )

    def list(
        self, principal: Principal, limit: int, after_id: str | None
    ) -> list[dict[str, Any]]:
        return self._store.select(
            "networks", tenant_id=principal.tenant_id, limit=limit, after_id=after_id
        )

    def create(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """Validate and record a network; its range must not overlap another."""
        _check_fields(body, CREATE_FIELDS)
        name = _check_label(body.get("name"), "name")
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > 500:
            raise InvalidRequest(
                "description must be a string of at most 500 characters"
            )
        existing = [
            ipaddress.ip_network(r["cidr"]) for r in self._store.select("networks")
        ]
        if self._store.find_one("networks", tenant_id=principal.tenant_id, name=name):
            raise Conflict(f"a network named {name!r} already exists", name=name)
        if body.get("cidr") is None:
            cidr = next(
                (
                    c
                    for c in DEFAULT_POOL.subnets(new_prefix=24)
                    if not any(c.overlaps(e) for e in existing)
                ),
                None,
            )
            if cidr is None:
                raise Conflict("no free /24 is left in the default pool; give a cidr")
        else:
            cidr = self._check_cidr(body["cidr"], existing)
        gateway = str(next(cidr.hosts()))
        try:
            row = self._store.insert(
                "networks",
                {
                    "id": ids.new_id("network"),
                    "tenant_id": principal.tenant_id,
                    "name": name,
                    "cidr": str(cidr),
                    "gateway": gateway,
                    "description": description,
                    "created_at": now_rfc3339(),
                },
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(
                f"a network named {name!r} already exists", name=name
            ) from exc
        log.info("network %s: created %s as %s", row["id"], name, cidr)
        return row

    def _check_cidr(
        self, value: object, existing: list[ipaddress.IPv4Network]
    ) -> ipaddress.IPv4Network:
        try:
            # Host bits are dropped: 10.90.0.7/24 means 10.90.0.0/24.
            cidr = (
                ipaddress.ip_network(value, strict=False)
                if isinstance(value, str) and _CIDR_RE.match(value)
                else None
            )
        except ValueError:
            cidr = None
        if not isinstance(cidr, ipaddress.IPv4Network):
            raise InvalidRequest(
                f"cidr must be an IPv4 network such as 10.90.0.0/24, not {value!r}"
            )
        if not MIN_PREFIX <= cidr.prefixlen <= MAX_PREFIX:
            raise InvalidRequest(
                f"cidr must be a /{MIN_PREFIX} to a /{MAX_PREFIX}, not /{cidr.prefixlen}"
            )
        for reserved in RESERVED:
            if cidr.overlaps(reserved):
                raise Conflict(
                    f"cidr {cidr} overlaps the reserved range {reserved}",
                    cidr=str(cidr),
                    overlaps=str(reserved),
                )
        # Sandboxes need private unicast addresses (RFC 1918). Anything else may be
        # special (link-local, multicast, documentation, "this network") or routed
        # elsewhere by the host: a documentation range was this lab VM's own LAN.
        if not any(cidr.subnet_of(space) for space in PRIVATE_SPACE):
            raise Conflict(
                f"cidr {cidr} is not private address space; use a range within "
                "10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
            )
        clash = next((e for e in existing if cidr.overlaps(e)), None)
        if clash is not None:
            raise Conflict(
                f"cidr {cidr} overlaps the range {clash} of another network",
                cidr=str(cidr),
                overlaps=str(clash),
            )
        return cidr

    def delete(self, principal: Principal, ref: str) -> dict[str, Any]:
        """Delete a network without members, with its policies and join credentials."""
        row = self.get(principal, ref)
        # Members of sandboxes deleted a moment ago must not hold the network.
        hosts = self._prune_ended_members()
        if hosts:
            self._push_soon(hosts)
        members = self._members(row["id"])
        if members:
            raise Conflict(
                f"network {row['id']} still has {len(members)} members; detach them first",
                network_id=row["id"],
                member_count=len(members),
            )
        for policy in self._store.select("network_policies", network_id=row["id"]):
            self._store.delete("network_policies", policy["id"])
        self.mesh.forget_network(row["id"])
        self._store.delete("networks", row["id"])
        log.info("network %s: deleted", row["id"])
        return row

    def members(self, principal: Principal, ref: str) -> list[dict[str, Any]]:
        network = self.get(principal, ref)
        return [member_record(m, network["name"]) for m in self._members(network["id"])]

    def routes(self, principal: Principal, ref: str) -> list[dict[str, Any]]:
        """Every published alias of the network, with its address and ports."""
        network = self.get(principal, ref)
        return [
            {
                "alias": alias,
                "name": f"{alias}.{network['name']}.{DOMAIN}",
                "address": m["address"],
                "ports": m["ports"],
                "sandbox_id": m["sandbox_id"],
                "host_id": m["host_id"],
                "member_id": m["id"],
            }
            for m in self._members(network["id"])
            for alias in m["aliases"]
        ]

    def policies(self, principal: Principal, ref: str) -> list[dict[str, Any]]:
        network = self.get(principal, ref)
        return self._policy_rows(network["id"])

    def _policy_rows(self, network_id: str) -> list[dict[str, Any]]:
        """The network's rules in order, as stored."""
        return self._store.select(
            "network_policies", network_id=network_id, order="position"
        )

    async def set_policies(
        self, principal: Principal, ref: str, body: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Replace the network's rules with `body["rules"]`, in order, and enforce them."""
        network = self.get(principal, ref)
        _check_fields(body, frozenset({"rules"}))
        rules = body.get("rules")
        if not isinstance(rules, list) or len(rules) > MAX_RULES:
            raise InvalidRequest(f"rules must be a list of at most {MAX_RULES} rules")
        checked = []
        for index, rule in enumerate(rules):
            what = f"rules[{index}]"
            if not isinstance(rule, dict):
                raise InvalidRequest(f"{what} must be an object")
            _check_fields(rule, RULE_FIELDS)
            action = rule.get("action")
            if action not in ("allow", "deny"):
                raise InvalidRequest(
                    f"{what}.action must be allow or deny, not {action!r}"
                )
            protocol = rule.get("protocol")
            if protocol is None:
                protocol = ""  # both
            elif protocol not in ("tcp", "udp"):
                raise InvalidRequest(
                    f"{what}.protocol must be tcp or udp, not {protocol!r}"
                )
            description = rule.get("description", "")
            if not isinstance(description, str) or len(description) > 200:
                raise InvalidRequest(
                    f"{what}.description must be at most 200 characters"
                )
            checked.append(
                {
                    "action": action,
                    "from_selector": _check_selector(
                        rule.get("from", "*"), f"{what}.from"
                    ),
                    "to_selector": _check_selector(rule.get("to", "*"), f"{what}.to"),
                    "ports": _check_ports(rule.get("ports", []), f"{what}.ports"),
                    "protocol": protocol,
                    "description": description,
                }
            )

        previous = self._policy_rows(network["id"])
        self._replace_rules(network["id"], checked)
        refusals = await self._push_strict(self._hosts_of(network["id"]))
        if refusals:
            # Nothing half-applied: the old rules go back, to the hosts too.
            self._replace_rules(
                network["id"],
                [{k: v for k, v in r.items() if k in RULE_COLUMNS} for r in previous],
            )
            with trio.CancelScope(shield=True):
                await self._push(self._hosts_of(network["id"]))
            raise AgentFailed(
                f"the new rules were not enforced: {'; '.join(refusals)}",
                network_id=network["id"],
            )
        log.info("network %s: %d policy rules set", network["id"], len(checked))
        return self._policy_rows(network["id"])

    def _replace_rules(self, network_id: str, rules: list[dict[str, Any]]) -> None:
        for old in self._policy_rows(network_id):
            self._store.delete("network_policies", old["id"])
        now = now_rfc3339()
        for position, rule in enumerate(rules):
            self._store.insert(
                "network_policies",
                {
                    "id": ids.new_id("network_policy"),
                    "network_id": network_id,
                    "position": position,
                    "created_at": now,
                    **rule,
                },
            )

    # ---- members ----------------------------------------------------------------------

    async def attach(
        self, principal: Principal, sandbox_id: str, ref: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Attach a sandbox (or change its aliases and ports); True if it is new."""
        sandbox = self._sandboxes.get(principal, sandbox_id)
        network = self.get(principal, ref)
        _check_fields(body, ATTACH_FIELDS)
        raw_aliases = body.get("aliases", [])
        if not isinstance(raw_aliases, list) or len(raw_aliases) > MAX_ALIASES:
            raise InvalidRequest(
                f"aliases must be a list of at most {MAX_ALIASES} labels"
            )
        aliases = [_check_label(a, "each alias") for a in raw_aliases]
        if len(set(aliases)) != len(aliases):
            raise InvalidRequest("aliases must not repeat", aliases=aliases)
        ports = _check_ports(body.get("ports", []), "ports")
        if sandbox["status"] != "running" or not sandbox["host_id"]:
            raise Conflict(
                f"sandbox {sandbox_id} is {sandbox['status']}; only a running sandbox "
                "can be attached",
                sandbox_id=sandbox_id,
                status=sandbox["status"],
            )
        host_id = sandbox["host_id"]
        if self.mesh.host(host_id) is None:
            raise Conflict(
                f"host {host_id} has not reported a mesh key; it cannot carry networks",
                host_id=host_id,
            )

        members = self._members(network["id"])
        existing = next((m for m in members if m["sandbox_id"] == sandbox_id), None)
        for other in members:
            if other is existing:
                continue
            taken = sorted(set(aliases) & set(other["aliases"]))
            if taken:
                raise Conflict(
                    f"alias {taken[0]!r} is already published in network "
                    f"{network['name']} by sandbox {other['sandbox_id']}",
                    alias=taken[0],
                    sandbox_id=other["sandbox_id"],
                )

        if existing is not None:
            self._store.update(
                "network_members", existing["id"], aliases=aliases, ports=ports
            )
            refusals = await self._push_strict(self._hosts_of(network["id"]))
            if refusals:
                self._store.update(
                    "network_members",
                    existing["id"],
                    aliases=existing["aliases"],
                    ports=existing["ports"],
                )
                with trio.CancelScope(shield=True):
                    await self._push(self._hosts_of(network["id"]))
                raise AgentFailed(
                    f"the new aliases and ports were not applied: {'; '.join(refusals)}",
                    sandbox_id=sandbox_id,
                )
            row = self._store.get("network_members", existing["id"])
            assert row is not None
            return member_record(row, network["name"]), False

        address = self._free_address(network, members)
        row = self._store.insert(
            "network_members",
            {
                "id": ids.new_id("network_member"),
                "network_id": network["id"],
                "sandbox_id": sandbox_id,
                "host_id": host_id,
                "address": address,
                "aliases": aliases,
                "ports": ports,
                "created_at": now_rfc3339(),
            },
        )
        try:
            applied = await self._apply_on(host_id)
            key = f"{network['id']}/{sandbox_id}"
            if key not in applied.attachments:
                reason = next(
                    (
                        f.partition(": ")[2]
                        for f in applied.failures
                        if f.startswith(key)
                    ),
                    "the agent did not attach it",
                )
                raise AgentFailed(
                    f"host {host_id} could not attach sandbox {sandbox_id}: {reason}",
                    host_id=host_id,
                    sandbox_id=sandbox_id,
                )
        except Exception:
            # Nothing half-applied: forget the member and give the host back its state.
            self._store.delete("network_members", row["id"])
            with trio.CancelScope(shield=True):
                await self._push({host_id})
            raise
        log.info(
            "network %s: sandbox %s attached as %s %s",
            network["id"],
            sandbox_id,
            address,
            aliases,
        )
        self._push_soon(self._hosts_of(network["id"]) - {host_id})
        return member_record(row, network["name"]), True

    def _free_address(self, network: dict[str, Any], members: Iterable[dict]) -> str:
        used = {m["address"] for m in members} | {network["gateway"]}
        for address in ipaddress.ip_network(network["cidr"]).hosts():
            if str(address) not in used:
                return str(address)
        raise Conflict(f"network {network['name']} has no free address left")

    async def detach(
        self, principal: Principal, sandbox_id: str, ref: str
    ) -> dict[str, Any]:
        """Remove the sandbox from the network; its host drops the veth and names."""
        self._sandboxes.get(principal, sandbox_id)
        network = self.get(principal, ref)
        member = self._store.find_one(
            "network_members", network_id=network["id"], sandbox_id=sandbox_id
        )
        if member is None:
            raise NotFound(
                f"sandbox {sandbox_id} is not attached to network {network['name']}",
                sandbox_id=sandbox_id,
                network_id=network["id"],
            )
        hosts = self._hosts_of(network["id"])
        self._store.delete("network_members", member["id"])
        log.info("network %s: sandbox %s detached", network["id"], sandbox_id)
        await self._push(hosts)
        return member_record(member, network["name"])

    # ---- mesh join and diagnostics ----------------------------------------------------

    async def mesh_join(
        self, principal: Principal, ref: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        network = self.get(principal, ref)
        _check_fields(body, JOIN_FIELDS)
        ttl_s = body.get("ttl_s", DEFAULT_JOIN_TTL_S)
        if (
            isinstance(ttl_s, bool)
            or not isinstance(ttl_s, int)
            or not MIN_JOIN_TTL_S <= ttl_s <= MAX_JOIN_TTL_S
        ):
            raise InvalidRequest(
                f"ttl_s must be an integer from {MIN_JOIN_TTL_S} to {MAX_JOIN_TTL_S}, "
                f"not {ttl_s!r}"
            )
        peers = []
        members = self._members(network["id"])
        for host_id in sorted({m["host_id"] for m in members}):
            host = self.mesh.host(host_id)
            if host is None or not host["endpoint"]:
                continue
            allowed = [f"{m['address']}/32" for m in members if m["host_id"] == host_id]
            peers.append(
                JoinPeer(host_id, host["public_key"], host["endpoint"], allowed)
            )
        if not peers:
            raise Conflict(
                f"network {network['name']} has no members on a mesh host to reach",
                network_id=network["id"],
            )
        credential = self.mesh.issue_join(principal, network["id"], ttl_s, peers)
        await self._push({p.host_id for p in peers})
        return credential

    async def diagnostics(self, principal: Principal, ref: str) -> dict[str, Any]:
        """Ask every host that carries the network to check it; one report per host."""
        network = self.get(principal, ref)
        reports: dict[str, dict[str, Any]] = {}

        async def diagnose(host_id: str) -> None:
            host = self._store.get("hosts", host_id) or {}
            report: dict[str, Any] = {"host_id": host_id, "status": "ok", "error": None}
            reports[host_id] = report
            if not self._hub.is_connected(host_id):
                report["status"] = "unreachable"
                report["error"] = (
                    f"host {host_id} is not connected (last seen "
                    f"{host.get('last_seen_at') or 'never'})"
                )
                return
            request = pb.Envelope(
                network_diagnose=pb.NetworkDiagnose(network_id=network["id"])
            )
            try:
                reply = await self._hub.request(
                    host_id, request, timeout_s=DIAGNOSE_TIMEOUT_S
                )
            except (HostUnavailable, RemoteError, trio.TooSlowError) as exc:
                report["status"] = "unreachable"
                report["error"] = f"host {host_id} did not answer: {exc}"
                return
            report.update(_diagnosis_record(reply.network_diagnosis))
            if not _healthy(report):
                report["status"] = "degraded"

        async with trio.open_nursery() as nursery:
            for host_id in sorted(self._hosts_of(network["id"])):
                nursery.start_soon(diagnose, host_id)
        hosts = [reports[h] for h in sorted(reports)]
        down = sorted(h["host_id"] for h in hosts if h["status"] == "unreachable")
        for report in hosts:
            for peer in report.get("peers", []):
                if (
                    peer["host_id"]
                    and not peer["reachable"]
                    and peer["host_id"] not in down
                ):
                    down.append(peer["host_id"])
        return {
            "network_id": network["id"],
            "checked_at": now_rfc3339(),
            "healthy": all(h["status"] == "ok" for h in hosts),
            "down_hosts": sorted(set(down)),
            "hosts": hosts,
        }

    # ---- state for hosts --------------------------------------------------------------

    async def agent_connected(self, host_id: str, hello: pb.AgentHello) -> None:
        """Record the host's mesh key; send it its state, and its peers theirs."""
        changed = self.mesh.host_reported(
            host_id, hello.mesh_public_key, hello.endpoint
        )
        affected = {host_id}
        if changed:
            for network_id in self._networks_of_host(host_id):
                affected |= self._hosts_of(network_id)
        self._push_soon(affected)

    def _networks_of_host(self, host_id: str) -> set[str]:
        return {
            m["network_id"]
            for m in self._store.select("network_members", host_id=host_id)
        }

    def state_for(self, host_id: str) -> pb.NetworkState:
        """Everything `host_id` must have for the networks it carries."""
        self._generation += 1
        mesh_row = self.mesh.host(host_id)
        state = pb.NetworkState(
            generation=self._generation,
            mesh_address=mesh_row["mesh_address"] if mesh_row else "",
        )
        if mesh_row is None:
            return state

        peer_allowed: dict[str, list[str]] = {}
        joins: list[dict[str, Any]] = []
        for network_id in sorted(self._networks_of_host(host_id)):
            network = self._store.get("networks", network_id)
            if network is None:
                continue
            members = self._members(network_id)
            hosts = sorted({m["host_id"] for m in members})
            network_joins = self.mesh.live_joins(network_id)
            joins += network_joins
            host_addresses = [
                row["mesh_address"] for h in hosts if (row := self.mesh.host(h))
            ]
            state.networks.append(
                pb.NetworkSpec(
                    network_id=network_id,
                    name=network["name"],
                    cidr=network["cidr"],
                    gateway=network["gateway"],
                    members=[
                        pb.NetworkMember(
                            member_id=m["id"],
                            sandbox_id=m["sandbox_id"],
                            host_id=m["host_id"],
                            address=m["address"],
                            aliases=m["aliases"],
                            ports=m["ports"],
                        )
                        for m in members
                    ],
                    policies=self._resolved_rules(network_id, members),
                    trusted_addresses=sorted(
                        {*host_addresses, *(j["mesh_address"] for j in network_joins)}
                    ),
                )
            )
            for m in members:
                if m["host_id"] != host_id:
                    peer_allowed.setdefault(m["host_id"], []).append(
                        f"{m['address']}/32"
                    )

        for peer_id, allowed in sorted(peer_allowed.items()):
            row = self.mesh.host(peer_id)
            if row is None:
                continue
            state.peers.append(
                pb.MeshPeer(
                    public_key=row["public_key"],
                    endpoint=row["endpoint"],
                    allowed_ips=[f"{row['mesh_address']}/32", *sorted(set(allowed))],
                    host_id=peer_id,
                    persistent_keepalive_s=PERSISTENT_KEEPALIVE_S,
                    mesh_address=row["mesh_address"],
                )
            )
        for join in joins:
            state.peers.append(
                pb.MeshPeer(
                    public_key=join["public_key"],
                    allowed_ips=[f"{join['mesh_address']}/32"],
                    join_id=join["id"],
                    expires_at_unix=int(join["expires_at"]) + 1,
                    mesh_address=join["mesh_address"],
                )
            )
        return state

    def _resolved_rules(
        self, network_id: str, members: list[dict[str, Any]]
    ) -> list[pb.NetworkPolicyRule]:
        def addresses(selector: str) -> list[str] | None:
            if selector == "*":
                return []
            found = [
                f"{m['address']}/32"
                for m in members
                if selector in m["aliases"] or selector == m["sandbox_id"]
            ]
            return found or None

        rules = []
        for row in self._policy_rows(network_id):
            sources, targets = (
                addresses(row["from_selector"]),
                addresses(row["to_selector"]),
            )
            if sources is None or targets is None:
                continue  # a selector that names no member matches nothing
            rules.append(
                pb.NetworkPolicyRule(
                    rule_id=row["id"],
                    action=row["action"],
                    from_addresses=sources,
                    to_addresses=targets,
                    ports=row["ports"],
                    protocol=row["protocol"],
                    from_selector=row["from_selector"],
                    to_selector=row["to_selector"],
                )
            )
        return rules

    def _lock(self, host_id: str) -> trio.Lock:
        return self._host_locks.setdefault(host_id, trio.Lock())

    async def _apply_on(self, host_id: str) -> pb.NetworkStateApplied:
        """Send the host its state now and wait for it to be applied."""
        async with self._lock(host_id):
            state = self.state_for(host_id)
            try:
                reply = await self._hub.request(
                    host_id, pb.Envelope(network_state=state), timeout_s=APPLY_TIMEOUT_S
                )
            except RemoteError as exc:
                raise AgentFailed(
                    f"host {host_id} refused its network state: {exc.message}",
                    host_id=host_id,
                ) from exc
            except trio.TooSlowError as exc:
                raise AgentFailed(
                    f"host {host_id} did not apply its network state in time",
                    host_id=host_id,
                ) from exc
            return reply.network_state_applied

    async def _push(self, host_ids: Iterable[str]) -> None:
        """Send each connected host its state; failures are logged, not raised."""
        async with trio.open_nursery() as nursery:
            for host_id in sorted(set(host_ids)):
                nursery.start_soon(self._push_one, host_id)

    async def _push_one(self, host_id: str) -> None:
        if not self._hub.is_connected(host_id):
            log.info(
                "host %s: not connected; it gets its network state on hello", host_id
            )
            return
        try:
            applied = await self._apply_on(host_id)
        except (AgentFailed, HostUnavailable) as exc:
            log.warning("host %s: network state not applied: %s", host_id, exc.message)
            return
        for failure in applied.failures:
            log.warning("host %s: %s", host_id, failure)

    async def _push_strict(self, host_ids: Iterable[str]) -> list[str]:
        """Send each connected host its state; what each refusal said.

        For changes the caller is told about: a host that refuses means the change is
        not in force there. Hosts that are not connected get it on their next hello.
        """
        refusals: list[str] = []

        async def push(host_id: str) -> None:
            if not self._hub.is_connected(host_id):
                return
            try:
                await self._apply_on(host_id)
            except (AgentFailed, HostUnavailable) as exc:
                refusals.append(exc.message)

        async with trio.open_nursery() as nursery:
            for host_id in sorted(set(host_ids)):
                nursery.start_soon(push, host_id)
        return refusals

    def _push_soon(self, host_ids: Iterable[str]) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._push, set(host_ids))


def _healthy(report: dict[str, Any]) -> bool:
    return (
        all(p["reachable"] for p in report.get("peers", []))
        and all(m["reachable"] for m in report.get("members", []))
        and all(a["ok"] for a in report.get("aliases", []))
        and report.get("rules_installed", False)
    )


def _diagnosis_record(diagnosis: pb.NetworkDiagnosis) -> dict[str, Any]:
    return {
        "mesh_address": diagnosis.mesh_address or None,
        "interface": diagnosis.interface,
        "implementation": diagnosis.implementation or None,
        "rules_installed": diagnosis.rules_installed,
        "peers": [
            {
                "host_id": p.host_id or None,
                "join_id": p.join_id or None,
                "public_key": p.public_key,
                "endpoint": p.endpoint or None,
                "last_handshake_at": rfc3339(p.last_handshake_unix)
                if p.last_handshake_unix
                else None,
                "handshake_age_s": round(time.time() - p.last_handshake_unix, 1)
                if p.last_handshake_unix
                else None,
                "reachable": p.reachable,
                "rtt_ms": round(p.rtt_ms, 3) if p.reachable else None,
                "detail": p.detail or None,
            }
            for p in diagnosis.peers
        ],
        "members": [
            {
                "sandbox_id": m.sandbox_id,
                "host_id": m.host_id,
                "address": m.address,
                "reachable": m.reachable,
                "rtt_ms": round(m.rtt_ms, 3) if m.reachable else None,
                "detail": m.detail or None,
            }
            for m in diagnosis.members
        ],
        "aliases": [
            {
                "name": a.name,
                "expected_address": a.expected_address,
                "resolved_address": a.resolved_address or None,
                "ok": a.ok,
                "detail": a.detail or None,
            }
            for a in diagnosis.aliases
        ],
        "policies": [
            {
                "from_sandbox_id": p.from_sandbox_id,
                "to_sandbox_id": p.to_sandbox_id,
                "port": p.port,
                "protocol": p.protocol,
                "verdict": p.verdict,
                "rule_id": p.rule_id or None,
            }
            for p in diagnosis.policies
        ],
    }
