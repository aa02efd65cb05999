"""Errors of the sandbox runtime, named for their cause.

    AgentError
    ├── InvalidArgument
    │   ├── InvalidSandboxSpec      id, hostname, command or image config is unusable
    │   └── UnknownImageUser        the image's `User` names no entry of /etc/passwd
    ├── NotFound
    │   └── SandboxNotFound         no sandbox with that id on this host
    ├── AlreadyExists
    │   └── SandboxIdTaken          the id holds a sandbox of a different image
    ├── FailedPrecondition
    │   ├── LayerStackTooDeep       too many layers for one overlayfs mount
    │   ├── ManagerNotServing       SandboxManager.serve is not running
    │   └── MissingCapability
    │       └── RuntimeMissing      no runc binary on this host
    └── Unavailable
        ├── RootfsMountFailed       mount(2) or umount(2) of the overlay failed
        └── RuntimeFailed           runc exited non-zero or timed out

Foreign failures enter here once: errno from mount(2) in `rootfs`, runc's exit
status and stderr in `runc`.
"""

from __future__ import annotations

from gstacks_agent.errors import (
    AgentError,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    MissingCapability,
    NotFound,
    Unavailable,
)


class InvalidSandboxSpec(InvalidArgument):
    """The id, hostname, command or image config cannot make a sandbox."""


class UnknownImageUser(InvalidArgument):
    """The image config's `User` names a user or group the rootfs does not define."""


class SandboxNotFound(NotFound):
    """No sandbox with this id exists on this host."""


class SandboxIdTaken(AlreadyExists):
    """The id already holds a sandbox made from a different image."""


class LayerStackTooDeep(FailedPrecondition):
    """The image has more layers than one overlayfs mount can stack."""


class ManagerNotServing(FailedPrecondition):
    """A call needs `SandboxManager.serve` to be running, and it is not."""


class RuntimeMissing(MissingCapability):
    """The runc binary is not installed."""


class RootfsMountFailed(Unavailable):
    """Mounting or unmounting a sandbox's overlay rootfs failed."""


class RuntimeFailed(Unavailable):
    """runc exited non-zero (the message ends with its stderr) or timed out."""


class IllegalStateTransition(AgentError):
    """Internal: code asked for a sandbox state change the lifecycle forbids."""
