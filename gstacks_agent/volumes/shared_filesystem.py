"""The one JuiceFS filesystem a host mounts for all its volumes, kept alive.

How it works. Everything lives under `<state_dir>/juicefs/`: `mnt/` (the mount
point), `cache/`, `juicefs.log`, and with the embedded default also `meta.db`
(SQLite metadata) and `data/` (file storage). The filesystem is formatted the
first time a volume needs it, and mounted then; once formatted, every later agent
start mounts it at once, so the volumes' host paths come back after a reboot.

The mount outlives the agent. At start the agent first looks at the mount point:
a live JuiceFS mount there is adopted as it is; a dead one (its FUSE daemon gone,
every access failing with ENOTCONN) is detached lazily and mounted afresh.

The states, as the heartbeat reports them:

    unmounted ──► mounted ◄──► degraded

`serve` checks the mount every `health_interval_s`. A check that fails, or hangs
past its deadline, makes the filesystem degraded; the agent then ends whatever
is left of the old juicefs processes, detaches the dead mount, mounts again and
calls `on_remounted` so that bind mounts made from the dead mount are redone.
Data written and flushed before the crash is in the metadata engine and storage,
so it is all there after the remount.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
import trio

from gstacks_agent.config import VolumesConfig
from gstacks_agent.errors import AgentError
from gstacks_agent.volumes import mount_calls
from gstacks_agent.volumes.errors import FilesystemUnavailable, JuiceFsMissing
from gstacks_agent.volumes.juicefs import (
    JuiceFs,
    locate_binary,
    mount_processes,
    read_filesystem_id,
)
from gstacks_agent.volumes.mount_table import read_mounts

log = logging.getLogger("gstacks.agent.volumes")

HEALTH_INTERVAL_S = 1.0
CHECK_TIMEOUT_S = 5.0
MOUNT_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
RETRY_DELAY_S = 2.0
FSTYPE = "fuse.juicefs"


@dataclass(frozen=True)
class FilesystemState:
    """What the heartbeat says about the shared filesystem."""

    state: str  # "unmounted", "mounted" or "degraded"
    mount_point: Path
    message: str = ""
    filesystem_id: str = ""
    remounts: int = 0
    last_failure: str = ""
    last_failure_unix_ms: int = 0


class SharedFilesystem:
    """Formats, mounts and watches the host's JuiceFS mount."""

    def __init__(
        self,
        state_dir: Path,
        config: VolumesConfig,
        *,
        health_interval_s: float = HEALTH_INTERVAL_S,
    ) -> None:
        self.root = Path(state_dir) / "juicefs"
        self.mount_point = self.root / "mnt"
        self._config = config
        self._health_interval_s = health_interval_s
        self._juicefs: JuiceFs | None = None
        self._lock = trio.Lock()
        self._spawned: int | None = None
        self.state = FilesystemState("unmounted", self.mount_point)
        self.on_change: Callable[[FilesystemState], None] | None = None
        self.on_remounted: Callable[[], Awaitable[None]] | None = None

    @property
    def meta_url(self) -> str:
        return self._config.meta_url or f"sqlite3://{self.root / 'meta.db'}"

    @property
    def juicefs(self) -> JuiceFs:
        if self._juicefs is None:
            if not Path("/dev/fuse").exists():
                raise JuiceFsMissing("/dev/fuse is missing: apt-get install fuse3")
            environment = {}
            if self._config.access_key:
                environment["ACCESS_KEY"] = self._config.access_key
            if self._config.secret_key:
                environment["SECRET_KEY"] = self._config.secret_key
            self._juicefs = JuiceFs(locate_binary(), self.meta_url, environment)
        return self._juicefs

    @property
    def was_formatted(self) -> bool:
        """Whether this host has used its filesystem before (so it mounts at start)."""
        return (self.root / "formatted").exists()

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Mount at start if used before, then keep the mount healthy until cancelled.

        Cancelling this leaves the filesystem mounted, for the next agent process.
        """
        if self.was_formatted:
            try:
                await self.ensure_mounted()
            except (AgentError, OSError) as exc:
                log.warning(
                    "volume filesystem %s: not mounted at start: %s",
                    self.mount_point,
                    exc,
                )
        task_status.started()
        while True:
            await trio.sleep(self._health_interval_s)
            if self.state.state == "unmounted" and not self.was_formatted:
                continue
            await self._check_and_heal()

    async def ensure_mounted(self) -> Path:
        """Format if needed and mount; returns the mount point once it answers."""
        async with self._lock:
            if self.state.state == "mounted" and await self._responds():
                return self.mount_point
            await self._mount()
            return self.mount_point

    async def _check_and_heal(self) -> None:
        if self._spawned is not None:
            # Reap our own juicefs supervisor if it died, so it leaves no zombie.
            if _reaped(self._spawned):
                self._spawned = None
        if await self._responds():
            return
        async with self._lock:
            if await self._responds():
                return
            reason = self._failure_reason()
            self._set(
                "degraded",
                message=reason,
                last_failure=reason,
                last_failure_unix_ms=int(time.time() * 1000),
            )
            log.warning(
                "volume filesystem %s: degraded: %s; remounting",
                self.mount_point,
                reason,
            )
            try:
                await self._mount()
            except (AgentError, OSError) as exc:
                log.warning(
                    "volume filesystem %s: remount failed: %s", self.mount_point, exc
                )
                self._set("degraded", message=f"remount failed: {exc}")
                await trio.sleep(RETRY_DELAY_S)
                return
        # Bind mounts made from the dead mount are dead too: redo them before the
        # remount counts as done. Outside the lock: redoing them may need it.
        if self.on_remounted is not None:
            await self.on_remounted()
        self._set("mounted", remounts=self.state.remounts + 1)
        log.info("volume filesystem %s: remounted", self.mount_point)

    async def _mount(self) -> None:
        juicefs = self.juicefs
        adopt = self._is_juicefs_mounted() and await self._responds()
        if not adopt:
            # A dead FUSE mount answers ENOTCONN to everything, even mkdir -p.
            await self._stop_processes()
            while self._is_juicefs_mounted():
                mount_calls.detach(str(self.mount_point))
        for directory in (self.root, self.mount_point, self.root / "cache"):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)

        if not (self.root / "formatted").exists() or self._config.meta_url:
            if not await juicefs.is_formatted():
                bucket = self._config.bucket or f"{self.root / 'data'}/"
                log.info(
                    "volume filesystem %s: formatting %s",
                    self.mount_point,
                    self._config.name,
                )
                await juicefs.format(self._config.name, self._config.storage, bucket)
            (self.root / "formatted").touch()

        if adopt:
            log.info(
                "volume filesystem %s: adopting the running mount", self.mount_point
            )
        else:
            self._spawned = juicefs.spawn_mount(
                self.mount_point, self.root / "cache", self.root / "juicefs.log"
            )
            (self.root / "mount.pid").write_text(f"{self._spawned}\n")
            await self._wait_mounted(self._spawned)
            log.info(
                "volume filesystem %s: mounted by juicefs pid %d",
                self.mount_point,
                self._spawned,
            )
        filesystem_id = await trio.to_thread.run_sync(
            read_filesystem_id, self.mount_point
        )
        self._set("mounted", message="", filesystem_id=filesystem_id)

    async def _wait_mounted(self, pid: int) -> None:
        with trio.move_on_after(MOUNT_TIMEOUT_S):
            while True:
                if self._is_juicefs_mounted() and await self._responds():
                    return
                if _reaped(pid):
                    self._spawned = None
                    raise FilesystemUnavailable(
                        f"juicefs mount exited before mounting: {self._log_tail()}"
                    )
                await trio.sleep(0.05)
        raise FilesystemUnavailable(
            f"juicefs did not mount {self.mount_point} within {MOUNT_TIMEOUT_S:g}s: "
            f"{self._log_tail()}"
        )

    async def _stop_processes(self) -> None:
        """End juicefs processes still serving our mount point (a hung or half-dead one)."""
        processes = mount_processes(self.mount_point, self._recorded_pid())
        for process in processes:
            log.warning(
                "volume filesystem %s: stopping leftover juicefs pid %d",
                self.mount_point,
                process.pid,
            )
            process.send_signal(signal.SIGTERM)
        _, alive = await trio.to_thread.run_sync(
            lambda: psutil.wait_procs(processes, timeout=STOP_GRACE_S)
        )
        for process in alive:
            process.kill()
        await trio.to_thread.run_sync(
            lambda: psutil.wait_procs(alive, timeout=STOP_GRACE_S)
        )

    async def _responds(self) -> bool:
        """Whether the mount answers a stat within CHECK_TIMEOUT_S."""
        if not self._is_juicefs_mounted():
            return False
        with trio.move_on_after(CHECK_TIMEOUT_S):
            return await trio.to_thread.run_sync(self._stat_ok, abandon_on_cancel=True)
        return False

    def _stat_ok(self) -> bool:
        try:
            os.stat(self.mount_point / ".config")
        except OSError:
            return False
        return True

    def _failure_reason(self) -> str:
        if not self._is_juicefs_mounted():
            return "the JuiceFS mount is gone"
        try:
            os.stat(self.mount_point)
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                return (
                    "the JuiceFS process is gone (transport endpoint is not connected)"
                )
            return f"the mount fails: {exc.strerror}"
        return f"the mount does not answer within {CHECK_TIMEOUT_S:g}s"

    def _is_juicefs_mounted(self) -> bool:
        point = str(self.mount_point)
        return any(e.mount_point == point and e.fstype == FSTYPE for e in read_mounts())

    def _recorded_pid(self) -> int | None:
        try:
            return int((self.root / "mount.pid").read_text())
        except (OSError, ValueError):
            return None

    def _log_tail(self) -> str:
        try:
            return (
                (self.root / "juicefs.log").read_text(errors="replace")[-400:].strip()
            )
        except OSError:
            return "no log"

    def _set(self, state: str, **changes: object) -> None:
        before = self.state
        self.state = replace(self.state, state=state, **changes)  # type: ignore[arg-type]
        if self.on_change is not None and self.state != before:
            self.on_change(self.state)


def _reaped(pid: int) -> bool:
    """Reap `pid` if it exited (never blocks); True if it is gone."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True
