"""Where the registry keeps blobs, manifests, tags and upload sessions.

How it works
------------
Content lives once, addressed by its digest; repositories only hold links to it.
The filesystem driver lays this out under one root:

    blobs/sha256/<hex>                       the bytes of a blob or a manifest
    repositories/<name>/_blobs/<hex>         empty file: the blob is in <name>
    repositories/<name>/_manifests/<hex>     the manifest's media type
    repositories/<name>/_tags/<tag>          "sha256:<hex>" of the tagged manifest
    uploads/<uuid>/state.json                which repository the upload is for
    uploads/<uuid>/data                      the bytes received so far

The per-repository folders start with `_` because a name component cannot (see
names.py), so `lab/_blobs` can never collide with a repository called `lab/blobs`.

An upload is a file that only grows. Each chunk is streamed to it and fed to a
running sha256 held in memory, so finishing the upload does not read it again;
after a restart, or after a failed write, the hash is rebuilt from the file
once. Finishing compares the hash with the digest the client claimed: on a
mismatch the upload is deleted and nothing is stored; on a match the file is
fsynced and renamed into `blobs/`, which is atomic within one filesystem. So a
blob path either does not exist or holds complete, verified bytes, whatever
moment a crash picks. Small files (links, tags, state) are written to a temporary
name, fsynced and renamed the same way.

Order makes the links safe too: a manifest's bytes are written before its link,
and its link before a tag names it, so anything reachable is complete.

Every method is async and does its file I/O in a worker thread
(`trio.to_thread.run_sync`), a chunk at a time, so a large blob never stalls the
event loop and is never held in memory whole. The `BlobStorage` protocol is kept
to what an object-store driver (S3 multipart uploads) can also provide.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from .errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestMismatch,
    ManifestUnknown,
    NameUnknown,
    SizeInvalid,
    UploadBusy,
    UploadOutOfOrder,
)
from .names import Digest

log = logging.getLogger("gstacks.cp.registry")

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class UploadStatus:
    """Where an upload session stands: `offset` bytes have been received."""

    upload_id: str
    repository: str
    offset: int


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A blob's bytes as stored: its size and when they were last written."""

    digest: Digest
    size: int
    modified_at: float


@dataclass(frozen=True, slots=True)
class BlobLink:
    """A repository's link to a blob, and when it was made."""

    digest: Digest
    linked_at: float


@dataclass(frozen=True, slots=True)
class StoredManifest:
    """A manifest exactly as it was pushed, with the media type it was pushed as."""

    digest: Digest
    media_type: str
    body: bytes


