import hashlib
import json
import logging
import os

import h11
import httpx
import pytest
import trio
from starlette.applications import Starlette
from starlette.routing import Mount

from control_plane_lite.registry import (
    AllowAllAuthorizer,
    StaticBasicAuthorizer,
    build_registry_app,
)
from control_plane_lite.registry.manifest import OCI_INDEX, OCI_MANIFEST

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MIB = 1024 * 1024


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error_code(response):
    return [error["code"] for error in response.json()["errors"]]


def image_manifest(config, *layers):
    def descriptor(media_type, data):
        return {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
        }
    ).encode()


@pytest.fixture
async def client(storage, serve_registry):
    app = build_registry_app(storage, AllowAllAuthorizer())
    async with serve_registry(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            yield client


async def push_blob(client, repository, data):
    digest = digest_of(data)
    response = await client.post(
        f"/v2/{repository}/blobs/uploads/", params={"digest": digest}, content=data
    )
    assert response.status_code == 201, response.text
    return digest


async def push_image(client, repository, tag, config=b"{}", layers=(b"layer",)):
    for blob in (config, *layers):
        await push_blob(client, repository, blob)
    body = image_manifest(config, *layers)
    response = await client.put(
        f"/v2/{repository}/manifests/{tag}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    return body


async def test_api_check_answers_an_empty_object(client):
    response = await client.get("/v2/")
    assert response.status_code == 200
    assert response.json() == {}
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_monolithic_blob_with_wrong_digest_is_refused_and_not_stored(client):
    claimed = digest_of(b"what the client says")
    response = await client.post(
        "/v2/lab/tiny/blobs/uploads/",
        params={"digest": claimed},
        content=b"what the client sends",
    )

    assert response.status_code == 400
    assert error_code(response) == ["DIGEST_INVALID"]
    for digest in (claimed, digest_of(b"what the client sends")):
        head = await client.head(f"/v2/lab/tiny/blobs/{digest}")
        assert head.status_code == 404


async def test_chunked_upload_with_wrong_final_digest_stores_nothing(client, storage):
    started = await client.post("/v2/lab/tiny/blobs/uploads/")
    location = started.headers["Location"]
    await client.patch(location, content=b"some bytes")

    response = await client.put(location, params={"digest": digest_of(b"else")})

    assert response.status_code == 400
    assert error_code(response) == ["DIGEST_INVALID"]
    assert os.listdir(storage.root / "blobs" / "sha256") == []
    assert (await client.get(location)).status_code == 404


async def test_chunked_upload_reports_progress_and_stores_the_blob(client):
    started = await client.post("/v2/lab/tiny/blobs/uploads/")
    assert started.status_code == 202
    assert started.headers["Range"] == "0-0"
    upload_id = started.headers["Docker-Upload-UUID"]
    location = started.headers["Location"]
    assert location == f"/v2/lab/tiny/blobs/uploads/{upload_id}"

    first = await client.patch(
        location,
        content=b"0123456789",
        headers={"Content-Range": "0-9", "Content-Type": "application/octet-stream"},
    )
    assert (first.status_code, first.headers["Range"]) == (202, "0-9")
    status = await client.get(first.headers["Location"])
    assert (status.status_code, status.headers["Range"]) == (204, "0-9")

    digest = digest_of(b"0123456789abc")
    done = await client.put(
        location,
        params={"digest": digest},
        content=b"abc",
        headers={"Content-Range": "10-12"},
    )
    assert done.status_code == 201
    assert done.headers["Location"] == f"/v2/lab/tiny/blobs/{digest}"
    assert done.headers["Docker-Content-Digest"] == digest

    blob = await client.get(done.headers["Location"])
    assert blob.content == b"0123456789abc"
    assert blob.headers["Content-Length"] == "13"


async def test_chunk_out_of_order_is_refused_with_416(client):
    started = await client.post("/v2/lab/tiny/blobs/uploads/")
    location = started.headers["Location"]
    await client.patch(location, content=b"01234", headers={"Content-Range": "0-4"})

    response = await client.patch(
        location, content=b"89", headers={"Content-Range": "8-9"}
    )

    assert response.status_code == 416
    assert response.headers["Range"] == "0-4"
    assert (await client.get(location)).headers["Range"] == "0-4"


@pytest.mark.parametrize(
    "digest", ["sha512:" + "a" * 128, "md5:d41d8cd98f00b204e9800998ecf8427e"]
)
async def test_unsupported_digest_algorithm_is_refused(client, digest):
    upload = await client.post(
        "/v2/lab/tiny/blobs/uploads/", params={"digest": digest}, content=b"x"
    )
    fetch = await client.get(f"/v2/lab/tiny/blobs/{digest}")

    for response in (upload, fetch):
        assert response.status_code == 400
        assert error_code(response) == ["DIGEST_INVALID"]
    assert "not supported" in upload.json()["errors"][0]["message"]


async def test_manifest_referencing_a_missing_blob_is_refused(client):
    await push_blob(client, "lab/tiny", b"{}")
    body = image_manifest(b"{}", b"never pushed")

    response = await client.put(
        "/v2/lab/tiny/manifests/latest",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )

    assert response.status_code == 400
    assert error_code(response) == ["MANIFEST_BLOB_UNKNOWN"]
    assert response.json()["errors"][0]["detail"] == {
        "digests": [digest_of(b"never pushed")]
    }
    assert (await client.get("/v2/lab/tiny/manifests/latest")).status_code == 404


async def test_manifest_referencing_a_blob_of_another_repository_is_refused(client):
    await push_blob(client, "lab/other", b"layer")
    await push_blob(client, "lab/tiny", b"{}")
    response = await client.put(
        "/v2/lab/tiny/manifests/latest",
        content=image_manifest(b"{}", b"layer"),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert error_code(response) == ["MANIFEST_BLOB_UNKNOWN"]


async def test_manifest_is_served_byte_for_byte_by_tag_and_digest(client):
    body = await push_image(client, "lab/tiny", "v1")
    digest = digest_of(body)

    for reference in ("v1", digest):
        response = await client.get(f"/v2/lab/tiny/manifests/{reference}")
        assert response.status_code == 200
        assert response.content == body
        assert response.headers["Content-Type"] == OCI_MANIFEST
        assert response.headers["Docker-Content-Digest"] == digest

    head = await client.head("/v2/lab/tiny/manifests/v1")
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(body))
    assert head.headers["Docker-Content-Digest"] == digest


async def test_manifest_pushed_by_digest_must_match_it(client):
    await push_image(client, "lab/tiny", "v1")
    body = image_manifest(b"{}", b"layer")

    wrong = await client.put(
        f"/v2/lab/tiny/manifests/{digest_of(b'other')}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    right = await client.put(
        f"/v2/lab/tiny/manifests/{digest_of(body)}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )

    assert (wrong.status_code, error_code(wrong)) == (400, ["DIGEST_INVALID"])
    assert right.status_code == 201
    assert right.headers["Location"] == f"/v2/lab/tiny/manifests/{digest_of(body)}"


async def test_index_needs_its_child_manifests_in_the_repository(client):
    child = await push_image(client, "lab/tiny", "amd64")
    missing = image_manifest(b"{}", b"other layer")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": digest_of(m), "size": len(m)}
                for m in (child, missing)
            ],
        }
    ).encode()

    refused = await client.put(
        "/v2/lab/tiny/manifests/multi",
        content=index,
        headers={"Content-Type": OCI_INDEX},
    )
    assert error_code(refused) == ["MANIFEST_BLOB_UNKNOWN"]
    assert refused.json()["errors"][0]["detail"] == {"digests": [digest_of(missing)]}

    await push_image(client, "lab/tiny", "other", layers=(b"other layer",))
    accepted = await client.put(
        "/v2/lab/tiny/manifests/multi",
        content=index,
        headers={"Content-Type": OCI_INDEX},
    )
    assert accepted.status_code == 201


