"""Unpacking one image layer into a directory, safely, in overlayfs form.

A layer is a tar stream (OCI image-layer.md) that we stack, unpacked, as one overlayfs
lowerdir. The tar comes from a registry and is hostile until proven otherwise, so we
do not use `TarFile.extract*`: we read members with tarfile's streaming mode and create
each one ourselves, with every file system call relative to a directory file
descriptor obtained without following symlinks.

How an entry lands:

1. Its name is split into components. An absolute name or a `..` component is
   refused outright (`UnsafeLayer`); `.` and empty components are dropped.
2. The parent is reached from the root of the unpack directory one component at a
   time with `openat(O_DIRECTORY | O_NOFOLLOW)`. A component that is a symlink fails
   with ELOOP and the layer is refused, so a layer cannot plant `evil -> /etc` and
   then write `evil/passwd`. Missing parents are created (tars may omit them).
3. Whatever already sits at the final name is removed (a directory over a directory
   is kept, as tar semantics say later entries win), then the entry is created with
   O_EXCL / mknodat / symlinkat / linkat, none of which follow a final symlink.
4. Hardlink targets are names inside the layer: refused if absolute or with `..`,
   reached with the same symlink-refusing walk, and linked with `linkat` without
   AT_SYMLINK_FOLLOW, so a link can only ever share an inode this layer created.

Ownership, mode (setuid bits included) and mtime are applied per entry through the
file descriptor where there is one; directory mtimes are stamped at the end, once
nothing more gets created inside them.

Whiteouts are converted from OCI form to what overlayfs understands
(Documentation/filesystems/overlayfs.rst, "whiteouts and opaque directories"):
`.wh.<name>` becomes a character device 0:0 called `<name>`, and `.wh..wh..opq`
becomes the xattr `trusted.overlay.opaque=y` on its directory. Whiteouts hide lower
layers only, so one whose name this layer also creates leaves that entry in place
(a directory becomes opaque instead). Both forms need root.

The layer is unpacked into a temp directory next to `dest`, synced with syncfs(2)
and renamed onto `dest`; on any error the temp directory is removed, so `dest` either
does not exist or holds the whole layer.
"""

from __future__ import annotations

import ctypes
import errno
import gzip
import logging
import os
import secrets
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from gstacks_agent.images.errors import (
    LayerWriteFailed,
    MalformedLayer,
    UnsafeLayer,
    UnsupportedMediaType,
)
from gstacks_agent.images.media_types import LAYER_COMPRESSION

log = logging.getLogger("gstacks.agent.images")

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

# Extended attributes taken over from PAX `SCHILY.xattr.*` records. File capabilities
# are what images actually carry (ping, arping); trusted.* and the rest could steer
# overlayfs or the LSM on the host, so they are dropped.
_KEPT_XATTR_PREFIXES = ("user.", "security.capability")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_COPY_CHUNK = 1024 * 1024


def unpack_layer(blob: Path, media_type: str, dest: Path) -> None:
    """Unpack the layer `blob` of type `media_type` into the new directory `dest`.

    Blocking; run it in a worker thread. Raises `UnsupportedMediaType`,
    `UnsafeLayer` for an entry that would escape `dest`, `MalformedLayer` for a
    broken tar, and `LayerWriteFailed` when the disk refuses.
    """
    compression = LAYER_COMPRESSION.get(media_type)
    if compression is None:
        raise UnsupportedMediaType(f"not a layer media type: {media_type!r}")
    if compression == "zstd" and not _zstd_available():
        raise UnsupportedMediaType(
            f"{media_type} needs the zstandard module, which is not installed"
        )
    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        raise ValueError(f"dest must not exist yet, but {dest} does")

    temp = dest.parent / f".tmp-{dest.name}-{secrets.token_hex(4)}"
    os.mkdir(temp, 0o755)
    try:
        root_fd = os.open(temp, _DIR_FLAGS)
        try:
            count = _unpack_into(blob, compression, root_fd)
            _syncfs(root_fd)
        finally:
            os.close(root_fd)
        os.rename(temp, dest)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise

    _sync_directory(dest.parent)
    log.info("unpacked layer %s into %s (%d entries)", blob.name, dest, count)


def _unpack_into(blob: Path, compression: str, root_fd: int) -> int:
    # Foreign errors are translated here, once. BadGzipFile is an OSError, so the
    # decoding errors must be caught before the disk errors.
    try:
        with open(blob, "rb") as raw, _decompressed(raw, compression) as stream:
            return _Extractor(root_fd).extract(stream)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise MalformedLayer(f"layer {blob.name} is not a readable tar: {exc}") from exc
    except OSError as exc:
        raise LayerWriteFailed(f"unpacking layer {blob.name} failed: {exc}") from exc


