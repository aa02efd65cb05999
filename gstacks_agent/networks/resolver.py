"""The DNS resolver the agent runs for its sandboxes.

How it works. Each network with a member on this host has a bridge holding the
network's gateway address; the resolver listens on UDP port 53 of every such
gateway, and a sandbox's /etc/resolv.conf names the gateway of its first network.
A question for `<alias>.<network>.gstacks` is answered from the `NameTable` built
from the latest network state, and only when the asker is a member of that network
(or the host itself): a sandbox cannot learn the names of a network it is not in.
Every other name under `.gstacks` is NXDOMAIN. Names outside `.gstacks` are
forwarded, as the original bytes, to the host's own resolver (the first nameserver
of the agent's /etc/resolv.conf, or the configured one), and the answer is relayed
unchanged; an upstream that does not answer within `FORWARD_TIMEOUT_S` yields
SERVFAIL.

Only UDP is served. Answers to our names are a few dozen bytes, far below the
512-byte limit that would make a client retry over TCP.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import trio

from gstacks_agent.networks import dns_message
from gstacks_agent.networks.errors import MalformedDnsMessage

log = logging.getLogger("gstacks.agent.networks.dns")

DNS_PORT = 53
DOMAIN = "gstacks"
FORWARD_TIMEOUT_S = 2.0
MAX_MESSAGE_BYTES = 4096


@dataclass(frozen=True)
class Lookup:
    """What to do with one question."""

    addresses: tuple[str, ...] = ()
    rcode: int = dns_message.RCODE_NOERROR
    forward: bool = False


@dataclass
class NameTable:
    """Names of the networks on this host and who may resolve them."""

    # network name -> alias -> address
    records: dict[str, dict[str, str]] = field(default_factory=dict)
    # member address -> names of the networks of its sandbox. A sandbox in two
    # networks asks the one resolver its resolv.conf names, from that network's
    # address, about names of either network.
    memberships: dict[str, set[str]] = field(default_factory=dict)
    # sandbox id -> its addresses, to share one sandbox's networks among them
    _addresses_of: dict[str, set[str]] = field(default_factory=dict)
    # Addresses of the host itself (gateways, loopback): they may resolve everything.
    host_addresses: frozenset[str] = frozenset({"127.0.0.1"})

    def add_network(self, name: str, gateway: str, aliases: Mapping[str, str]) -> None:
        self.records[name] = dict(aliases)
        self.host_addresses = self.host_addresses | {gateway}

    def add_member(self, address: str, network: str, sandbox_id: str = "") -> None:
        addresses = {address}
        if sandbox_id:
            addresses = self._addresses_of.setdefault(sandbox_id, set())
            addresses.add(address)
        networks = set().union(*(self.memberships.get(a, set()) for a in addresses))
        networks.add(network)
        for each in addresses:
            self.memberships[each] = networks

    def lookup(self, source: str, name: str, qtype: int) -> Lookup:
        name = name.rstrip(".").lower()
        if name != DOMAIN and not name.endswith("." + DOMAIN):
            return Lookup(forward=True)
        labels = name.split(".")
        if len(labels) != 3:
            return Lookup(rcode=dns_message.RCODE_NXDOMAIN)
        alias, network, _ = labels
        allowed = source in self.host_addresses or network in self.memberships.get(
            source, ()
        )
        address = self.records.get(network, {}).get(alias)
        if not allowed or address is None:
            return Lookup(rcode=dns_message.RCODE_NXDOMAIN)
        if qtype != dns_message.TYPE_A:
            # The name exists but has no record of that type (RFC 2308 NODATA).
            return Lookup()
        return Lookup(addresses=(address,))


def answer_locally(table: NameTable, source: str, query: bytes) -> bytes | None:
    """Our answer to `query`, or None when it must be forwarded (or dropped)."""
    try:
        question = dns_message.parse_question(query)
    except MalformedDnsMessage:
        return dns_message.build_error(query, dns_message.RCODE_FORMERR)
    found = table.lookup(source, question.name, question.qtype)
    if found.forward:
        return None
    return dns_message.build_answer(query, question, found.addresses, found.rcode)


def host_upstream(
    resolv_conf: Path = Path("/etc/resolv.conf"),
) -> tuple[str, int] | None:
    """The first nameserver of the host's resolv.conf, if any, with port 53."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                return str(ipaddress.ip_address(fields[1])), DNS_PORT
            except ValueError:
                continue
    return None


class Resolver:
    """UDP DNS servers on the gateways, all answering from one NameTable."""

    def __init__(self, upstream: tuple[str, int] | None) -> None:
        self.table = NameTable()
        self.upstream = upstream
        self._listeners: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    @property
    def gateways(self) -> list[str]:
        return sorted(self._listeners)

    async def listen_on(self, gateways: Iterable[str]) -> None:
        """Serve exactly `gateways`; each must already be an address of this host."""
        assert self._nursery is not None, "the resolver is not serving"
        wanted = set(gateways)
        for gateway in set(self._listeners) - wanted:
            self._listeners.pop(gateway).cancel()
            log.info("dns: stopped listening on %s", gateway)
        for gateway in sorted(wanted - set(self._listeners)):
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await sock.bind((gateway, DNS_PORT))
            scope = trio.CancelScope()
            self._listeners[gateway] = scope
            self._nursery.start_soon(self._serve_socket, sock, scope, gateway)
            log.info("dns: listening on %s:%d", gateway, DNS_PORT)

    async def _serve_socket(
        self, sock: trio.socket.SocketType, scope: trio.CancelScope, gateway: str
    ) -> None:
        with sock, scope:
            async with trio.open_nursery() as nursery:
                while True:
                    query, (source, port) = await sock.recvfrom(MAX_MESSAGE_BYTES)
                    reply = answer_locally(self.table, source, query)
                    if reply is not None:
                        await sock.sendto(reply, (source, port))
                    else:
                        nursery.start_soon(self._forward, sock, query, (source, port))

    async def _forward(
        self, sock: trio.socket.SocketType, query: bytes, client: tuple[str, int]
    ) -> None:
        reply = None
        if self.upstream is not None:
            with trio.move_on_after(FORWARD_TIMEOUT_S):
                upstream = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                with upstream:
                    await upstream.connect(self.upstream)
                    await upstream.send(query)
                    while True:
                        candidate = await upstream.recv(MAX_MESSAGE_BYTES)
                        # The answer must be to our question: same message id.
                        if candidate[:2] == query[:2]:
                            reply = candidate
                            break
        if reply is None:
            log.debug("dns: upstream %s gave no answer for %s", self.upstream, client)
            reply = dns_message.build_error(query, dns_message.RCODE_SERVFAIL)
        if reply is not None:
            await sock.sendto(reply, client)
