"""The /etc/resolv.conf a sandbox gets when it joins networks.

The file is written through `/proc/<pid>/root`, the sandbox's own view of its root.
A symlink inside the sandbox would be followed against the agent's root instead, so
`/etc` must be a real directory, and a resolv.conf that is a symlink is replaced by
a regular file rather than written through (O_NOFOLLOW).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

from gstacks_agent.networks.errors import SandboxNotAttachable
from gstacks_agent.networks.resolver import DOMAIN

MARKER = "# written by gstacks-agent for the sandbox's networks\n"


def resolv_conf_text(nameserver: str, network_names: Sequence[str]) -> str:
    search = " ".join(f"{name}.{DOMAIN}" for name in network_names)
    return MARKER + (
        f"nameserver {nameserver}\n"
        f"search {search}\n"
        "options ndots:1 timeout:2 attempts:2\n"
    )


def write_resolv_conf(pid: int, text: str, sandbox_id: str) -> None:
    """Replace the sandbox's /etc/resolv.conf with `text`."""
    etc = f"/proc/{pid}/root/etc"
    try:
        if not stat.S_ISDIR(os.lstat(etc).st_mode):
            raise SandboxNotAttachable(
                f"sandbox {sandbox_id}: /etc is not a directory", resource_id=sandbox_id
            )
    except FileNotFoundError:
        os.mkdir(etc, 0o755)
    path = f"{etc}/resolv.conf"
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SandboxNotAttachable(
                f"sandbox {sandbox_id}: /etc/resolv.conf is a symlink",
                resource_id=sandbox_id,
            ) from exc
        raise
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def remove_resolv_conf(pid: int) -> bool:
    """Remove the sandbox's /etc/resolv.conf if we wrote it; True if removed.

    A sandbox that left its last network would otherwise keep asking a resolver that
    no longer answers it, waiting out every lookup's timeouts.
    """
    path = f"/proc/{pid}/root/etc/resolv.conf"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False  # gone, a symlink, or the sandbox's own: not ours to touch
    try:
        head = os.read(fd, len(MARKER.encode()))
    finally:
        os.close(fd)
    if head != MARKER.encode():
        return False
    os.unlink(path)
    return True
