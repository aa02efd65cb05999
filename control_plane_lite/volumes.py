"""Volume records and their attachments, realized on hosts by typed agent requests.

How it works. A volume is a control-plane record (name, size, labels); creating one
touches no host, so it starts detached and has no directory anywhere. An
attachment is its own immutable record, to a host or to a sandbox:

- a host attachment asks that host's agent (VolumeAttach without a sandbox) to make
  the volume's directory and quota exist in its shared filesystem and to show it
  at the volume's stable host path;
- a sandbox attachment needs a host attachment of the volume on the sandbox's
  host. When there is none, one is made and recorded as `implicit`, and it is
  removed again with the last sandbox attachment that needed it. The agent then
  bind-mounts the volume into the sandbox, live if it is running; one still
  being created gets the mount once it runs (or from its SandboxCreate, when the
  attachment was recorded before that was sent).

Every attachment is realized before the POST answers. If the agent refuses or
fails, every record this request made is removed again, so a failed attach
leaves nothing behind. Changing an attachment means deleting it and creating
another: no route updates one. A volume is deleted only when it has no
attachment left, and its data on every host that held it goes with it.

The JuiceFS details (metadata URL, storage, mount options) are the agents'
configuration; no field of this API names them, and unknown fields are refused.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from typing import Any

import trio

from control_plane_lite import ids
from control_plane_lite.activity import ActivityLog
from control_plane_lite.agent_hub import AgentHub
from control_plane_lite.auth import Principal
from control_plane_lite.clock import now_rfc3339
from control_plane_lite.errors import (
    AgentFailed,
    Conflict,
    HostUnavailable,
    InvalidRequest,
    NotFound,
)
from control_plane_lite.sandboxes import SandboxService
from control_plane_lite.store import Store
from gstacks_agent.volumes.mount_paths import OS_DIRECTORIES, SYSTEM_PATHS
from gstacks_proto import pb
from gstacks_proto.rpc_peer import RemoteError

log = logging.getLogger("gstacks.cp.volumes")

VOLUME_FIELDS = frozenset({"name", "size_bytes", "labels"})
ATTACHMENT_FIELDS = frozenset({"host_id", "sandbox_id", "mount_path", "read_only"})
MIN_SIZE_BYTES = 1024 * 1024
MAX_SIZE_BYTES = 1024**5
MAX_LABELS = 64
AGENT_TIMEOUT_S = 120.0
SANDBOX_RUNNING_WAIT_S = 300.0
MAX_MOUNT_PATH_CHARS = 1024

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$")
_PATH_COMPONENT_RE = re.compile(r"^[A-Za-z0-9._@+=:,-]{1,255}$")
_ATTACHABLE_SANDBOX = ("creating", "running")
_FS_STATES = {
    pb.FILESYSTEM_STATE_MOUNTED: "mounted",
    pb.FILESYSTEM_STATE_DEGRADED: "degraded",
    pb.FILESYSTEM_STATE_UNMOUNTED: "unmounted",
}


def volume_record(
    row: dict[str, Any], attachments: int, degraded: bool
) -> dict[str, Any]:
    """The API's shape of a volume row."""
    if attachments == 0:
        status = "detached"
    else:
        status = "degraded" if degraded else "attached"
    return {
        "id": row["id"],
        "name": row["name"],
        "size_bytes": row["size_bytes"],
        "labels": row["labels"],
        "status": status,
        "attachment_count": attachments,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def attachment_record(row: dict[str, Any]) -> dict[str, Any]:
    """The API's shape of an attachment row."""
    return {
        "id": row["id"],
        "volume_id": row["volume_id"],
        "target": row["target"],
        "host_id": row["host_id"],
        "sandbox_id": row["sandbox_id"],
        "mount_path": row["mount_path"],
        "host_path": row["host_path"],
        "read_only": bool(row["read_only"]),
        "implicit": bool(row["implicit"]),
        "status": row["status"],
        "created_at": row["created_at"],
    }


def check_mount_path(path: Any) -> str:
    """Return `path` if a sandbox may have a volume mounted there, else InvalidRequest."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidRequest(f"mount_path must be an absolute path, not {path!r}")
    if len(path) > MAX_MOUNT_PATH_CHARS:
        raise InvalidRequest(f"mount_path must be at most {MAX_MOUNT_PATH_CHARS} chars")
    components = path[1:].split("/")
    if path == "/":
        raise InvalidRequest("mount_path '/' would shadow the sandbox's root")
    if any(c in ("", ".", "..") for c in components):
        raise InvalidRequest(
            f"mount_path must be normalized, without '.', '..' or '//', not {path!r}"
        )
    for component in components:
        if not _PATH_COMPONENT_RE.match(component):
            raise InvalidRequest(
                f"mount_path component {component!r} may hold only letters, digits "
                "and ._@+=:,-"
            )
    for system in SYSTEM_PATHS:
        if path == system or path.startswith(system + "/"):
            raise InvalidRequest(f"mount_path {path!r} would shadow {system}")
    if path in OS_DIRECTORIES:
        raise InvalidRequest(
            f"mount_path {path!r} would hide the image's {path}; mount below it"
        )
    return path


def paths_conflict(a: str, b: str) -> bool:
    """Whether mounts at `a` and `b` would hide one another (equal or nested)."""
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a + "/")


class VolumeService:
    """Volume and attachment records, and their realization through the agents."""

    def __init__(
        self,
        store: Store,
        hub: AgentHub,
        sandboxes: SandboxService,
        activity: ActivityLog,
    ) -> None:
        self._store = store
        self._hub = hub
        self._sandboxes = sandboxes
        self._activity = activity

    # ---- volumes ----------------------------------------------------------------------

    def create(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        _refuse_unknown(body, VOLUME_FIELDS)
        name = body.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidRequest(
                f"name must be a DNS label (lowercase letters, digits, '-'), not {name!r}"
            )
        size = body.get("size_bytes")
        # JSON has one number type: 1048576.0 is as whole a number as 1048576.
        if isinstance(size, float) and size.is_integer():
            size = int(size)
        if not isinstance(size, int) or isinstance(size, bool):
            raise InvalidRequest("size_bytes is required and must be an integer")
        if not MIN_SIZE_BYTES <= size <= MAX_SIZE_BYTES:
            raise InvalidRequest(
                f"size_bytes must be from {MIN_SIZE_BYTES} to {MAX_SIZE_BYTES}, not {size}"
            )
        labels = body.get("labels", {})
        if (
            not isinstance(labels, dict)
            or len(labels) > MAX_LABELS
            or not all(
                isinstance(k, str)
                and _LABEL_KEY_RE.match(k)
                and isinstance(v, str)
                and len(v) <= 256
                for k, v in labels.items()
            )
        ):
            raise InvalidRequest(
                f"labels must map at most {MAX_LABELS} keys (letters, digits, ._/-) "
                "to strings of at most 256 characters"
            )
        now = now_rfc3339()
        row = {
            "id": ids.new_id("volume"),
            "tenant_id": principal.tenant_id,
            "name": name,
            "size_bytes": size,
            "labels": labels,
            "filesystem_id": None,
            "realized_host_ids": [],
            "created_at": now,
            "updated_at": now,
        }
        try:
            self._store.insert("volumes", row)
        except sqlite3.IntegrityError:
            raise Conflict(
                f"a volume named {name!r} exists already", name=name
            ) from None
        log.info("volume %s: created as %s, %d bytes", row["id"], name, size)
        return row

    def get(self, principal: Principal, volume_id: str) -> dict[str, Any]:
        row = self._store.get("volumes", volume_id)
        if row is None or row["tenant_id"] != principal.tenant_id:
            raise NotFound(f"volume {volume_id} does not exist", volume_id=volume_id)
        return row

    def list(
        self, principal: Principal, limit: int, after_id: str | None
    ) -> list[dict[str, Any]]:
        return self._store.select(
            "volumes", tenant_id=principal.tenant_id, limit=limit, after_id=after_id
        )

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        """The API's shape of `row`, with its attachment count and health."""
        attachments = self._store.select("volume_attachments", volume_id=row["id"])
        degraded = any(
            (fs := self._store.get("volume_filesystems", a["host_id"])) is not None
            and fs["state"] == "degraded"
            for a in attachments
        )
        return volume_record(row, len(attachments), degraded)

    async def delete(self, principal: Principal, volume_id: str) -> None:
        """Delete a volume with no attachment, and its data on the hosts that held it."""
        row = self.get(principal, volume_id)
        attached = self._store.count("volume_attachments", volume_id=volume_id)
        if attached:
            raise Conflict(
                f"volume {volume_id} has {attached} attachment(s); delete them first",
                volume_id=volume_id,
            )
        remaining = list(row["realized_host_ids"])
        for host_id in list(remaining):
            await self._agent(
                host_id,
                pb.Envelope(volume_delete=pb.VolumeDelete(volume_id=volume_id)),
                f"delete volume {volume_id}",
            )
            remaining.remove(host_id)
            self._store.update("volumes", volume_id, realized_host_ids=remaining)
        self._store.delete("volumes", volume_id)
        log.info("volume %s: deleted", volume_id)

    # ---- attachments ------------------------------------------------------------------

    def get_attachment(
        self, principal: Principal, volume_id: str, attachment_id: str
    ) -> dict[str, Any]:
        self.get(principal, volume_id)
        row = self._store.get("volume_attachments", attachment_id)
        if row is None or row["volume_id"] != volume_id:
            raise NotFound(
                f"attachment {attachment_id} of volume {volume_id} does not exist",
                attachment_id=attachment_id,
            )
        return row

    def list_attachments(
        self, principal: Principal, volume_id: str, limit: int, after_id: str | None
    ) -> list[dict[str, Any]]:
        self.get(principal, volume_id)
        return self._store.select(
            "volume_attachments", volume_id=volume_id, limit=limit, after_id=after_id
        )

    async def attach(
        self, principal: Principal, volume_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Record an attachment and realize it on its host before answering."""
        volume = self.get(principal, volume_id)
        _refuse_unknown(body, ATTACHMENT_FIELDS)
        read_only = body.get("read_only", False)
        if not isinstance(read_only, bool):
            raise InvalidRequest("read_only must be true or false")
        host_id, sandbox_id = body.get("host_id"), body.get("sandbox_id")
        if (host_id is None) == (sandbox_id is None):
            raise InvalidRequest("give exactly one of host_id or sandbox_id")

        # Checks and inserts run without an await between them, so two requests
        # cannot both pass the conflict check.
        if sandbox_id is not None:
            sandbox, mount_path = self._check_sandbox_target(
                principal, sandbox_id, body
            )
            host_id = sandbox["host_id"]
            host_row = self._host_attachment(volume_id, host_id)
            made = []
            if host_row is None:
                host_row = self._insert_attachment(
                    volume, host_id, None, None, False, True
                )
                made.append(host_row)
            row = self._insert_attachment(
                volume, host_id, sandbox_id, mount_path, read_only, False
            )
            made.append(row)
        else:
            self._check_host_target(principal, volume_id, host_id, body)
            host_row = row = self._insert_attachment(
                volume, host_id, None, None, read_only, False
            )
            made = [row]

        try:
            if host_row in made:
                await self._realize_host(volume, host_row)
            if sandbox_id is not None:
                if sandbox["status"] == "creating":
                    await self._sandboxes.wait(
                        principal, sandbox_id, "running", SANDBOX_RUNNING_WAIT_S
                    )
                await self._agent(
                    host_id,
                    pb.Envelope(
                        volume_attach=pb.VolumeAttach(
                            sandbox_id=sandbox_id,
                            mount=_mount_message(row),
                            size_bytes=volume["size_bytes"],
                        )
                    ),
                    f"attach volume {volume_id} to sandbox {sandbox_id}",
                )
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._undo(made)
            raise
        row = self._store.update("volume_attachments", row["id"], status="attached")
        assert row is not None
        if sandbox_id is not None:
            self._activity.record(
                sandbox_id,
                "volume_attached",
                {
                    "volume_id": volume_id,
                    "attachment_id": row["id"],
                    "mount_path": mount_path,
                    "read_only": read_only,
                },
            )
        log.info(
            "volume %s: attachment %s to %s %s%s",
            volume_id,
            row["id"],
            "sandbox" if sandbox_id else "host",
            sandbox_id or host_id,
            " (read-only)" if read_only else "",
        )
        return row

    async def detach(
        self, principal: Principal, volume_id: str, attachment_id: str
    ) -> None:
        """Remove one attachment from its host, then its record."""
        row = self.get_attachment(principal, volume_id, attachment_id)
        if row["target"] == "host":
            users = self._store.count(
                "volume_attachments",
                volume_id=volume_id,
                host_id=row["host_id"],
                target="sandbox",
            )
            if users:
                raise Conflict(
                    f"{users} sandbox attachment(s) of volume {volume_id} on host "
                    f"{row['host_id']} need this host attachment; delete them first",
                    attachment_id=attachment_id,
                )
            await self._detach_on_host(row)
            return

        sandbox = self._store.get("sandboxes", row["sandbox_id"])
        if sandbox is not None and sandbox["status"] in (
            "creating",
            "running",
            "stopped",
        ):
            await self._agent(
                row["host_id"],
                pb.Envelope(volume_detach=_detach_message(row)),
                f"detach volume {volume_id} from sandbox {row['sandbox_id']}",
            )
        self._store.delete("volume_attachments", attachment_id)
        self._activity.record(
            row["sandbox_id"],
            "volume_detached",
            {"volume_id": volume_id, "attachment_id": attachment_id},
        )
        log.info("volume %s: attachment %s deleted", volume_id, attachment_id)
        await self._release_implicit(volume_id, row["host_id"])

    # ---- hooks from sandboxes and agents ---------------------------------------------

    def sandbox_mounts(self, sandbox_id: str) -> list[pb.VolumeMount]:
        """The volumes a sandbox about to be created gets from the start."""
        return [
            _mount_message(row)
            for row in self._store.select("volume_attachments", sandbox_id=sandbox_id)
        ]

    async def sandbox_ended(self, sandbox_id: str) -> None:
        """A deleted or failed sandbox's attachments go, with implicit host ones."""
        rows = self._store.select("volume_attachments", sandbox_id=sandbox_id)
        for row in rows:
            self._store.delete("volume_attachments", row["id"])
            log.info(
                "volume %s: attachment %s ended with sandbox %s",
                row["volume_id"],
                row["id"],
                sandbox_id,
            )
        for volume_id, host_id in {(r["volume_id"], r["host_id"]) for r in rows}:
            try:
                await self._release_implicit(volume_id, host_id)
            except (HostUnavailable, AgentFailed) as exc:
                log.warning(
                    "volume %s: implicit host attachment on %s kept: %s",
                    volume_id,
                    host_id,
                    exc.message,
                )

    def filesystem_reported(self, host_id: str, status: pb.FilesystemStatus) -> None:
        """Record a host's volume filesystem state from its heartbeat."""
        state = _FS_STATES.get(status.state, "unknown")
        before = self._store.get("volume_filesystems", host_id)
        row = {
            "state": state,
            "message": status.message,
            "filesystem_id": status.filesystem_id,
            "remounts": status.remounts,
            "last_failure": status.last_failure,
            "updated_at": now_rfc3339(),
        }
        if before is None:
            self._store.insert("volume_filesystems", {"id": host_id, **row})
        else:
            self._store.update("volume_filesystems", host_id, **row)
        if before is None or before["state"] != state:
            if state == "degraded":
                log.warning(
                    "host %s: volume filesystem degraded: %s", host_id, status.message
                )
            else:
                log.info("host %s: volume filesystem %s", host_id, state)

    # ---- internals --------------------------------------------------------------------

    def _check_sandbox_target(
        self, principal: Principal, sandbox_id: Any, body: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        if not isinstance(sandbox_id, str):
            raise InvalidRequest("sandbox_id must be a string")
        sandbox = self._store.get("sandboxes", sandbox_id)
        if sandbox is None or sandbox["tenant_id"] != principal.tenant_id:
            raise NotFound(
                f"sandbox {sandbox_id} does not exist", sandbox_id=sandbox_id
            )
        if "mount_path" not in body:
            raise InvalidRequest("a sandbox attachment needs a mount_path")
        mount_path = check_mount_path(body["mount_path"])
        if sandbox["status"] not in _ATTACHABLE_SANDBOX or not sandbox["host_id"]:
            raise Conflict(
                f"sandbox {sandbox_id} is {sandbox['status']}; volumes attach to "
                "sandboxes being created or running",
                sandbox_id=sandbox_id,
            )
        for other in self._store.select("volume_attachments", sandbox_id=sandbox_id):
            if paths_conflict(other["mount_path"], mount_path):
                raise Conflict(
                    f"mount_path {mount_path} conflicts with attachment {other['id']} "
                    f"at {other['mount_path']} in sandbox {sandbox_id}",
                    attachment_id=other["id"],
                )
        if not self._hub.is_connected(sandbox["host_id"]):
            raise HostUnavailable(f"host {sandbox['host_id']} is not connected")
        return sandbox, mount_path

    def _check_host_target(
        self, principal: Principal, volume_id: str, host_id: Any, body: dict[str, Any]
    ) -> None:
        if not isinstance(host_id, str):
            raise InvalidRequest("host_id must be a string")
        host = self._store.get("hosts", host_id)
        if host is None or host["tenant_id"] != principal.tenant_id:
            raise NotFound(f"host {host_id} does not exist", host_id=host_id)
        if "mount_path" in body:
            raise InvalidRequest(
                "mount_path is for sandbox attachments; on a host the volume appears "
                "at its host path"
            )
        existing = self._host_attachment(volume_id, host_id)
        if existing is not None:
            raise Conflict(
                f"volume {volume_id} is attached to host {host_id} already "
                f"({existing['id']}) at the same host path",
                attachment_id=existing["id"],
            )
        if not self._hub.is_connected(host_id):
            raise HostUnavailable(f"host {host_id} is not connected")

    def _host_attachment(self, volume_id: str, host_id: str) -> dict[str, Any] | None:
        return self._store.find_one(
            "volume_attachments", volume_id=volume_id, host_id=host_id, target="host"
        )

    def _insert_attachment(
        self,
        volume: dict[str, Any],
        host_id: str,
        sandbox_id: str | None,
        mount_path: str | None,
        read_only: bool,
        implicit: bool,
    ) -> dict[str, Any]:
        return self._store.insert(
            "volume_attachments",
            {
                "id": ids.new_id("attachment"),
                "tenant_id": volume["tenant_id"],
                "volume_id": volume["id"],
                "target": "sandbox" if sandbox_id else "host",
                "host_id": host_id,
                "sandbox_id": sandbox_id,
                "mount_path": mount_path,
                "host_path": None,
                "read_only": int(read_only),
                "implicit": int(implicit),
                "status": "attaching",
                "created_at": now_rfc3339(),
            },
        )

    async def _realize_host(self, volume: dict[str, Any], row: dict[str, Any]) -> None:
        current = self._store.get("volumes", volume["id"])
        assert current is not None
        reply = await self._agent(
            row["host_id"],
            pb.Envelope(
                volume_attach=pb.VolumeAttach(
                    mount=_mount_message(row),
                    size_bytes=volume["size_bytes"],
                    filesystem_id=current["filesystem_id"] or "",
                )
            ),
            f"attach volume {volume['id']} to host {row['host_id']}",
        )
        attached = reply.volume_attached
        hosts = list(current["realized_host_ids"])
        if row["host_id"] not in hosts:
            hosts.append(row["host_id"])
        self._store.update(
            "volumes",
            volume["id"],
            realized_host_ids=hosts,
            filesystem_id=current["filesystem_id"] or attached.filesystem_id or None,
        )
        self._store.update(
            "volume_attachments",
            row["id"],
            host_path=attached.host_path,
            status="attached",
        )

    async def _detach_on_host(self, row: dict[str, Any]) -> None:
        await self._agent(
            row["host_id"],
            pb.Envelope(volume_detach=_detach_message(row)),
            f"detach volume {row['volume_id']} from host {row['host_id']}",
        )
        self._store.delete("volume_attachments", row["id"])
        log.info("volume %s: attachment %s deleted", row["volume_id"], row["id"])

    async def _release_implicit(self, volume_id: str, host_id: str) -> None:
        host_row = self._host_attachment(volume_id, host_id)
        if host_row is None or not host_row["implicit"]:
            return
        if self._store.count(
            "volume_attachments", volume_id=volume_id, host_id=host_id, target="sandbox"
        ):
            return
        await self._detach_on_host(host_row)

    async def _undo(self, made: list[dict[str, Any]]) -> None:
        """Remove the records a failed attach made, and what the agent did of them."""
        for row in reversed(made):
            try:
                if self._hub.is_connected(row["host_id"]):
                    await self._hub.request(
                        row["host_id"],
                        pb.Envelope(volume_detach=_detach_message(row)),
                        timeout_s=AGENT_TIMEOUT_S,
                    )
            except (RemoteError, HostUnavailable, trio.TooSlowError) as exc:
                log.warning(
                    "volume %s: undoing attachment %s on host %s failed: %s",
                    row["volume_id"],
                    row["id"],
                    row["host_id"],
                    exc,
                )
            self._store.delete("volume_attachments", row["id"])

    async def _agent(
        self, host_id: str, envelope: pb.Envelope, what: str
    ) -> pb.Envelope:
        try:
            return await self._hub.request(host_id, envelope, timeout_s=AGENT_TIMEOUT_S)
        except RemoteError as exc:
            if exc.code == "ERROR_CODE_FAILED_PRECONDITION":
                raise Conflict(f"host {host_id} cannot {what}: {exc.message}") from exc
            raise AgentFailed(
                f"host {host_id} could not {what}: {exc.message}"
            ) from exc
        except trio.TooSlowError as exc:
            raise AgentFailed(f"host {host_id} did not {what} in time") from exc


def _mount_message(row: dict[str, Any]) -> pb.VolumeMount:
    return pb.VolumeMount(
        attachment_id=row["id"],
        volume_id=row["volume_id"],
        mount_path=row["mount_path"] or "",
        read_only=bool(row["read_only"]),
    )


def _detach_message(row: dict[str, Any]) -> pb.VolumeDetach:
    return pb.VolumeDetach(
        sandbox_id=row["sandbox_id"] or "",
        attachment_id=row["id"],
        volume_id=row["volume_id"],
    )


def _refuse_unknown(body: dict[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidRequest(
            f"unknown fields: {', '.join(unknown)}; accepted: {', '.join(sorted(known))}",
            fields=unknown,
        )
