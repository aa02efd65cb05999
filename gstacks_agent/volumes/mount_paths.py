"""Which paths inside a sandbox a volume may be mounted at."""

from __future__ import annotations

import re

from gstacks_agent.volumes.errors import InvalidVolumeRequest

# Mounting over these (or inside them) would hide or replace what the runtime set
# up for the sandbox: the root itself, procfs, sysfs and the device tmpfs.
SYSTEM_PATHS = ("/proc", "/sys", "/dev")
# Mounting exactly over these would replace the image's programs, libraries or
# configuration, leaving a sandbox nothing can be run in; below them is fine
# (/etc/myapp, /usr/local/data).
OS_DIRECTORIES = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/usr", "/etc")
MAX_PATH_CHARS = 1024
_COMPONENT = re.compile(r"[A-Za-z0-9._@+=:,-]{1,255}")
VOLUME_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def check_mount_path(path: str) -> str:
    """Return `path` if a volume may be mounted there, else raise InvalidVolumeRequest."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidVolumeRequest(f"mount_path must be absolute, not {path!r}")
    if len(path) > MAX_PATH_CHARS:
        raise InvalidVolumeRequest(f"mount_path must be at most {MAX_PATH_CHARS} chars")
    components = path[1:].split("/")
    if path == "/" or any(c in ("", ".", "..") for c in components):
        raise InvalidVolumeRequest(
            f"mount_path must be a normalized path below /, without '.' or '..', "
            f"not {path!r}"
        )
    for component in components:
        if not _COMPONENT.fullmatch(component):
            raise InvalidVolumeRequest(
                f"mount_path component {component!r} may hold only letters, digits "
                "and ._@+=:,-"
            )
    for system in SYSTEM_PATHS:
        if path == system or path.startswith(system + "/"):
            raise InvalidVolumeRequest(f"mount_path {path!r} would shadow {system}")
    if path in OS_DIRECTORIES:
        raise InvalidVolumeRequest(
            f"mount_path {path!r} would hide the image's {path}; mount below it"
        )
    return path


def check_volume_id(volume_id: str) -> str:
    if not isinstance(volume_id, str) or not VOLUME_ID.fullmatch(volume_id):
        raise InvalidVolumeRequest(
            f"volume id must match [a-z0-9][a-z0-9_-]{{0,62}}, not {volume_id!r}"
        )
    return volume_id