@pytest.mark.parametrize(
    "path",
    [
        "/v2/Lab/tiny/tags/list",
        "/v2/lab/%2E%2E/etc/tags/list",
        "/v2/lab..tiny/tags/list",
        "/v2/lab/_blobs/tags/list",
    ],
)
async def test_invalid_repository_names_are_refused(client, path):
    response = await client.get(path)
    assert response.status_code == 400
    assert error_code(response) == ["NAME_INVALID"]


@pytest.mark.parametrize("tag", ["-bad", ".hidden", "x" * 129])
async def test_invalid_tag_is_refused(client, tag):
    response = await client.put(
        f"/v2/lab/tiny/manifests/{tag}",
        content=image_manifest(b"{}"),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 400
    assert error_code(response) == ["TAG_INVALID"]


async def send_raw(base_url, target, headers, chunks=()):
    """PUT with h11 over a plain socket, to control exactly what body is sent.

    httpx cannot be used here: the server answers before the body is complete,
    and httpx then leaves its body generator unclosed.
    """
    host, port = base_url.removeprefix("http://").split(":")
    connection = h11.Connection(h11.CLIENT)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        request = h11.Request(
            method="PUT", target=target, headers=[("Host", host), *headers]
        )
        await stream.send_all(connection.send(request))
        for chunk in chunks:
            await stream.send_all(connection.send(h11.Data(data=chunk)))
        if chunks:
            await stream.send_all(connection.send(h11.EndOfMessage()))

        body = b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some())
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, json.loads(body)


