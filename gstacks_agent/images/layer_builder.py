"""Building reproducible layer tars from a directory or from a list of entries.

The same entries always give the same bytes: entries are written sorted by path, with
one fixed mtime, no user or group names, PAX format, and gzip without a file name or
timestamp in its header. Two digests come out of one pass: `diff_id`, the sha256 of
the uncompressed tar (what an image config lists in `rootfs.diff_ids`), and `digest`,
the sha256 of the blob as written (what a manifest lists), so the tar is hashed
before and after compression as it streams through.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gstacks_agent.images import media_types
from gstacks_agent.images.digests import Digest

_KINDS = ("file", "dir", "symlink", "hardlink")


@dataclass(frozen=True)
class LayerEntry:
    """One entry of a layer. `path` is relative to the layer root, `/`-separated.

    A file's content is `data`, or the file at `source` when that is set. `target`
    is a symlink's target, or for a hardlink the layer path of an earlier entry.
    """

    path: str
    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    source: Path | None = None
    target: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, not {self.kind!r}")
        parts = self.path.split("/")
        if self.path.startswith("/") or not self.path or ".." in parts:
            raise ValueError(f"path must be relative without '..', not {self.path!r}")
        if self.kind in ("symlink", "hardlink") and not self.target:
            raise ValueError(f"{self.kind} {self.path!r} needs a target")

    @classmethod
    def file(cls, path: str, data: bytes = b"", mode: int = 0o644) -> LayerEntry:
        return cls(path, "file", mode, data=data)

    @classmethod
    def directory(cls, path: str, mode: int = 0o755) -> LayerEntry:
        return cls(path, "dir", mode)

    @classmethod
    def symlink(cls, path: str, target: str) -> LayerEntry:
        return cls(path, "symlink", 0o777, target=target)

    @classmethod
    def hardlink(cls, path: str, target: str) -> LayerEntry:
        return cls(path, "hardlink", 0o644, target=target)


@dataclass(frozen=True)
class BuiltLayer:
    """A written layer blob and the two digests an image needs of it."""

    digest: Digest
    diff_id: Digest
    size: int
    media_type: str


def entries_from_directory(root: Path) -> list[LayerEntry]:
    """The files, directories, symlinks and hardlinks under `root`, as entries.

    Mode, owner and hardlinks are taken from disk; mtimes are not (see module doc).
    Sockets and device nodes are refused with ValueError.
    """
    root = Path(root)
    found = []
    for directory, subdirs, files in os.walk(root):
        for name in [*subdirs, *files]:
            path = Path(directory) / name
            found.append((path.relative_to(root).as_posix(), path))
    # The order write_layer uses, so the first name of a hardlinked inode is the
    # one written as a file and the others can link to it.
    found.sort(key=lambda item: _sort_key(item[0]))

    entries = []
    first_path_of_inode: dict[tuple[int, int], str] = {}
    for relative, path in found:
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        owner = {"uid": info.st_uid, "gid": info.st_gid}
        if stat.S_ISDIR(info.st_mode):
            entries.append(LayerEntry(relative, "dir", mode, **owner))
        elif stat.S_ISLNK(info.st_mode):
            target = os.readlink(path)
            entries.append(
                LayerEntry(relative, "symlink", mode, target=target, **owner)
            )
        elif stat.S_ISREG(info.st_mode):
            inode = (info.st_dev, info.st_ino)
            if info.st_nlink > 1 and inode in first_path_of_inode:
                target = first_path_of_inode[inode]
                entries.append(
                    LayerEntry(relative, "hardlink", mode, target=target, **owner)
                )
                continue
            first_path_of_inode[inode] = relative
            entries.append(LayerEntry(relative, "file", mode, source=path, **owner))
        else:
            raise ValueError(f"cannot put {path} in a layer: not a file or directory")
    return entries


def write_layer(
    entries: Iterable[LayerEntry],
    out: BinaryIO,
    *,
    compress: bool = True,
    mtime: int = 0,
) -> BuiltLayer:
    """Write `entries` as a layer tar (gzipped unless `compress` is false) to `out`."""
    ordered = sorted(entries, key=lambda entry: _sort_key(entry.path))
    _check_hardlinks(ordered)

    blob = _HashingWriter(out)
    if compress:
        compressor = gzip.GzipFile(
            filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=6
        )
        raw = _HashingWriter(compressor)
        media_type = media_types.OCI_LAYER_GZIP
    else:
        compressor = None
        raw = blob
        media_type = media_types.OCI_LAYER_TAR

    with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for entry in ordered:
            _add(tar, entry, mtime)
    if compressor is not None:
        compressor.close()

    return BuiltLayer(
        digest=blob.digest,
        diff_id=raw.digest,
        size=blob.size,
        media_type=media_type,
    )


def _sort_key(path: str) -> list[str]:
    # By component, so a directory comes right before its own contents.
    return path.split("/")


def _check_hardlinks(ordered: list[LayerEntry]) -> None:
    seen: dict[str, str] = {}
    for entry in ordered:
        if entry.kind == "hardlink" and seen.get(entry.target) != "file":
            raise ValueError(
                f"hardlink {entry.path!r} must follow its target file {entry.target!r}"
            )
        seen[entry.path] = entry.kind


def _add(tar: tarfile.TarFile, entry: LayerEntry, mtime: int) -> None:
    info = tarfile.TarInfo(entry.path)
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mtime = mtime

    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
        tar.addfile(info)
    elif entry.kind == "hardlink":
        info.type = tarfile.LNKTYPE
        info.linkname = entry.target
        tar.addfile(info)
    elif entry.source is not None:
        with open(entry.source, "rb") as source:
            info.size = os.fstat(source.fileno()).st_size
            tar.addfile(info, source)
    else:
        info.size = len(entry.data)
        tar.addfile(info, io.BytesIO(entry.data))


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, inner: BinaryIO):
        self._inner = inner
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        self._inner.write(data)
        return len(data)

    def flush(self) -> None:
        self._inner.flush()

    @property
    def digest(self) -> Digest:
        return Digest.from_hex(self._hash.hexdigest())
