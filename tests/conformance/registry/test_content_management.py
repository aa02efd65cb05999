"""OCI distribution spec, "Content management": deleting tags, manifests and blobs,
and what the registry does with bytes nothing references any more."""

from control_plane_lite.registry.garbage import GarbageCollector

from .oci import codes, digest_of, push_blob, push_image


async def test_deleting_a_tag_keeps_the_manifest(client):
    body = await push_image(client, "lab/app", "v1")
    deleted = await client.delete("/v2/lab/app/manifests/v1")
    assert deleted.status_code == 202
    assert (await client.get("/v2/lab/app/manifests/v1")).status_code == 404
    assert (
        await client.get(f"/v2/lab/app/manifests/{digest_of(body)}")
    ).status_code == 200


async def test_deleting_a_manifest_removes_it_and_its_tags(client):
    body = await push_image(client, "lab/app", "v1")
    digest = digest_of(body)
    deleted = await client.delete(f"/v2/lab/app/manifests/{digest}")
    gone = await client.get(f"/v2/lab/app/manifests/{digest}")
    assert deleted.status_code == 202
    assert (gone.status_code, codes(gone)) == (404, ["MANIFEST_UNKNOWN"])
    assert (await client.get("/v2/lab/app/tags/list")).json()["tags"] == []


async def test_deleting_an_unknown_manifest_is_manifest_unknown(client):
    await push_image(client, "lab/app", "v1")
    response = await client.delete(f"/v2/lab/app/manifests/{digest_of(b'none')}")
    assert (response.status_code, codes(response)) == (404, ["MANIFEST_UNKNOWN"])


async def test_deleting_a_blob(client):
    digest = await push_blob(client, "lab/app", b"to delete")
    deleted = await client.delete(f"/v2/lab/app/blobs/{digest}")
    head = await client.head(f"/v2/lab/app/blobs/{digest}")
    again = await client.delete(f"/v2/lab/app/blobs/{digest}")
    assert deleted.status_code == 202
    assert head.status_code == 404
    assert (again.status_code, codes(again)) == (404, ["BLOB_UNKNOWN"])


async def test_garbage_collection_frees_what_deleted_manifests_held(client, storage):
    kept = await push_image(client, "lab/app", "kept", layers=(b"kept layer",))
    dropped = await push_image(client, "lab/app", "dropped", layers=(b"dropped!",))
    await client.delete(f"/v2/lab/app/manifests/{digest_of(dropped)}")
    collector = GarbageCollector(storage)

    young = await collector.collect()  # everything was just written
    report = await collector.collect(min_age_s=0)

    assert young.blobs_deleted == 0
    assert report.blobs_deleted == 2  # the dropped layer and the manifest's bytes
    assert report.bytes_freed == len(b"dropped!") + len(dropped)
    assert (await client.get("/v2/lab/app/manifests/kept")).content == kept
    layer = await client.get(f"/v2/lab/app/blobs/{digest_of(b'kept layer')}")
    assert layer.status_code == 200
    gone = await client.head(f"/v2/lab/app/blobs/{digest_of(b'dropped!')}")
    assert gone.status_code == 404


async def test_garbage_collection_never_touches_an_upload_in_progress(client, storage):
    start = await client.post("/v2/lab/app/blobs/uploads/")
    await client.patch(start.headers["Location"], content=b"half of it")
    await GarbageCollector(storage).collect(min_age_s=0)
    done = await client.put(
        start.headers["Location"],
        params={"digest": digest_of(b"half of it, rest")},
        content=b", rest",
    )
    assert done.status_code == 201


async def test_an_interrupted_upload_is_never_served_as_a_blob(client):
    data = b"complete blob"
    start = await client.post("/v2/lab/app/blobs/uploads/")
    await client.patch(start.headers["Location"], content=data[:5])
    # The client goes away here; the bytes it sent are only upload state.
    head = await client.head(f"/v2/lab/app/blobs/{digest_of(data)}")
    status = await client.get(start.headers["Location"])
    assert head.status_code == 404
    assert status.headers["Range"] == "0-4"
