"""Errors of the runtime-network capability, named for their cause.

    AgentError
    ├── InvalidArgument
    │   └── InvalidNetworkState     the control plane's state names something unusable
    ├── FailedPrecondition
    │   ├── SandboxNotAttachable    the sandbox has no running process to attach to
    │   └── MissingCapability
    │       └── NftablesMissing     no nft binary to enforce policies with
    └── Unavailable
        └── RulesetRejected         nft refused the ruleset (its stderr says why)

Netlink and WireGuard failures are the mesh's (`gstacks_agent.mesh.errors`); a
malformed DNS message is `MalformedDnsMessage`, which never leaves the resolver.
"""

from __future__ import annotations

from gstacks_agent.errors import (
    FailedPrecondition,
    InvalidArgument,
    MissingCapability,
    Unavailable,
)


class InvalidNetworkState(InvalidArgument):
    """The network state names an address, range or peer the agent cannot use."""


class SandboxNotAttachable(FailedPrecondition):
    """The sandbox is not running here, so it has no namespace to attach."""


class NftablesMissing(MissingCapability):
    """No nft binary; policies cannot be enforced."""


class RulesetRejected(Unavailable):
    """nft refused the ruleset."""


class MalformedDnsMessage(ValueError):
    """A DNS message that does not parse; the resolver drops it."""
