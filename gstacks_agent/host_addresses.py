"""The host's own IP addresses, for the routing metadata of its hello."""

from __future__ import annotations

import ipaddress
import socket

import psutil


def host_addresses() -> list[str]:
    """Every non-loopback, non-link-local address of the host, in CIDR form.

    Loopback addresses only reach the host itself, and IPv6 link-local ones only its
    own links without a zone, so neither tells another host how to reach this one.
    """
    found: list[str] = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            if not address.netmask:
                continue
            ip = ipaddress.ip_address(address.address.split("%", 1)[0])
            if ip.is_loopback or ip.is_link_local:
                continue
            found.append(f"{ip}/{_prefix_length(address.netmask)}")
    return sorted(set(found))


def _prefix_length(netmask: str) -> int:
    # psutil gives masks in address form ("255.255.255.0", "ffff:ffff::"); the
    # ipaddress module parses that form for IPv4 only, so count the bits ourselves.
    return bin(int(ipaddress.ip_address(netmask))).count("1")