class BlobStorage(Protocol):
    """What the registry routes need from a storage driver.

    Names, tags and digests arrive already validated (names.py). Methods raise the
    registry's errors (BlobUnknown, ManifestUnknown, ...) for missing things.
    `driver` names the driver for discovery ("filesystem", "s3").
    """

    driver: str

    async def aclose(self) -> None:
        """Release connections; the stored content is untouched."""
        ...

    async def stat_blob(self, repository: str, digest: Digest) -> int:
        """Size of a blob linked into `repository`; BlobUnknown if it is not."""
        ...

    def read_blob(
        self, digest: Digest, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream a blob's bytes in chunks; check the repository with stat_blob."""
        ...

    async def link_blob(self, repository: str, digest: Digest) -> None:
        """Make an existing blob part of `repository` (cross-repository mount)."""
        ...

    async def unlink_blob(self, repository: str, digest: Digest) -> None:
        """Remove a blob from `repository`; BlobUnknown if it was not there."""
        ...

    async def start_upload(self, repository: str) -> UploadStatus:
        """Open an empty upload session for `repository`."""
        ...

    async def upload_status(self, repository: str, upload_id: str) -> UploadStatus:
        """The session's state; BlobUploadUnknown if absent or of another repo."""
        ...

    async def append_upload(
        self,
        repository: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> UploadStatus:
        """Stream `chunks` onto the end of the session.

        `start`, when given, must equal the current offset (UploadOutOfOrder);
        `length`, when given, must equal the bytes received (SizeInvalid, and the
        chunk is discarded).
        """
        ...

    async def commit_upload(
        self, repository: str, upload_id: str, digest: Digest
    ) -> int:
        """Verify the session against `digest`, store it as a blob and link it.

        Returns the blob's size. On a mismatch the session is deleted, nothing is
        stored and DigestMismatch is raised.
        """
        ...

    async def cancel_upload(self, repository: str, upload_id: str) -> None:
        """Delete the session and what it received."""
        ...

    async def put_manifest(
        self,
        repository: str,
        digest: Digest,
        media_type: str,
        body: bytes,
        *,
        tag: str | None = None,
    ) -> None:
        """Store a manifest byte for byte and, if `tag` is given, point it there."""
        ...

    async def has_manifest(self, repository: str, digest: Digest) -> bool:
        """True when `repository` holds the manifest `digest`."""
        ...

    async def get_manifest(self, repository: str, digest: Digest) -> StoredManifest:
        """The manifest as pushed; ManifestUnknown if `repository` lacks it."""
        ...

    async def resolve_tag(self, repository: str, tag: str) -> Digest:
        """The digest `tag` points at; ManifestUnknown if there is no such tag."""
        ...

    async def delete_manifest(self, repository: str, digest: Digest) -> None:
        """Remove the manifest and every tag pointing at it."""
        ...

    async def delete_tag(self, repository: str, tag: str) -> None:
        """Remove one tag, leaving the manifest it pointed at."""
        ...

    async def list_tags(self, repository: str) -> list[str]:
        """The repository's tags, sorted; NameUnknown if it does not exist."""
        ...

    async def list_repositories(self) -> list[str]:
        """Every repository that holds a blob or a manifest, sorted."""
        ...

    async def purge_uploads(self, older_than_s: float) -> int:
        """Delete upload sessions started more than `older_than_s` ago."""
        ...

    # What the garbage collector (garbage.py) walks and removes.

    async def list_manifests(self, repository: str) -> list[Digest]:
        """Digests of every manifest linked into `repository`."""
        ...

    async def list_blob_links(self, repository: str) -> list[BlobLink]:
        """Every blob linked into `repository`, with when each link was made."""
        ...

    async def list_blobs(self) -> list[StoredBlob]:
        """Every stored blob and manifest body, whatever links to it."""
        ...

    async def delete_blob(self, digest: Digest) -> None:
        """Remove a blob's bytes; links to it must be removed first."""
        ...


def upload_digest_mismatch(
    upload_id: str, repository: str, claimed: Digest, actual: Digest
) -> DigestMismatch:
    """The error for an upload whose bytes are not the digest its client claimed.

    Both drivers refuse such an upload the same way: log it, delete the session,
    raise this.
    """
    log.warning(
        "upload %s for %s refused: claimed %s, received %s",
        upload_id,
        repository,
        claimed,
        actual,
    )
    return DigestMismatch(
        f"uploaded bytes have digest {actual}, not {claimed}",
        detail={"claimed": str(claimed), "received": str(actual)},
        resource_id=str(claimed),
    )


@dataclass(slots=True)
class _RunningHash:
    """sha256 of the first `offset` bytes of an upload's data file."""

    offset: int
    hasher: Any


class FilesystemStorage:
    """BlobStorage on a local directory; see the module essay for its layout."""

    driver = "filesystem"

    def __init__(self, root: Path, *, chunk_size: int = 1 * MIB) -> None:
        if not root.is_absolute():
            raise ValueError(f"root must be absolute, not {str(root)!r}")
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        self.root = root
        self.chunk_size = chunk_size
        self._hashes: dict[str, _RunningHash] = {}
        self._busy: set[str] = set()
        for folder in ("blobs/sha256", "repositories", "uploads"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    async def aclose(self) -> None:
        return None

    # Paths. Inputs are validated by names.py, so joining them is safe.

    def _blob_path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.hex

    def _repository_path(self, repository: str) -> Path:
        return self.root / "repositories" / repository

    def _blob_link(self, repository: str, digest: Digest) -> Path:
        return self._repository_path(repository) / "_blobs" / digest.hex

    def _manifest_link(self, repository: str, digest: Digest) -> Path:
        return self._repository_path(repository) / "_manifests" / digest.hex

    def _tag_path(self, repository: str, tag: str) -> Path:
        return self._repository_path(repository) / "_tags" / tag

    def _upload_path(self, upload_id: str) -> Path:
        return self.root / "uploads" / upload_id

    # Blobs.

    async def stat_blob(self, repository: str, digest: Digest) -> int:
        def stat() -> int | None:
            if not self._blob_link(repository, digest).exists():
                return None
            try:
                return self._blob_path(digest).stat().st_size
            except FileNotFoundError:
                return None

        size = await trio.to_thread.run_sync(stat)
        if size is None:
            raise BlobUnknown(
                f"blob {digest} is not in repository {repository}",
                detail={"digest": str(digest)},
                resource_id=str(digest),
            )
        return size

    async def read_blob(
        self, digest: Digest, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        path = self._blob_path(digest)
        first = self.chunk_size if length is None else min(self.chunk_size, length)

        def open_and_read() -> tuple[Any, bytes]:
            # One thread hop opens, seeks and reads the first chunk: most blobs
            # (configs, small layers) are served whole from it.
            file = open(path, "rb")  # noqa: SIM115 - closed below
            try:
                file.seek(offset)
                return file, file.read(first)
            except BaseException:
                file.close()
                raise

        try:
            file, chunk = await trio.to_thread.run_sync(open_and_read)
        except FileNotFoundError as exc:
            raise BlobUnknown(f"blob {digest} is not stored") from exc
        try:
            remaining = length
            wanted = first
            while chunk:
                yield chunk
                if remaining is not None:
                    remaining -= len(chunk)
                if len(chunk) < wanted or remaining == 0:
                    return  # the end of the file, or of the range
                wanted = self.chunk_size
                if remaining is not None:
                    wanted = min(wanted, remaining)
                chunk = await trio.to_thread.run_sync(file.read, wanted)
        finally:
            file.close()

    async def link_blob(self, repository: str, digest: Digest) -> None:
        link = self._blob_link(repository, digest)
        await trio.to_thread.run_sync(_write_file_atomically, link, b"")

    async def unlink_blob(self, repository: str, digest: Digest) -> None:
        # The blob's bytes stay under blobs/: another repository may link them;
        # the garbage collector removes them once nothing references them.
        link = self._blob_link(repository, digest)
        try:
            await trio.to_thread.run_sync(link.unlink)
        except FileNotFoundError as exc:
            raise BlobUnknown(
                f"blob {digest} is not in repository {repository}",
                detail={"digest": str(digest)},
            ) from exc
        log.info("blob %s unlinked from %s", digest, repository)

    # Upload sessions.

    async def start_upload(self, repository: str) -> UploadStatus:
        upload_id = str(uuid.uuid4())
        folder = self._upload_path(upload_id)
        state = {"repository": repository, "started_at": time.time()}

        def create() -> None:
            folder.mkdir()
            (folder / "data").touch()
            # Not fsynced: after a crash a session is lost at worst, and the
            # client starts another; its state is still never half-written.
            state_file = folder / "state.json"
            _write_file_atomically(
                state_file, json.dumps(state).encode(), durable=False
            )

        await trio.to_thread.run_sync(create)
        self._hashes[upload_id] = _RunningHash(0, hashlib.sha256())
        log.debug("upload %s started for %s", upload_id, repository)
        return UploadStatus(upload_id, repository, 0)

    async def upload_status(self, repository: str, upload_id: str) -> UploadStatus:
        unknown = BlobUploadUnknown(
            f"no upload {upload_id!r} in repository {repository}",
            detail={"uuid": upload_id},
        )
        if not is_canonical_uuid(upload_id):
            raise unknown
        folder = self._upload_path(upload_id)

        def read() -> tuple[dict[str, Any], int] | None:
            try:
                state = json.loads((folder / "state.json").read_bytes())
                return state, (folder / "data").stat().st_size
            except FileNotFoundError:
                return None

        found = await trio.to_thread.run_sync(read)
        if found is None or found[0].get("repository") != repository:
            raise unknown
        return UploadStatus(upload_id, repository, found[1])

    async def append_upload(
        self,
        repository: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> UploadStatus:
        # Claim first, then read the offset, so no other writer can move it.
        with self._claim(upload_id):
            status = await self.upload_status(repository, upload_id)
            if start is not None and start != status.offset:
                raise UploadOutOfOrder(
                    f"chunk starts at {start} but upload {upload_id} has "
                    f"{status.offset} bytes",
                    offset=status.offset,
                    resource_id=upload_id,
                )
            data = self._upload_path(upload_id) / "data"
            running = await self._running_hash(upload_id, status.offset)
            try:
                received = await self._stream_into(data, chunks, running)
            except BaseException:
                # The hash may have seen bytes the file did not keep, or the
                # reverse; rebuild it from the file next time.
                self._hashes.pop(upload_id, None)
                raise

            if length is not None and received != length:
                self._hashes.pop(upload_id, None)
                await trio.to_thread.run_sync(os.truncate, data, status.offset)
                raise SizeInvalid(
                    f"chunk declared {length} bytes but carried {received}",
                    detail={"declared": length, "received": received},
                    resource_id=upload_id,
                )
        return UploadStatus(upload_id, repository, status.offset + received)

    async def commit_upload(
        self, repository: str, upload_id: str, digest: Digest
    ) -> int:
        with self._claim(upload_id):
            status = await self.upload_status(repository, upload_id)
            running = await self._running_hash(upload_id, status.offset)
            actual = Digest(hex=running.hasher.hexdigest())
            if actual != digest:
                await self._remove_upload(upload_id)
                raise upload_digest_mismatch(upload_id, repository, digest, actual)

            data = self._upload_path(upload_id) / "data"
            target = self._blob_path(digest)
            await trio.to_thread.run_sync(_move_file_durably, data, target)
            await self.link_blob(repository, digest)
            await self._remove_upload(upload_id)
        log.info("blob %s stored in %s (%d bytes)", digest, repository, status.offset)
        return status.offset

    async def cancel_upload(self, repository: str, upload_id: str) -> None:
        with self._claim(upload_id):
            await self.upload_status(repository, upload_id)
            await self._remove_upload(upload_id)
        log.debug("upload %s for %s cancelled", upload_id, repository)

    async def purge_uploads(self, older_than_s: float) -> int:
        deadline = time.time() - older_than_s
        uploads = self.root / "uploads"

        def stale() -> list[str]:
            found = []
            for entry in os.scandir(uploads):
                try:
                    state = json.loads(Path(entry.path, "state.json").read_bytes())
                    started_at = state["started_at"]
                except (FileNotFoundError, ValueError, KeyError):
                    # No state: a crash came between mkdir and its rename, or
                    # the upload is being created right now. The folder's own
                    # age tells which.
                    try:
                        started_at = entry.stat().st_mtime
                    except FileNotFoundError:
                        continue
                if started_at < deadline:
                    found.append(entry.name)
            return found

        purged = 0
        for upload_id in await trio.to_thread.run_sync(stale):
            if upload_id in self._busy:
                continue
            await self._remove_upload(upload_id)
            purged += 1
        if purged:
            log.info("purged %d upload sessions older than %ss", purged, older_than_s)
        return purged

    def _claim(self, upload_id: str) -> UploadClaim:
        return UploadClaim(self._busy, upload_id)

    async def _remove_upload(self, upload_id: str) -> None:
        self._hashes.pop(upload_id, None)
        folder = self._upload_path(upload_id)
        await trio.to_thread.run_sync(_remove_tree, folder)

    async def _running_hash(self, upload_id: str, offset: int) -> _RunningHash:
        running = self._hashes.get(upload_id)
        if running is not None and running.offset == offset:
            return running

        data = self._upload_path(upload_id) / "data"

        def rehash() -> _RunningHash:
            hasher = hashlib.sha256()
            offset = 0
            with open(data, "rb") as file:
                while chunk := file.read(self.chunk_size):
                    hasher.update(chunk)
                    offset += len(chunk)
            return _RunningHash(offset, hasher)

        log.debug("upload %s: rebuilding its running hash from disk", upload_id)
        running = await trio.to_thread.run_sync(rehash)
        self._hashes[upload_id] = running
        return running

    async def _stream_into(
        self, data: Path, chunks: AsyncIterable[bytes], running: _RunningHash
    ) -> int:
        """Append `chunks` to `data`, updating `running`; returns bytes received.

        Chunks from the network are small and uneven, so they are gathered into
        `chunk_size` pieces and each piece is written and hashed in one thread hop.
        If the stream fails (the client hangs up), the piece still being gathered
        is dropped: the file keeps whole pieces only, and the session's offset
        tells the client where to resume.
        """

        def write(buffer: bytearray) -> None:
            file.write(buffer)
            running.hasher.update(buffer)
            running.offset += len(buffer)

        received = 0
        buffer = bytearray()
        file = await trio.to_thread.run_sync(open, data, "ab")
        try:
            async for chunk in chunks:
                buffer += chunk
                received += len(chunk)
                if len(buffer) >= self.chunk_size:
                    await trio.to_thread.run_sync(write, buffer)
                    buffer = bytearray()
            if buffer:
                await trio.to_thread.run_sync(write, buffer)
        finally:
            file.close()
        return received

    # Manifests and tags.

    async def put_manifest(
        self,
        repository: str,
        digest: Digest,
        media_type: str,
        body: bytes,
        *,
        tag: str | None = None,
    ) -> None:
        blob = self._blob_path(digest)
        link = self._manifest_link(repository, digest)

        def write() -> None:
            if not blob.exists():
                _write_file_atomically(blob, body)
            _write_file_atomically(link, media_type.encode())
            if tag is not None:
                path = self._tag_path(repository, tag)
                _write_file_atomically(path, str(digest).encode())

        await trio.to_thread.run_sync(write)
        log.info("manifest %s stored in %s (tag %s)", digest, repository, tag)

    async def has_manifest(self, repository: str, digest: Digest) -> bool:
        link = self._manifest_link(repository, digest)
        return await trio.to_thread.run_sync(link.exists)

    async def get_manifest(self, repository: str, digest: Digest) -> StoredManifest:
        link = self._manifest_link(repository, digest)
        blob = self._blob_path(digest)

        def read() -> StoredManifest | None:
            try:
                media_type = link.read_text()
                return StoredManifest(digest, media_type, blob.read_bytes())
            except FileNotFoundError:
                return None

        found = await trio.to_thread.run_sync(read)
        if found is None:
            raise ManifestUnknown(
                f"manifest {digest} is not in repository {repository}",
                detail={"digest": str(digest)},
                resource_id=str(digest),
            )
        return found

    async def resolve_tag(self, repository: str, tag: str) -> Digest:
        path = self._tag_path(repository, tag)
        try:
            text = await trio.to_thread.run_sync(path.read_text)
        except FileNotFoundError as exc:
            raise ManifestUnknown(
                f"tag {tag!r} is not in repository {repository}",
                detail={"tag": tag},
            ) from exc
        return Digest.parse(text)

    async def delete_manifest(self, repository: str, digest: Digest) -> None:
        link = self._manifest_link(repository, digest)
        tags = self._repository_path(repository) / "_tags"

        def delete() -> list[str]:
            link.unlink()
            untagged = []
            for entry in _list_names(tags):
                path = tags / entry
                try:
                    if path.read_text() == str(digest):
                        path.unlink()
                        untagged.append(entry)
                except FileNotFoundError:
                    continue
            return untagged

        try:
            untagged = await trio.to_thread.run_sync(delete)
        except FileNotFoundError as exc:
            raise ManifestUnknown(
                f"manifest {digest} is not in repository {repository}",
                detail={"digest": str(digest)},
            ) from exc
        log.info("manifest %s deleted from %s (tags %s)", digest, repository, untagged)

    async def delete_tag(self, repository: str, tag: str) -> None:
        path = self._tag_path(repository, tag)
        try:
            await trio.to_thread.run_sync(path.unlink)
        except FileNotFoundError as exc:
            raise ManifestUnknown(
                f"tag {tag!r} is not in repository {repository}",
                detail={"tag": tag},
            ) from exc
        log.info("tag %s deleted from %s", tag, repository)

    async def list_tags(self, repository: str) -> list[str]:
        folder = self._repository_path(repository)

        def list_() -> list[str] | None:
            if not _is_repository(folder):
                return None
            return sorted(_list_names(folder / "_tags"))

        tags = await trio.to_thread.run_sync(list_)
        if tags is None:
            raise NameUnknown(
                f"repository {repository} does not exist",
                detail={"name": repository},
            )
        return tags

    async def list_repositories(self) -> list[str]:
        top = self.root / "repositories"

        def walk() -> list[str]:
            found = []
            for folder, subfolders, _files in os.walk(top):
                if _is_repository(Path(folder)):
                    found.append(Path(folder).relative_to(top).as_posix())
                # Descend only into name components, never into our own folders.
                subfolders[:] = [s for s in subfolders if s[0] not in "_."]
            return sorted(found)

        return await trio.to_thread.run_sync(walk)

    # Garbage collection.

    async def list_manifests(self, repository: str) -> list[Digest]:
        folder = self._repository_path(repository) / "_manifests"
        names = await trio.to_thread.run_sync(_list_names, folder)
        return [Digest(hex=name) for name in sorted(names)]

    async def list_blob_links(self, repository: str) -> list[BlobLink]:
        folder = self._repository_path(repository) / "_blobs"

        def scan() -> list[BlobLink]:
            links = []
            for name in _list_names(folder):
                try:
                    linked_at = (folder / name).stat().st_mtime
                except FileNotFoundError:
                    continue
                links.append(BlobLink(Digest(hex=name), linked_at))
            return links

        return await trio.to_thread.run_sync(scan)

    async def list_blobs(self) -> list[StoredBlob]:
        folder = self.root / "blobs" / "sha256"

        def scan() -> list[StoredBlob]:
            blobs = []
            for entry in os.scandir(folder):
                if entry.name.startswith("."):
                    continue  # a manifest being written (_write_file_atomically)
                try:
                    info = entry.stat()
                except FileNotFoundError:
                    continue
                blobs.append(
                    StoredBlob(Digest(hex=entry.name), info.st_size, info.st_mtime)
                )
            return blobs

        return await trio.to_thread.run_sync(scan)

    async def delete_blob(self, digest: Digest) -> None:
        path = self._blob_path(digest)
        try:
            await trio.to_thread.run_sync(path.unlink)
        except FileNotFoundError:
            return
        log.info("blob %s deleted", digest)


class UploadClaim:
    """Marks an upload as being written, refusing a second concurrent writer."""

    def __init__(self, busy: set[str], upload_id: str) -> None:
        self._busy = busy
        self._upload_id = upload_id

    def __enter__(self) -> None:
        if self._upload_id in self._busy:
            raise UploadBusy(
                f"upload {self._upload_id} is being written by another request",
                resource_id=self._upload_id,
            )
        self._busy.add(self._upload_id)

    def __exit__(self, *exc_info: object) -> None:
        self._busy.discard(self._upload_id)


def is_canonical_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _is_repository(folder: Path) -> bool:
    return (folder / "_manifests").is_dir() or (folder / "_blobs").is_dir()


def _list_names(folder: Path) -> list[str]:
    """Entries of `folder` except temporaries (which start with '.'); [] if absent."""
    try:
        return [name for name in os.listdir(folder) if not name.startswith(".")]
    except FileNotFoundError:
        return []


def _fsync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file_atomically(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data` so that readers see the old or the new bytes.

    `durable` also flushes the bytes and the directory entry to disk before
    returning, so the new version survives a crash. An empty file (a link) has
    no bytes to flush, only its directory entry.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            if durable and data:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(path.parent)


def _move_file_durably(source: Path, target: Path) -> None:
    """Flush `source` to disk, then rename it onto `target` in one step."""
    with open(source, "rb") as file:
        os.fsync(file.fileno())
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    _fsync_directory(target.parent)


def _remove_tree(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
