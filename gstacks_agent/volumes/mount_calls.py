"""The mount system calls volumes need, through ctypes, with errno made ours.

A volume reaches a host path or a sandbox as a bind mount made with the new mount
API (open_tree(2), mount_setattr(2), move_mount(2), Linux 5.12+): `open_tree` with
OPEN_TREE_CLONE copies the source into a detached mount held by a file descriptor;
its flags are set on that detached copy, before anyone can see it; `move_mount`
then attaches it at the target. Because the detached mount is a file descriptor,
it can be made in one mount namespace and attached in another, which is how a
volume enters a sandbox that is already running (see `namespace_mount`).

Python 3.11 has no wrappers for these calls, nor for setns(2); the syscall
numbers below are the same on every architecture since Linux 5.1.
"""

from __future__ import annotations

import ctypes
import errno
import os

from gstacks_agent.volumes.errors import MountFailed

# include/uapi/asm-generic/unistd.h
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
# include/uapi/linux/mount.h and fcntl.h
_OPEN_TREE_CLONE = 1
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
_MNT_DETACH = 2
# include/uapi/linux/sched.h
_CLONE_NEWNS = 0x00020000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


class _MountAttr(ctypes.Structure):
    # struct mount_attr (include/uapi/linux/mount.h, MOUNT_ATTR_SIZE_VER0)
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _fail(action: str, target: str) -> MountFailed:
    err = ctypes.get_errno()
    return MountFailed(f"{action} {target}: {os.strerror(err)} (errno {err})")


def clone_tree(source: str) -> int:
    """A detached copy of the mount tree at `source`, as a close-on-exec fd."""
    fd = _libc.syscall(
        _SYS_OPEN_TREE,
        ctypes.c_int(_AT_FDCWD),
        ctypes.c_char_p(os.fsencode(source)),
        ctypes.c_uint(_OPEN_TREE_CLONE | os.O_CLOEXEC),
    )
    if fd < 0:
        raise _fail("open_tree", source)
    return int(fd)


def set_attributes(tree_fd: int, attributes: int) -> None:
    """Set MOUNT_ATTR_* flags on the detached mount `tree_fd`."""
    attr = _MountAttr(attr_set=attributes)
    result = _libc.syscall(
        _SYS_MOUNT_SETATTR,
        ctypes.c_int(tree_fd),
        ctypes.c_char_p(b""),
        ctypes.c_uint(_AT_EMPTY_PATH | _AT_RECURSIVE),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    if result < 0:
        raise _fail("mount_setattr", f"fd {tree_fd}")


def attach_tree(tree_fd: int, target: str) -> None:
    """Attach the detached mount `tree_fd` at `target` (a path in our namespace)."""
    result = _libc.syscall(
        _SYS_MOVE_MOUNT,
        ctypes.c_int(tree_fd),
        ctypes.c_char_p(b""),
        ctypes.c_int(_AT_FDCWD),
        ctypes.c_char_p(os.fsencode(target)),
        ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH),
    )
    if result < 0:
        raise _fail("move_mount to", target)


def bind(source: str, target: str, *, read_only: bool) -> None:
    """Bind-mount `source` on `target`, nosuid and nodev, read-only if asked."""
    tree = clone_tree(source)
    try:
        flags = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
        set_attributes(tree, flags | (MOUNT_ATTR_RDONLY if read_only else 0))
        attach_tree(tree, target)
    finally:
        os.close(tree)


def detach(target: str) -> bool:
    """Lazily unmount `target`; False if nothing was mounted there."""
    if _libc.umount2(os.fsencode(target), _MNT_DETACH) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return False
    raise MountFailed(f"umount {target}: {os.strerror(err)} (errno {err})")


def enter_mount_namespace(ns_fd: int) -> None:
    """setns(2) into the mount namespace `ns_fd`; only a single-threaded process may."""
    if _libc.setns(ns_fd, _CLONE_NEWNS) != 0:
        raise _fail("setns", f"fd {ns_fd}")
