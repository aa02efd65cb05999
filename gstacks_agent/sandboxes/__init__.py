"""Sandboxes: runc containers over overlay mounts of pulled images."""

from gstacks_agent.sandboxes.manager import (
    PulledImageLike,
    SandboxInfo,
    SandboxManager,
    check_sandbox_id,
)
from gstacks_agent.sandboxes.runc import Runc, sandbox_exec_argv

__all__ = [
    "PulledImageLike",
    "Runc",
    "SandboxInfo",
    "SandboxManager",
    "check_sandbox_id",
    "sandbox_exec_argv",
]
