"""Garbage collection: removing blobs that no manifest references.

How it works
------------
Deleting a manifest or a blob only removes a repository's link; the bytes stay,
since another repository may link the same content. The collector frees them in
two phases, over the BlobStorage protocol, so it works on every driver:

1. Mark. Every manifest linked in every repository is read; it, its config, its
   layers and the child manifests of an index are referenced.
2. Sweep. Every stored blob that is not referenced is deleted, after the links
   to it are removed, unless it is young: written, or linked into a repository,
   less than `min_age_s` ago.

The age rule is what keeps a push in flight safe. Clients upload layers first and
the manifest that references them last, so between the two the layers are
referenced by nothing; they are also new, and the age rule spares them. Bytes of
an upload session are never blobs until the upload is finished, so the collector
never sees them. Just before deleting, manifests pushed during the mark phase are
read too, so a manifest that arrived meanwhile keeps what it references.

Not done yet: a manifest pushed in the instant between that last look and a
deletion, referencing an old blob its client only checked with HEAD, can lose
that blob; run the collector when pushes are quiet, as other registries require.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import trio

from .errors import ManifestUnknown
from .manifest import inspect_manifest
from .names import Digest
from .storage import BlobStorage

log = logging.getLogger("gstacks.cp.registry.gc")

DEFAULT_MIN_AGE_S = 60 * 60


@dataclass(frozen=True)
class GarbageReport:
    """What a collection found and freed."""

    blobs_deleted: int
    bytes_freed: int
    blobs_kept: int
    links_removed: int
    dry_run: bool
    duration_s: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class GarbageCollector:
    """Runs collections on one storage, one at a time."""

    def __init__(self, storage: BlobStorage) -> None:
        self._storage = storage
        self._lock = trio.Lock()

    async def collect(
        self, *, min_age_s: float = DEFAULT_MIN_AGE_S, dry_run: bool = False
    ) -> GarbageReport:
        """Mark, then sweep; with `dry_run`, report what would be freed."""
        if min_age_s < 0:
            raise ValueError(f"min_age_s must be at least 0, not {min_age_s}")
        async with self._lock:
            return await self._collect(min_age_s, dry_run)

    async def _collect(self, min_age_s: float, dry_run: bool) -> GarbageReport:
        started = time.monotonic()
        young_since = time.time() - min_age_s

        seen_manifests: set[tuple[str, Digest]] = set()
        referenced: set[Digest] = set()
        await self._mark(seen_manifests, referenced)

        links: dict[Digest, list[str]] = {}
        young: set[Digest] = set()
        for repository in await self._storage.list_repositories():
            for link in await self._storage.list_blob_links(repository):
                links.setdefault(link.digest, []).append(repository)
                if link.linked_at > young_since:
                    young.add(link.digest)

        candidates = [
            blob
            for blob in await self._storage.list_blobs()
            if blob.digest not in referenced
            and blob.digest not in young
            and blob.modified_at <= young_since
        ]
        # Manifests that arrived during the mark phase keep what they reference.
        await self._mark(seen_manifests, referenced)
        doomed = [blob for blob in candidates if blob.digest not in referenced]

        links_removed = 0
        if not dry_run:
            for blob in doomed:
                for repository in links.get(blob.digest, []):
                    await self._storage.unlink_blob(repository, blob.digest)
                    links_removed += 1
                await self._storage.delete_blob(blob.digest)

        report = GarbageReport(
            blobs_deleted=len(doomed),
            bytes_freed=sum(blob.size for blob in doomed),
            blobs_kept=len(referenced | young),
            links_removed=links_removed,
            dry_run=dry_run,
            duration_s=round(time.monotonic() - started, 3),
        )
        log.info(
            "garbage collection%s: %d blobs, %d bytes freed, %d kept",
            " (dry run)" if dry_run else "",
            report.blobs_deleted,
            report.bytes_freed,
            report.blobs_kept,
        )
        return report

    async def _mark(
        self, seen: set[tuple[str, Digest]], referenced: set[Digest]
    ) -> None:
        """Add what every not yet `seen` manifest references to `referenced`."""
        for repository in await self._storage.list_repositories():
            for digest in await self._storage.list_manifests(repository):
                if (repository, digest) in seen:
                    continue
                seen.add((repository, digest))
                try:
                    stored = await self._storage.get_manifest(repository, digest)
                except ManifestUnknown:
                    continue  # deleted since it was listed
                references = inspect_manifest(stored.body, stored.media_type)
                referenced.add(digest)
                referenced.update(blob.digest for blob in references.blobs)
                referenced.update(child.digest for child in references.manifests)
