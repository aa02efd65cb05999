"""Build the OCI runtime-spec `config.json` for a sandbox from its image config.

How it works: an OCI image config (image-spec `config.md`) says what to run
(`Entrypoint`, `Cmd`), with which environment, in which directory and as which user.
The runtime spec (runtime-spec `config.md`, `config-linux.md`) says the same for
one concrete container, plus the isolation around it. This module maps the first
onto the second and adds our fixed isolation:

- process: args are `Entrypoint + Cmd`; a command given with the request replaces
  `Cmd` only, as `docker run IMAGE CMD...` does. The environment is the image's
  `Env` with the request's variables laid over it. `cwd` is `WorkingDir` or "/".
  `User` is resolved against the rootfs's /etc/passwd and /etc/group, which the
  caller reads and hands in as text so that this module stays pure.
- namespaces: new pid, mount, uts, ipc and network namespaces. A network namespace
  without a path is a new, empty one holding only a down `lo`.
- mounts, capabilities, masked and read-only paths, `noNewPrivileges` and the
  NOFILE rlimit follow what `runc spec` generates (runc 1.1), except that the root
  is writable: it is an overlay whose upper dir belongs to this sandbox alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gstacks_agent.sandboxes.errors import InvalidSandboxSpec, UnknownImageUser

OCI_VERSION = "1.0.2"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The set container engines grant by default (Docker's and containerd's defaults):
# enough for root in a sandbox to chown, drop privileges and install packages, as a
# development environment needs, while CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_MODULE
# and the rest that reach the host's kernel stay out. No CAP_NET_RAW: sandboxes do
# not need to forge packets on the mesh.
DEFAULT_PIDS_LIMIT = 4096

DEFAULT_CAPABILITIES = (
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
)

MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)

READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

NOFILE_LIMIT = 1024

# RFC 1123 host name label, lower case only: a sandbox hostname is one label.
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ProcessUser:
    """The numeric identity the sandbox's process runs as."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = field(default=())


