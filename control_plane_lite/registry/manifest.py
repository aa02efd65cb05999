"""Reading a pushed manifest: its media type and the content it references.

The registry stores manifests byte for byte and never rewrites them; it only needs
to know which blobs and child manifests a manifest points at, so a push can be
refused while something it references is missing (OCI distribution spec, "Pushing
Manifests": MANIFEST_BLOB_UNKNOWN). This module is pure: bytes in, a summary out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import DigestInvalid, ManifestInvalid
from .names import Digest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})

# Docker schema 1 manifests are signed JSON whose digest depends on the signature;
# every current client pushes schema 2 or OCI, so they are refused.
_SCHEMA1_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """One reference inside a manifest (OCI image spec, "Descriptors")."""

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()

    @property
    def is_foreign(self) -> bool:
        """True for a layer the client fetches from `urls`, not from us."""
        # Docker's foreign layers and OCI's non-distributable ones.
        foreign = "foreign" in self.media_type or "nondistributable" in self.media_type
        return foreign and bool(self.urls)


@dataclass(frozen=True, slots=True)
class ManifestReferences:
    """What a manifest points at: blobs in the same repository, child manifests.

    `subject` is the manifest this one refers to (OCI 1.1 referrers), if any;
    `artifact_type` and `annotations` describe it in a referrers listing.
    """

    media_type: str
    blobs: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)


def media_type_of(content_type: str | None) -> str | None:
    """The bare media type of a Content-Type header, without its parameters."""
    if content_type is None:
        return None
    bare = content_type.split(";", 1)[0].strip()
    return bare or None


def inspect_manifest(body: bytes, content_type: str | None) -> ManifestReferences:
    """Parse `body` and list what it references; raise ManifestInvalid if malformed.

    The media type comes from the Content-Type the client sent; a `mediaType`
    field in the body, when present, must agree with it, and stands in for it
    when the header is missing.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestInvalid(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ManifestInvalid("manifest must be a JSON object")

    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalid("manifest mediaType must be a string")
    header = media_type_of(content_type)
    if header is not None and declared is not None and header != declared:
        raise ManifestInvalid(
            f"Content-Type {header!r} does not match the manifest's mediaType "
            f"{declared!r}",
            detail={"content_type": header, "media_type": declared},
        )
    media_type = header or declared
    if media_type is None:
        raise ManifestInvalid("manifest has no media type: send a Content-Type")
    if media_type in _SCHEMA1_TYPES:
        raise ManifestInvalid(f"{media_type} (Docker schema 1) is not supported")

    known = media_type in IMAGE_MANIFEST_TYPES or media_type in INDEX_TYPES
    if known and document.get("schemaVersion") != 2:
        raise ManifestInvalid(f"{media_type} needs schemaVersion 2")

    # Unknown media types (artifacts) are accepted and checked by shape.
    blobs: list[Descriptor] = []
    if media_type in IMAGE_MANIFEST_TYPES or "config" in document:
        blobs.append(_descriptor(document.get("config"), "config"))
    if media_type in IMAGE_MANIFEST_TYPES or "layers" in document:
        layers = _descriptor_list(document.get("layers"), "layers")
        blobs.extend(layer for layer in layers if not layer.is_foreign)
    manifests: tuple[Descriptor, ...] = ()
    if media_type in INDEX_TYPES or "manifests" in document:
        manifests = _descriptor_list(document.get("manifests"), "manifests")

    subject = None
    if document.get("subject") is not None:
        subject = _descriptor(document["subject"], "subject")
    # OCI image spec, "Image Manifest": with no artifactType, the config's media
    # type says what kind of artifact this is.
    artifact_type = document.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestInvalid("manifest artifactType must be a string")
    if artifact_type is None and media_type in IMAGE_MANIFEST_TYPES:
        artifact_type = blobs[0].media_type
    annotations = document.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise ManifestInvalid("manifest annotations must map strings to strings")
    return ManifestReferences(
        media_type,
        tuple(blobs),
        manifests,
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
    )


def _descriptor_list(value: Any, field: str) -> tuple[Descriptor, ...]:
    if not isinstance(value, list):
        raise ManifestInvalid(f"manifest field {field!r} must be a list")
    return tuple(_descriptor(item, f"{field}[{i}]") for i, item in enumerate(value))


def _descriptor(value: Any, field: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"manifest field {field!r} must be a descriptor object")
    media_type = value.get("mediaType")
    size = value.get("size")
    digest = value.get("digest")
    urls = value.get("urls", [])
    if not isinstance(media_type, str):
        raise ManifestInvalid(f"{field}.mediaType must be a string")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{field}.size must be a non-negative integer")
    if not isinstance(digest, str):
        raise ManifestInvalid(f"{field}.digest must be a string")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ManifestInvalid(f"{field}.urls must be a list of strings")
    try:
        parsed = Digest.parse(digest)
    except DigestInvalid as exc:
        raise ManifestInvalid(
            f"{field}.digest: {exc.message}", detail={"digest": digest}
        ) from exc
    return Descriptor(media_type, parsed, size, tuple(urls))