async def test_manifest_declared_over_4_mib_is_refused_before_its_body(
    storage, serve_registry
):
    app = build_registry_app(storage, AllowAllAuthorizer())
    headers = [("Content-Type", OCI_MANIFEST), ("Content-Length", str(4 * MIB + 1))]
    async with serve_registry(app) as base_url:
        with trio.fail_after(10):
            status, body = await send_raw(
                base_url, "/v2/lab/tiny/manifests/huge", headers
            )
    assert status == 413
    assert [e["code"] for e in body["errors"]] == ["SIZE_INVALID"]


async def test_manifest_streamed_over_4_mib_is_refused(storage, serve_registry):
    app = build_registry_app(storage, AllowAllAuthorizer())
    headers = [("Content-Type", OCI_MANIFEST), ("Transfer-Encoding", "chunked")]
    chunks = [b"x" * (64 * 1024)] * 64 + [b"x"]
    async with serve_registry(app) as base_url:
        with trio.fail_after(10):
            status, body = await send_raw(
                base_url, "/v2/lab/tiny/manifests/huge", headers, chunks
            )
    assert status == 413
    assert [e["code"] for e in body["errors"]] == ["SIZE_INVALID"]
    assert await storage.list_repositories() == []


async def test_malformed_manifest_is_refused(client):
    response = await client.put(
        "/v2/lab/tiny/manifests/v1",
        content=b"{not json",
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert error_code(response) == ["MANIFEST_INVALID"]


async def test_blob_range_request_returns_the_span(client):
    data = bytes(range(200))
    digest = await push_blob(client, "lab/tiny", data)

    partial = await client.get(
        f"/v2/lab/tiny/blobs/{digest}", headers={"Range": "bytes=10-19"}
    )
    beyond = await client.get(
        f"/v2/lab/tiny/blobs/{digest}", headers={"Range": "bytes=500-"}
    )

    assert partial.status_code == 206
    assert partial.content == data[10:20]
    assert partial.headers["Content-Range"] == "bytes 10-19/200"
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == "bytes */200"


async def test_client_leaving_mid_blob_releases_the_open_file(storage, serve_registry):
    app = build_registry_app(storage, AllowAllAuthorizer())
    data = os.urandom(32 * MIB)

    def blob_is_open(path):
        fds = "/proc/self/fd"
        return any(os.path.realpath(f"{fds}/{fd}") == path for fd in os.listdir(fds))

    async with serve_registry(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            digest = await push_blob(client, "lab/tiny", data)
        blob_path = str(storage.root / "blobs" / "sha256" / digest[7:])

        # A raw socket that reads the start of the blob, then hangs up.
        host, port = base_url.removeprefix("http://").split(":")
        request = f"GET /v2/lab/tiny/blobs/{digest} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        with trio.fail_after(5):
            async with await trio.open_tcp_stream(host, int(port)) as stream:
                await stream.send_all(request.encode())
                assert (await stream.receive_some()).startswith(b"HTTP/1.1 200")
                # The server opens the file once the headers are out, and keeps
                # it open while the unread bytes fill the socket buffers.
                while not blob_is_open(blob_path):
                    await trio.sleep(0.01)
            while blob_is_open(blob_path):
                await trio.sleep(0.01)


async def test_client_leaving_mid_chunk_leaves_a_resumable_upload(
    storage, serve_registry, caplog
):
    caplog.set_level(logging.DEBUG, logger="gstacks.cp.registry")
    app = build_registry_app(storage, AllowAllAuthorizer())
    payload = os.urandom(3 * MIB)

    async with serve_registry(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            started = await client.post("/v2/lab/tiny/blobs/uploads/")
            location = started.headers["Location"]
            upload_id = started.headers["Docker-Upload-UUID"]

            # Declare the whole payload, send two thirds, hang up.
            host, port = base_url.removeprefix("http://").split(":")
            head = (
                f"PATCH {location} HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n"
            )
            with trio.fail_after(5):
                async with await trio.open_tcp_stream(host, int(port)) as stream:
                    await stream.send_all(head.encode() + payload[: 2 * MIB])
                while not any("disconnected" in r.getMessage() for r in caplog.records):
                    await trio.sleep(0.01)

            # Whole buffered pieces were kept; a piece cut short was dropped.
            kept = (await storage.upload_status("lab/tiny", upload_id)).offset
            assert kept <= 2 * MIB
            done = await client.put(
                location,
                params={"digest": digest_of(payload)},
                content=payload[kept:],
                headers={"Content-Range": f"{kept}-{len(payload) - 1}"},
            )
            assert done.status_code == 201, done.text
            fetched = await client.get(done.headers["Location"])

    assert fetched.content == payload
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_blob_mount_links_from_the_source_or_falls_back_to_upload(client):
    digest = await push_blob(client, "lab/tiny", b"shared layer")

    mounted = await client.post(
        "/v2/lab/copy/blobs/uploads/", params={"mount": digest, "from": "lab/tiny"}
    )
    fallback = await client.post(
        "/v2/lab/copy/blobs/uploads/",
        params={"mount": digest_of(b"absent"), "from": "lab/tiny"},
    )

    assert mounted.status_code == 201
    assert mounted.headers["Location"] == f"/v2/lab/copy/blobs/{digest}"
    assert (await client.get(mounted.headers["Location"])).content == b"shared layer"
    assert fallback.status_code == 202
    assert "Docker-Upload-UUID" in fallback.headers


async def test_deleted_manifest_and_blob_are_gone(client):
    body = await push_image(client, "lab/tiny", "v1")
    layer = digest_of(b"layer")

    assert (
        await client.delete(f"/v2/lab/tiny/manifests/{digest_of(body)}")
    ).status_code == 202
    assert (await client.delete(f"/v2/lab/tiny/blobs/{layer}")).status_code == 202

    manifest = await client.get("/v2/lab/tiny/manifests/v1")
    blob = await client.get(f"/v2/lab/tiny/blobs/{layer}")
    assert error_code(manifest) == ["MANIFEST_UNKNOWN"]
    assert error_code(blob) == ["BLOB_UNKNOWN"]


async def test_tags_and_catalog_paginate_with_link_headers(client):
    for tag in ("c", "a", "b"):
        await push_image(client, "lab/tiny", tag)
    await push_blob(client, "lab/other", b"x")

    first = await client.get("/v2/lab/tiny/tags/list", params={"n": 2})
    assert first.json() == {"name": "lab/tiny", "tags": ["a", "b"]}
    link = first.headers["Link"]
    assert link == '</v2/lab/tiny/tags/list?n=2&last=b>; rel="next"'
    second = await client.get(link[1 : link.index(">")])
    assert second.json() == {"name": "lab/tiny", "tags": ["c"]}
    assert "Link" not in second.headers

    catalog = await client.get("/v2/_catalog", params={"n": 1})
    assert catalog.json() == {"repositories": ["lab/other"]}
    assert catalog.headers["Link"] == '</v2/_catalog?n=1&last=lab%2Fother>; rel="next"'
    rest = await client.get("/v2/_catalog", params={"last": "lab/other"})
    assert rest.json() == {"repositories": ["lab/tiny"]}

    bad = await client.get("/v2/_catalog", params={"n": "-1"})
    assert error_code(bad) == ["PAGINATION_NUMBER_INVALID"]
    unknown = await client.get("/v2/lab/nothing/tags/list")
    assert error_code(unknown) == ["NAME_UNKNOWN"]


async def test_unknown_endpoint_and_method_are_refused(client):
    nowhere = await client.get("/v2/lab/tiny")
    wrong_method = await client.post("/v2/lab/tiny/tags/list")
    assert (nowhere.status_code, error_code(nowhere)) == (404, ["UNSUPPORTED"])
    assert (wrong_method.status_code, error_code(wrong_method)) == (
        405,
        ["UNSUPPORTED"],
    )


async def test_registry_mounted_under_a_prefix_hands_out_prefixed_urls(
    storage, serve_registry
):
    outer = Starlette(
        routes=[
            Mount("/registry", app=build_registry_app(storage, AllowAllAuthorizer()))
        ]
    )
    async with serve_registry(outer) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            assert (await client.get("/registry/v2/")).json() == {}

            started = await client.post("/registry/v2/lab/tiny/blobs/uploads/")
            location = started.headers["Location"]
            assert location.startswith("/registry/v2/lab/tiny/blobs/uploads/")
            await client.patch(location, content=b"prefixed")
            done = await client.put(location, params={"digest": digest_of(b"prefixed")})
            fetched = await client.get(done.headers["Location"])

    assert done.headers["Location"] == (
        f"/registry/v2/lab/tiny/blobs/{digest_of(b'prefixed')}"
    )
    assert fetched.content == b"prefixed"


async def test_basic_authorizer_challenges_and_denies(storage, serve_registry):
    authorizer = StaticBasicAuthorizer("lab", "s3cret", read_only=True)
    app = build_registry_app(storage, authorizer)
    async with serve_registry(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as anonymous:
            challenged = await anonymous.get("/v2/")
        async with httpx.AsyncClient(
            base_url=base_url, auth=("lab", "s3cret")
        ) as reader:
            checked = await reader.get("/v2/")
            denied = await reader.post("/v2/lab/tiny/blobs/uploads/")
            catalog = await reader.get("/v2/_catalog")

    assert challenged.status_code == 401
    assert error_code(challenged) == ["UNAUTHORIZED"]
    assert challenged.headers["WWW-Authenticate"].startswith('Basic realm="')
    assert checked.status_code == 200
    assert (denied.status_code, error_code(denied)) == (403, ["DENIED"])
    assert error_code(catalog) == ["DENIED"]
