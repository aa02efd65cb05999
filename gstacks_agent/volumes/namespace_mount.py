"""Mounting a volume into a running sandbox, and taking it out again, live.

How it works. A sandbox's mounts live in its own mount namespace, which only a
process inside that namespace can change. setns(2) refuses to move a multithreaded
process into another mount namespace, and the agent runs threads, so each change
is made by a short-lived, single-threaded child: `python -m
gstacks_agent.volumes.namespace_mount attach PID SOURCE TARGET [--read-only]`.
The child

1. clones the volume's directory into a detached mount with open_tree(2), while it
   still sees the host's mounts, and sets nosuid, nodev and read-only on it;
2. opens the sandbox's root (`/proc/PID/root`) and mount namespace;
3. enters the namespace and chroots to the sandbox's root, so that every path
   from here on, symbolic links included, resolves inside the sandbox;
4. creates the mount point if missing and moves the detached mount onto it.

A target that already holds a working mount is left alone, so attaching twice is
harmless; one whose filesystem died (the FUSE daemon was killed and the host
remounted) is replaced. `detach` enters the same way and unmounts lazily, so a
process with files open on the volume does not keep the sandbox from letting go.

The child imports nothing beyond the standard library and its two neighbours,
so it starts quickly; it reports failure on stderr and with exit status 1, which
`sandbox_mounts` turns into MountFailed.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from gstacks_agent.volumes import mount_calls
from gstacks_agent.volumes.errors import MountFailed
from gstacks_agent.volumes.mount_table import is_mount_point


def _is_working(path: str) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOTCONN, errno.EIO, errno.ESTALE):
            return False
        raise
    return True


def _enter(pid: int) -> None:
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY)
    namespace = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
    try:
        mount_calls.enter_mount_namespace(namespace)
        os.fchdir(root)
        os.chroot(".")
    finally:
        os.close(root)
        os.close(namespace)


def _attach(pid: int, source: str, target: str, read_only: bool) -> None:
    mounted = is_mount_point(target, Path(f"/proc/{pid}/mountinfo"))
    tree = mount_calls.clone_tree(source)
    try:
        flags = mount_calls.MOUNT_ATTR_NOSUID | mount_calls.MOUNT_ATTR_NODEV
        if read_only:
            flags |= mount_calls.MOUNT_ATTR_RDONLY
        mount_calls.set_attributes(tree, flags)
        _enter(pid)
        if mounted:
            if _is_working(target):
                return
            mount_calls.detach(target)
        os.makedirs(target, mode=0o755, exist_ok=True)
        mount_calls.attach_tree(tree, target)
    finally:
        os.close(tree)


def _detach(pid: int, target: str) -> None:
    if not is_mount_point(target, Path(f"/proc/{pid}/mountinfo")):
        return
    _enter(pid)
    mount_calls.detach(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="namespace_mount")
    parser.add_argument("action", choices=("attach", "detach"))
    parser.add_argument("pid", type=int)
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--read-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.target.startswith("/"):
        print(f"target must be absolute, not {args.target!r}", file=sys.stderr)
        return 2
    try:
        if args.action == "attach":
            _attach(args.pid, args.source, args.target, args.read_only)
        else:
            _detach(args.pid, args.target)
    except (OSError, MountFailed) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
