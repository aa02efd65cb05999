"""Errors of the mesh capability, named for their cause.

    AgentError
    ├── InvalidArgument
    │   └── InvalidMeshConfig       a key, endpoint or address the agent cannot use
    ├── FailedPrecondition
    │   └── MissingCapability
    │       └── WireGuardMissing    neither the kernel module nor wireguard-go
    └── Unavailable
        ├── UapiError               wireguard-go refused a UAPI request (errno=N)
        └── InterfaceFailed         creating or configuring the interface failed

Foreign failures enter here once: the `errno=` line of the UAPI protocol in `uapi`,
netlink errors and the wireguard-go process in `device`.
"""

from __future__ import annotations

from gstacks_agent.errors import InvalidArgument, MissingCapability, Unavailable


class InvalidMeshConfig(InvalidArgument):
    """A key, endpoint or address the agent cannot use."""


class WireGuardMissing(MissingCapability):
    """No WireGuard on this host: no kernel module and no wireguard-go binary."""


class UapiError(Unavailable):
    """wireguard-go answered a UAPI request with a non-zero errno."""

    def __init__(self, message: str, *, errno: int = 0, resource_id: str = "") -> None:
        super().__init__(message, resource_id=resource_id)
        self.errno = errno


class InterfaceFailed(Unavailable):
    """The WireGuard interface could not be created, addressed or brought up."""
