"""Kernel names of what the agent makes for networks, derived from resource ids.

Interface names are at most 15 characters (IFNAMSIZ 16 with the NUL). Each name is a
fixed prefix and the id's hex digits, so the agent finds its own links again after a
restart by prefix alone, and never touches a link it did not make.
"""

from __future__ import annotations

BRIDGE_PREFIX = "gsn"
HOST_VETH_PREFIX = "gsv"
PEER_VETH_PREFIX = "gsp"
NFT_TABLE = "gstacks"


def _digits(resource_id: str) -> str:
    suffix = resource_id.rpartition("_")[2]
    return "".join(c for c in suffix if c.isalnum())[:12]


def bridge_name(network_id: str) -> str:
    """The bridge of one network on this host."""
    return BRIDGE_PREFIX + _digits(network_id)


def host_veth_name(member_id: str) -> str:
    """The host end of one member's veth."""
    return HOST_VETH_PREFIX + _digits(member_id)


def peer_veth_name(member_id: str) -> str:
    """The sandbox end of one member's veth, before it is moved and renamed."""
    return PEER_VETH_PREFIX + _digits(member_id)
