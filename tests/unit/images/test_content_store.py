from __future__ import annotations

import os

import pytest
import trio

from gstacks_agent.images.content_store import ContentStore
from gstacks_agent.images.digests import Digest
from gstacks_agent.images.errors import BlobNotInStore, DigestMismatch


async def chunked(data: bytes, size: int = 7):
    for start in range(0, len(data), size):
        await trio.lowlevel.checkpoint()
        yield data[start : start + size]


def leftovers(store: ContentStore) -> list[str]:
    return sorted(os.listdir(store.root / "blobs" / "sha256"))


async def test_ingest_streams_blob_to_its_digest_path(tmp_path):
    store = ContentStore(tmp_path)
    data = os.urandom(10_000)
    digest = Digest.of_bytes(data)

    path = await store.ingest(digest, chunked(data, 999), expected_size=len(data))

    assert path == tmp_path / "blobs" / "sha256" / digest.hex
    assert path.read_bytes() == data
    assert store.has(digest)
    assert store.size(digest) == len(data)
    assert store.list_digests() == [digest]
    assert leftovers(store) == [digest.hex]


async def test_ingest_of_wrong_content_leaves_nothing(tmp_path):
    store = ContentStore(tmp_path)
    digest = Digest.of_bytes(b"expected")

    with pytest.raises(DigestMismatch):
        await store.ingest(digest, chunked(b"something else"))

    assert not store.has(digest)
    assert leftovers(store) == []


async def test_ingest_of_wrong_size_leaves_nothing(tmp_path):
    store = ContentStore(tmp_path)
    data = b"x" * 100
    digest = Digest.of_bytes(data)

    with pytest.raises(DigestMismatch, match="expected 50 bytes"):
        await store.ingest(digest, chunked(data), expected_size=50)

    assert leftovers(store) == []


async def test_cancelled_ingest_leaves_nothing(tmp_path):
    store = ContentStore(tmp_path)

    async def endless():
        while True:
            await trio.sleep(0.001)
            yield b"data"

    with trio.move_on_after(0.05):
        await store.ingest(Digest.of_bytes(b"never"), endless())

    assert leftovers(store) == []


async def test_failing_source_leaves_nothing(tmp_path):
    store = ContentStore(tmp_path)

    async def broken():
        yield b"partial"
        raise ConnectionResetError("peer went away")

    with pytest.raises(ConnectionResetError):
        await store.ingest(Digest.of_bytes(b"partial and more"), broken())

    assert leftovers(store) == []


def test_ingest_bytes_and_read_bytes_round_trip(tmp_path):
    store = ContentStore(tmp_path)
    data = b'{"schemaVersion": 2}'
    digest = Digest.of_bytes(data)

    store.ingest_bytes(digest, data)

    assert store.read_bytes(digest) == data


def test_ingest_bytes_refuses_wrong_content(tmp_path):
    store = ContentStore(tmp_path)
    with pytest.raises(DigestMismatch):
        store.ingest_bytes(Digest.of_bytes(b"a"), b"b")
    assert leftovers(store) == []


def test_read_bytes_detects_corruption_on_disk(tmp_path):
    store = ContentStore(tmp_path)
    digest = Digest.of_bytes(b"good")
    store.ingest_bytes(digest, b"good")
    store.path(digest).write_bytes(b"evil")

    with pytest.raises(DigestMismatch):
        store.read_bytes(digest)


def test_absent_blob_is_not_in_store(tmp_path):
    store = ContentStore(tmp_path)
    digest = Digest.of_bytes(b"absent")
    assert not store.has(digest)
    with pytest.raises(BlobNotInStore):
        store.read_bytes(digest)
    with pytest.raises(BlobNotInStore):
        store.size(digest)


def test_temp_files_are_not_listed_and_can_be_swept(tmp_path):
    store = ContentStore(tmp_path)
    store.ingest_bytes(Digest.of_bytes(b"kept"), b"kept")
    (tmp_path / "blobs" / "sha256" / ".tmp-abc-1234").write_bytes(b"partial")

    assert store.list_digests() == [Digest.of_bytes(b"kept")]
    assert store.remove_temp_files() == 1
    assert leftovers(store) == [Digest.of_bytes(b"kept").hex]
