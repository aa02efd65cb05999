"""Blueprint records: named, immutable image artifacts that sandboxes start from.

Creating a blueprint resolves its source image to a digest and publishes that exact
manifest into the internal blueprint repository `<namespace>/<name>`, so the record's
`artifact_ref` (`<registry>/<namespace>/<name>@sha256:...`) keeps working whatever
later happens to the source tag. A blueprint starts `inactive`; only an `active` one
may start sandboxes. Deleting is refused while a live sandbox references it, and the
published artifact stays in the registry afterwards for audit.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable
from typing import Any

from control_plane_lite import ids
from control_plane_lite.artifacts import ArtifactCatalog
from control_plane_lite.auth import Principal
from control_plane_lite.clock import now_rfc3339
from control_plane_lite.errors import Conflict, InvalidRequest, NotFound
from control_plane_lite.image_refs import parse_image_reference
from control_plane_lite.store import Store

log = logging.getLogger("gstacks.cp.blueprints")

CREATE_FIELDS = frozenset(
    {"name", "image", "description", "registry_connection_id", "metadata"}
)
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def blueprint_record(row: dict[str, Any]) -> dict[str, Any]:
    """The API's shape of a blueprint row."""
    return {key: row[key] for key in row if key != "tenant_id"}


class BlueprintService:
    def __init__(self, store: Store, artifacts: ArtifactCatalog) -> None:
        self._store = store
        self._artifacts = artifacts
        # Set by the app once the sandbox service exists (they refer to each other).
        self.live_sandbox_count: Callable[[str], int] = lambda _blueprint_id: 0

    def get(self, principal: Principal, blueprint_id: str) -> dict[str, Any]:
        row = self._store.get("blueprints", blueprint_id)
        if row is None or row["tenant_id"] != principal.tenant_id:
            raise NotFound(
                f"blueprint {blueprint_id} does not exist", blueprint_id=blueprint_id
            )
        return row

    def list(
        self, principal: Principal, limit: int, after_id: str | None
    ) -> list[dict[str, Any]]:
        return self._store.select(
            "blueprints", tenant_id=principal.tenant_id, limit=limit, after_id=after_id
        )

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        """The API's shape of a blueprint, its artifact at our address now.

        Rows keep the registry address they were made at; a lab restarted on another
        port still has the same artifacts, reachable at the new one.
        """
        shown = blueprint_record(row)
        shown["artifact_ref"] = self._artifacts.current_ref(row["artifact_ref"])
        return shown

    def artifact_deletion_refusal(self, repository: str) -> str | None:
        """Why `repository`'s content may not be deleted, if a blueprint owns it.

        A blueprint's artifact lives in `<namespace>/<name>`; deleting it from the
        registry would leave the record pointing at nothing, so it is refused for as
        long as the blueprint exists. Deleting the blueprint first lifts this.
        """
        prefix = f"{self._artifacts.namespace}/"
        if not repository.startswith(prefix):
            return None
        owner = self._store.find_one("blueprints", name=repository.removeprefix(prefix))
        if owner is None:
            return None
        return (
            f"repository {repository} holds the artifact of blueprint {owner['name']} "
            f"({owner['id']}); delete the blueprint first"
        )

    def resolve_for_sandbox(
        self, principal: Principal, id_or_name: str
    ) -> dict[str, Any]:
        """The active blueprint with this id or unique name, else a clear refusal."""
        row = None
        if ids.looks_like_id("blueprint", id_or_name):
            row = self._store.get("blueprints", id_or_name)
            if row is not None and row["tenant_id"] != principal.tenant_id:
                row = None
        if row is None:
            row = self._store.find_one(
                "blueprints", tenant_id=principal.tenant_id, name=id_or_name
            )
        if row is None:
            raise NotFound(
                f"blueprint {id_or_name!r} does not exist", blueprint=id_or_name
            )
        if row["status"] != "active":
            raise Conflict(
                f"blueprint {row['name']} ({row['id']}) is inactive; activate it first",
                blueprint=id_or_name,
            )
        return row

    async def create(
        self, principal: Principal, body: dict[str, Any]
    ) -> dict[str, Any]:
        unknown = sorted(set(body) - CREATE_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"unknown fields: {', '.join(unknown)}", fields=unknown
            )
        name, image = body.get("name"), body.get("image")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidRequest(
                f"name must be a DNS label (lowercase letters, digits, '-'), not {name!r}"
            )
        if not isinstance(image, str):
            raise InvalidRequest("image is required and must be a string")
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > 1024:
            raise InvalidRequest(
                "description must be a string of at most 1024 characters"
            )
        metadata = body.get("metadata", {})
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise InvalidRequest("metadata must map strings to strings")
        connection_id = body.get("registry_connection_id")
        if connection_id is not None:
            # External registry connections arrive with the registry-connections API.
            raise NotFound(f"registry connection {connection_id!r} does not exist")
        if self._store.find_one("blueprints", tenant_id=principal.tenant_id, name=name):
            raise Conflict(f"a blueprint named {name!r} already exists", name=name)

        reference = parse_image_reference(image)
        self._artifacts.require_internal(reference)
        digest = await self._artifacts.resolve(
            reference.repository, reference.reference
        )
        repository = f"{self._artifacts.namespace}/{name}"
        await self._artifacts.publish(
            reference.repository, digest, repository, tag=digest.replace(":", "-")
        )

        now = now_rfc3339()
        row = {
            "id": ids.new_id("blueprint"),
            "tenant_id": principal.tenant_id,
            "name": name,
            "description": description,
            "image": image,
            "status": "inactive",
            "artifact_ref": self._artifacts.artifact_ref(repository, digest),
            "artifact_digest": digest,
            "registry_connection_id": None,
            "source_sandbox_id": None,
            "metadata": metadata,
            "created_at": now,
            "updated_at": now,
        }
        try:
            self._store.insert("blueprints", row)
        except sqlite3.IntegrityError as exc:
            raise Conflict(
                f"a blueprint named {name!r} already exists", name=name
            ) from exc
        log.info(
            "blueprint %s (%s): created from %s as %s",
            row["id"],
            name,
            image,
            row["artifact_ref"],
        )
        return row

    def set_active(
        self, principal: Principal, blueprint_id: str, active: bool
    ) -> dict[str, Any]:
        self.get(principal, blueprint_id)
        status = "active" if active else "inactive"
        row = self._store.update(
            "blueprints", blueprint_id, status=status, updated_at=now_rfc3339()
        )
        assert row is not None
        log.info("blueprint %s: %s", blueprint_id, status)
        return row

    def delete(self, principal: Principal, blueprint_id: str) -> None:
        self.get(principal, blueprint_id)
        live = self.live_sandbox_count(blueprint_id)
        if live:
            raise Conflict(
                f"blueprint {blueprint_id} is used by {live} live sandbox(es); delete them first",
                live_sandboxes=live,
            )
        self._store.delete("blueprints", blueprint_id)
        log.info(
            "blueprint %s: deleted (its artifact stays in the registry)", blueprint_id
        )
