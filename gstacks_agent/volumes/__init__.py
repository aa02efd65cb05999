"""Volumes: directories of one shared JuiceFS mount, bound into hosts and sandboxes."""

from gstacks_agent.volumes.handlers import (
    attachment_of,
    filesystem_status_message,
    register_volume_handlers,
)
from gstacks_agent.volumes.manager import Attachment, VolumeManager, VolumeUsage
from gstacks_agent.volumes.shared_filesystem import FilesystemState, SharedFilesystem

__all__ = [
    "Attachment",
    "FilesystemState",
    "SharedFilesystem",
    "VolumeManager",
    "VolumeUsage",
    "attachment_of",
    "filesystem_status_message",
    "register_volume_handlers",
]
