from __future__ import annotations

import json

import pytest

from gstacks_agent.images import media_types
from gstacks_agent.images.digests import Digest
from gstacks_agent.images.errors import (
    InvalidManifest,
    NoMatchingPlatform,
    UnsupportedDigest,
    UnsupportedMediaType,
)
from gstacks_agent.images.manifests import (
    ImageIndex,
    ImageManifest,
    Platform,
    parse_config,
    parse_manifest,
    select_platform,
)

CONFIG = Digest.of_bytes(b"config")
LAYER = Digest.of_bytes(b"layer")


def manifest(**overrides) -> dict:
    document = {
        "schemaVersion": 2,
        "mediaType": media_types.OCI_MANIFEST,
        "config": {"mediaType": media_types.OCI_CONFIG, "digest": CONFIG, "size": 6},
        "layers": [
            {"mediaType": media_types.OCI_LAYER_GZIP, "digest": LAYER, "size": 5}
        ],
    }
    document.update(overrides)
    return document


def index_entry(architecture, variant=None, os="linux"):
    platform = {"architecture": architecture, "os": os}
    if variant:
        platform["variant"] = variant
    digest = Digest.of_bytes(f"{os}/{architecture}/{variant}".encode())
    return {
        "mediaType": media_types.OCI_MANIFEST,
        "digest": digest,
        "size": 100,
        "platform": platform,
    }


def encode(document) -> bytes:
    return json.dumps(document).encode()


def test_oci_manifest_parses_config_and_layers_in_order():
    parsed = parse_manifest(media_types.OCI_MANIFEST, encode(manifest()))
    assert isinstance(parsed, ImageManifest)
    assert parsed.config.digest == CONFIG
    assert [layer.digest for layer in parsed.layers] == [LAYER]


def test_missing_content_type_falls_back_to_media_type_field():
    parsed = parse_manifest("", encode(manifest()))
    assert isinstance(parsed, ImageManifest)


def test_docker_manifest_without_any_media_type_is_refused():
    document = manifest()
    del document["mediaType"]
    with pytest.raises(UnsupportedMediaType):
        parse_manifest("application/octet-stream", encode(document))


def test_declared_type_contradicting_served_type_is_invalid():
    with pytest.raises(InvalidManifest, match="served as"):
        parse_manifest(media_types.OCI_INDEX, encode(manifest()))


@pytest.mark.parametrize(
    "document",
    [
        manifest(layers="nope"),
        manifest(config={"mediaType": "x", "digest": "sha256:zz", "size": 1}),
        manifest(config={"mediaType": "x", "digest": CONFIG, "size": -1}),
        manifest(config={"mediaType": "x", "digest": CONFIG, "size": True}),
        manifest(config=None),
    ],
)
def test_broken_manifests_are_invalid(document):
    with pytest.raises(InvalidManifest):
        parse_manifest(media_types.OCI_MANIFEST, encode(document))


def test_non_json_is_invalid():
    with pytest.raises(InvalidManifest, match="not valid JSON"):
        parse_manifest(media_types.OCI_MANIFEST, b"\xff{")


def test_sha512_descriptor_is_unsupported():
    layer = {"mediaType": media_types.OCI_LAYER_GZIP, "digest": "sha512:" + "a" * 128}
    with pytest.raises(UnsupportedDigest):
        parse_manifest(
            media_types.OCI_MANIFEST, encode(manifest(layers=[{**layer, "size": 1}]))
        )


def test_unknown_layer_type_is_unsupported():
    layer = {"mediaType": "application/x-squashfs", "digest": LAYER, "size": 1}
    with pytest.raises(UnsupportedMediaType):
        parse_manifest(media_types.OCI_MANIFEST, encode(manifest(layers=[layer])))


def test_index_picks_exact_platform():
    document = {
        "schemaVersion": 2,
        "mediaType": media_types.OCI_INDEX,
        "manifests": [
            index_entry("amd64", os="windows"),
            index_entry("arm", "v7"),
            index_entry("arm64", "v8"),
            index_entry("amd64"),
        ],
    }
    index = parse_manifest(media_types.OCI_INDEX, encode(document))
    assert isinstance(index, ImageIndex)

    amd64 = select_platform(index, Platform("linux", "amd64"))
    arm64 = select_platform(index, Platform("linux", "arm64", "v8"))

    assert amd64.platform == Platform("linux", "amd64")
    assert arm64.platform == Platform("linux", "arm64", "v8")


def test_index_entry_without_variant_matches_any_variant():
    document = {"mediaType": media_types.DOCKER_MANIFEST_LIST, "manifests": []}
    document["manifests"] = [
        {**index_entry("arm64"), "mediaType": media_types.DOCKER_MANIFEST}
    ]
    index = parse_manifest(media_types.DOCKER_MANIFEST_LIST, encode(document))
    assert select_platform(index, Platform("linux", "arm64", "v8")).platform == (
        Platform("linux", "arm64")
    )


def test_index_without_host_platform_names_what_it_offers():
    document = {"mediaType": media_types.OCI_INDEX, "manifests": [index_entry("s390x")]}
    index = parse_manifest(media_types.OCI_INDEX, encode(document))
    with pytest.raises(NoMatchingPlatform, match="linux/s390x"):
        select_platform(index, Platform("linux", "amd64"))


def test_config_without_diff_ids_is_invalid():
    with pytest.raises(InvalidManifest, match="diff_ids"):
        parse_config(b'{"architecture": "amd64"}')
    assert parse_config(b'{"rootfs": {"type": "layers", "diff_ids": []}}')
