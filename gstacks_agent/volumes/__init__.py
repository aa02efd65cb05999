"""Volumes: directories of one shared JuiceFS mount, bound into hosts and sandboxes.

The public names load on first use (PEP 562): the short-lived child that mounts
into a sandbox's namespace (`namespace_mount`) imports only what it needs, so it
starts in milliseconds rather than loading the agent.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Attachment": "manager",
    "VolumeManager": "manager",
    "VolumeUsage": "manager",
    "FilesystemState": "shared_filesystem",
    "SharedFilesystem": "shared_filesystem",
    "attachment_of": "handlers",
    "filesystem_status_message": "handlers",
    "register_volume_handlers": "handlers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
