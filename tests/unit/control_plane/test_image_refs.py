from __future__ import annotations

import pytest

from control_plane_lite.errors import InvalidRequest
from control_plane_lite.image_refs import ImageReference, parse_image_reference

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "text, expected",
    [
        ("busybox", ImageReference(None, "busybox", "latest", None)),
        ("lab/busybox:1.36", ImageReference(None, "lab/busybox", "1.36", None)),
        (f"lab/busybox@{DIGEST}", ImageReference(None, "lab/busybox", None, DIGEST)),
        (
            "127.0.0.1:7480/lab/app:v1",
            ImageReference("127.0.0.1:7480", "lab/app", "v1", None),
        ),
        ("localhost/app", ImageReference("localhost", "app", "latest", None)),
        (
            f"reg.example/a/b:t@{DIGEST}",
            ImageReference("reg.example", "a/b", "t", DIGEST),
        ),
    ],
)
def test_references_parse_like_docker_reads_them(text: str, expected: ImageReference):
    assert parse_image_reference(text) == expected


def test_reference_prefers_the_digest():
    assert parse_image_reference(f"a:t@{DIGEST}").reference == DIGEST
    assert parse_image_reference("a").reference == "latest"


@pytest.mark.parametrize(
    "text",
    [
        "",
        " busybox",
        "Lab/Busybox",
        "lab/../etc",
        "a:bad tag",
        "a@sha256:short",
        "a@md5:" + "0" * 32,
        "a" * 300,
    ],
)
def test_malformed_references_are_refused(text: str):
    with pytest.raises(InvalidRequest):
        parse_image_reference(text)
