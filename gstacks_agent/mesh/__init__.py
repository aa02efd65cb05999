"""The WireGuard mesh between hosts: keys, the UAPI protocol, the interface."""

from gstacks_agent.mesh.device import MeshDevice, interface_name, open_device
from gstacks_agent.mesh.keys import (
    KeyPair,
    generate_key_pair,
    load_or_create_host_keys,
    public_key_of,
)
from gstacks_agent.mesh.uapi import DeviceStatus, PeerSettings, PeerStatus

__all__ = [
    "DeviceStatus",
    "KeyPair",
    "MeshDevice",
    "PeerSettings",
    "PeerStatus",
    "generate_key_pair",
    "interface_name",
    "load_or_create_host_keys",
    "open_device",
    "public_key_of",
]
