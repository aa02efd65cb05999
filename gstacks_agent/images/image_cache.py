"""The image cache: images pulled by digest, kept as blobs and unpacked layers.

Layout under `state_dir/images/`:

    blobs/sha256/<hex>     the content store: manifests, indexes, configs, layer blobs
    layers/<blob-hex>/     one unpacked layer, in overlayfs form, named for its blob
    pulled/<hex>.json      one record per image asked for, named for its digest

How `ensure` pulls an image:

1. Under a lock for the image digest, look for its record. A record is only written
   once every part of the image is local, so if it exists and its layer directories
   do too, the image is answered from disk without any request.
2. Otherwise load the manifest by digest: from the store when it is already there,
   else from the registry (verified against the digest), then stored. An index is
   resolved to the manifest for this host's platform, loaded the same way.
3. Fetch the config blob, then every layer in parallel (a few at a time). Each layer
   is handled under a lock for its blob digest, so two images sharing a base layer
   download and unpack it once: fetch the blob unless stored, unpack it unless its
   directory exists.
4. Write the record atomically and answer.

Blobs stay in the store after unpacking: they are what `cached_images` sizes, and
they let a layer be unpacked again without the network. Nothing is ever deleted yet:
there is no garbage collection of unused images, blobs or layers.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from gstacks_agent.images.content_store import ContentStore
from gstacks_agent.images.digests import Digest
from gstacks_agent.images.errors import InvalidManifest, UnsupportedMediaType
from gstacks_agent.images.layers import unpack_layer
from gstacks_agent.images.manifests import (
    Descriptor,
    ImageIndex,
    ImageManifest,
    Platform,
    parse_config,
    parse_manifest,
    select_platform,
)
from gstacks_agent.images.registry_client import RegistryClient

log = logging.getLogger("gstacks.agent.images")

Progress = Callable[[int], None]


@dataclass(frozen=True)
class PulledImage:
    """An image whose layers are all unpacked on this host.

    `layer_dirs` is bottom layer first, the order overlayfs lowerdirs are listed in
    reverse. The counters describe the `ensure` call that produced this answer:
    `bytes_downloaded` counts every byte received (manifests included), the blob
    counters cover the config and layer blobs.
    """

    digest: Digest
    config: dict
    layer_dirs: list[Path]
    bytes_downloaded: int
    blobs_downloaded: int
    blobs_cached: int


class ImageCache:
    """Pulled images under `state_dir/images`, keyed by manifest (or index) digest."""

    def __init__(
        self,
        state_dir: Path,
        *,
        platform: Platform | None = None,
        parallel_blobs: int = 3,
    ):
        self.root = Path(state_dir) / "images"
        self.store = ContentStore(self.root)
        self.layers_dir = self.root / "layers"
        self.records_dir = self.root / "pulled"
        self.layers_dir.mkdir(exist_ok=True)
        self.records_dir.mkdir(exist_ok=True)
        self.platform = platform or Platform.host()
        self._parallel_blobs = trio.CapacityLimiter(parallel_blobs)
        self._locks = _KeyedLocks()

    def layer_dir(self, layer_digest: Digest | str) -> Path:
        return self.layers_dir / Digest(layer_digest).hex

    def has(self, digest: Digest | str) -> bool:
        """Whether `ensure(digest)` would be answered without the network."""
        record = self._read_record(Digest(digest))
        return record is not None and self._is_complete(record)

    def cached_images(self) -> list[tuple[Digest, int]]:
        """Every pulled image with the bytes its blobs take in the store."""
        images = []
        for entry in sorted(os.scandir(self.records_dir), key=lambda e: e.name):
            if not entry.name.endswith(".json"):
                continue
            record = self._read_record(Digest.from_hex(entry.name[: -len(".json")]))
            if record is not None:
                images.append((Digest(record["digest"]), record["size"]))
        return images

    def remove_temp_files(self) -> int:
        """Delete what interrupted pulls left behind; return how many entries.

        Partial blobs, half-unpacked layer directories and unfinished records all
        carry a `.tmp-` prefix. Only call this while no `ensure` runs, e.g. at start.
        """
        removed = self.store.remove_temp_files()
        for directory in (self.layers_dir, self.records_dir):
            for entry in os.scandir(directory):
                if not entry.name.startswith(".tmp-"):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed += 1
        if removed:
            log.info("removed %d leftovers of interrupted pulls", removed)
        return removed

    async def ensure(
        self,
        client: RegistryClient,
        repository: str,
        digest: Digest | str,
        progress: Progress | None = None,
    ) -> PulledImage:
        """Make the image `repository@digest` local and return its unpacked layers.

        `progress` is called with the size of each chunk of blob data received.
        """
        digest = Digest(digest)
        async with self._locks.hold(f"image:{digest}"):
            record = self._read_record(digest)
            if record is not None and self._is_complete(record):
                config = parse_config(self.store.read_bytes(record["config"]))
                return PulledImage(
                    digest=digest,
                    config=config,
                    layer_dirs=[self.layer_dir(d) for d in record["layers"]],
                    bytes_downloaded=0,
                    blobs_downloaded=0,
                    blobs_cached=1 + len(record["layers"]),
                )
            return await self._pull(client, repository, digest, progress)

    async def _pull(
        self,
        client: RegistryClient,
        repository: str,
        digest: Digest,
        progress: Progress | None,
    ) -> PulledImage:
        tally = _Tally(progress)
        log.info("pulling image %s@%s", repository, digest)

        manifest = await self._load_manifest(client, repository, digest, tally)
        documents = [digest]
        if isinstance(manifest, ImageIndex):
            chosen = select_platform(manifest, self.platform)
            manifest = await self._load_manifest(
                client, repository, chosen.digest, tally
            )
            documents.append(chosen.digest)
            if not isinstance(manifest, ImageManifest):
                raise UnsupportedMediaType(
                    f"index {digest} points at another index for {self.platform}",
                    resource_id=digest,
                )

        await self._fetch(client, repository, manifest.config, tally)
        config = parse_config(self.store.read_bytes(manifest.config.digest))
        if len(config["rootfs"]["diff_ids"]) != len(manifest.layers):
            raise InvalidManifest(
                f"image {digest}: config lists {len(config['rootfs']['diff_ids'])} "
                f"layers, manifest {len(manifest.layers)}",
                resource_id=digest,
            )

        try:
            async with trio.open_nursery() as nursery:
                for layer in manifest.layers:
                    nursery.start_soon(
                        self._ensure_layer, client, repository, layer, tally
                    )
        except BaseExceptionGroup as group:
            raise _first_error(group) from None

        size = sum(self.store.size(d) for d in documents)
        size += manifest.config.size + sum(layer.size for layer in manifest.layers)
        self._write_record(
            digest,
            {
                "digest": digest,
                "manifest": documents[-1],
                "config": manifest.config.digest,
                "layers": [layer.digest for layer in manifest.layers],
                "size": size,
            },
        )
        log.info(
            "pulled image %s@%s: %d blobs downloaded (%d bytes), %d cached",
            repository,
            digest,
            tally.blobs_downloaded,
            tally.bytes,
            tally.blobs_cached,
        )
        return PulledImage(
            digest=digest,
            config=config,
            layer_dirs=[self.layer_dir(layer.digest) for layer in manifest.layers],
            bytes_downloaded=tally.bytes,
            blobs_downloaded=tally.blobs_downloaded,
            blobs_cached=tally.blobs_cached,
        )

    async def _load_manifest(
        self,
        client: RegistryClient,
        repository: str,
        digest: Digest,
        tally: _Tally,
    ) -> ImageManifest | ImageIndex:
        if self.store.has(digest):
            try:
                # Stored documents lost their Content-Type; their own mediaType
                # field (which skopeo, docker and buildkit all write) stands in.
                return parse_manifest("", self.store.read_bytes(digest))
            except UnsupportedMediaType:
                log.debug("stored manifest %s has no mediaType; refetching", digest)

        media_type, data, _ = await client.get_manifest(repository, digest)
        tally.bytes += len(data)
        parsed = parse_manifest(media_type, data)
        self.store.ingest_bytes(digest, data)
        return parsed

    async def _ensure_layer(
        self,
        client: RegistryClient,
        repository: str,
        layer: Descriptor,
        tally: _Tally,
    ) -> None:
        async with self._locks.hold(f"blob:{layer.digest}"):
            dest = self.layer_dir(layer.digest)
            if dest.is_dir():
                tally.blobs_cached += 1
                return
            blob = await self._fetch(client, repository, layer, tally, locked=True)
            # Not done yet: the unpacked tar is not checked against the config's
            # diff_id. The blob digest was verified on the way in, so a corrupted
            # download cannot get here; a config that lies about its layers can.
            await trio.to_thread.run_sync(unpack_layer, blob, layer.media_type, dest)

    async def _fetch(
        self,
        client: RegistryClient,
        repository: str,
        blob: Descriptor,
        tally: _Tally,
        *,
        locked: bool = False,
    ) -> Path:
        if not locked:
            async with self._locks.hold(f"blob:{blob.digest}"):
                return await self._fetch(client, repository, blob, tally, locked=True)

        if self.store.has(blob.digest):
            tally.blobs_cached += 1
            return self.store.path(blob.digest)
        async with self._parallel_blobs:
            path = await client.fetch_blob(
                repository, blob.digest, self.store, tally.add, size=blob.size
            )
        tally.blobs_downloaded += 1
        return path

    def _is_complete(self, record: dict) -> bool:
        return self.store.has(record["config"]) and all(
            self.layer_dir(layer).is_dir() for layer in record["layers"]
        )

    def _read_record(self, digest: Digest) -> dict | None:
        try:
            with open(self.records_dir / f"{digest.hex}.json", "rb") as file:
                return json.load(file)
        except FileNotFoundError:
            return None

    def _write_record(self, digest: Digest, record: dict) -> None:
        final = self.records_dir / f"{digest.hex}.json"
        temp = self.records_dir / f".tmp-{digest.hex}-{secrets.token_hex(4)}"
        try:
            with open(temp, "x") as file:
                json.dump(record, file, indent=1)
                file.flush()
                os.fsync(file.fileno())
            os.rename(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The error to raise for a failed set of layer pulls.

    Callers get one of our errors, not a group: when one layer fails the nursery
    cancels the others, so there is usually a single cause; when several failed at
    once the first stands for all. A group holding Cancelled is an outer cancel and
    stays a group, so trio can route it.
    """
    leaves = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending[:0] = error.exceptions
        else:
            leaves.append(error)
    if any(isinstance(error, trio.Cancelled) for error in leaves):
        return group
    return leaves[0]


class _Tally:
    """What one `ensure` call received, forwarding byte counts to `progress`."""

    def __init__(self, progress: Progress | None):
        self._progress = progress
        self.bytes = 0
        self.blobs_downloaded = 0
        self.blobs_cached = 0

    def add(self, count: int) -> None:
        self.bytes += count
        if self._progress is not None:
            self._progress(count)


class _KeyedLocks:
    """One trio.Lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[trio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or trio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
