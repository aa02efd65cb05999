"""Sandbox records and their realization on hosts.

Lifecycle of a record (`status`):

    creating ──► running ──► stopped
        │           │           │
        └──► failed └───────────┴──► deleting ──► deleted

`POST /api/sandboxes` validates, resolves the image to a digest in the embedded
registry, writes a `creating` record and returns it; a background task then asks the
chosen host's agent to create the sandbox and records what the agent answers. The
agent reports later changes (the main process exited) as notices. Callers that want to
block until a status is reached use `wait()`, which wakes on every change instead of
polling.

When an agent (re)connects it reports the sandboxes that exist on its host and
`reconcile()` makes the records agree: records of sandboxes the host no longer has are
marked failed, sandboxes the host has but no live record claims are deleted there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from control_plane_lite import ids
from control_plane_lite.activity import ActivityLog
from control_plane_lite.agent_hub import AgentHub
from control_plane_lite.artifacts import ArtifactCatalog
from control_plane_lite.auth import Principal
from control_plane_lite.blueprints import BlueprintService
from control_plane_lite.clock import now_rfc3339
from control_plane_lite.errors import (
    AgentFailed,
    Conflict,
    HostUnavailable,
    InvalidRequest,
    NotFound,
    Timeout,
)
from control_plane_lite.image_refs import parse_image_reference
from control_plane_lite.store import Store
from gstacks_proto import pb
from gstacks_proto.rpc_peer import RemoteError

log = logging.getLogger("gstacks.cp.sandboxes")

LIVE_STATUSES = ("creating", "running", "stopped", "deleting")
TERMINAL_STATUSES = ("failed", "deleted")
CREATE_TIMEOUT_S = 600.0
DELETE_TIMEOUT_S = 60.0
MAX_WAIT_S = 600.0
# Linux limits one argument or variable to 128 KiB and the whole exec to a few MB;
# refusing here gives a clear error instead of a sandbox that cannot start.
MAX_ENV_BYTES = 64 * 1024

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REPOSITORY_FIELDS = (
    "repository_id",
    "repository_url",
    "repository_branch",
    "repository_commit",
    "repository_path",
    "repository_credential_secret_ref",
)
CREATE_FIELDS = frozenset(
    {"image", "blueprint", "name", "command", "env", "host_id", *_REPOSITORY_FIELDS}
)

_STATE_NAMES = {
    pb.SANDBOX_STATE_CREATING: "creating",
    pb.SANDBOX_STATE_RUNNING: "running",
    pb.SANDBOX_STATE_STOPPED: "stopped",
    pb.SANDBOX_STATE_FAILED: "failed",
}


def sandbox_record(row: dict[str, Any]) -> dict[str, Any]:
    """The API's shape of a sandbox row."""
    return {
        "id": row["id"],
        "name": row["name"],
        "status": row["status"],
        "image": row["image"],
        "image_digest": row["image_digest"],
        "artifact_ref": row["artifact_ref"],
        "source_blueprint_id": row["source_blueprint_id"],
        "host_id": row["host_id"],
        "command": row["command"],
        "env": row["env"],
        "exit_code": row["exit_code"],
        "message": row["message"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "repository_bootstrap_status": row["repository_bootstrap_status"],
        **{
            field: row[field]
            for field in _REPOSITORY_FIELDS
            if field != "repository_credential_secret_ref"
        },
    }


class SandboxService:
    """Creates, tracks and deletes sandboxes through the hosts' agents."""

    def __init__(
        self,
        store: Store,
        hub: AgentHub,
        artifacts: ArtifactCatalog,
        blueprints: BlueprintService,
        activity: ActivityLog,
    ) -> None:
        self._activity = activity
        self._store = store
        self._hub = hub
        self._artifacts = artifacts
        self._blueprints = blueprints
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        # Set by the volume service: the volumes a new sandbox mounts from the
        # start, and what to do once a sandbox is deleted or failed.
        self.volume_mounts: Callable[[str], list[pb.VolumeMount]] = lambda _: []
        self.on_sandbox_ended: Callable[[str], Awaitable[None]] | None = None

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the background tasks that realize sandboxes on hosts."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # ---- queries ----------------------------------------------------------------

    def get(self, principal: Principal, sandbox_id: str) -> dict[str, Any]:
        row = self._store.get("sandboxes", sandbox_id)
        if row is None or row["tenant_id"] != principal.tenant_id:
            raise NotFound(
                f"sandbox {sandbox_id} does not exist", sandbox_id=sandbox_id
            )
        return row

    def list(
        self, principal: Principal, limit: int, after_id: str | None
    ) -> list[dict[str, Any]]:
        return self._store.select(
            "sandboxes",
            tenant_id=principal.tenant_id,
            status=LIVE_STATUSES + ("failed",),
            limit=limit,
            after_id=after_id,
        )

    async def wait(
        self, principal: Principal, sandbox_id: str, status: str, timeout_s: float
    ) -> dict[str, Any]:
        """Block until the sandbox has `status`; Conflict if it ends up elsewhere."""
        if status not in ("running", "stopped", "deleted"):
            raise InvalidRequest(
                f"status must be running, stopped or deleted, not {status!r}"
            )
        if not 0 < timeout_s <= MAX_WAIT_S:
            raise InvalidRequest(
                f"timeout_s must be in (0, {MAX_WAIT_S:g}], not {timeout_s:g}"
            )
        with trio.move_on_after(timeout_s):
            while True:
                changed = self._changed
                row = self.get(principal, sandbox_id)
                if row["status"] == status:
                    return row
                if row["status"] in TERMINAL_STATUSES or (
                    status == "running" and row["status"] == "stopped"
                ):
                    reason = f": {row['message']}" if row["message"] else ""
                    raise Conflict(
                        f"sandbox {sandbox_id} is {row['status']}, not {status}{reason}",
                        sandbox_id=sandbox_id,
                        status=row["status"],
                    )
                await changed.wait()
        raise Timeout(
            f"sandbox {sandbox_id} did not become {status} within {timeout_s:g}s"
        )

    def live_sandboxes_of_blueprint(self, blueprint_id: str) -> int:
        return self._store.count(
            "sandboxes", source_blueprint_id=blueprint_id, status=LIVE_STATUSES
        )

    # ---- commands -----------------------------------------------------------------

    async def create(
        self, principal: Principal, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Validate and record a sandbox, then realize it on a host in the background."""
        unknown = sorted(set(body) - CREATE_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"unknown fields: {', '.join(unknown)}", fields=unknown
            )
        image, blueprint = body.get("image"), body.get("blueprint")
        if (image is None) == (blueprint is None):
            raise InvalidRequest("give exactly one of image or blueprint")

        source_blueprint_id = None
        if blueprint is not None:
            if not isinstance(blueprint, str) or not blueprint:
                raise InvalidRequest("blueprint must be a non-empty string")
            bp = self._blueprints.resolve_for_sandbox(principal, blueprint)
            image_text, artifact_ref = bp["image"], bp["artifact_ref"]
            repository, digest = self._artifacts.split_artifact_ref(artifact_ref)
            source_blueprint_id = bp["id"]
        else:
            if not isinstance(image, str):
                raise InvalidRequest("image must be a string")
            reference = parse_image_reference(image)
            self._artifacts.require_internal(reference)
            repository = reference.repository
            digest = await self._artifacts.resolve(repository, reference.reference)
            image_text, artifact_ref = (
                image,
                self._artifacts.artifact_ref(repository, digest),
            )

        command = body.get("command", [])
        if not isinstance(command, list) or not all(
            isinstance(a, str) and "\0" not in a for a in command
        ):
            raise InvalidRequest("command must be a list of strings without NUL bytes")
        if command and not command[0]:
            raise InvalidRequest(
                "command must start with a program, not an empty string"
            )
        env = body.get("env", {})
        if not isinstance(env, dict) or not all(
            isinstance(k, str)
            and _ENV_KEY_RE.match(k)
            and isinstance(v, str)
            and "\0" not in v
            for k, v in env.items()
        ):
            raise InvalidRequest(
                "env must map variable names to string values without NUL bytes"
            )
        if sum(len(k) + len(v) + 2 for k, v in env.items()) > MAX_ENV_BYTES:
            raise InvalidRequest(f"env must total at most {MAX_ENV_BYTES} bytes")
        for field in _REPOSITORY_FIELDS:
            if body.get(field) is not None and not isinstance(body[field], str):
                raise InvalidRequest(f"{field} must be a string")

        sandbox_id = ids.new_id("sandbox")
        name = body.get("name", sandbox_id.replace("_", "-"))
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidRequest(
                f"name must be a DNS label (lowercase letters, digits, '-'), not {name!r}"
            )
        # Names are unique among a tenant's live sandboxes: they become hostnames and
        # DNS aliases, where two of the same name would be ambiguous.
        clash = self._store.find_one(
            "sandboxes", tenant_id=principal.tenant_id, name=name, status=LIVE_STATUSES
        )
        if clash is not None:
            raise Conflict(
                f"a sandbox named {name!r} already exists ({clash['id']})",
                name=name,
                sandbox_id=clash["id"],
            )
        host_id = self._choose_host(body.get("host_id"), principal.tenant_id)

        now = now_rfc3339()
        row = self._store.insert(
            "sandboxes",
            {
                "id": sandbox_id,
                "tenant_id": principal.tenant_id,
                "name": name,
                "status": "creating",
                "image": image_text,
                "image_digest": digest,
                "artifact_ref": artifact_ref,
                "source_blueprint_id": source_blueprint_id,
                "host_id": host_id,
                "command": command,
                "env": env,
                "exit_code": None,
                "message": "",
                **{field: body.get(field) for field in _REPOSITORY_FIELDS},
                "repository_bootstrap_status": "pending"
                if body.get("repository_url")
                else None,
                "created_at": now,
                "updated_at": now,
            },
        )
        self._activity.record(
            sandbox_id,
            "created",
            {"image": image_text, "image_digest": digest, "host_id": host_id},
        )
        log.info(
            "sandbox %s: creating on host %s from %s", sandbox_id, host_id, artifact_ref
        )
        assert self._nursery is not None, "SandboxService.run() must be started first"
        self._nursery.start_soon(
            self._realize, sandbox_id, host_id, repository, digest, name, command, env
        )
        return row

    async def delete(self, principal: Principal, sandbox_id: str) -> dict[str, Any]:
        """Stop and remove the sandbox on its host, then mark the record deleted."""
        row = self.get(principal, sandbox_id)
        if row["status"] == "deleted":
            return row
        if row["host_id"] and self._hub.is_connected(row["host_id"]):
            self._set_status(sandbox_id, "deleting")
            try:
                await self._hub.request(
                    row["host_id"],
                    pb.Envelope(
                        sandbox_delete=pb.SandboxDelete(
                            sandbox_id=sandbox_id, grace_s=5
                        )
                    ),
                    timeout_s=DELETE_TIMEOUT_S,
                )
            except RemoteError as exc:
                self._set_status(sandbox_id, row["status"], message=exc.message)
                raise AgentFailed(
                    f"host {row['host_id']} could not delete sandbox {sandbox_id}: {exc.message}"
                ) from exc
        elif row["status"] != "failed":
            raise HostUnavailable(
                f"host {row['host_id']} of sandbox {sandbox_id} is not connected; "
                "try again when it is"
            )
        log.info("sandbox %s: deleted", sandbox_id)
        return self._set_status(sandbox_id, "deleted")

    # ---- agent reports --------------------------------------------------------------

    async def status_reported(self, host_id: str, info: pb.SandboxInfo) -> None:
        row = self._store.get("sandboxes", info.sandbox_id)
        if (
            row is None
            or row["host_id"] != host_id
            or row["status"] in TERMINAL_STATUSES
        ):
            return
        if row["status"] == "deleting":
            return
        status = _STATE_NAMES.get(info.state, "failed")
        exit_code = info.exit_code if info.has_exit_code else None
        log.info(
            "sandbox %s: host %s reports %s (exit code %s)",
            info.sandbox_id,
            host_id,
            status,
            exit_code,
        )
        self._set_status(
            info.sandbox_id, status, exit_code=exit_code, message=info.message
        )

    async def reconcile(self, host_id: str, reported: list[pb.SandboxInfo]) -> None:
        """Make records agree with what the host says it runs."""
        on_host = {info.sandbox_id: info for info in reported}
        for row in self._store.select(
            "sandboxes", host_id=host_id, status=LIVE_STATUSES
        ):
            info = on_host.pop(row["id"], None)
            if info is not None:
                await self.status_reported(host_id, info)
            elif row["status"] == "deleting":
                self._set_status(row["id"], "deleted")
            elif row["status"] != "creating":
                log.warning("sandbox %s: host %s no longer has it", row["id"], host_id)
                self._set_status(
                    row["id"],
                    "failed",
                    message="the sandbox no longer exists on its host",
                )
        for orphan in on_host:
            log.warning(
                "sandbox %s: host %s runs it without a live record; deleting it",
                orphan,
                host_id,
            )
            assert self._nursery is not None
            self._nursery.start_soon(self._delete_orphan, host_id, orphan)

    # ---- internals ------------------------------------------------------------------

    def _choose_host(self, host_id: Any, tenant_id: str) -> str:
        # Only the tenant's own hosts: another tenant's host does not exist for it.
        if host_id is not None:
            if not isinstance(host_id, str):
                raise InvalidRequest("host_id must be a string")
            host = self._store.get("hosts", host_id)
            if host is None or host["tenant_id"] != tenant_id:
                raise NotFound(f"host {host_id!r} does not exist", host_id=host_id)
            if not self._hub.is_connected(host_id):
                raise HostUnavailable(f"host {host_id} is not connected")
            return host_id
        connected = [
            h
            for h in self._hub.connected_hosts()
            if (row := self._store.get("hosts", h)) and row["tenant_id"] == tenant_id
        ]
        if not connected:
            raise HostUnavailable("no host is connected to run the sandbox")
        # Placement: the connected host with the fewest live sandboxes.
        return min(
            connected,
            key=lambda h: (
                self._store.count("sandboxes", host_id=h, status=LIVE_STATUSES),
                h,
            ),
        )

    async def _realize(
        self,
        sandbox_id: str,
        host_id: str,
        repository: str,
        digest: str,
        name: str,
        command: list[str],
        env: dict[str, str],
    ) -> None:
        request = pb.SandboxCreate(
            sandbox_id=sandbox_id,
            image=pb.ImageRef(
                registry_url=self._artifacts.registry_url,
                repository=repository,
                digest=digest,
            ),
            command=command,
            env=env,
            hostname=name,
            volumes=self.volume_mounts(sandbox_id),
        )
        try:
            reply = await self._hub.request(
                host_id, pb.Envelope(sandbox_create=request), timeout_s=CREATE_TIMEOUT_S
            )
        except RemoteError as exc:
            log.warning(
                "sandbox %s: host %s failed to create it: %s",
                sandbox_id,
                host_id,
                exc.message,
            )
            self._set_status(sandbox_id, "failed", message=exc.message)
            return
        except (HostUnavailable, trio.TooSlowError) as exc:
            log.warning(
                "sandbox %s: creation on host %s did not complete: %s",
                sandbox_id,
                host_id,
                exc,
            )
            self._set_status(
                sandbox_id, "failed", message=f"creation did not complete: {exc}"
            )
            return
        row = self._store.get("sandboxes", sandbox_id)
        if row is not None and row["status"] == "creating":
            await self.status_reported(host_id, reply.sandbox_info)

    async def _delete_orphan(self, host_id: str, sandbox_id: str) -> None:
        try:
            await self._hub.request(
                host_id,
                pb.Envelope(
                    sandbox_delete=pb.SandboxDelete(sandbox_id=sandbox_id, grace_s=5)
                ),
                timeout_s=DELETE_TIMEOUT_S,
            )
        except (RemoteError, HostUnavailable, trio.TooSlowError) as exc:
            log.warning(
                "sandbox %s: orphan on host %s not deleted: %s",
                sandbox_id,
                host_id,
                exc,
            )

    def _set_status(
        self, sandbox_id: str, status: str, **fields: Any
    ) -> dict[str, Any]:
        before = self._store.get("sandboxes", sandbox_id)
        row = self._store.update(
            "sandboxes", sandbox_id, status=status, updated_at=now_rfc3339(), **fields
        )
        assert row is not None
        if status in TERMINAL_STATUSES and self.on_sandbox_ended is not None:
            assert self._nursery is not None
            self._nursery.start_soon(self.on_sandbox_ended, sandbox_id)
        if status in TERMINAL_STATUSES:
            # Its terminal sessions end with it, attached or never started.
            for session in self._store.select(
                "terminal_sessions", sandbox_id=sandbox_id, status="open"
            ):
                self._store.update(
                    "terminal_sessions",
                    session["id"],
                    status="closed",
                    closed_at=now_rfc3339(),
                )
        if before is None or before["status"] != status:
            details = (
                {"exit_code": fields["exit_code"]}
                if fields.get("exit_code") is not None
                else {}
            )
            if fields.get("message"):
                details["message"] = fields["message"]
            self._activity.record(sandbox_id, status, details)
        changed, self._changed = self._changed, trio.Event()
        changed.set()
        return row
