"""Writing OCI image layout directories (image-layout.md of the OCI image spec).

A layout is a directory with three things in it:

    oci-layout          {"imageLayoutVersion": "1.0.0"}
    index.json          an image index naming the images, each optionally tagged with
                        the annotation org.opencontainers.image.ref.name
    blobs/sha256/<hex>  configs, manifests and layers, named for their digests

which is what `skopeo copy oci:DIR:TAG docker://...` reads. `OciLayout` adds layers
and images to one; every file it writes goes through a temp file and a rename, so a
half-written layout never holds a blob under a wrong name.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gstacks_agent.images import media_types
from gstacks_agent.images.digests import Digest
from gstacks_agent.images.layer_builder import BuiltLayer, LayerEntry, write_layer
from gstacks_agent.images.manifests import Descriptor, Platform

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
_EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config (config.md) a runtime reads."""

    architecture: str = "amd64"
    os: str = "linux"
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self, diff_ids: list[Digest]) -> dict:
        """The config document for an image whose layers have these diff_ids."""
        runtime: dict = {}
        if self.user:
            runtime["User"] = self.user
        if self.env:
            runtime["Env"] = list(self.env)
        if self.entrypoint is not None:
            runtime["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            runtime["Cmd"] = list(self.cmd)
        if self.working_dir:
            runtime["WorkingDir"] = self.working_dir
        if self.labels:
            runtime["Labels"] = dict(self.labels)
        return {
            # A fixed creation time keeps the config, and so the image digest,
            # reproducible.
            "created": _EPOCH,
            "architecture": self.architecture,
            "os": self.os,
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": [str(d) for d in diff_ids]},
        }


class OciLayout:
    """An OCI image layout directory at `root`, created if absent."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        if not (self.root / "oci-layout").exists():
            _write_atomically(
                self.root / "oci-layout", _dumps({"imageLayoutVersion": "1.0.0"})
            )
        if not (self.root / "index.json").exists():
            self._write_index([])

    def add_blob(self, data: bytes, media_type: str) -> Descriptor:
        """Store `data` as a blob and return its descriptor."""
        digest = Digest.of_bytes(data)
        _write_atomically(self.blobs / digest.hex, data)
        return Descriptor(media_type, digest, len(data))

    def add_layer(
        self, entries: Iterable[LayerEntry], *, compress: bool = True
    ) -> BuiltLayer:
        """Build a layer from `entries` straight into the blobs directory."""
        temp = self.blobs / f".tmp-layer-{secrets.token_hex(4)}"
        try:
            with open(temp, "xb") as out:
                layer = write_layer(entries, out, compress=compress)
                out.flush()
                os.fsync(out.fileno())
            os.rename(temp, self.blobs / layer.digest.hex)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return layer

    def add_image(
        self,
        config: ImageConfig,
        layers: list[BuiltLayer],
        *,
        tag: str | None = None,
    ) -> Descriptor:
        """Write the config and manifest of an image and list it in index.json.

        With `tag`, the index entry carries it as its ref name, replacing any entry
        that had the same tag.
        """
        config_blob = self.add_blob(
            _dumps(config.to_json([layer.diff_id for layer in layers])),
            media_types.OCI_CONFIG,
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_types.OCI_MANIFEST,
            "config": config_blob.to_json(),
            "layers": [
                Descriptor(layer.media_type, layer.digest, layer.size).to_json()
                for layer in layers
            ],
        }
        stored = self.add_blob(_dumps(manifest), media_types.OCI_MANIFEST)
        entry = Descriptor(
            stored.media_type,
            stored.digest,
            stored.size,
            platform=Platform(config.os, config.architecture),
            annotations={REF_NAME_ANNOTATION: tag} if tag else {},
        )

        entries = json.loads((self.root / "index.json").read_bytes())["manifests"]
        if tag:
            entries = [
                e
                for e in entries
                if e.get("annotations", {}).get(REF_NAME_ANNOTATION) != tag
            ]
        entries.append(entry.to_json())
        self._write_index(entries)
        return entry

    def _write_index(self, manifests: list[dict]) -> None:
        index = {
            "schemaVersion": 2,
            "mediaType": media_types.OCI_INDEX,
            "manifests": manifests,
        }
        _write_atomically(self.root / "index.json", _dumps(index))


def _dumps(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
    try:
        with open(temp, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.rename(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
