import pytest

from control_plane_lite.registry.url_paths import (
    Endpoint,
    RegistryPath,
    parse_registry_path,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("_catalog", RegistryPath(Endpoint.CATALOG)),
        ("lab/tiny/tags/list", RegistryPath(Endpoint.TAGS, "lab/tiny")),
        (
            "lab/tiny/manifests/latest",
            RegistryPath(Endpoint.MANIFEST, "lab/tiny", "latest"),
        ),
        (f"lab/blobs/{DIGEST}", RegistryPath(Endpoint.BLOB, "lab", DIGEST)),
        ("lab/blobs/uploads/", RegistryPath(Endpoint.UPLOADS, "lab")),
        ("lab/blobs/uploads", RegistryPath(Endpoint.UPLOADS, "lab")),
        ("lab/blobs/uploads/u-1", RegistryPath(Endpoint.UPLOAD, "lab", "u-1")),
    ],
)
def test_each_endpoint_is_recognised(path, expected):
    assert parse_registry_path(path) == expected


def test_repository_names_that_contain_endpoint_words_still_parse():
    assert parse_registry_path("a/manifests/b/manifests/v1") == RegistryPath(
        Endpoint.MANIFEST, "a/manifests/b", "v1"
    )
    assert parse_registry_path(f"lab/blobs/uploads/blobs/{DIGEST}") == RegistryPath(
        Endpoint.BLOB, "lab/blobs/uploads", DIGEST
    )
    assert parse_registry_path("lab/tags/list/tags/list") == RegistryPath(
        Endpoint.TAGS, "lab/tags/list"
    )


@pytest.mark.parametrize("path", ["", "lab", "lab/tiny", "lab/manifests/", "x/tags"])
def test_paths_naming_no_endpoint_give_none(path):
    assert parse_registry_path(path) is None