def build_runtime_spec(
    image_config: Mapping[str, Any],
    *,
    hostname: str,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    passwd: str = "",
    group: str = "",
    cgroups_path: str | None = None,
    extra_mounts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Return the runtime-spec config for one sandbox, ready for `json.dump`.

    `image_config` is the image's config JSON (the object with a "config" key).
    `passwd` and `group` are the texts of the rootfs's /etc/passwd and /etc/group
    ("" when absent). The root path is "rootfs", relative to the bundle.
    `extra_mounts` (volumes' bind mounts) come after the fixed ones, so that
    they land on the sandbox's own tree and never under /proc or /dev.
    """
    run_config = image_config.get("config") or {}
    if not isinstance(run_config, Mapping):
        raise InvalidSandboxSpec("image config's 'config' must be an object")

    return {
        "ociVersion": OCI_VERSION,
        "process": _process(run_config, command, env, passwd, group),
        "root": {"path": "rootfs", "readonly": False},
        "hostname": check_hostname(hostname),
        "mounts": _mounts() + [dict(m) for m in extra_mounts],
        "linux": _linux(cgroups_path),
    }


def process_args(
    run_config: Mapping[str, Any], command: Sequence[str] | None
) -> list[str]:
    """Entrypoint + Cmd, with `command` replacing Cmd (image-spec config.md)."""
    entrypoint = _string_list(run_config.get("Entrypoint"), "Entrypoint")
    if command is not None:
        cmd = _string_list(command, "command")
    else:
        cmd = _string_list(run_config.get("Cmd"), "Cmd")
    args = entrypoint + cmd
    if not args:
        raise InvalidSandboxSpec(
            "the image has no Entrypoint or Cmd and no command was given"
        )
    return args


def merged_env(
    image_env: Sequence[str] | None, overrides: Mapping[str, str] | None
) -> list[str]:
    """The image's `Env` with `overrides` laid over it, image order first.

    PATH is added when neither defines it, as container engines do, so that a
    bare command name in Cmd still resolves.
    """
    merged: dict[str, str] = {}
    for entry in _string_list(image_env, "Env"):
        name, sep, value = entry.partition("=")
        if not sep or not name:
            raise InvalidSandboxSpec(
                f"image Env entry must be NAME=value, not {entry!r}"
            )
        merged[name] = value
    for name, value in (overrides or {}).items():
        if not _ENV_NAME.fullmatch(name):
            raise InvalidSandboxSpec(f"env name must be an identifier, not {name!r}")
        if not isinstance(value, str):
            raise InvalidSandboxSpec(f"env value of {name} must be a string")
        merged[name] = value
    merged.setdefault("PATH", DEFAULT_PATH)
    return [f"{name}={value}" for name, value in merged.items()]


def resolve_user(user: str, passwd: str, group: str) -> ProcessUser:
    """Resolve an image `User` ("", "name", "uid", "name:group", "uid:gid", ...).

    Follows image-spec config.md: a name is looked up in /etc/passwd, a group name
    in /etc/group; without a group the user's primary group from /etc/passwd is
    used, or 0 for a uid /etc/passwd does not list. Supplementary groups are those
    of /etc/group that list the user's name as a member.
    """
    users = _parse_colon_file(passwd, min_fields=4)
    groups = _parse_colon_file(group, min_fields=3)
    user_part, _, group_part = user.partition(":")

    # The user: a number needs no entry, a name must have one.
    entry = None
    if not user_part:
        uid = 0
    elif user_part.isdigit():
        uid = int(user_part)
        entry = next((u for u in users if u[2] == user_part), None)
    else:
        entry = next((u for u in users if u[0] == user_part), None)
        if entry is None:
            raise UnknownImageUser(
                f"user {user_part!r} is not in the image's /etc/passwd"
            )
        uid = _number(entry[2], "uid", user_part)

    # The primary group: given explicitly, else the passwd entry's, else 0.
    if group_part.isdigit():
        gid = int(group_part)
    elif group_part:
        found = next((g for g in groups if g[0] == group_part), None)
        if found is None:
            raise UnknownImageUser(
                f"group {group_part!r} is not in the image's /etc/group"
            )
        gid = _number(found[2], "gid", group_part)
    elif entry is not None:
        gid = _number(entry[3], "gid", entry[0])
    else:
        gid = 0

    additional: list[int] = []
    if entry is not None:
        for g in groups:
            members = g[3].split(",") if len(g) > 3 else []
            if entry[0] in members and g[2].isdigit() and int(g[2]) != gid:
                additional.append(int(g[2]))
    return ProcessUser(uid=uid, gid=gid, additional_gids=tuple(additional))


def _process(
    run_config: Mapping[str, Any],
    command: Sequence[str] | None,
    env: Mapping[str, str] | None,
    passwd: str,
    group: str,
) -> dict[str, Any]:
    user_spec = run_config.get("User") or ""
    if not isinstance(user_spec, str):
        raise InvalidSandboxSpec("image config's User must be a string")
    user = resolve_user(user_spec, passwd, group)
    cwd = run_config.get("WorkingDir") or "/"
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise InvalidSandboxSpec(f"image WorkingDir must be absolute, not {cwd!r}")

    user_section: dict[str, Any] = {"uid": user.uid, "gid": user.gid}
    if user.additional_gids:
        user_section["additionalGids"] = list(user.additional_gids)
    capabilities = list(DEFAULT_CAPABILITIES)
    return {
        "terminal": False,
        "user": user_section,
        "args": process_args(run_config, command),
        "env": merged_env(run_config.get("Env"), env),
        "cwd": cwd,
        "capabilities": {
            "bounding": capabilities,
            "effective": capabilities,
            "permitted": capabilities,
            "ambient": capabilities,
        },
        "rlimits": [
            {"type": "RLIMIT_NOFILE", "hard": NOFILE_LIMIT, "soft": NOFILE_LIMIT}
        ],
        "noNewPrivileges": True,
    }


def _mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": [
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]


def _linux(cgroups_path: str | None) -> dict[str, Any]:
    linux: dict[str, Any] = {
        # Deny every device node; runc still allows its fixed default set
        # (null, zero, full, random, urandom, tty, ptmx, pts).
        # A fork bomb in one sandbox must not take the host's process table.
        "resources": {
            "devices": [{"allow": False, "access": "rwm"}],
            "pids": {"limit": DEFAULT_PIDS_LIMIT},
        },
        "namespaces": [
            {"type": "pid"},
            {"type": "network"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "mount"},
        ],
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if cgroups_path is not None:
        linux["cgroupsPath"] = cgroups_path
    return linux


def check_hostname(hostname: str) -> str:
    """Return `hostname` if it is one lower-case RFC 1123 label, else raise."""
    if not isinstance(hostname, str) or not _HOSTNAME.fullmatch(hostname):
        raise InvalidSandboxSpec(
            f"hostname must be one lower-case RFC 1123 label, not {hostname!r}"
        )
    return hostname


def _string_list(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidSandboxSpec(f"{what} must be a list of strings, not {value!r}")
    if not all(isinstance(item, str) for item in value):
        raise InvalidSandboxSpec(f"{what} must be a list of strings, not {value!r}")
    return list(value)


def _parse_colon_file(text: str, *, min_fields: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) >= min_fields:
            rows.append(fields)
    return rows


def _number(text: str, what: str, name: str) -> int:
    if not text.isdigit():
        raise UnknownImageUser(f"{name!r} has a non-numeric {what} {text!r}")
    return int(text)
