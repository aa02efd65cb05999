"""The `mesh:` section of the agent's configuration.

mesh:
  listen_port: 51820           # UDP port of this host's WireGuard
  endpoint: 203.0.113.7:51820  # where other hosts reach it; default: the address
                               # this host reaches its control plane from
  dns_upstream: 192.0.2.53     # where sandbox DNS goes for names outside .gstacks;
                               # default: the first nameserver of /etc/resolv.conf
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields

DEFAULT_LISTEN_PORT = 51820


class MeshSettingsError(ValueError):
    """A malformed `mesh:` setting."""


@dataclass(frozen=True)
class MeshSettings:
    listen_port: int = DEFAULT_LISTEN_PORT
    endpoint: str | None = None
    dns_upstream: str | None = None

    @classmethod
    def from_mapping(cls, values: object) -> MeshSettings:
        if not isinstance(values, dict):
            raise MeshSettingsError("mesh must be a mapping of settings")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MeshSettingsError(f"unknown mesh settings: {', '.join(unknown)}")
        port = values.get("listen_port", DEFAULT_LISTEN_PORT)
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise MeshSettingsError(f"mesh.listen_port must be 1..65535, not {port!r}")
        upstream = values.get("dns_upstream")
        if upstream is not None:
            try:
                ipaddress.ip_address(upstream)
            except ValueError as exc:
                raise MeshSettingsError(
                    f"mesh.dns_upstream must be an IP address, not {upstream!r}"
                ) from exc
        endpoint = values.get("endpoint")
        if endpoint is not None and not isinstance(endpoint, str):
            raise MeshSettingsError(f"mesh.endpoint must be a string, not {endpoint!r}")
        return cls(port, endpoint, upstream)
