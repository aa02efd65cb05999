import json

import pytest

from control_plane_lite.registry.errors import ManifestInvalid
from control_plane_lite.registry.manifest import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    inspect_manifest,
    media_type_of,
)

CONFIG = "sha256:" + "c" * 64
LAYER = "sha256:" + "1" * 64
CHILD = "sha256:" + "d" * 64


def descriptor(digest, media_type="application/octet-stream", size=3, **extra):
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def image_manifest(**overrides):
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(CONFIG, "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(LAYER, "application/vnd.oci.image.layer.v1.tar")],
    }
    document.update(overrides)
    return json.dumps(document).encode()


def test_image_manifest_references_its_config_and_layers():
    references = inspect_manifest(image_manifest(), OCI_MANIFEST)
    assert references.media_type == OCI_MANIFEST
    assert [str(b.digest) for b in references.blobs] == [CONFIG, LAYER]
    assert references.manifests == ()


def test_index_references_its_child_manifests():
    body = json.dumps(
        {"schemaVersion": 2, "manifests": [descriptor(CHILD, OCI_MANIFEST)]}
    ).encode()
    references = inspect_manifest(body, OCI_INDEX)
    assert references.blobs == ()
    assert [str(m.digest) for m in references.manifests] == [CHILD]


def test_media_type_falls_back_to_the_body_without_a_content_type():
    assert inspect_manifest(image_manifest(), None).media_type == OCI_MANIFEST


def test_content_type_parameters_are_ignored():
    assert media_type_of(f"{OCI_MANIFEST}; charset=utf-8") == OCI_MANIFEST


def test_foreign_layers_are_not_required_locally():
    foreign = descriptor(
        LAYER,
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        urls=["https://example.invalid/layer"],
    )
    body = image_manifest(mediaType=DOCKER_MANIFEST, layers=[foreign])
    references = inspect_manifest(body, DOCKER_MANIFEST)
    assert [str(b.digest) for b in references.blobs] == [CONFIG]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not json", OCI_MANIFEST),
        (b"[]", OCI_MANIFEST),
        (image_manifest(), DOCKER_MANIFEST),
        (image_manifest(mediaType=None), None),
        (image_manifest(schemaVersion=1), OCI_MANIFEST),
        (image_manifest(layers="nope"), OCI_MANIFEST),
        (image_manifest(config=descriptor("sha256:short")), OCI_MANIFEST),
        (image_manifest(config=descriptor(CONFIG, size=-1)), OCI_MANIFEST),
        (
            b'{"schemaVersion": 1}',
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
    ],
)
def test_malformed_manifests_are_refused(body, content_type):
    with pytest.raises(ManifestInvalid):
        inspect_manifest(body, content_type)
