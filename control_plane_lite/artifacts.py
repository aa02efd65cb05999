"""The control plane's view of its own registry: resolving and publishing artifacts.

Services name images the way users do (`lab/busybox:latest`); agents must pull by
digest. This catalog resolves tags to digests straight from registry storage (no HTTP
round trip to ourselves), and publishes a manifest with everything it references into
another repository by linking, so a blueprint's artifact is a copy that costs no
bytes and cannot be changed by re-tagging its source.

The published manifests are the artifact metadata: they live in registry storage,
not in a blueprint's record, so deleting a blueprint keeps its artifact (listed
with no blueprint), and a control plane on the same S3 bucket sees the same
artifacts. The garbage collector keeps everything they reference.
"""

from __future__ import annotations

import logging
from typing import Any

from control_plane_lite.errors import InvalidRequest, NotFound
from control_plane_lite.image_refs import ImageReference
from control_plane_lite.registry.errors import RegistryError
from control_plane_lite.registry.manifest import inspect_manifest
from control_plane_lite.registry.names import Digest
from control_plane_lite.registry.storage import BlobStorage

log = logging.getLogger("gstacks.cp.artifacts")

BLUEPRINT_NAMESPACE = "blueprints"


class ArtifactCatalog:
    """Resolves references and publishes manifests within the embedded registry."""

    def __init__(
        self,
        storage: BlobStorage,
        registry_host: str,
        namespace: str = BLUEPRINT_NAMESPACE,
    ) -> None:
        self._storage = storage
        self.registry_host = registry_host
        self.namespace = namespace

    @property
    def registry_url(self) -> str:
        """Base URL agents pull from; the OCI API lives at `<url>/v2/`."""
        return f"http://{self.registry_host}"

    def artifact_ref(self, repository: str, digest: str) -> str:
        return f"{self.registry_host}/{repository}@{digest}"

    def split_artifact_ref(self, artifact_ref: str) -> tuple[str, str]:
        """(repository, digest) of one of our own artifact references.

        The host part is not compared with ours: records keep the address the
        control plane had when they were made, and a lab restarted on another port
        still holds the same artifacts.
        """
        location, _, digest = artifact_ref.partition("@")
        _, _, repository = location.partition("/")
        if not repository or not digest.startswith("sha256:"):
            raise InvalidRequest(
                f"artifact {artifact_ref!r} is not an artifact reference"
            )
        return repository, digest

    def current_ref(self, artifact_ref: str) -> str:
        """`artifact_ref` as reachable at the control plane's address now."""
        repository, digest = self.split_artifact_ref(artifact_ref)
        return self.artifact_ref(repository, digest)

    def require_internal(self, reference: ImageReference) -> None:
        """Refuse references to registries other than ours (no external pulls yet)."""
        if reference.registry not in (None, self.registry_host, self._loopback_alias()):
            # Not found *here*: the lite control plane pulls from no other registry.
            raise NotFound(
                f"image registry {reference.registry!r} is not this control plane's registry "
                f"({self.registry_host}); push the image there first",
                registry=reference.registry,
            )

    async def resolve(self, repository: str, reference: str) -> str:
        """The digest of `repository:reference`, which must exist in our registry."""
        try:
            if reference.startswith("sha256:"):
                digest = Digest.parse(reference)
                if not await self._storage.has_manifest(repository, digest):
                    raise NotFound(
                        f"image {repository}@{reference} is not in the registry"
                    )
            else:
                digest = await self._storage.resolve_tag(repository, reference)
        except RegistryError as exc:
            raise NotFound(
                f"image {repository}:{reference} is not in the registry ({exc})",
                repository=repository,
            ) from exc
        return str(digest)

    async def publish(
        self, source_repository: str, digest: str, target_repository: str, tag: str
    ) -> None:
        """Make manifest `digest` of `source_repository` available in `target_repository`."""
        await self._copy_manifest(
            source_repository, Digest.parse(digest), target_repository, tag
        )
        log.info(
            "artifact %s: published %s as %s:%s",
            digest,
            source_repository,
            target_repository,
            tag,
        )

    async def _copy_manifest(
        self, source: str, digest: Digest, target: str, tag: str | None
    ) -> None:
        stored = await self._storage.get_manifest(source, digest)
        references = inspect_manifest(stored.body, stored.media_type)
        for blob in references.blobs:
            if not blob.is_foreign:
                await self._storage.stat_blob(source, blob.digest)
                await self._storage.link_blob(target, blob.digest)
        for child in references.manifests:
            await self._copy_manifest(source, child.digest, target, None)
        await self._storage.put_manifest(
            target, digest, stored.media_type, stored.body, tag=tag
        )

    async def list_artifacts(
        self, *, after: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Published artifacts sorted by `<repository>@<digest>`, after `after`.

        Each is `{"artifact_ref", "repository", "digest", "media_type", "size"}`;
        `after` is a `<repository>@<digest>`, so it does not depend on our address.
        """
        prefix = f"{self.namespace}/"
        found: list[tuple[str, str, Digest]] = []
        for repository in await self._storage.list_repositories():
            if not repository.startswith(prefix):
                continue
            for digest in await self._storage.list_manifests(repository):
                key = f"{repository}@{digest}"
                if after is None or key > after:
                    found.append((key, repository, digest))
        found.sort()

        artifacts = []
        for _, repository, digest in found[:limit]:
            try:
                stored = await self._storage.get_manifest(repository, digest)
            except RegistryError:
                continue  # deleted since it was listed
            artifacts.append(
                {
                    "artifact_ref": self.artifact_ref(repository, str(digest)),
                    "repository": repository,
                    "digest": str(digest),
                    "media_type": stored.media_type,
                    "size": len(stored.body),
                }
            )
        return artifacts

    def _loopback_alias(self) -> str | None:
        host, _, port = self.registry_host.rpartition(":")
        return f"localhost:{port}" if host == "127.0.0.1" else None
