"""OCI distribution spec, "Pull": manifests and blobs by tag and digest, ranges, and
the errors a pull can meet."""

import base64
import json

import pytest

from .oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    codes,
    digest_of,
    image_manifest,
    index_of,
    push_blob,
    push_image,
    push_manifest,
)


async def test_api_check_answers_200_with_the_version_header(client):
    response = await client.get("/v2/")
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_manifest_by_tag_and_by_digest_is_served_as_pushed(client):
    body = await push_image(client, "lab/app", "v1")
    digest = digest_of(body)

    by_tag = await client.get("/v2/lab/app/manifests/v1")
    by_digest = await client.get(f"/v2/lab/app/manifests/{digest}")

    for response in (by_tag, by_digest):
        assert response.status_code == 200
        assert response.content == body
        assert response.headers["Content-Type"] == OCI_MANIFEST
        assert response.headers["Docker-Content-Digest"] == digest


async def test_head_of_a_manifest_has_its_headers_and_no_body(client):
    body = await push_image(client, "lab/app", "v1")
    response = await client.head("/v2/lab/app/manifests/v1")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["Content-Length"]) == len(body)
    assert response.headers["Docker-Content-Digest"] == digest_of(body)


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
async def test_image_manifests_keep_their_media_type(client, media_type):
    body = await push_image(client, "lab/app", "v1", media_type=media_type)
    response = await client.get(f"/v2/lab/app/manifests/{digest_of(body)}")
    assert response.headers["Content-Type"] == media_type
    assert response.content == body


@pytest.mark.parametrize(
    "index_type, child_type",
    [(OCI_INDEX, OCI_MANIFEST), (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)],
)
async def test_indexes_and_manifest_lists_keep_their_media_type(
    client, index_type, child_type
):
    child = await push_image(client, "lab/multi", "amd64", media_type=child_type)
    index = index_of([(child_type, child)], media_type=index_type)
    await push_manifest(client, "lab/multi", "latest", index, index_type)

    response = await client.get("/v2/lab/multi/manifests/latest")
    assert response.headers["Content-Type"] == index_type
    assert response.content == index


async def test_unknown_manifest_and_tag_are_manifest_unknown(client):
    await push_image(client, "lab/app", "v1")
    missing_digest = await client.get(f"/v2/lab/app/manifests/{digest_of(b'none')}")
    missing_tag = await client.head("/v2/lab/app/manifests/v9")
    assert (missing_digest.status_code, codes(missing_digest)) == (
        404,
        ["MANIFEST_UNKNOWN"],
    )
    assert missing_tag.status_code == 404


async def test_blob_get_and_head(client):
    digest = await push_blob(client, "lab/app", b"0123456789")
    got = await client.get(f"/v2/lab/app/blobs/{digest}")
    head = await client.head(f"/v2/lab/app/blobs/{digest}")
    assert (got.status_code, got.content) == (200, b"0123456789")
    assert got.headers["Docker-Content-Digest"] == digest
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["Content-Length"] == "10"


async def test_blob_range_is_served_with_206(client):
    digest = await push_blob(client, "lab/app", b"0123456789")
    response = await client.get(
        f"/v2/lab/app/blobs/{digest}", headers={"Range": "bytes=2-5"}
    )
    assert response.status_code == 206
    assert response.content == b"2345"
    assert response.headers["Content-Range"] == "bytes 2-5/10"


async def test_blob_range_past_the_end_is_416(client):
    digest = await push_blob(client, "lab/app", b"0123456789")
    response = await client.get(
        f"/v2/lab/app/blobs/{digest}", headers={"Range": "bytes=10-"}
    )
    assert response.status_code == 416
    assert response.headers["Content-Range"] == "bytes */10"


async def test_unknown_blob_is_blob_unknown(client):
    await push_blob(client, "lab/app", b"something")
    response = await client.get(f"/v2/lab/app/blobs/{digest_of(b'other')}")
    assert (response.status_code, codes(response)) == (404, ["BLOB_UNKNOWN"])


async def test_blob_of_another_repository_is_not_served(client):
    digest = await push_blob(client, "lab/one", b"private bytes")
    response = await client.get(f"/v2/lab/two/blobs/{digest}")
    assert (response.status_code, codes(response)) == (404, ["BLOB_UNKNOWN"])


@pytest.mark.parametrize(
    "reference",
    ["sha256:xyz", "sha256:" + "A" * 64, "md5:" + "a" * 32, "sha512:" + "a" * 128],
)
async def test_malformed_or_unsupported_digests_are_digest_invalid(client, reference):
    response = await client.get(f"/v2/lab/app/blobs/{reference}")
    assert (response.status_code, codes(response)) == (400, ["DIGEST_INVALID"])


@pytest.mark.parametrize(
    "name",
    ["Lab/App", "lab/%2E%2E/etc", "lab//app", "-lab/app", "a" * 256, "lab/.hidden"],
)
async def test_invalid_repository_names_are_name_invalid(client, name):
    response = await client.get(f"/v2/{name}/tags/list")
    assert (response.status_code, codes(response)) == (400, ["NAME_INVALID"])


async def test_pull_without_credentials_is_unauthorized_with_a_challenge(guarded):
    response = await guarded.client.get("/v2/lab/app/manifests/v1")
    assert (response.status_code, codes(response)) == (401, ["UNAUTHORIZED"])
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="http://')
    assert 'scope="repository:lab/app:pull"' in challenge


async def test_credential_for_another_repository_is_denied(guarded):
    secret = guarded.credential("lab/one")
    auth = base64.b64encode(f"x:{secret}".encode()).decode()
    response = await guarded.client.get(
        "/v2/lab/two/tags/list", headers={"Authorization": f"Basic {auth}"}
    )
    assert (response.status_code, codes(response)) == (403, ["DENIED"])


async def test_artifact_scoped_credential_reads_only_its_digest(guarded):
    admin = {"Authorization": f"Bearer {guarded.api_key}"}
    guarded.client.headers.update(admin)
    first = await push_image(guarded.client, "lab/app", "v1")
    second = await push_image(guarded.client, "lab/app", "v2", layers=(b"two",))
    del guarded.client.headers["Authorization"]
    secret = guarded.credential("lab/app", artifact=digest_of(first))
    bearer = {"Authorization": f"Bearer {secret}"}

    allowed = await guarded.client.get(
        f"/v2/lab/app/manifests/{digest_of(first)}", headers=bearer
    )
    refused = await guarded.client.get(
        f"/v2/lab/app/manifests/{digest_of(second)}", headers=bearer
    )
    assert allowed.status_code == 200
    assert json.loads(allowed.content) == json.loads(first)
    assert (refused.status_code, codes(refused)) == (403, ["DENIED"])


async def test_every_error_is_the_spec_error_body(client):
    response = await client.get("/v2/lab/app/manifests/v1")
    body = response.json()
    assert set(body) == {"errors"}
    (error,) = body["errors"]
    assert {"code", "message"} <= set(error)
    assert response.headers["Content-Type"] == "application/json"


async def test_image_manifest_media_types_are_checked_against_the_body(client):
    await push_blob(client, "lab/app", b"{}")
    body = image_manifest(b"{}", [], media_type=OCI_MANIFEST)
    response = await client.put(
        "/v2/lab/app/manifests/v1",
        content=body,
        headers={"Content-Type": DOCKER_MANIFEST},
    )
    assert (response.status_code, codes(response)) == (400, ["MANIFEST_INVALID"])
