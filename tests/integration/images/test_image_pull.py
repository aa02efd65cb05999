"""RegistryClient and ImageCache against a real registry holding the busybox image.

Requests are counted by a transport that wraps httpx's own: instrumentation only,
every request still goes to the registry.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import httpx
import pytest
import trio

from gstacks_agent.images import media_types
from gstacks_agent.images.digests import Digest
from gstacks_agent.images.errors import (
    BlobUnknown,
    DigestMismatch,
    ManifestUnknown,
    NoMatchingPlatform,
    RegistryUnavailable,
)
from gstacks_agent.images.image_cache import ImageCache
from gstacks_agent.images.layer_builder import BuiltLayer
from gstacks_agent.images.manifests import Platform
from gstacks_agent.images.oci_layout import ImageConfig, OciLayout
from gstacks_agent.images.registry_client import RegistryClient

# Unpacking chowns to the image's owners, which needs root.
pytestmark = pytest.mark.root

AMD64 = Platform("linux", "amd64")


class RecordingTransport(httpx.AsyncBaseTransport):
    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request):
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


async def token(repository):
    return f"token-for-{repository}"


async def no_token(repository):
    return None


@pytest.fixture
async def pushed(registry, busybox_layout):
    layout, digest = busybox_layout
    registry.push(layout, "latest")
    transport = RecordingTransport()
    async with RegistryClient(registry.url, token, transport=transport) as client:
        yield client, transport, Digest(digest)


async def test_ensure_pulls_busybox_then_answers_from_disk(pushed, tmp_path):
    client, transport, digest = pushed
    cache = ImageCache(tmp_path / "state", platform=AMD64)
    progress = []

    first = await cache.ensure(client, "test/busybox", digest, progress.append)

    assert first.digest == digest
    assert (first.blobs_downloaded, first.blobs_cached) == (2, 0)
    assert first.bytes_downloaded > 1_000_000
    assert sum(progress) > 1_000_000
    assert first.config["config"]["WorkingDir"] == "/"
    [layer] = first.layer_dirs
    busybox = layer / "bin" / "busybox"
    assert stat.S_IMODE(busybox.stat().st_mode) == 0o755
    assert os.readlink(layer / "bin" / "sh") == "busybox"
    assert stat.S_IMODE((layer / "tmp").stat().st_mode) == 0o1777
    assert cache.has(digest)
    assert [d for d, _ in cache.cached_images()] == [digest]
    assert all(
        r.headers["Authorization"] == "Bearer token-for-test/busybox"
        for r in transport.requests
    )

    transport.requests.clear()
    second = await cache.ensure(client, "test/busybox", digest)
    after_restart = await ImageCache(tmp_path / "state", platform=AMD64).ensure(
        client, "test/busybox", digest
    )

    assert transport.requests == []
    for again in (second, after_restart):
        assert again.layer_dirs == first.layer_dirs
        assert again.config == first.config
        assert (again.bytes_downloaded, again.blobs_downloaded) == (0, 0)
        assert again.blobs_cached == 2


async def test_concurrent_ensures_download_each_blob_once(pushed, tmp_path):
    client, transport, digest = pushed
    cache = ImageCache(tmp_path / "state", platform=AMD64)
    results = []

    async def pull():
        results.append(await cache.ensure(client, "test/busybox", digest))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(pull)

    blob_gets = [r.url.path for r in transport.requests if "/blobs/" in r.url.path]
    assert len(blob_gets) == len(set(blob_gets)) == 2
    assert sum(r.blobs_downloaded for r in results) == 2
    assert len({tuple(r.layer_dirs) for r in results}) == 1


async def test_missing_blob_after_restart_is_fetched_again(pushed, tmp_path):
    client, transport, digest = pushed
    state = tmp_path / "state"
    first = await ImageCache(state, platform=AMD64).ensure(
        client, "test/busybox", digest
    )
    # A lost layer directory (say, removed by hand) makes the image incomplete.
    shutil.rmtree(first.layer_dirs[0])
    transport.requests.clear()

    again = await ImageCache(state, platform=AMD64).ensure(
        client, "test/busybox", digest
    )

    # Manifest, config and blob are all still in the store: unpack without network.
    assert transport.requests == []
    assert (again.layer_dirs[0] / "bin" / "busybox").is_file()


async def test_index_digest_resolves_to_the_host_platform(
    registry, busybox_layout, tmp_path
):
    layout_dir, amd64_digest = busybox_layout
    registry.push(layout_dir, "latest")
    arm64_digest = _add_arm64_variant(layout_dir)
    registry.push(layout_dir, "arm64")
    index = {
        "schemaVersion": 2,
        "mediaType": media_types.OCI_INDEX,
        "manifests": [
            _platform_entry(layout_dir, arm64_digest, "arm64"),
            _platform_entry(layout_dir, amd64_digest, "amd64"),
        ],
    }
    body = json.dumps(index).encode()
    index_digest = Digest.of_bytes(body)
    async with httpx.AsyncClient() as setup:
        put = await setup.put(
            f"{registry.url}/v2/test/busybox/manifests/multi",
            content=body,
            headers={"Content-Type": media_types.OCI_INDEX},
        )
    assert put.status_code == 201, put.text

    async with RegistryClient(registry.url, no_token) as client:
        cache = ImageCache(tmp_path / "state", platform=AMD64)
        pulled = await cache.ensure(client, "test/busybox", index_digest)
        assert pulled.digest == index_digest
        assert pulled.config["architecture"] == "amd64"
        assert cache.store.has(index_digest)
        assert cache.store.has(amd64_digest)

        riscv = ImageCache(tmp_path / "riscv", platform=Platform("linux", "riscv64"))
        with pytest.raises(NoMatchingPlatform):
            await riscv.ensure(client, "test/busybox", index_digest)


async def test_corrupted_blob_on_the_registry_is_refused(pushed, registry, tmp_path):
    client, _, digest = pushed
    cache = ImageCache(tmp_path / "state", platform=AMD64)
    # Flip bytes in the registry's own copy of the layer.
    [layer_data] = [
        path
        for path in (tmp_path / "registry-data").rglob("data")
        if path.stat().st_size > 1_000_000
    ]
    corrupted = bytearray(layer_data.read_bytes())
    corrupted[5000:5010] = b"0123456789"
    layer_data.write_bytes(bytes(corrupted))

    with pytest.raises(DigestMismatch):
        await cache.ensure(client, "test/busybox", digest)

    assert not cache.has(digest)
    assert list(cache.layers_dir.iterdir()) == []
    blobs = cache.store.root / "blobs" / "sha256"
    assert not [p for p in blobs.iterdir() if p.name.startswith(".tmp")]


async def test_tag_resolves_to_the_pushed_digest(pushed):
    client, _, digest = pushed
    media_type, data, found = await client.get_manifest("test/busybox", "latest")
    assert media_type == media_types.OCI_MANIFEST
    assert found == digest == Digest.of_bytes(data)


async def test_unknown_manifest_and_blob_are_not_found(pushed, tmp_path):
    client, _, _ = pushed
    absent = Digest.of_bytes(b"nothing like this was pushed")
    cache = ImageCache(tmp_path / "state", platform=AMD64)

    with pytest.raises(ManifestUnknown):
        await cache.ensure(client, "test/busybox", absent)
    with pytest.raises(BlobUnknown):
        await client.fetch_blob("test/busybox", absent, cache.store)
    assert cache.store.list_digests() == []


async def test_registry_that_is_not_there_is_unavailable(tmp_path):
    async with RegistryClient("http://127.0.0.1:9", no_token) as client:
        with pytest.raises(RegistryUnavailable):
            await client.get_manifest("test/busybox", "latest")


def _add_arm64_variant(layout_dir) -> str:
    """Tag `arm64` in the layout: the same layer under an arm64 config."""
    layout = OciLayout(layout_dir)
    index = json.loads((layout_dir / "index.json").read_bytes())
    manifest_digest = Digest(index["manifests"][0]["digest"])
    manifest = json.loads((layout.blobs / manifest_digest.hex).read_bytes())
    config = json.loads(
        (layout.blobs / Digest(manifest["config"]["digest"]).hex).read_bytes()
    )
    [layer] = manifest["layers"]
    built = BuiltLayer(
        Digest(layer["digest"]),
        Digest(config["rootfs"]["diff_ids"][0]),
        layer["size"],
        layer["mediaType"],
    )
    entry = layout.add_image(
        ImageConfig(architecture="arm64", cmd=["/bin/sh"]), [built], tag="arm64"
    )
    return entry.digest


def _platform_entry(layout_dir, digest, architecture):
    size = (layout_dir / "blobs" / "sha256" / Digest(digest).hex).stat().st_size
    return {
        "mediaType": media_types.OCI_MANIFEST,
        "digest": str(digest),
        "size": size,
        "platform": {"architecture": architecture, "os": "linux"},
    }
