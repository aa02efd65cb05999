"""Volumes on this host: directories of the shared filesystem, bound where asked.

How it works. A volume is the directory `volumes/<volume_id>` of the shared JuiceFS
mount (see `shared_filesystem`), created on its first attachment, its size a
JuiceFS directory quota. An attachment is one of

- a host attachment: the directory bind-mounted at `<state_dir>/volumes/<volume_id>`,
  the volume's stable host path, read-only if asked;
- a sandbox attachment: the directory bind-mounted at a path inside one sandbox.
  Given with SandboxCreate it becomes part of the runtime spec; given to a sandbox
  already running it is mounted live (see `namespace_mount`).

The agent keeps a record of each attachment in `<state_dir>/juicefs/attachments/`.
The records let every request be idempotent on its ids, and let the agent redo the
bind mounts that died with the filesystem when it remounts it (host paths, and
live sandboxes, without restarting them). A volume with any attachment left on
this host cannot be deleted here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import trio

from gstacks_agent.config import VolumesConfig
from gstacks_agent.errors import AgentError
from gstacks_agent.sandboxes.errors import SandboxNotFound
from gstacks_agent.sandboxes.manager import SandboxManager
from gstacks_agent.volumes import mount_calls
from gstacks_agent.volumes.errors import (
    FilesystemMismatch,
    InvalidVolumeRequest,
    SandboxNotRunning,
    VolumeInUse,
    VolumeNotFound,
)
from gstacks_agent.volumes.mount_paths import check_mount_path, check_volume_id
from gstacks_agent.volumes.mount_table import is_mount_point
from gstacks_agent.volumes.sandbox_mounts import (
    attach_in_sandbox,
    detach_in_sandbox,
)
from gstacks_agent.volumes.shared_filesystem import FilesystemState, SharedFilesystem

log = logging.getLogger("gstacks.agent.volumes")

QUOTA_VISIBLE_TIMEOUT_S = 15.0
SANDBOX_START_WAIT_S = 120.0


@dataclass(frozen=True)
class Attachment:
    """One attachment as the agent records it; sandbox_id "" for the host."""

    attachment_id: str
    volume_id: str
    sandbox_id: str = ""
    mount_path: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class VolumeUsage:
    volume_id: str
    exists: bool
    used_bytes: int = 0
    quota_bytes: int = 0
    inodes: int = 0
    host_path: str = ""
    filesystem_id: str = ""


class VolumeManager:
    """Realizes volumes and their attachments on this host."""

    def __init__(
        self,
        state_dir: Path,
        config: VolumesConfig,
        sandboxes: SandboxManager,
        *,
        on_filesystem_change: Callable[[FilesystemState], None] | None = None,
        health_interval_s: float | None = None,
    ) -> None:
        kwargs = (
            {}
            if health_interval_s is None
            else {"health_interval_s": health_interval_s}
        )
        self.filesystem = SharedFilesystem(state_dir, config, **kwargs)
        self.filesystem.on_change = on_filesystem_change
        self.filesystem.on_remounted = self.reapply
        self.host_root = Path(state_dir) / "volumes"
        self._records = self.filesystem.root / "attachments"
        self._sandboxes = sandboxes
        self._lock = trio.Lock()

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Watch the filesystem until cancelled; ready once mounts of before are back."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.filesystem.serve)
            if self.filesystem.state.state == "mounted":
                await self.reapply()
            task_status.started()

    # ---- requests --------------------------------------------------------------------

    async def ensure(
        self, volume_id: str, size_bytes: int, filesystem_id: str = ""
    ) -> Path:
        """Make the volume's directory and quota exist; returns the directory."""
        check_volume_id(volume_id)
        mount_point = await self.filesystem.ensure_mounted()
        ours = self.filesystem.state.filesystem_id
        if filesystem_id and filesystem_id != ours:
            raise FilesystemMismatch(
                f"volume {volume_id} lives on filesystem {filesystem_id}; "
                f"this host mounts {ours}",
                resource_id=volume_id,
            )
        directory = mount_point / "volumes" / volume_id
        if not directory.exists():
            await trio.to_thread.run_sync(
                lambda: directory.mkdir(parents=True, exist_ok=True, mode=0o755)
            )
            log.info("volume %s: created %s", volume_id, directory)
        if size_bytes and _quota_of(directory) != size_bytes:
            await self.filesystem.juicefs.set_quota(f"/volumes/{volume_id}", size_bytes)
            await _wait_quota_visible(directory, size_bytes)
            log.info("volume %s: quota %d bytes", volume_id, size_bytes)
        return directory

    async def attach(
        self, attachment: Attachment, size_bytes: int, filesystem_id: str = ""
    ) -> str:
        """Realize `attachment`; returns the volume's host path (host attachments)."""
        check_volume_id(attachment.volume_id)
        if attachment.sandbox_id:
            check_mount_path(attachment.mount_path)
        async with self._lock:
            directory = await self.ensure(
                attachment.volume_id, size_bytes, filesystem_id
            )
            existing = self._load(attachment.attachment_id)
            if existing is not None and existing != attachment:
                raise InvalidVolumeRequest(
                    f"attachment {attachment.attachment_id} exists with other settings",
                    resource_id=attachment.attachment_id,
                )
            self._save(attachment)
            try:
                if attachment.sandbox_id:
                    await self._mount_in_sandbox(attachment, directory)
                    return ""
                return str(await self._mount_on_host(attachment, directory))
            except BaseException:
                if existing is None:
                    self._remove(attachment.attachment_id)
                raise

    async def detach(self, attachment_id: str) -> bool:
        """Undo one attachment; False if this host has no record of it."""
        async with self._lock:
            attachment = self._load(attachment_id)
            if attachment is None:
                return False
            if attachment.sandbox_id:
                pid = self._running_pid(attachment.sandbox_id)
                if pid is not None:
                    await detach_in_sandbox(pid, attachment.mount_path)
            elif not any(
                a.volume_id == attachment.volume_id and not a.sandbox_id
                for a in self._all()
                if a.attachment_id != attachment_id
            ):
                host_path = self.host_root / attachment.volume_id
                while mount_calls.detach(str(host_path)):
                    pass
            self._remove(attachment_id)
            log.info(
                "volume %s: detached %s from %s",
                attachment.volume_id,
                attachment_id,
                attachment.sandbox_id or "the host",
            )
            return True

    async def delete(self, volume_id: str) -> bool:
        """Remove the volume's data and quota; False if it had no directory."""
        check_volume_id(volume_id)
        async with self._lock:
            users = [a.attachment_id for a in self._all() if a.volume_id == volume_id]
            if users:
                raise VolumeInUse(
                    f"volume {volume_id} is still attached: {', '.join(users)}",
                    resource_id=volume_id,
                )
            mount_point = await self.filesystem.ensure_mounted()
            directory = mount_point / "volumes" / volume_id
            host_path = self.host_root / volume_id
            if host_path.exists() and not is_mount_point(str(host_path)):
                host_path.rmdir()
            if not directory.exists():
                return False
            await self.filesystem.juicefs.delete_quota(f"/volumes/{volume_id}")
            await trio.to_thread.run_sync(shutil.rmtree, directory)
            log.info("volume %s: deleted", volume_id)
            return True

    async def usage(self, volume_id: str) -> VolumeUsage:
        check_volume_id(volume_id)
        mount_point = await self.filesystem.ensure_mounted()
        directory = mount_point / "volumes" / volume_id
        fs_id = self.filesystem.state.filesystem_id
        if not directory.exists():
            return VolumeUsage(volume_id, exists=False, filesystem_id=fs_id)
        stat = await trio.to_thread.run_sync(os.statvfs, directory)
        host_path = self.host_root / volume_id
        return VolumeUsage(
            volume_id,
            exists=True,
            used_bytes=(stat.f_blocks - stat.f_bfree) * stat.f_frsize,
            quota_bytes=_quota_of(directory),
            inodes=stat.f_files - stat.f_ffree,
            host_path=str(host_path) if is_mount_point(str(host_path)) else "",
            filesystem_id=fs_id,
        )

    def sandbox_mounts(
        self, sandbox_id: str, mounts: Iterable[Attachment]
    ) -> list[dict[str, Any]]:
        """Runtime-spec mounts for a sandbox about to be created; records them.

        Each volume must exist already: the control plane attaches it to the host
        before it creates the sandbox.
        """
        spec = []
        for mount in mounts:
            check_volume_id(mount.volume_id)
            check_mount_path(mount.mount_path)
            directory = self.filesystem.mount_point / "volumes" / mount.volume_id
            if self.filesystem.state.state != "mounted" or not directory.is_dir():
                raise VolumeNotFound(
                    f"volume {mount.volume_id} is not ready on this host",
                    resource_id=mount.volume_id,
                )
            self._save(mount)
            spec.append(_bind_spec(directory, mount.mount_path, mount.read_only))
        return spec

    def forget_sandbox(self, sandbox_id: str) -> None:
        """Drop the records of a deleted sandbox; its mounts went with it."""
        for attachment in self._all():
            if attachment.sandbox_id == sandbox_id:
                self._remove(attachment.attachment_id)

    async def reapply(self) -> None:
        """Redo every recorded bind mount that is missing or died with the old mount."""
        async with self._lock:
            for attachment in self._all():
                directory = (
                    self.filesystem.mount_point / "volumes" / attachment.volume_id
                )
                try:
                    if attachment.sandbox_id:
                        await self._mount_in_sandbox(attachment, directory, wait=False)
                    else:
                        await self._mount_on_host(attachment, directory)
                except (AgentError, OSError) as exc:
                    log.warning(
                        "volume %s: attachment %s not restored: %s",
                        attachment.volume_id,
                        attachment.attachment_id,
                        exc,
                    )

    # ---- internals -------------------------------------------------------------------

    async def _mount_on_host(self, attachment: Attachment, directory: Path) -> Path:
        host_path = self.host_root / attachment.volume_id
        if is_mount_point(str(host_path)):
            if _working(host_path):
                return host_path
            while mount_calls.detach(str(host_path)):
                pass
        host_path.mkdir(parents=True, exist_ok=True, mode=0o755)
        mount_calls.bind(str(directory), str(host_path), read_only=attachment.read_only)
        log.info(
            "volume %s: attached %s at %s%s",
            attachment.volume_id,
            attachment.attachment_id,
            host_path,
            " (read-only)" if attachment.read_only else "",
        )
        return host_path

    async def _mount_in_sandbox(
        self, attachment: Attachment, directory: Path, *, wait: bool = True
    ) -> None:
        self._sandboxes.get(attachment.sandbox_id)  # SandboxNotFound if unknown
        pid = self._running_pid(attachment.sandbox_id)
        if pid is None and wait:
            # A sandbox still being created gets its mount once its process runs.
            with trio.move_on_after(SANDBOX_START_WAIT_S):
                while self._sandboxes.get(attachment.sandbox_id).state == "creating":
                    await trio.sleep(0.1)
            pid = self._running_pid(attachment.sandbox_id)
        if pid is None:
            raise SandboxNotRunning(
                f"sandbox {attachment.sandbox_id} is not running",
                resource_id=attachment.sandbox_id,
            )
        await attach_in_sandbox(
            pid, directory, attachment.mount_path, read_only=attachment.read_only
        )
        log.info(
            "volume %s: attached %s in sandbox %s at %s%s",
            attachment.volume_id,
            attachment.attachment_id,
            attachment.sandbox_id,
            attachment.mount_path,
            " (read-only)" if attachment.read_only else "",
        )

    def _running_pid(self, sandbox_id: str) -> int | None:
        try:
            info = self._sandboxes.get(sandbox_id)
        except SandboxNotFound:
            return None
        return info.pid if info.state == "running" and info.pid else None

    def _all(self) -> list[Attachment]:
        if not self._records.exists():
            return []
        found = []
        for path in sorted(self._records.glob("*.json")):
            try:
                found.append(Attachment(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("volume attachment record %s is unreadable: %s", path, exc)
        return found

    def _load(self, attachment_id: str) -> Attachment | None:
        path = self._record_path(attachment_id)
        if not path.exists():
            return None
        return Attachment(**json.loads(path.read_text()))

    def _save(self, attachment: Attachment) -> None:
        self._records.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._record_path(attachment.attachment_id)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps(asdict(attachment)) + "\n")
        os.replace(temporary, path)

    def _remove(self, attachment_id: str) -> None:
        self._record_path(attachment_id).unlink(missing_ok=True)

    def _record_path(self, attachment_id: str) -> Path:
        check_volume_id(attachment_id)  # the same grammar: it names a file
        return self._records / f"{attachment_id}.json"


def _bind_spec(source: Path, destination: str, read_only: bool) -> dict[str, Any]:
    return {
        "destination": destination,
        "type": "bind",
        "source": str(source),
        "options": ["rbind", "nosuid", "nodev", "ro" if read_only else "rw"],
    }


def _quota_of(directory: Path) -> int:
    # JuiceFS answers statfs(2) on a directory with a quota with that quota as
    # the size; anywhere else with the whole filesystem's.
    stat = os.statvfs(directory)
    return stat.f_blocks * stat.f_frsize


async def _wait_quota_visible(directory: Path, size_bytes: int) -> None:
    """Wait until the mount enforces the new quota (it reloads them on heartbeat)."""
    with trio.move_on_after(QUOTA_VISIBLE_TIMEOUT_S):
        while _quota_of(directory) != size_bytes:
            await trio.sleep(0.1)
        return
    log.warning(
        "volume %s: quota of %d bytes not in force after %gs",
        directory.name,
        size_bytes,
        QUOTA_VISIBLE_TIMEOUT_S,
    )


def _working(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError:
        return False
    return True
