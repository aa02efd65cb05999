"""BlobStorage in an S3-compatible bucket: blobs, manifests, tags and uploads.

How it works
------------
Everything lives in the bucket, under an optional prefix, in the layout of the
filesystem driver (storage.py), so one control plane's pushes are served by any
other pointed at the same bucket, and a fresh host needs nothing local:

    blobs/sha256/<hex>                       the bytes of a blob or a manifest
    repositories/<name>/_blobs/<hex>         empty object: the blob is in <name>
    repositories/<name>/_manifests/<hex>     the manifest's media type
    repositories/<name>/_tags/<tag>          "sha256:<hex>" of the tagged manifest
    uploads/<uuid>/state.json                the repository and start time
    uploads/<uuid>/parts/<offset>            the bytes received, in pieces

Objects cannot be appended to, so an upload session is a run of piece objects,
each named by the offset (20 digits, so names sort by offset) where it starts.
A PATCH streams its body into PART_SIZE pieces held in memory one at a time and
writes each as its own object; the session's offset is the sum of the piece
sizes, read back from a listing, so it survives a restart and is the same on
every control plane. A piece shorter than MIN_PART_SIZE can only be the last:
the next PATCH reads it back and rewrites it, longer, under the same name.

Finishing an upload checks the running sha256 (kept in memory between PATCHes,
rebuilt from the pieces after a restart), then assembles the blob at its final
key with an S3 multipart upload whose parts are server-side copies of the pieces
(UploadPartCopy), so the bytes never travel through us twice. The blob's key
appears only when CompleteMultipartUpload succeeds: a crash at any moment leaves
either no blob or the whole, verified blob, never a half-written one. A blob of
one piece is copied with CopyObject.

Writes to one key are atomic in S3, and order keeps what is reachable complete,
as in the filesystem driver: a manifest's bytes before its link, its link before
a tag names it.

Not done yet: two control planes writing the same upload session at once are
not detected (the busy check is per process); a multipart upload interrupted by
a crash is left for the bucket's lifecycle rule to abort; blobs are served from
the bucket on every read, with no local cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from .errors import (
    BlobUnknown,
    BlobUploadUnknown,
    ManifestUnknown,
    NameUnknown,
    SizeInvalid,
    UploadOutOfOrder,
)
from .names import Digest
from .s3_client import S3Client
from .storage import (
    BlobLink,
    StoredBlob,
    StoredManifest,
    UploadClaim,
    UploadStatus,
    is_canonical_uuid,
    upload_digest_mismatch,
)

log = logging.getLogger("gstacks.cp.registry")

MIB = 1024 * 1024
PART_SIZE = 8 * MIB
# S3's smallest part of a multipart upload, except the last one.
MIN_PART_SIZE = 5 * MIB
READ_CHUNK = 1 * MIB
_OFFSET_DIGITS = 20


@dataclass(frozen=True, slots=True)
class _Piece:
    offset: int
    size: int
    key: str


@dataclass(slots=True)
class _RunningHash:
    offset: int
    hasher: Any


class S3Storage:
    """BlobStorage on an S3 bucket; see the module essay for its layout."""

    driver = "s3"

    def __init__(
        self, client: S3Client, prefix: str = "", *, part_size: int = PART_SIZE
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(
                f"part_size must be at least {MIN_PART_SIZE}, not {part_size}"
            )
        self.client = client
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.part_size = part_size
        self._hashes: dict[str, _RunningHash] = {}
        self._busy: set[str] = set()

    async def aclose(self) -> None:
        await self.client.aclose()

    # Keys. Inputs are validated by names.py, so joining them is safe.

    def _blob_key(self, digest: Digest) -> str:
        return f"{self.prefix}blobs/{digest.algorithm}/{digest.hex}"

    def _repository_key(self, repository: str) -> str:
        return f"{self.prefix}repositories/{repository}/"

    def _blob_link(self, repository: str, digest: Digest) -> str:
        return f"{self._repository_key(repository)}_blobs/{digest.hex}"

    def _manifest_link(self, repository: str, digest: Digest) -> str:
        return f"{self._repository_key(repository)}_manifests/{digest.hex}"

    def _tag_key(self, repository: str, tag: str) -> str:
        return f"{self._repository_key(repository)}_tags/{tag}"

    def _upload_key(self, upload_id: str) -> str:
        return f"{self.prefix}uploads/{upload_id}/"

    # Blobs.

    async def stat_blob(self, repository: str, digest: Digest) -> int:
        linked = await self.client.head_object(self._blob_link(repository, digest))
        info = None
        if linked is not None:
            info = await self.client.head_object(self._blob_key(digest))
        if info is None:
            raise BlobUnknown(
                f"blob {digest} is not in repository {repository}",
                detail={"digest": str(digest)},
                resource_id=str(digest),
            )
        return info.size

    async def read_blob(
        self, digest: Digest, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        async with self.client.open_object(
            self._blob_key(digest), offset=offset, length=length
        ) as response:
            if response is None:
                raise BlobUnknown(f"blob {digest} is not stored")
            async for chunk in response.aiter_raw(READ_CHUNK):
                yield chunk

    async def link_blob(self, repository: str, digest: Digest) -> None:
        await self.client.put_object(self._blob_link(repository, digest), b"")

    async def unlink_blob(self, repository: str, digest: Digest) -> None:
        link = self._blob_link(repository, digest)
        if await self.client.head_object(link) is None:
            raise BlobUnknown(
                f"blob {digest} is not in repository {repository}",
                detail={"digest": str(digest)},
            )
        await self.client.delete_object(link)
        log.info("blob %s unlinked from %s", digest, repository)

    # Upload sessions.

    async def start_upload(self, repository: str) -> UploadStatus:
        upload_id = str(uuid.uuid4())
        state = {"repository": repository, "started_at": time.time()}
        key = self._upload_key(upload_id) + "state.json"
        await self.client.put_object(key, json.dumps(state).encode())
        self._hashes[upload_id] = _RunningHash(0, hashlib.sha256())
        log.debug("upload %s started for %s", upload_id, repository)
        return UploadStatus(upload_id, repository, 0)

    async def upload_status(self, repository: str, upload_id: str) -> UploadStatus:
        _, offset = await self._session(repository, upload_id)
        return UploadStatus(upload_id, repository, offset)

    async def _session(
        self, repository: str, upload_id: str
    ) -> tuple[list[_Piece], int]:
        """The session's pieces in order and its offset; BlobUploadUnknown if none."""
        unknown = BlobUploadUnknown(
            f"no upload {upload_id!r} in repository {repository}",
            detail={"uuid": upload_id},
        )
        if not is_canonical_uuid(upload_id):
            raise unknown
        folder = self._upload_key(upload_id)
        raw = await self.client.get_object(folder + "state.json")
        if raw is None or json.loads(raw).get("repository") != repository:
            raise unknown

        objects, _ = await self.client.list_objects(folder + "parts/")
        pieces = sorted(
            (
                _Piece(int(info.key.rpartition("/")[2]), info.size, info.key)
                for info in objects
            ),
            key=lambda piece: piece.offset,
        )
        offset = 0
        for piece in pieces:
            # Pieces are written in order, each where the previous one ended.
            if piece.offset != offset:
                raise unknown
            offset += piece.size
        return pieces, offset

    def _piece_key(self, upload_id: str, offset: int) -> str:
        return f"{self._upload_key(upload_id)}parts/{offset:0{_OFFSET_DIGITS}d}"

    async def append_upload(
        self,
        repository: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> UploadStatus:
        with self._claim(upload_id):
            pieces, offset = await self._session(repository, upload_id)
            if start is not None and start != offset:
                raise UploadOutOfOrder(
                    f"chunk starts at {start} but upload {upload_id} has {offset} bytes",
                    offset=offset,
                    resource_id=upload_id,
                )
            running = await self._running_hash(upload_id, pieces, offset)

            # A short last piece is read back, to be rewritten longer.
            base, buffer, short_tail = offset, bytearray(), None
            if pieces and pieces[-1].size < MIN_PART_SIZE:
                tail = pieces[-1]
                short_tail = await self.client.get_object(tail.key) or b""
                base, buffer = tail.offset, bytearray(short_tail)

            received = 0
            written: list[int] = []
            try:
                async for chunk in chunks:
                    buffer += chunk
                    received += len(chunk)
                    running.hasher.update(chunk)
                    while len(buffer) >= self.part_size:
                        piece = bytes(buffer[: self.part_size])
                        del buffer[: self.part_size]
                        await self.client.put_object(
                            self._piece_key(upload_id, base), piece
                        )
                        written.append(base)
                        base += len(piece)
                if buffer:
                    await self.client.put_object(
                        self._piece_key(upload_id, base), bytes(buffer)
                    )
                    written.append(base)
                running.offset = offset + received
            except BaseException:
                # The hash saw bytes that may not all be stored; the pieces that
                # were stored are whole, so the session stays consistent.
                self._hashes.pop(upload_id, None)
                raise

            if length is not None and received != length:
                self._hashes.pop(upload_id, None)
                with trio.CancelScope(shield=True):
                    await self._roll_back(
                        upload_id, offset, written, pieces, short_tail
                    )
                raise SizeInvalid(
                    f"chunk declared {length} bytes but carried {received}",
                    detail={"declared": length, "received": received},
                    resource_id=upload_id,
                )
        return UploadStatus(upload_id, repository, offset + received)

    async def _roll_back(
        self,
        upload_id: str,
        offset: int,
        written: list[int],
        pieces: list[_Piece],
        short_tail: bytes | None,
    ) -> None:
        """Undo one PATCH: drop its new pieces and put back the short tail it grew."""
        for start in written:
            if start >= offset:
                await self.client.delete_object(self._piece_key(upload_id, start))
        if short_tail is not None:
            await self.client.put_object(pieces[-1].key, short_tail)

    async def commit_upload(
        self, repository: str, upload_id: str, digest: Digest
    ) -> int:
        with self._claim(upload_id):
            pieces, offset = await self._session(repository, upload_id)
            running = await self._running_hash(upload_id, pieces, offset)
            actual = Digest(hex=running.hasher.hexdigest())
            if actual != digest:
                await self._remove_upload(upload_id)
                raise upload_digest_mismatch(upload_id, repository, digest, actual)

            target = self._blob_key(digest)
            existing = await self.client.head_object(target)
            if existing is None or existing.size != offset:
                await self._assemble(target, pieces)
            await self.link_blob(repository, digest)
            await self._remove_upload(upload_id)
        log.info("blob %s stored in %s (%d bytes)", digest, repository, offset)
        return offset

    async def _assemble(self, target: str, pieces: list[_Piece]) -> None:
        """Make `target` the concatenation of `pieces`, appearing all at once."""
        if not pieces:
            await self.client.put_object(target, b"")
            return
        if len(pieces) == 1:
            await self.client.copy_object(pieces[0].key, target)
            return
        multipart = await self.client.create_multipart_upload(target)
        try:
            etags = []
            for number, piece in enumerate(pieces, start=1):
                etags.append(
                    await self.client.upload_part_copy(
                        target, multipart, number, piece.key
                    )
                )
            await self.client.complete_multipart_upload(target, multipart, etags)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.client.abort_multipart_upload(target, multipart)
            raise

    async def cancel_upload(self, repository: str, upload_id: str) -> None:
        with self._claim(upload_id):
            await self._session(repository, upload_id)
            await self._remove_upload(upload_id)
        log.debug("upload %s for %s cancelled", upload_id, repository)

    async def purge_uploads(self, older_than_s: float) -> int:
        deadline = time.time() - older_than_s
        _, folders = await self.client.list_objects(
            f"{self.prefix}uploads/", delimiter="/"
        )
        purged = 0
        for folder in folders:
            upload_id = folder.rstrip("/").rpartition("/")[2]
            if upload_id in self._busy:
                continue
            raw = await self.client.get_object(folder + "state.json")
            try:
                started_at = json.loads(raw)["started_at"] if raw else 0.0
            except (ValueError, KeyError):
                started_at = 0.0
            if started_at < deadline:
                await self._remove_upload(upload_id)
                purged += 1
        if purged:
            log.info("purged %d upload sessions older than %ss", purged, older_than_s)
        return purged

    def _claim(self, upload_id: str) -> UploadClaim:
        return UploadClaim(self._busy, upload_id)

    async def _remove_upload(self, upload_id: str) -> None:
        self._hashes.pop(upload_id, None)
        folder = self._upload_key(upload_id)
        objects, _ = await self.client.list_objects(folder)
        # The state last, so a half-removed session still reads as one.
        for info in sorted(objects, key=lambda o: o.key.endswith("state.json")):
            await self.client.delete_object(info.key)

    async def _running_hash(
        self, upload_id: str, pieces: list[_Piece], offset: int
    ) -> _RunningHash:
        running = self._hashes.get(upload_id)
        if running is not None and running.offset == offset:
            return running

        log.debug("upload %s: rebuilding its running hash from the bucket", upload_id)
        hasher = hashlib.sha256()
        for piece in pieces:
            async with self.client.open_object(piece.key) as response:
                if response is None:
                    raise BlobUploadUnknown(f"upload {upload_id} lost a piece")
                async for chunk in response.aiter_raw(READ_CHUNK):
                    hasher.update(chunk)
        running = _RunningHash(offset, hasher)
        self._hashes[upload_id] = running
        return running

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
        blob = self._blob_key(digest)
        if await self.client.head_object(blob) is None:
            await self.client.put_object(blob, body)
        await self.client.put_object(
            self._manifest_link(repository, digest), media_type.encode()
        )
        if tag is not None:
            await self.client.put_object(
                self._tag_key(repository, tag), str(digest).encode()
            )
        log.info("manifest %s stored in %s (tag %s)", digest, repository, tag)

    async def has_manifest(self, repository: str, digest: Digest) -> bool:
        link = self._manifest_link(repository, digest)
        return await self.client.head_object(link) is not None

    async def get_manifest(self, repository: str, digest: Digest) -> StoredManifest:
        media_type = await self.client.get_object(
            self._manifest_link(repository, digest)
        )
        body = None
        if media_type is not None:
            body = await self.client.get_object(self._blob_key(digest))
        if media_type is None or body is None:
            raise ManifestUnknown(
                f"manifest {digest} is not in repository {repository}",
                detail={"digest": str(digest)},
                resource_id=str(digest),
            )
        return StoredManifest(digest, media_type.decode(), body)

    async def resolve_tag(self, repository: str, tag: str) -> Digest:
        text = await self.client.get_object(self._tag_key(repository, tag))
        if text is None:
            raise ManifestUnknown(
                f"tag {tag!r} is not in repository {repository}",
                detail={"tag": tag},
            )
        return Digest.parse(text.decode())

    async def delete_manifest(self, repository: str, digest: Digest) -> None:
        link = self._manifest_link(repository, digest)
        if await self.client.head_object(link) is None:
            raise ManifestUnknown(
                f"manifest {digest} is not in repository {repository}",
                detail={"digest": str(digest)},
            )
        await self.client.delete_object(link)
        untagged = []
        for tag in await self._tags(repository):
            key = self._tag_key(repository, tag)
            if await self.client.get_object(key) == str(digest).encode():
                await self.client.delete_object(key)
                untagged.append(tag)
        log.info("manifest %s deleted from %s (tags %s)", digest, repository, untagged)

    async def delete_tag(self, repository: str, tag: str) -> None:
        key = self._tag_key(repository, tag)
        if await self.client.head_object(key) is None:
            raise ManifestUnknown(
                f"tag {tag!r} is not in repository {repository}",
                detail={"tag": tag},
            )
        await self.client.delete_object(key)
        log.info("tag %s deleted from %s", tag, repository)

    async def _tags(self, repository: str) -> list[str]:
        folder = self._repository_key(repository) + "_tags/"
        objects, _ = await self.client.list_objects(folder)
        return sorted(info.key[len(folder) :] for info in objects)

    async def list_tags(self, repository: str) -> list[str]:
        _, folders = await self.client.list_objects(
            self._repository_key(repository), delimiter="/"
        )
        if not _holds_content(folders):
            raise NameUnknown(
                f"repository {repository} does not exist",
                detail={"name": repository},
            )
        return await self._tags(repository)

    async def list_repositories(self) -> list[str]:
        top = f"{self.prefix}repositories/"
        found: list[str] = []
        pending = [top]
        # Walk the name components with delimiter listings, never into our own
        # `_` folders, so the cost follows the number of repositories, not blobs.
        while pending:
            folder = pending.pop()
            _, folders = await self.client.list_objects(folder, delimiter="/")
            if folder != top and _holds_content(folders):
                found.append(folder[len(top) :].rstrip("/"))
            for child in folders:
                if child.rstrip("/").rpartition("/")[2][0] not in "_.":
                    pending.append(child)
        return sorted(found)

    # Garbage collection.

    async def list_manifests(self, repository: str) -> list[Digest]:
        folder = self._repository_key(repository) + "_manifests/"
        objects, _ = await self.client.list_objects(folder)
        return [
            Digest(hex=name) for name in sorted(o.key[len(folder) :] for o in objects)
        ]

    async def list_blob_links(self, repository: str) -> list[BlobLink]:
        folder = self._repository_key(repository) + "_blobs/"
        objects, _ = await self.client.list_objects(folder)
        return [
            BlobLink(Digest(hex=info.key[len(folder) :]), info.modified_at)
            for info in objects
        ]

    async def list_blobs(self) -> list[StoredBlob]:
        folder = f"{self.prefix}blobs/sha256/"
        objects, _ = await self.client.list_objects(folder)
        return [
            StoredBlob(Digest(hex=info.key[len(folder) :]), info.size, info.modified_at)
            for info in objects
        ]

    async def delete_blob(self, digest: Digest) -> None:
        await self.client.delete_object(self._blob_key(digest))
        log.info("blob %s deleted", digest)


def _holds_content(folders: list[str]) -> bool:
    names = {folder.rstrip("/").rpartition("/")[2] for folder in folders}
    return "_blobs" in names or "_manifests" in names
