"""OCI distribution spec, "Push": monolithic, single-POST and chunked blob uploads,
cross-repository mounts, manifests, and the refusals of bad input (nothing stored)."""

import base64
import json

import pytest

from .oci import (
    MIB,
    OCI_MANIFEST,
    codes,
    digest_of,
    image_manifest,
    push_blob,
    push_manifest,
)


async def start(client, repository="lab/app"):
    response = await client.post(f"/v2/{repository}/blobs/uploads/")
    assert response.status_code == 202, response.text
    return response.headers["Location"]


async def assert_blob_absent(client, digest, repository="lab/app"):
    response = await client.head(f"/v2/{repository}/blobs/{digest}")
    assert response.status_code == 404


async def test_post_then_put_stores_a_blob(client):
    location = await start(client)
    digest = digest_of(b"monolithic")
    done = await client.put(location, params={"digest": digest}, content=b"monolithic")
    assert done.status_code == 201
    assert done.headers["Docker-Content-Digest"] == digest
    assert done.headers["Location"].endswith(f"/v2/lab/app/blobs/{digest}")
    assert (await client.get(done.headers["Location"])).content == b"monolithic"


async def test_single_post_with_digest_stores_a_blob(client):
    digest = digest_of(b"one request")
    response = await client.post(
        "/v2/lab/app/blobs/uploads/", params={"digest": digest}, content=b"one request"
    )
    assert response.status_code == 201
    assert (await client.get(f"/v2/lab/app/blobs/{digest}")).content == b"one request"


async def test_chunked_upload_with_status_between_chunks(client):
    data = bytes(range(256)) * 4096  # 1 MiB
    location = await start(client)
    first = await client.patch(
        location,
        content=data[:300_000],
        headers={
            "Content-Range": "0-299999",
            "Content-Type": "application/octet-stream",
        },
    )
    assert first.status_code == 202
    assert first.headers["Range"] == "0-299999"

    status = await client.get(first.headers["Location"])
    assert (status.status_code, status.headers["Range"]) == (204, "0-299999")

    second = await client.patch(
        status.headers["Location"],
        content=data[300_000:],
        headers={"Content-Range": f"300000-{len(data) - 1}"},
    )
    assert second.headers["Range"] == f"0-{len(data) - 1}"
    done = await client.put(
        second.headers["Location"], params={"digest": digest_of(data)}
    )
    assert done.status_code == 201
    assert (await client.get(f"/v2/lab/app/blobs/{digest_of(data)}")).content == data


async def test_out_of_order_chunk_is_416_and_leaves_the_upload(client):
    location = await start(client)
    await client.patch(location, content=b"12345", headers={"Content-Range": "0-4"})
    response = await client.patch(
        location, content=b"xyz", headers={"Content-Range": "7-9"}
    )
    assert (response.status_code, codes(response)) == (416, ["RANGE_INVALID"])
    assert response.headers["Range"] == "0-4"
    status = await client.get(location)
    assert status.headers["Range"] == "0-4"


async def test_cancelled_upload_is_gone(client):
    location = await start(client)
    await client.patch(location, content=b"partial")
    cancelled = await client.delete(location)
    after = await client.get(location)
    assert cancelled.status_code == 204
    assert (after.status_code, codes(after)) == (404, ["BLOB_UPLOAD_UNKNOWN"])


async def test_unknown_upload_is_blob_upload_unknown(client):
    response = await client.patch(
        "/v2/lab/app/blobs/uploads/7b0dbb23-0f26-4b2c-9b9b-8d1c4cdd5c4e", content=b"x"
    )
    assert (response.status_code, codes(response)) == (404, ["BLOB_UPLOAD_UNKNOWN"])


async def test_wrong_digest_is_digest_invalid_and_stores_nothing(client):
    location = await start(client)
    claimed = digest_of(b"what I said")
    response = await client.put(
        location, params={"digest": claimed}, content=b"what I sent"
    )
    assert (response.status_code, codes(response)) == (400, ["DIGEST_INVALID"])
    await assert_blob_absent(client, claimed)
    await assert_blob_absent(client, digest_of(b"what I sent"))


@pytest.mark.parametrize("digest", ["sha512:" + "a" * 128, "sha256:short", "nonsense"])
async def test_single_post_with_a_bad_digest_stores_nothing(client, digest):
    response = await client.post(
        "/v2/lab/app/blobs/uploads/", params={"digest": digest}, content=b"bytes"
    )
    assert (response.status_code, codes(response)) == (400, ["DIGEST_INVALID"])
    await assert_blob_absent(client, digest_of(b"bytes"))


async def test_closing_without_a_digest_is_digest_invalid(client):
    location = await start(client)
    response = await client.put(location, content=b"x")
    assert (response.status_code, codes(response)) == (400, ["DIGEST_INVALID"])


async def test_cross_repository_mount(client):
    digest = await push_blob(client, "lab/source", b"shared layer")
    mounted = await client.post(
        "/v2/lab/target/blobs/uploads/", params={"mount": digest, "from": "lab/source"}
    )
    assert mounted.status_code == 201
    assert mounted.headers["Location"].endswith(f"/v2/lab/target/blobs/{digest}")
    assert (
        await client.get(f"/v2/lab/target/blobs/{digest}")
    ).content == b"shared layer"


