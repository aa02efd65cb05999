"""A content-addressed blob store on the local filesystem.

Layout (the same as an OCI image layout's `blobs/`): `root/blobs/sha256/<hex>`.

How a blob gets in: `ingest` streams the chunks into a temp file in that same
directory (`.tmp-<hex>-<random>`), hashing as it writes, so a blob is never held in
memory. When the stream ends it checks sha256 and size, fsyncs the file, renames it
onto its final name and fsyncs the directory. A blob's final name therefore only ever
names complete, verified content: a crash or a cancel leaves at most a temp file, which
`remove_temp_files` sweeps. Two concurrent ingests of one digest each write their own
temp file; the second rename replaces the first with identical bytes.

Reads trust the disk, since nothing but `ingest` writes final names; `read_bytes`,
meant for small JSON documents that get parsed, hashes again anyway because it is
cheap and a flipped bit in a manifest would otherwise go unnoticed.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import trio

from gstacks_agent.images.digests import Digest, DigestVerifier
from gstacks_agent.images.errors import BlobNotInStore

log = logging.getLogger("gstacks.agent.images")

_TEMP_PREFIX = ".tmp-"
# read_bytes is for manifests and configs; the distribution spec suggests registries
# accept manifests up to 4 MiB, and configs are of the same order.
_READ_BYTES_LIMIT = 16 * 1024 * 1024


class ContentStore:
    """Verified blobs addressed by sha256 digest under `root/blobs/sha256/`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._dir = self.root / "blobs" / "sha256"
        self._dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: Digest | str) -> Path:
        """Where the blob lives (whether or not it is there yet)."""
        return self._dir / Digest(digest).hex

    def has(self, digest: Digest | str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: Digest | str) -> int:
        """The blob's size in bytes; `BlobNotInStore` if it is absent."""
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError as exc:
            raise BlobNotInStore(
                f"{digest} is not in the store", resource_id=digest
            ) from exc

    def list_digests(self) -> list[Digest]:
        """Every complete blob in the store, sorted."""
        digests = []
        for entry in os.scandir(self._dir):
            if entry.name.startswith(_TEMP_PREFIX) or not entry.is_file():
                continue
            digests.append(Digest.from_hex(entry.name))
        return sorted(digests)

    async def ingest(
        self,
        digest: Digest | str,
        chunks: AsyncIterator[bytes],
        expected_size: int | None = None,
    ) -> Path:
        """Stream `chunks` into the store as `digest` and return the blob's path.

        `chunks` is consumed and, when it has `aclose` (an async generator), closed.

        Raises `DigestMismatch` (and leaves nothing behind) when the content's sha256
        or length differs from `digest` / `expected_size`.
        """
        verifier = DigestVerifier(digest, expected_size)
        final = self.path(verifier.expected)
        temp = self._temp_path(verifier.expected)

        try:
            async with await trio.open_file(temp, "xb") as file:
                async for chunk in chunks:
                    await trio.to_thread.run_sync(
                        _write_and_hash, file.wrapped, verifier, chunk
                    )
                    # Refuse early rather than fill the disk with an oversized blob.
                    if expected_size is not None and verifier.size > expected_size:
                        verifier.verify()
                verifier.verify()
                await trio.to_thread.run_sync(_flush_and_sync, file.wrapped)
            os.rename(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        finally:
            await _close_source(chunks)

        await trio.to_thread.run_sync(_sync_directory, self._dir)
        log.debug("stored blob %s (%d bytes)", verifier.expected, verifier.size)
        return final

    def ingest_bytes(self, digest: Digest | str, data: bytes) -> Path:
        """Store `data` as `digest`, verifying it first; for small documents."""
        verifier = DigestVerifier(digest, len(data))
        verifier.update(data)
        verifier.verify()

        final = self.path(verifier.expected)
        temp = self._temp_path(verifier.expected)
        try:
            with open(temp, "xb") as file:
                file.write(data)
                _flush_and_sync(file)
            os.rename(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _sync_directory(self._dir)
        return final

    def read_bytes(self, digest: Digest | str) -> bytes:
        """The blob's bytes, verified against its digest; for small documents."""
        verifier = DigestVerifier(digest)
        try:
            with open(self.path(verifier.expected), "rb") as file:
                data = file.read(_READ_BYTES_LIMIT + 1)
        except FileNotFoundError as exc:
            raise BlobNotInStore(
                f"{digest} is not in the store", resource_id=digest
            ) from exc
        if len(data) > _READ_BYTES_LIMIT:
            raise ValueError(
                f"read_bytes is for documents up to {_READ_BYTES_LIMIT} bytes; "
                f"{digest} is larger"
            )
        verifier.update(data)
        verifier.verify()
        return data

    def remove_temp_files(self) -> int:
        """Delete temp files left by an interrupted ingest; return how many.

        Only call this when no ingest is running, e.g. at agent start.
        """
        removed = 0
        for entry in os.scandir(self._dir):
            if entry.name.startswith(_TEMP_PREFIX):
                os.unlink(entry.path)
                removed += 1
        return removed

    def _temp_path(self, digest: Digest) -> Path:
        return self._dir / f"{_TEMP_PREFIX}{digest.hex}-{secrets.token_hex(4)}"


async def _close_source(chunks: AsyncIterator[bytes]) -> None:
    # Closing a source we stopped reading early (a mismatch, a cancel) runs its
    # cleanup now rather than whenever the garbage collector gets to it.
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        with trio.CancelScope(shield=True):
            await aclose()


def _write_and_hash(file: BinaryIO, verifier: DigestVerifier, chunk: bytes) -> None:
    file.write(chunk)
    verifier.update(chunk)


def _flush_and_sync(file: BinaryIO) -> None:
    file.flush()
    os.fsync(file.fileno())


def _sync_directory(path: Path) -> None:
    # The rename is only durable once the directory entry is on disk (rename(2),
    # fsync(2): "fsync on the file does not ensure the entry in the directory").
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
