"""What the conformance tests push: blobs, manifests of every supported media type,
and the calls that push them, each asserting the spec's success status."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MIB = 1024 * 1024


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": digest_of(data),
        "size": len(data),
        **extra,
    }


def codes(response: httpx.Response) -> list[str]:
    """The error codes of a spec error body."""
    return [error["code"] for error in response.json()["errors"]]


def image_manifest(
    config: bytes,
    layers: list[bytes],
    *,
    media_type: str = OCI_MANIFEST,
    **fields: Any,
) -> bytes:
    docker = media_type == DOCKER_MANIFEST
    body = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        "layers": [
            descriptor(DOCKER_LAYER if docker else OCI_LAYER, x) for x in layers
        ],
        **fields,
    }
    return json.dumps(body).encode()


def index_of(
    manifests: list[tuple[str, bytes]], *, media_type: str = OCI_INDEX
) -> bytes:
    entries = [
        descriptor(kind, body, platform={"architecture": "amd64", "os": "linux"})
        for kind, body in manifests
    ]
    return json.dumps(
        {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    ).encode()


async def push_blob(client: httpx.AsyncClient, repository: str, data: bytes) -> str:
    digest = digest_of(data)
    response = await client.post(
        f"/v2/{repository}/blobs/uploads/", params={"digest": digest}, content=data
    )
    assert response.status_code == 201, response.text
    return digest


async def push_manifest(
    client: httpx.AsyncClient,
    repository: str,
    reference: str,
    body: bytes,
    media_type: str = OCI_MANIFEST,
) -> httpx.Response:
    response = await client.put(
        f"/v2/{repository}/manifests/{reference}",
        content=body,
        headers={"Content-Type": media_type},
    )
    assert response.status_code == 201, response.text
    return response


async def push_image(
    client: httpx.AsyncClient,
    repository: str,
    tag: str,
    *,
    config: bytes = b'{"os": "linux"}',
    layers: tuple[bytes, ...] = (b"layer one",),
    media_type: str = OCI_MANIFEST,
) -> bytes:
    """Push config, layers and the manifest tagged `tag`; returns the manifest."""
    for blob in (config, *layers):
        await push_blob(client, repository, blob)
    body = image_manifest(config, list(layers), media_type=media_type)
    await push_manifest(client, repository, tag, body, media_type)
    return body
