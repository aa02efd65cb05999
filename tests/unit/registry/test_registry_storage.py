import hashlib
import os
import time

import pytest
import trio

from control_plane_lite.registry.errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestMismatch,
    ManifestUnknown,
    NameUnknown,
    SizeInvalid,
    UploadBusy,
    UploadOutOfOrder,
)
from control_plane_lite.registry.names import Digest
from control_plane_lite.registry.storage import FilesystemStorage

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def storage(tmp_path):
    # A tiny chunk size makes every test cross several buffer boundaries.
    return FilesystemStorage(tmp_path / "registry", chunk_size=7)


async def stream(*chunks):
    for chunk in chunks:
        await trio.lowlevel.checkpoint()
        yield chunk


async def read_all(storage, digest, **kwargs):
    return b"".join([chunk async for chunk in storage.read_blob(digest, **kwargs)])


async def upload(storage, repository, *chunks):
    status = await storage.start_upload(repository)
    await storage.append_upload(repository, status.upload_id, stream(*chunks))
    digest = Digest.of(b"".join(chunks))
    await storage.commit_upload(repository, status.upload_id, digest)
    return digest


async def test_chunked_upload_becomes_a_linked_blob(storage):
    status = await storage.start_upload("lab/tiny")
    first = await storage.append_upload(
        "lab/tiny", status.upload_id, stream(b"hello ", b"wor"), start=0, length=9
    )
    assert first.offset == 9
    second = await storage.append_upload(
        "lab/tiny", status.upload_id, stream(b"ld, and more"), start=9
    )
    assert second.offset == 21

    digest = Digest.of(b"hello world, and more")
    assert await storage.commit_upload("lab/tiny", status.upload_id, digest) == 21

    assert await storage.stat_blob("lab/tiny", digest) == 21
    assert await read_all(storage, digest) == b"hello world, and more"
    with pytest.raises(BlobUploadUnknown):
        await storage.upload_status("lab/tiny", status.upload_id)


async def test_blob_is_visible_only_in_the_repository_it_was_pushed_to(storage):
    digest = await upload(storage, "lab/tiny", b"payload")
    with pytest.raises(BlobUnknown):
        await storage.stat_blob("lab/other", digest)

    await storage.link_blob("lab/other", digest)
    assert await storage.stat_blob("lab/other", digest) == 7

    await storage.unlink_blob("lab/other", digest)
    with pytest.raises(BlobUnknown):
        await storage.stat_blob("lab/other", digest)
    assert await storage.stat_blob("lab/tiny", digest) == 7


async def test_digest_mismatch_stores_nothing_and_drops_the_upload(storage):
    status = await storage.start_upload("lab/tiny")
    await storage.append_upload("lab/tiny", status.upload_id, stream(b"real bytes"))
    claimed = Digest.of(b"other bytes")

    with pytest.raises(DigestMismatch) as caught:
        await storage.commit_upload("lab/tiny", status.upload_id, claimed)

    assert caught.value.code == "DIGEST_INVALID"
    assert os.listdir(storage.root / "blobs" / "sha256") == []
    assert os.listdir(storage.root / "uploads") == []
    with pytest.raises(BlobUnknown):
        await storage.stat_blob("lab/tiny", claimed)


async def test_chunk_out_of_order_is_refused_and_reports_the_offset(storage):
    status = await storage.start_upload("lab/tiny")
    await storage.append_upload("lab/tiny", status.upload_id, stream(b"12345"))

    with pytest.raises(UploadOutOfOrder) as caught:
        await storage.append_upload(
            "lab/tiny", status.upload_id, stream(b"67"), start=3
        )

    assert caught.value.offset == 5
    assert caught.value.headers() == {"Range": "0-4"}
    assert (await storage.upload_status("lab/tiny", status.upload_id)).offset == 5


async def test_chunk_shorter_than_declared_is_discarded(storage):
    status = await storage.start_upload("lab/tiny")
    await storage.append_upload("lab/tiny", status.upload_id, stream(b"abc"))

    with pytest.raises(SizeInvalid):
        await storage.append_upload(
            "lab/tiny", status.upload_id, stream(b"defgh"), start=3, length=10
        )

    assert (await storage.upload_status("lab/tiny", status.upload_id)).offset == 3
    await storage.append_upload("lab/tiny", status.upload_id, stream(b"def"))
    await storage.commit_upload("lab/tiny", status.upload_id, Digest.of(b"abcdef"))


async def test_upload_survives_a_restart_of_the_storage(storage):
    status = await storage.start_upload("lab/tiny")
    await storage.append_upload("lab/tiny", status.upload_id, stream(b"before "))

    # A new instance has no running hash in memory and must rebuild it.
    restarted = FilesystemStorage(storage.root, chunk_size=3)
    await restarted.append_upload("lab/tiny", status.upload_id, stream(b"after"))
    digest = Digest.of(b"before after")
    await restarted.commit_upload("lab/tiny", status.upload_id, digest)
    assert await read_all(restarted, digest) == b"before after"


async def test_upload_interrupted_mid_stream_serves_nothing(storage):
    status = await storage.start_upload("lab/tiny")

    async def broken():
        yield b"0123456789"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await storage.append_upload("lab/tiny", status.upload_id, broken())

    assert os.listdir(storage.root / "blobs" / "sha256") == []
    # What was received stays in the session, so the client can resume.
    resumed = await storage.upload_status("lab/tiny", status.upload_id)
    await storage.append_upload(
        "lab/tiny", status.upload_id, stream(b"tail"), start=resumed.offset
    )
    payload = b"0123456789"[: resumed.offset] + b"tail"
    await storage.commit_upload("lab/tiny", status.upload_id, Digest.of(payload))


