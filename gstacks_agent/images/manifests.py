"""Parsing image manifests and indexes, and picking a platform out of an index.

Pure functions over bytes: no I/O here. A manifest (OCI image-manifest.md or Docker
schema 2) names one config blob and an ordered list of layers, bottom first. An index
(OCI image-index.md, or a Docker manifest list) names one manifest per platform; we
pick the entry for `os=linux` and this host's architecture.
"""

from __future__ import annotations

import json
import platform as host_platform
from dataclasses import dataclass, field

from gstacks_agent.images import media_types
from gstacks_agent.images.digests import Digest
from gstacks_agent.images.errors import (
    InvalidDigest,
    InvalidManifest,
    NoMatchingPlatform,
    UnsupportedMediaType,
)

# `uname -m` names mapped to GOARCH names, which the OCI spec uses for `architecture`
# (image-index.md refers to the Go language's $GOARCH values).
_GOARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", ""),
    "i386": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


@dataclass(frozen=True)
class Platform:
    """An `os`/`architecture`/`variant` triple as written in an index."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def host(cls) -> Platform:
        """This machine's platform; unknown `uname -m` values pass through as is."""
        machine = host_platform.machine()
        architecture, variant = _GOARCH.get(machine, (machine, ""))
        return cls("linux", architecture, variant)

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


@dataclass(frozen=True)
class Descriptor:
    """A typed, sized pointer to a blob (OCI descriptor.md)."""

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The descriptor as it is written in a manifest or index."""
        document: dict = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.platform is not None:
            document["platform"] = {
                "architecture": self.platform.architecture,
                "os": self.platform.os,
            }
            if self.platform.variant:
                document["platform"]["variant"] = self.platform.variant
        if self.annotations:
            document["annotations"] = dict(self.annotations)
        return document


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: list[Descriptor]


@dataclass(frozen=True)
class ImageIndex:
    media_type: str
    manifests: list[Descriptor]


def parse_manifest(media_type: str, data: bytes) -> ImageManifest | ImageIndex:
    """Parse a manifest or index; `media_type` is what the registry declared.

    When the registry declared nothing useful the document's own `mediaType` field
    decides, as the distribution spec allows.
    """
    document = _load_json(data)
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise InvalidManifest("mediaType must be a string")
    if media_type not in media_types.INDEX_TYPES | media_types.MANIFEST_TYPES:
        media_type = declared or ""
    if declared and declared != media_type:
        raise InvalidManifest(
            f"document says mediaType {declared!r} but was served as {media_type!r}"
        )

    if media_type in media_types.INDEX_TYPES:
        entries = _list_field(document, "manifests")
        return ImageIndex(media_type, [_descriptor(entry) for entry in entries])

    if media_type in media_types.MANIFEST_TYPES:
        config = _descriptor(document.get("config"))
        layers = [_descriptor(entry) for entry in _list_field(document, "layers")]
        for layer in layers:
            if layer.media_type not in media_types.LAYER_COMPRESSION:
                raise UnsupportedMediaType(
                    f"layer {layer.digest} has unsupported type {layer.media_type!r}",
                    resource_id=layer.digest,
                )
        return ImageManifest(media_type, config, layers)

    raise UnsupportedMediaType(f"not a manifest or index type: {media_type!r}")


def parse_config(data: bytes) -> dict:
    """Parse an image config (OCI config.md) far enough to know it is one."""
    document = _load_json(data)
    rootfs = document.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise InvalidManifest("image config has no rootfs.diff_ids list")
    return document


def select_platform(index: ImageIndex, wanted: Platform) -> Descriptor:
    """The index entry for `wanted`; `NoMatchingPlatform` if there is none.

    An entry with the same os and architecture and no variant is accepted when no
    entry matches the variant exactly: many indexes omit `v8` on arm64.
    """
    loose = None
    for entry in index.manifests:
        if entry.media_type not in media_types.MANIFEST_TYPES or entry.platform is None:
            continue
        found = entry.platform
        if (found.os, found.architecture) != (wanted.os, wanted.architecture):
            continue
        if found.variant == wanted.variant:
            return entry
        if not found.variant and loose is None:
            loose = entry
    if loose is not None:
        return loose
    offered = ", ".join(str(e.platform) for e in index.manifests if e.platform)
    raise NoMatchingPlatform(f"index has no manifest for {wanted} (offers: {offered})")


def _load_json(data: bytes) -> dict:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifest(f"not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidManifest("document is not a JSON object")
    return document


def _list_field(document: dict, name: str) -> list:
    value = document.get(name)
    if not isinstance(value, list):
        raise InvalidManifest(f"{name} must be a list")
    return value


def _descriptor(entry: object) -> Descriptor:
    if not isinstance(entry, dict):
        raise InvalidManifest("descriptor is not a JSON object")
    media_type = entry.get("mediaType")
    size = entry.get("size")
    if not isinstance(media_type, str):
        raise InvalidManifest("descriptor mediaType must be a string")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"descriptor size must be an integer >= 0, not {size!r}")
    try:
        digest = Digest(entry.get("digest"))
    except TypeError as exc:
        raise InvalidManifest("descriptor digest must be a string") from exc
    except InvalidDigest as exc:
        raise InvalidManifest(f"descriptor digest: {exc.message}") from exc

    platform = None
    if isinstance(entry.get("platform"), dict):
        fields = entry["platform"]
        platform = Platform(
            str(fields.get("os", "")),
            str(fields.get("architecture", "")),
            str(fields.get("variant", "")),
        )
    annotations = entry.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise InvalidManifest("descriptor annotations must be an object")
    return Descriptor(media_type, digest, size, platform, annotations)
