"""Errors of the volume capability, named for their cause.

    AgentError
    ├── InvalidArgument
    │   └── InvalidVolumeRequest    an id, size or mount path the agent cannot use
    ├── NotFound
    │   └── VolumeNotFound          no directory for that volume on the filesystem
    ├── FailedPrecondition
    │   ├── FilesystemMismatch      the volume's data lives on another filesystem
    │   ├── SandboxNotRunning       a live mount needs the sandbox's process
    │   ├── VolumeInUse             the volume is still mounted somewhere
    │   └── MissingCapability
    │       └── JuiceFsMissing      no juicefs binary or no /dev/fuse
    └── Unavailable
        ├── FilesystemUnavailable   formatting, mounting or a juicefs command failed
        └── MountFailed             a bind mount on the host or in a sandbox failed

Foreign failures enter here once: the exit status and stderr of `juicefs` in
`juicefs`, errno of the mount system calls in `mount_calls` and `namespace_mount`.
"""

from __future__ import annotations

from gstacks_agent.errors import (
    FailedPrecondition,
    InvalidArgument,
    MissingCapability,
    NotFound,
    Unavailable,
)


class InvalidVolumeRequest(InvalidArgument):
    """A volume id, size or mount path that the agent refuses to use."""


class VolumeNotFound(NotFound):
    """The volume has no directory on this host's filesystem."""


class FilesystemMismatch(FailedPrecondition):
    """The volume's data lives on a filesystem this host does not mount."""


class SandboxNotRunning(FailedPrecondition):
    """A live mount into a sandbox needs its process, and it has none."""


class VolumeInUse(FailedPrecondition):
    """The volume is still attached on this host."""


class JuiceFsMissing(MissingCapability):
    """The juicefs binary or the FUSE device is absent."""


class FilesystemUnavailable(Unavailable):
    """Formatting or mounting the shared filesystem, or a juicefs command, failed."""


class MountFailed(Unavailable):
    """A bind mount of a volume, on the host or inside a sandbox, failed."""
