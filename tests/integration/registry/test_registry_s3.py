"""The S3 driver against a real S3 server (juicefs gateway) on loopback."""

import hashlib
import json
import os

import pytest
import trio

from control_plane_lite.registry import AllowAllAuthorizer, build_registry_app
from control_plane_lite.registry.errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestMismatch,
    ManifestUnknown,
    NameUnknown,
    SizeInvalid,
    UploadOutOfOrder,
)
from control_plane_lite.registry.garbage import GarbageCollector
from control_plane_lite.registry.names import Digest
from control_plane_lite.registry.s3_storage import MIB
from control_plane_lite.registry.storage_config import open_storage

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


async def stream(*chunks):
    for chunk in chunks:
        await trio.lowlevel.checkpoint()
        yield chunk


async def read_all(storage, digest, **kwargs):
    return b"".join([chunk async for chunk in storage.read_blob(digest, **kwargs)])


async def upload(storage, repository, data):
    status = await storage.start_upload(repository)
    await storage.append_upload(repository, status.upload_id, stream(data))
    digest = Digest.of(data)
    await storage.commit_upload(repository, status.upload_id, digest)
    return digest


def manifest_of(config_digest, config_size, layers):
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": str(config_digest),
                "size": config_size,
            },
            "layers": [
                {"mediaType": OCI_LAYER, "digest": str(d), "size": n} for d, n in layers
            ],
        }
    ).encode()


async def test_big_chunked_upload_is_assembled_from_pieces(s3_storage):
    # Uneven chunks: a short piece is grown, full pieces are copied as parts.
    data = os.urandom(19 * MIB + 12345)
    chunks = [data[: 1 * MIB], data[1 * MIB : 9 * MIB], data[9 * MIB :]]
    status = await s3_storage.start_upload("lab/big")
    offset = 0
    for chunk in chunks:
        moved = await s3_storage.append_upload(
            "lab/big",
            status.upload_id,
            stream(chunk[:1000], chunk[1000:]),
            start=offset,
            length=len(chunk),
        )
        offset += len(chunk)
        assert moved.offset == offset

    digest = Digest.of(data)
    assert await s3_storage.commit_upload("lab/big", status.upload_id, digest) == len(
        data
    )
    assert await s3_storage.stat_blob("lab/big", digest) == len(data)
    assert hashlib.sha256(await read_all(s3_storage, digest)).digest() == (
        hashlib.sha256(data).digest()
    )
    middle = await read_all(s3_storage, digest, offset=8 * MIB - 5, length=10)
    assert middle == data[8 * MIB - 5 : 8 * MIB + 5]
    # Nothing of the session is left in the bucket.
    objects, _ = await s3_storage.client.list_objects("registry/uploads/")
    assert objects == []


async def test_upload_resumes_on_a_fresh_instance_with_the_hash_rebuilt(
    s3_storage, s3_settings, tmp_path
):
    first_half, second_half = os.urandom(6 * MIB), os.urandom(3 * MIB)
    status = await s3_storage.start_upload("lab/resume")
    await s3_storage.append_upload("lab/resume", status.upload_id, stream(first_half))

    # Another control plane (no hash in memory) takes over the same session.
    other = open_storage(tmp_path, s3_settings)
    try:
        resumed = await other.upload_status("lab/resume", status.upload_id)
        assert resumed.offset == len(first_half)
        await other.append_upload(
            "lab/resume", status.upload_id, stream(second_half), start=resumed.offset
        )
        digest = Digest.of(first_half + second_half)
        await other.commit_upload("lab/resume", status.upload_id, digest)
    finally:
        await other.aclose()
    assert await s3_storage.stat_blob("lab/resume", digest) == 9 * MIB


async def test_wrong_digest_stores_nothing(s3_storage):
    status = await s3_storage.start_upload("lab/bad")
    await s3_storage.append_upload("lab/bad", status.upload_id, stream(b"payload"))
    with pytest.raises(DigestMismatch):
        await s3_storage.commit_upload("lab/bad", status.upload_id, Digest.of(b"other"))
    assert await s3_storage.list_blobs() == []
    with pytest.raises(BlobUploadUnknown):
        await s3_storage.upload_status("lab/bad", status.upload_id)


