"""The nftables ruleset that isolates networks and enforces their policies.

How it works. One table, `inet gstacks`, holds everything; it is replaced as a whole
in one nft transaction (`table` / `delete table` / `table {...}`), so a host never
runs half of an old and half of a new ruleset. Its chains hook `forward` (traffic
routed between sandboxes, bridges and the mesh) and `input` (traffic from sandboxes
to the host itself), both with policy accept: packets that are none of our business
pass, so the host's own firewall keeps working.

For each network, in the forward chain:

1. replies of allowed connections pass (`ct state established,related`);
2. nothing enters the network's range from outside it: the source must be in the
   range or one of its trusted mesh addresses (mesh-join clients, member hosts);
3. nothing leaves it for anywhere but those same addresses: no traffic across
   networks, none out of the cluster;
4. the network's policy rules, in order; the first that matches decides;
5. anything else inside the network is allowed.

In the input chain a sandbox may reach its gateway for DNS and ping, nothing else on
the host. A denial is a `reject` (ICMP administratively prohibited), so a client
fails at once instead of waiting for a timeout.

`evaluate` is the same decision in Python, for diagnostics: it says which rule
decides a connection without sending one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from gstacks_agent.networks.names import NFT_TABLE, bridge_name
from gstacks_proto import pb

REJECT = "reject with icmpx admin-prohibited"


def _set(items: Sequence[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def _inside(spec: pb.NetworkSpec) -> list[str]:
    return [spec.cidr, *sorted(set(spec.trusted_addresses))]


def _rule_match(spec: pb.NetworkSpec, rule: pb.NetworkPolicyRule) -> str:
    parts = [f"ip daddr {spec.cidr}"]
    parts.append(f"ip saddr {_set(list(rule.from_addresses) or _inside(spec))}")
    if rule.to_addresses:
        parts.append(f"ip daddr {_set(list(rule.to_addresses))}")
    ports = _set([str(p) for p in rule.ports]) if rule.ports else ""
    if rule.protocol in ("tcp", "udp"):
        parts.append(
            f"{rule.protocol} dport {ports}"
            if ports
            else f"meta l4proto {rule.protocol}"
        )
    elif ports:
        parts.append(f"meta l4proto {{ tcp, udp }} th dport {ports}")
    return " ".join(parts)


def build_ruleset(networks: Sequence[pb.NetworkSpec]) -> str:
    """The nft script that installs the table for `networks` (empty: removes it)."""
    lines = [f"table inet {NFT_TABLE} {{}}", f"delete table inet {NFT_TABLE}"]
    if not networks:
        return "\n".join(lines) + "\n"
    lines += [
        f"table inet {NFT_TABLE} {{",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        "    ct state established,related accept",
    ]
    for spec in networks:
        inside = _set(_inside(spec))
        lines.append(f"    # network {spec.name} ({spec.network_id})")
        lines.append(f"    ip daddr {spec.cidr} ip saddr != {inside} {REJECT}")
        lines.append(f"    ip saddr {spec.cidr} ip daddr != {inside} {REJECT}")
        for rule in spec.policies:
            verdict = "accept" if rule.action == "allow" else REJECT
            comment = f'comment "{rule.rule_id}"' if rule.rule_id else ""
            lines.append(f"    {_rule_match(spec, rule)} {verdict} {comment}".rstrip())
        lines.append(f"    ip daddr {spec.cidr} accept")
    lines += [
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        "    ct state established,related accept",
    ]
    for spec in networks:
        bridge = bridge_name(spec.network_id)
        lines.append(
            f'    iifname "{bridge}" ip daddr {spec.gateway} '
            "meta l4proto { tcp, udp } th dport 53 accept"
        )
        lines.append(
            f'    iifname "{bridge}" ip daddr {spec.gateway} icmp type echo-request accept'
        )
        lines.append(f'    iifname "{bridge}" {REJECT}')
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Verdict:
    """What the rules decide for one connection, and which rule decided."""

    verdict: str
    rule_id: str = ""


def _contains(cidrs: Sequence[str], address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(c, strict=False) for c in cidrs)


def evaluate(
    spec: pb.NetworkSpec, source: str, destination: str, port: int, protocol: str
) -> Verdict:
    """The decision `build_ruleset`'s rules make for a new connection into `spec`."""
    inside = _inside(spec)
    if not _contains([spec.cidr], destination) or not _contains(inside, source):
        return Verdict("deny", "isolation")
    for rule in spec.policies:
        if rule.from_addresses and not _contains(rule.from_addresses, source):
            continue
        if rule.to_addresses and not _contains(rule.to_addresses, destination):
            continue
        if rule.protocol and rule.protocol != protocol:
            continue
        if rule.ports and port not in rule.ports:
            continue
        return Verdict("allow" if rule.action == "allow" else "deny", rule.rule_id)
    return Verdict("allow")