async def test_mount_of_a_missing_blob_opens_an_upload_instead(client):
    response = await client.post(
        "/v2/lab/target/blobs/uploads/",
        params={"mount": digest_of(b"nowhere"), "from": "lab/source"},
    )
    assert response.status_code == 202
    assert "/blobs/uploads/" in response.headers["Location"]


async def test_manifest_push_by_tag_and_by_digest(client):
    await push_blob(client, "lab/app", b"{}")
    await push_blob(client, "lab/app", b"layer")
    body = image_manifest(b"{}", [b"layer"])
    by_tag = await push_manifest(client, "lab/app", "v1", body)
    by_digest = await push_manifest(client, "lab/app", digest_of(body), body)
    for response in (by_tag, by_digest):
        assert response.headers["Docker-Content-Digest"] == digest_of(body)
        assert response.headers["Location"].endswith(
            f"/v2/lab/app/manifests/{digest_of(body)}"
        )


async def test_manifest_pushed_under_another_digest_is_digest_invalid(client):
    await push_blob(client, "lab/app", b"{}")
    body = image_manifest(b"{}", [])
    response = await client.put(
        f"/v2/lab/app/manifests/{digest_of(b'other')}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert (response.status_code, codes(response)) == (400, ["DIGEST_INVALID"])


async def test_manifest_with_missing_blobs_is_refused_and_not_stored(client):
    await push_blob(client, "lab/app", b"{}")
    body = image_manifest(b"{}", [b"never pushed"])
    response = await client.put(
        "/v2/lab/app/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert (response.status_code, codes(response)) == (400, ["MANIFEST_BLOB_UNKNOWN"])
    assert (
        await client.get(f"/v2/lab/app/manifests/{digest_of(body)}")
    ).status_code == 404
    assert (await client.get("/v2/lab/app/tags/list")).json()["tags"] == []


async def test_manifest_whose_blobs_are_in_another_repository_is_refused(client):
    await push_blob(client, "lab/other", b"{}")
    body = image_manifest(b"{}", [])
    response = await client.put(
        "/v2/lab/app/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert (response.status_code, codes(response)) == (400, ["MANIFEST_BLOB_UNKNOWN"])


# The registry answers 413 as soon as it reads the declared length, before the
# body; httpx then drops the rest of its request body and warns that it did.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_oversized_manifest_is_413_and_not_stored(client):
    await push_blob(client, "lab/app", b"{}")
    padding = {"org.example.padding": "x" * (4 * MIB)}
    body = image_manifest(b"{}", [], annotations=padding)
    response = await client.put(
        "/v2/lab/app/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert (response.status_code, codes(response)) == (413, ["SIZE_INVALID"])
    assert (await client.get("/v2/lab/app/manifests/v1")).status_code == 404


async def test_malformed_manifest_is_manifest_invalid(client):
    response = await client.put(
        "/v2/lab/app/manifests/v1",
        content=b"{not json",
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert (response.status_code, codes(response)) == (400, ["MANIFEST_INVALID"])


@pytest.mark.parametrize("tag", ["-leading-dash", ".dot", "a" * 129, "bad+plus"])
async def test_tags_outside_the_grammar_are_tag_invalid_and_not_stored(client, tag):
    await push_blob(client, "lab/app", b"{}")
    body = image_manifest(b"{}", [])
    response = await client.put(
        f"/v2/lab/app/manifests/{tag}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert (response.status_code, codes(response)) == (400, ["TAG_INVALID"])
    assert (await client.get("/v2/lab/app/tags/list")).json()["tags"] == []


@pytest.mark.parametrize("name", ["Lab/App", "lab/%2E%2E/etc", "a" * 256])
async def test_push_to_an_invalid_name_is_name_invalid_and_stores_nothing(client, name):
    response = await client.post(
        f"/v2/{name}/blobs/uploads/", params={"digest": digest_of(b"x")}, content=b"x"
    )
    assert (response.status_code, codes(response)) == (400, ["NAME_INVALID"])
    assert (await client.get("/v2/_catalog")).json()["repositories"] == []


async def test_pull_only_credential_cannot_push(guarded):
    secret = guarded.credential("lab/app", "pull")
    auth = base64.b64encode(f"x:{secret}".encode()).decode()
    response = await guarded.client.post(
        "/v2/lab/app/blobs/uploads/",
        params={"digest": digest_of(b"x")},
        content=b"x",
        headers={"Authorization": f"Basic {auth}"},
    )
    assert (response.status_code, codes(response)) == (403, ["DENIED"])


async def test_push_credential_pushes_its_repository_only(guarded):
    secret = guarded.credential("lab/app", "push")
    bearer = {"Authorization": f"Bearer {secret}"}
    own = await guarded.client.post(
        "/v2/lab/app/blobs/uploads/",
        params={"digest": digest_of(b"x")},
        content=b"x",
        headers=bearer,
    )
    other = await guarded.client.post("/v2/lab/other/blobs/uploads/", headers=bearer)
    assert own.status_code == 201
    assert (other.status_code, codes(other)) == (403, ["DENIED"])
    assert json.loads((await guarded.client.get("/v2/", headers=bearer)).content) == {}