async def test_out_of_order_and_short_chunks_are_refused_and_leave_the_offset(
    s3_storage,
):
    status = await s3_storage.start_upload("lab/order")
    await s3_storage.append_upload("lab/order", status.upload_id, stream(b"12345"))
    with pytest.raises(UploadOutOfOrder):
        await s3_storage.append_upload(
            "lab/order", status.upload_id, stream(b"x"), start=3
        )
    with pytest.raises(SizeInvalid):
        await s3_storage.append_upload(
            "lab/order", status.upload_id, stream(b"678"), start=5, length=10
        )
    after = await s3_storage.upload_status("lab/order", status.upload_id)
    assert after.offset == 5
    await s3_storage.append_upload("lab/order", status.upload_id, stream(b"678"))
    digest = Digest.of(b"12345678")
    await s3_storage.commit_upload("lab/order", status.upload_id, digest)
    assert await read_all(s3_storage, digest) == b"12345678"


async def test_manifests_tags_and_repositories(s3_storage):
    config = await upload(s3_storage, "team/app", b"{}")
    layer = await upload(s3_storage, "team/app", b"layer")
    body = manifest_of(config, 2, [(layer, 5)])
    digest = Digest.of(body)
    await s3_storage.put_manifest("team/app", digest, OCI_MANIFEST, body, tag="v1")
    await s3_storage.put_manifest("team/app", digest, OCI_MANIFEST, body, tag="v2")
    await upload(s3_storage, "team/app/sub", b"x")

    assert await s3_storage.list_repositories() == ["team/app", "team/app/sub"]
    assert await s3_storage.list_tags("team/app") == ["v1", "v2"]
    assert await s3_storage.resolve_tag("team/app", "v1") == digest
    stored = await s3_storage.get_manifest("team/app", digest)
    assert (stored.media_type, stored.body) == (OCI_MANIFEST, body)
    with pytest.raises(NameUnknown):
        await s3_storage.list_tags("team/none")

    await s3_storage.delete_tag("team/app", "v1")
    assert await s3_storage.list_tags("team/app") == ["v2"]
    await s3_storage.delete_manifest("team/app", digest)
    assert await s3_storage.list_tags("team/app") == []
    with pytest.raises(ManifestUnknown):
        await s3_storage.get_manifest("team/app", digest)
    await s3_storage.unlink_blob("team/app", layer)
    with pytest.raises(BlobUnknown):
        await s3_storage.stat_blob("team/app", layer)


async def test_stale_uploads_are_purged(s3_storage):
    stale = await s3_storage.start_upload("lab/purge")
    await s3_storage.append_upload("lab/purge", stale.upload_id, stream(b"abc"))
    assert await s3_storage.purge_uploads(older_than_s=3600) == 0
    assert await s3_storage.purge_uploads(older_than_s=-1) == 1
    with pytest.raises(BlobUploadUnknown):
        await s3_storage.upload_status("lab/purge", stale.upload_id)


async def test_garbage_collection_frees_unreferenced_blobs_in_the_bucket(s3_storage):
    config = await upload(s3_storage, "lab/gc", b"{}")
    kept = await upload(s3_storage, "lab/gc", b"kept layer")
    dropped = await upload(s3_storage, "lab/gc", b"dropped layer!")
    body = manifest_of(config, 2, [(kept, 10)])
    await s3_storage.put_manifest(
        "lab/gc", Digest.of(body), OCI_MANIFEST, body, tag="v1"
    )

    report = await GarbageCollector(s3_storage).collect(min_age_s=0)

    assert (report.blobs_deleted, report.bytes_freed) == (1, len(b"dropped layer!"))
    remaining = {blob.digest for blob in await s3_storage.list_blobs()}
    assert remaining == {config, kept, Digest.of(body)}
    with pytest.raises(BlobUnknown):
        await s3_storage.stat_blob("lab/gc", dropped)


async def test_second_registry_on_the_same_bucket_serves_a_skopeo_push(
    s3_storage, s3_settings, serve_registry, tiny_layout, skopeo, tmp_path
):
    layout, digest = tiny_layout
    second = open_storage(tmp_path, s3_settings)
    try:
        first_app = build_registry_app(s3_storage, AllowAllAuthorizer())
        second_app = build_registry_app(second, AllowAllAuthorizer())
        async with serve_registry(first_app) as first_url:
            host = first_url.removeprefix("http://")
            await skopeo(
                "copy",
                "--dest-tls-verify=false",
                f"oci:{layout}:latest",
                f"docker://{host}/lab/tiny:latest",
            )
        async with serve_registry(second_app) as second_url:
            image = f"docker://{second_url.removeprefix('http://')}/lab/tiny:latest"
            inspected = await skopeo("inspect", "--tls-verify=false", image)
            pulled = tmp_path / "pulled"
            await skopeo(
                "copy", "--src-tls-verify=false", image, f"oci:{pulled}:latest"
            )
    finally:
        await second.aclose()

    assert json.loads(inspected.stdout)["Digest"] == digest
    index = json.loads((pulled / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