@contextmanager
def _decompressed(raw: BinaryIO, compression: str) -> Iterator[BinaryIO]:
    if compression == "none":
        yield raw
    elif compression == "gzip":
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield stream
    else:
        import zstandard

        with zstandard.ZstdDecompressor().stream_reader(raw) as stream:
            yield stream


def _zstd_available() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


class _Extractor:
    """Creates tar members under one root directory fd; see the module essay."""

    def __init__(self, root_fd: int):
        self.root_fd = root_fd
        self.directory_mtimes: dict[tuple[str, ...], float] = {}

    def extract(self, stream: BinaryIO) -> int:
        count = 0
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                self._extract(tar, member)
                count += 1
        self._stamp_directories()
        return count

    def _extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _components(member.name)
        if not parts:
            # The layer's own root, usually written as "./".
            if not member.isdir():
                raise MalformedLayer(f"entry {member.name!r} names the layer root")
            _apply_owner_mode(self.root_fd, member)
            self.directory_mtimes[()] = member.mtime
            return

        *parent, name = parts
        parent_fd = self._open_directory(tuple(parent), create=True)
        try:
            if name.startswith(WHITEOUT_PREFIX):
                self._whiteout(parent_fd, tuple(parent), name)
            elif member.isdir():
                self._directory(parent_fd, parts, member)
            elif member.isreg():
                self._file(parent_fd, name, member, tar.extractfile(member))
            elif member.issym():
                self._symlink(parent_fd, name, member)
            elif member.islnk():
                self._hardlink(parent_fd, parts, member)
            elif member.ischr() or member.isblk() or member.isfifo():
                self._node(parent_fd, name, member)
            else:
                raise MalformedLayer(
                    f"entry {member.name!r} has unsupported tar type {member.type!r}"
                )
        finally:
            os.close(parent_fd)

    def _open_directory(self, parts: tuple[str, ...], *, create: bool) -> int:
        """An fd for the directory `parts` under the root, never via a symlink."""
        fd = os.dup(self.root_fd)
        try:
            for index, part in enumerate(parts):
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    # Linux answers ENOTDIR for a symlink under O_DIRECTORY|O_NOFOLLOW
                    # (ELOOP without O_DIRECTORY), so look at what is there.
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    where = "/".join(parts[: index + 1])
                    found = _lstat(fd, part)
                    if found is not None and stat.S_ISLNK(found.st_mode):
                        raise UnsafeLayer(
                            f"path goes through the symlink {where!r}"
                        ) from exc
                    raise MalformedLayer(
                        f"path goes through {where!r}, which is not a directory"
                    ) from exc
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _directory(
        self, parent_fd: int, parts: tuple[str, ...], member: tarfile.TarInfo
    ) -> None:
        name = parts[-1]
        existing = _lstat(parent_fd, name)
        replaces_whiteout = existing is not None and _is_whiteout(existing)
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            _remove(parent_fd, name, existing)
            os.mkdir(name, 0o700, dir_fd=parent_fd)

        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            _apply_owner_mode(fd, member)
            _apply_xattrs(fd, member)
            if replaces_whiteout:
                # This layer both deletes and re-creates the directory: in
                # overlayfs terms that is an opaque directory.
                os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
        finally:
            os.close(fd)
        self.directory_mtimes[parts] = member.mtime

    def _file(
        self,
        parent_fd: int,
        name: str,
        member: tarfile.TarInfo,
        source: BinaryIO | None,
    ) -> None:
        _remove(parent_fd, name, _lstat(parent_fd, name))
        fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent_fd)
        with os.fdopen(fd, "wb") as out:
            if source is not None:
                shutil.copyfileobj(source, out, _COPY_CHUNK)
            out.flush()
            # chown before chmod and xattrs: chown(2) clears setuid bits and
            # file capabilities.
            _apply_owner_mode(fd, member)
            _apply_xattrs(fd, member)
            os.utime(fd, ns=(_ns(member.mtime), _ns(member.mtime)))

    def _symlink(self, parent_fd: int, name: str, member: tarfile.TarInfo) -> None:
        # The target is not checked: it is only ever resolved inside the container's
        # root, and absolute targets (/bin/sh -> /bin/busybox) are normal there.
        if not member.linkname or "\0" in member.linkname:
            raise MalformedLayer(f"symlink {member.name!r} has no usable target")
        _remove(parent_fd, name, _lstat(parent_fd, name))
        os.symlink(member.linkname, name, dir_fd=parent_fd)
        os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        mtime = _ns(member.mtime)
        os.utime(name, ns=(mtime, mtime), dir_fd=parent_fd, follow_symlinks=False)

    def _hardlink(
        self, parent_fd: int, parts: tuple[str, ...], member: tarfile.TarInfo
    ) -> None:
        target = _components(member.linkname, what="hardlink target")
        if not target:
            raise UnsafeLayer(f"hardlink {member.name!r} points at the layer root")
        if target == parts:
            return

        *target_parent, target_name = target
        try:
            target_fd = self._open_directory(tuple(target_parent), create=False)
        except FileNotFoundError as exc:
            raise MalformedLayer(
                f"hardlink {member.name!r} -> {member.linkname!r}: target not in layer"
            ) from exc
        try:
            found = _lstat(target_fd, target_name)
            if found is None or stat.S_ISDIR(found.st_mode):
                raise MalformedLayer(
                    f"hardlink {member.name!r} -> {member.linkname!r}: target is "
                    "not a non-directory entry of this layer"
                )
            name = parts[-1]
            _remove(parent_fd, name, _lstat(parent_fd, name))
            os.link(
                target_name,
                name,
                src_dir_fd=target_fd,
                dst_dir_fd=parent_fd,
                follow_symlinks=False,
            )
        finally:
            os.close(target_fd)

    def _node(self, parent_fd: int, name: str, member: tarfile.TarInfo) -> None:
        _remove(parent_fd, name, _lstat(parent_fd, name))
        if member.isfifo():
            os.mkfifo(name, 0o600, dir_fd=parent_fd)
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            device = os.makedev(member.devmajor, member.devminor)
            os.mknod(name, kind | 0o600, device, dir_fd=parent_fd)

        # A node cannot be opened for fchown without side effects, so these go by
        # name; the name was created just above in a directory only we write to.
        os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        os.chmod(name, member.mode & 0o7777, dir_fd=parent_fd)
        mtime = _ns(member.mtime)
        os.utime(name, ns=(mtime, mtime), dir_fd=parent_fd, follow_symlinks=False)

    def _whiteout(self, parent_fd: int, parent: tuple[str, ...], name: str) -> None:
        if name == OPAQUE_MARKER:
            os.setxattr(parent_fd, OVERLAY_OPAQUE_XATTR, b"y")
            return
        if name.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            # Other `.wh..wh.` names are aufs bookkeeping (.wh..wh.plnk, ...).
            log.debug("skipping aufs metadata entry %r", "/".join((*parent, name)))
            return

        hidden = name[len(WHITEOUT_PREFIX) :]
        if hidden in ("", ".", ".."):
            raise UnsafeLayer(f"whiteout {name!r} names no entry of its directory")
        existing = _lstat(parent_fd, hidden)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            # Created by this layer too: hide the lower one, keep ours.
            fd = os.open(hidden, _DIR_FLAGS, dir_fd=parent_fd)
            try:
                os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)
        elif existing is None:
            os.mknod(hidden, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent_fd)

    def _stamp_directories(self) -> None:
        for parts, mtime in self.directory_mtimes.items():
            try:
                fd = self._open_directory(parts, create=False)
            except (OSError, UnsafeLayer, MalformedLayer):
                continue  # replaced by a later entry; nothing to stamp
            try:
                os.utime(fd, ns=(_ns(mtime), _ns(mtime)))
            finally:
                os.close(fd)


