"""A sandbox's root filesystem: one overlayfs mount over the image's layers.

How it works: the image's unpacked layers are read-only lower dirs shared by every
sandbox of that image; each sandbox adds its own upper and work dirs, so writes
land in the sandbox and deletions show as whiteouts there (kernel
Documentation/filesystems/overlayfs.rst). The layers arrive bottom first;
overlayfs wants `lowerdir` top first, left to right.

mount(2) takes the options as one string of at most a page (4096 bytes), so a deep
image with long layer paths may not fit. Then each layer is opened as an O_PATH
file descriptor and named `/proc/self/fd/N`, which the kernel resolves at mount
time; the descriptors are closed once the mount holds its own references. This
avoids the usual chdir-and-relative-paths trick, which would change the working
directory of the whole agent process. The kernel stacks at most 500 lower layers.

mount(2) and umount2(2) are called through ctypes; their errno is translated into
our errors in one place, `_raise_for_errno`.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from gstacks_agent.errors import MissingCapability
from gstacks_agent.sandboxes.errors import LayerStackTooDeep, RootfsMountFailed

log = logging.getLogger("gstacks.agent.sandboxes")

# mount(2) copies at most one page of options; the terminating NUL counts.
MOUNT_OPTIONS_MAX = 4095
# fs/overlayfs/params.h OVL_MAX_STACK
OVERLAY_MAX_LAYERS = 500

_MNT_DETACH = 2
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount_overlay(
    layer_dirs: Sequence[Path], target: Path, upper: Path, work: Path
) -> None:
    """Mount an overlay of `layer_dirs` (bottom first) on `target`.

    `upper` and `work` are created if missing; they must be on one filesystem.
    """
    if not layer_dirs:
        raise ValueError("layer_dirs must name at least one layer")
    if len(layer_dirs) > OVERLAY_MAX_LAYERS:
        raise LayerStackTooDeep(
            f"image has {len(layer_dirs)} layers; overlayfs stacks at most "
            f"{OVERLAY_MAX_LAYERS}"
        )
    for path in (*layer_dirs, target, upper, work):
        if not Path(path).is_absolute():
            raise ValueError(f"overlay paths must be absolute, not {str(path)!r}")
    upper.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)

    top_first = [str(p) for p in reversed(layer_dirs)]
    options = _options(top_first, upper, work)
    if len(options) <= MOUNT_OPTIONS_MAX and _plain(top_first):
        _mount(target, options)
    else:
        _mount_through_fds(top_first, target, upper, work)
    log.info("mounted rootfs %s over %d layers", target, len(layer_dirs))


def unmount(target: Path) -> bool:
    """Unmount `target` if it is a mount point; returns whether it was.

    A busy mount is detached lazily (MNT_DETACH): it leaves the namespace at once
    and the kernel frees it when its last user goes.
    """
    if not is_mounted(target):
        return False
    if _libc.umount2(os.fsencode(target), 0) == 0:
        log.info("unmounted rootfs %s", target)
        return True
    err = ctypes.get_errno()
    if err != errno.EBUSY:
        _raise_for_errno(err, "unmount", target)
    log.warning("rootfs %s is busy; detaching it lazily", target)
    if _libc.umount2(os.fsencode(target), _MNT_DETACH) != 0:
        _raise_for_errno(ctypes.get_errno(), "detach", target)
    return True


def is_mounted(target: Path) -> bool:
    """Whether `target` is a mount point in this process's mount namespace."""
    return os.path.realpath(target) in mount_points()


def mount_points() -> list[str]:
    """Every mount point of this process's mount namespace, in mount order."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            # proc(5): field 5 is the mount point, with space, tab, newline
            # and backslash written as octal escapes.
            points.append(_unescape(line.split(" ", 5)[4]))
    return points


def read_text_in_rootfs(rootfs: Path, relative: str, max_bytes: int) -> str | None:
    """Read a small file of the rootfs without following any symlink.

    An image may make /etc/passwd a symlink to a host path; resolving it on the
    host would read host files. Returns None when the file is absent, a symlink
    sits on the way, or it is larger than `max_bytes`.
    """
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"relative must be a plain path, not {relative!r}")
    dir_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            next_fd = os.open(
                part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd
            )
            os.close(dir_fd)
            dir_fd = next_fd
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            log.warning("%s/%s is a symlink; ignoring it", rootfs, relative)
            return None
        raise
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as file:
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        log.warning("%s/%s is over %d bytes; ignoring it", rootfs, relative, max_bytes)
        return None
    return data.decode("utf-8", errors="replace")


def _options(lower: Sequence[str], upper: Path, work: Path) -> str:
    return f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work}"


def _plain(paths: Sequence[str]) -> bool:
    # ',' and ':' separate options and layers; overlayfs would need them escaped.
    return not any(c in p for p in paths for c in ",:\\")


def _mount_through_fds(
    top_first: Sequence[str], target: Path, upper: Path, work: Path
) -> None:
    fds: list[int] = []
    try:
        for path in top_first:
            fds.append(os.open(path, os.O_PATH | os.O_DIRECTORY))
        options = _options([f"/proc/self/fd/{fd}" for fd in fds], upper, work)
        if len(options) > MOUNT_OPTIONS_MAX or not _plain([str(upper), str(work)]):
            raise LayerStackTooDeep(
                f"overlay options for {len(fds)} layers take {len(options)} bytes, "
                f"more than mount(2) accepts ({MOUNT_OPTIONS_MAX})"
            )
        _mount(target, options)
    finally:
        for fd in fds:
            os.close(fd)


def _mount(target: Path, options: str) -> None:
    result = _libc.mount(
        b"overlay", os.fsencode(target), b"overlay", 0, options.encode()
    )
    if result != 0:
        _raise_for_errno(ctypes.get_errno(), "mount", target)


def _raise_for_errno(err: int, action: str, target: Path) -> None:
    detail = f"{action} of overlay rootfs {target} failed: {os.strerror(err)}"
    if err == errno.EPERM:
        raise MissingCapability(f"{detail}; the agent must run as root")
    if err == errno.ENODEV:
        raise MissingCapability(f"{detail}; load overlayfs with: modprobe overlay")
    raise RootfsMountFailed(detail) from OSError(err, os.strerror(err))


def _unescape(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m[1], 8)), field)