async def test_second_writer_on_one_upload_is_refused(storage):
    status = await storage.start_upload("lab/tiny")
    writing, release = trio.Event(), trio.Event()

    async def slow():
        yield b"first"
        writing.set()
        await release.wait()
        yield b"second"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(storage.append_upload, "lab/tiny", status.upload_id, slow())
        await writing.wait()
        with pytest.raises(UploadBusy):
            await storage.append_upload("lab/tiny", status.upload_id, stream(b"x"))
        release.set()

    assert (await storage.upload_status("lab/tiny", status.upload_id)).offset == 11


@pytest.mark.parametrize("upload_id", ["not-a-uuid", "../../etc", ""])
async def test_unknown_upload_ids_are_refused(storage, upload_id):
    with pytest.raises(BlobUploadUnknown):
        await storage.upload_status("lab/tiny", upload_id)


async def test_upload_is_not_reachable_through_another_repository(storage):
    status = await storage.start_upload("lab/tiny")
    with pytest.raises(BlobUploadUnknown):
        await storage.append_upload("lab/other", status.upload_id, stream(b"x"))
    await storage.cancel_upload("lab/tiny", status.upload_id)
    with pytest.raises(BlobUploadUnknown):
        await storage.upload_status("lab/tiny", status.upload_id)


async def test_blob_range_reads_stream_only_the_span(storage):
    payload = bytes(range(256)) * 4
    digest = await upload(storage, "lab/tiny", payload)

    assert await read_all(storage, digest, offset=10, length=100) == payload[10:110]
    assert await read_all(storage, digest, offset=1000) == payload[1000:]
    chunks = [c async for c in storage.read_blob(digest, length=20)]
    assert [len(c) for c in chunks] == [7, 7, 6]


async def test_manifest_is_stored_byte_for_byte_and_tagged(storage):
    body = b'{"schemaVersion": 2,   "odd": "spacing"}'
    digest = Digest.of(body)
    await storage.put_manifest("lab/tiny", digest, OCI_MANIFEST, body, tag="v1")

    assert await storage.resolve_tag("lab/tiny", "v1") == digest
    stored = await storage.get_manifest("lab/tiny", digest)
    assert (stored.body, stored.media_type) == (body, OCI_MANIFEST)
    assert await storage.has_manifest("lab/tiny", digest)
    assert not await storage.has_manifest("lab/other", digest)


async def test_deleting_a_manifest_removes_the_tags_pointing_at_it(storage):
    one, two = b'{"n": 1}', b'{"n": 2}'
    for tag, body in [("a", one), ("b", one), ("c", two)]:
        await storage.put_manifest(
            "lab/tiny", Digest.of(body), OCI_MANIFEST, body, tag=tag
        )

    await storage.delete_manifest("lab/tiny", Digest.of(one))

    assert await storage.list_tags("lab/tiny") == ["c"]
    with pytest.raises(ManifestUnknown):
        await storage.get_manifest("lab/tiny", Digest.of(one))
    with pytest.raises(ManifestUnknown):
        await storage.delete_manifest("lab/tiny", Digest.of(one))


async def test_deleting_a_tag_keeps_the_manifest(storage):
    body = b'{"n": 1}'
    await storage.put_manifest("lab/tiny", Digest.of(body), OCI_MANIFEST, body, tag="a")
    await storage.delete_tag("lab/tiny", "a")
    assert await storage.list_tags("lab/tiny") == []
    assert await storage.has_manifest("lab/tiny", Digest.of(body))
    with pytest.raises(ManifestUnknown):
        await storage.resolve_tag("lab/tiny", "a")


async def test_repositories_nest_and_are_listed_sorted(storage):
    await upload(storage, "lab/tiny", b"x")
    await upload(storage, "lab", b"y")
    await upload(storage, "zoo/a/b", b"z")
    await storage.start_upload("only/uploading")

    assert await storage.list_repositories() == ["lab", "lab/tiny", "zoo/a/b"]
    with pytest.raises(NameUnknown):
        await storage.list_tags("zoo/a")


async def test_stale_uploads_are_purged_and_fresh_ones_kept(storage):
    stale = await storage.start_upload("lab/tiny")
    fresh = await storage.start_upload("lab/tiny")
    state = storage.root / "uploads" / stale.upload_id / "state.json"
    state.write_text(
        f'{{"repository": "lab/tiny", "started_at": {time.time() - 7200}}}'
    )

    assert await storage.purge_uploads(older_than_s=3600) == 1

    with pytest.raises(BlobUploadUnknown):
        await storage.upload_status("lab/tiny", stale.upload_id)
    assert (await storage.upload_status("lab/tiny", fresh.upload_id)).offset == 0


async def test_large_blob_is_hashed_while_streaming(tmp_path):
    storage = FilesystemStorage(tmp_path / "registry")
    piece = os.urandom(256 * 1024)
    hasher = hashlib.sha256()
    status = await storage.start_upload("lab/big")

    async def pieces():
        for _ in range(40):
            hasher.update(piece)
            yield piece

    await storage.append_upload("lab/big", status.upload_id, pieces())
    digest = Digest(hex=hasher.hexdigest())
    assert await storage.commit_upload("lab/big", status.upload_id, digest) == 40 * len(
        piece
    )