def _components(name: str, what: str = "entry") -> tuple[str, ...]:
    """Split a member name into safe path components, or raise `UnsafeLayer`."""
    if "\0" in name:
        raise MalformedLayer(f"{what} name {name!r} contains a NUL byte")
    if name.startswith("/"):
        raise UnsafeLayer(f"{what} {name!r} is an absolute path")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise UnsafeLayer(f"{what} {name!r} has a '..' component")
    return parts


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(dir_fd: int, name: str, existing: os.stat_result | None) -> None:
    if existing is None:
        return
    if stat.S_ISDIR(existing.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _is_whiteout(found: os.stat_result) -> bool:
    return stat.S_ISCHR(found.st_mode) and found.st_rdev == 0


def _apply_owner_mode(fd: int, member: tarfile.TarInfo) -> None:
    os.fchown(fd, member.uid, member.gid)
    os.fchmod(fd, member.mode & 0o7777)


def _apply_xattrs(fd: int, member: tarfile.TarInfo) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        attribute = key[len("SCHILY.xattr.") :]
        if not attribute.startswith(_KEPT_XATTR_PREFIXES):
            log.debug("dropping xattr %s of %r", attribute, member.name)
            continue
        os.setxattr(fd, attribute, value.encode("utf-8", "surrogateescape"))


def _ns(mtime: float) -> int:
    return int(mtime * 1_000_000_000)


_libc = ctypes.CDLL(None, use_errno=True)


def _syncfs(fd: int) -> None:
    # One syncfs(2) for the whole layer is far cheaper than an fsync per file, and
    # makes the rename that follows publish only content that is on disk.
    if _libc.syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise LayerWriteFailed(f"syncfs failed: {os.strerror(code)}")


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
