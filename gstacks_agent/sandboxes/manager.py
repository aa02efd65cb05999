"""The lifecycle of sandboxes on this host.

How it works: a sandbox is one runc container whose bundle lives in
`<state_dir>/sandboxes/<id>/`:

    sandbox.json   our record (SandboxInfo), rewritten atomically on each change
    config.json    the OCI runtime spec, from `runtime_spec`
    rootfs/        overlay mount of the image layers, upper/ and work/ beside it
    log            the container's stdout and stderr, and runc's own errors
    pid            the container init's host pid, written by runc

The states and the moves between them:

    creating ──> running ──> stopped
        │           │
        └──> failed <┘

`create` writes the record as "creating" before it touches anything, so an agent
that dies half-way leaves a trace that `recover` removes at the next start. A
create that fails removes everything it made and leaves no record: the control
plane simply retries. Both `create` and `delete` are idempotent on the id.

Exit tracking: `serve` marks the agent a child subreaper, so each container's
init becomes the agent's child once `runc run --detach` returns, and a watcher
task reaps it and records its exit code (see `subreaper`). Sandboxes outlive the
agent: stopping `serve` stops the watchers, not the containers, and `recover`
picks them up again from the records on disk and runc's state.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import trio

from gstacks_agent.errors import AgentError
from gstacks_agent.sandboxes import rootfs, runtime_spec
from gstacks_agent.sandboxes.errors import (
    IllegalStateTransition,
    InvalidSandboxSpec,
    ManagerNotServing,
    RootfsMountFailed,
    RuntimeFailed,
    SandboxIdTaken,
    SandboxNotFound,
)
from gstacks_agent.sandboxes.log_cap import cap_log
from gstacks_agent.sandboxes.runc import Runc
from gstacks_agent.sandboxes.subreaper import (
    become_child_subreaper,
    open_pidfd,
    wait_for_exit,
)

log = logging.getLogger("gstacks.agent.sandboxes")

# A sandbox's log may grow to LOG_MAX_BYTES between checks, then keeps its newest
# LOG_KEEP_BYTES.
LOG_CHECK_S = 30.0
LOG_MAX_BYTES = 16 * 1024 * 1024
LOG_KEEP_BYTES = 1024 * 1024

SANDBOX_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
USER_DB_MAX_BYTES = 1024 * 1024
# After SIGKILL the kernel tears the container down promptly; this bounds the
# wait for the init to be reaped before runc delete --force takes over.
KILL_WAIT_S = 5.0

_TRANSITIONS = {
    "creating": {"running", "failed"},
    "running": {"stopped", "failed"},
    "stopped": set(),
    "failed": set(),
}


class PulledImageLike(Protocol):
    """What the sandbox runtime needs of a pulled image."""

    @property
    def digest(self) -> str: ...

    @property
    def config(self) -> Mapping[str, Any]: ...

    @property
    def layer_dirs(self) -> Sequence[Path]: ...


@dataclass(frozen=True)
class SandboxInfo:
    """One sandbox as the agent reports it."""

    sandbox_id: str
    state: str
    image_digest: str
    pid: int | None = None
    exit_code: int | None = None
    hostname: str = ""
    message: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SandboxInfo:
        """Read a record written by `asdict`; unknown keys are ignored."""
        info = cls(
            sandbox_id=str(data["sandbox_id"]),
            state=str(data["state"]),
            image_digest=str(data["image_digest"]),
            pid=data.get("pid"),
            exit_code=data.get("exit_code"),
            hostname=str(data.get("hostname", "")),
            message=str(data.get("message", "")),
        )
        if info.state not in _TRANSITIONS:
            raise ValueError(f"unknown sandbox state {info.state!r}")
        return info


def check_sandbox_id(sandbox_id: str) -> str:
    """Return `sandbox_id` if it matches [a-z0-9][a-z0-9_-]{0,62}, else raise."""
    if not isinstance(sandbox_id, str) or not SANDBOX_ID.fullmatch(sandbox_id):
        raise InvalidSandboxSpec(
            f"sandbox id must match [a-z0-9][a-z0-9_-]{{0,62}}, not {sandbox_id!r}"
        )
    return sandbox_id


def default_hostname(sandbox_id: str) -> str:
    """The hostname of a sandbox created without one: its id as a DNS label."""
    # RFC 1123 labels allow neither "_" nor a trailing "-"; ids may hold both.
    return sandbox_id.replace("_", "-").rstrip("-")


class _Sandbox:
    """The manager's live record of one sandbox."""

    def __init__(self, info: SandboxInfo, bundle: Path) -> None:
        self.info = info
        self.bundle = bundle
        self.exited = trio.Event()
        self.deleting = False


class SandboxManager:
    """Creates, tracks and deletes the sandboxes kept under `state_dir`.

    `on_state_change` is called with the new info whenever a sandbox changes state
    on its own (its process exited, or recovery found it gone); the results of
    `create` and `delete` go to their callers instead. Containers get cgroups
    `/<cgroup_parent>/<id>` in every hierarchy.
    """

    def __init__(
        self,
        state_dir: Path,
        runc: Runc,
        on_state_change: Callable[[SandboxInfo], None] | None = None,
        *,
        cgroup_parent: str = "gstacks",
    ) -> None:
        self._dir = Path(state_dir) / "sandboxes"
        self._runc = runc
        self._on_state_change = on_state_change
        self._sandboxes: dict[str, _Sandbox] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._nursery: trio.Nursery | None = None
        self._cgroup_parent = cgroup_parent.strip("/")

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Track sandboxes until cancelled; ready once recovery is done.

        Cancelling this stops the exit watchers only: the containers go on
        running, for the next agent process to recover.
        """
        become_child_subreaper()
        self._dir.mkdir(parents=True, exist_ok=True)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self.recover()
                nursery.start_soon(self._keep_logs_bounded)
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def _keep_logs_bounded(self) -> None:
        """Cut every sandbox log that outgrew LOG_MAX_BYTES, every LOG_CHECK_S."""
        while True:
            await trio.sleep(LOG_CHECK_S)
            for record in list(self._sandboxes.values()):
                path = record.bundle / "log"
                cut = await trio.to_thread.run_sync(
                    cap_log, path, LOG_MAX_BYTES, LOG_KEEP_BYTES
                )
                if cut:
                    log.info(
                        "sandbox %s: log cut to its last %d bytes",
                        record.info.sandbox_id,
                        LOG_KEEP_BYTES,
                    )

    async def recover(self) -> None:
        """Load the sandboxes on disk and match them against runc's state.

        `serve` calls this once at start. A sandbox left "creating" by a crash is
        removed; a "running" one whose container is gone is marked stopped.
        """
        nursery = self._require_serving()
        if not self._dir.exists():
            return
        for bundle in sorted(self._dir.iterdir()):
            sandbox_id = bundle.name
            if sandbox_id in self._sandboxes:
                continue
            if not bundle.is_dir() or not SANDBOX_ID.fullmatch(sandbox_id):
                log.warning("ignoring %s: not a sandbox bundle", bundle)
                continue
            async with self._lock(sandbox_id):
                try:
                    await self._recover_one(nursery, sandbox_id, bundle)
                except AgentError as exc:
                    # One broken sandbox must not keep the others unmanaged.
                    log.warning("sandbox %s: recovery failed: %s", sandbox_id, exc)

    async def create(
        self,
        sandbox_id: str,
        image: PulledImageLike,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        hostname: str | None = None,
        extra_mounts: Sequence[Mapping[str, Any]] = (),
    ) -> SandboxInfo:
        """Start a sandbox running `image`; returns it once its process runs.

        `extra_mounts` are runtime-spec mounts added to the fixed ones (volumes).

        Idempotent: if `sandbox_id` already holds a sandbox of the same image,
        its info is returned as it is; another image raises SandboxIdTaken.
        """
        check_sandbox_id(sandbox_id)
        nursery = self._require_serving()
        hostname = runtime_spec.check_hostname(hostname or default_hostname(sandbox_id))
        # Refuse a bad command or environment before mounting anything.
        run_config = image.config.get("config") or {}
        runtime_spec.process_args(run_config, command)
        runtime_spec.merged_env(run_config.get("Env"), env)

        async with self._lock(sandbox_id):
            existing = self._sandboxes.get(sandbox_id)
            if existing is not None:
                if existing.info.image_digest != image.digest:
                    raise SandboxIdTaken(
                        f"sandbox {sandbox_id} runs image "
                        f"{existing.info.image_digest}, not {image.digest}",
                        resource_id=sandbox_id,
                    )
                return existing.info

            bundle = self._dir / sandbox_id
            if bundle.exists() or self._runc.exists(sandbox_id):
                log.warning("sandbox %s: removing leftovers of an old one", sandbox_id)
                await self._teardown(sandbox_id)
            info = SandboxInfo(sandbox_id, "creating", image.digest, hostname=hostname)
            record = _Sandbox(info, bundle)
            self._sandboxes[sandbox_id] = record
            log.info("sandbox %s: creating from image %s", sandbox_id, image.digest)
            try:
                bundle.mkdir(parents=True)
                _write_json_atomic(bundle / "sandbox.json", asdict(info))
                pid = await self._start(record, image, command, env, extra_mounts)
            except BaseException:
                log.warning("sandbox %s: create failed; cleaning up", sandbox_id)
                self._sandboxes.pop(sandbox_id, None)
                with trio.CancelScope(shield=True):
                    await self._teardown(sandbox_id)
                raise
            self._transition(record, "running", pid=pid)
            nursery.start_soon(self._watch, record, pid, open_pidfd(pid))
            log.info("sandbox %s: running as pid %d", sandbox_id, pid)
            return record.info

    def get(self, sandbox_id: str) -> SandboxInfo:
        """The sandbox's info; SandboxNotFound if there is none."""
        record = self._sandboxes.get(sandbox_id)
        if record is None:
            raise SandboxNotFound(
                f"no sandbox {sandbox_id!r} on this host", resource_id=sandbox_id
            )
        return record.info

    def list(self) -> list[SandboxInfo]:
        """Every sandbox on this host, by id."""
        return [self._sandboxes[key].info for key in sorted(self._sandboxes)]

    async def delete(self, sandbox_id: str, grace_s: float = 5.0) -> bool:
        """Stop and remove the sandbox; returns whether there was one.

        The init gets SIGTERM, then SIGKILL if it has not exited after `grace_s`.
        Then runc forgets the container, the rootfs is unmounted and the bundle
        removed. Idempotent: deleting what is gone returns False.
        """
        check_sandbox_id(sandbox_id)
        async with self._lock(sandbox_id):
            record = self._sandboxes.get(sandbox_id)
            bundle = self._dir / sandbox_id
            if record is None and not bundle.exists():
                if not self._runc.exists(sandbox_id):
                    return False

            if record is not None:
                record.deleting = True
                if record.info.state == "running":
                    await self._stop(record, grace_s)
            with trio.CancelScope(shield=True):
                await self._teardown(sandbox_id)
                self._sandboxes.pop(sandbox_id, None)
                if record is not None:
                    # runc delete --force may have killed it just now: let the
                    # watcher reap it so no zombie outlives the sandbox.
                    with trio.move_on_after(KILL_WAIT_S):
                        await record.exited.wait()
            log.info("sandbox %s: deleted", sandbox_id)
            return True

    async def _start(
        self,
        record: _Sandbox,
        image: PulledImageLike,
        command: Sequence[str] | None,
        env: Mapping[str, str] | None,
        extra_mounts: Sequence[Mapping[str, Any]] = (),
    ) -> int:
        sandbox_id = record.info.sandbox_id
        bundle = record.bundle
        rootfs_dir = bundle / "rootfs"

        await trio.to_thread.run_sync(
            rootfs.mount_overlay,
            [Path(p) for p in image.layer_dirs],
            rootfs_dir,
            bundle / "upper",
            bundle / "work",
        )

        # The user database comes from the image, read without following links.
        passwd = rootfs.read_text_in_rootfs(rootfs_dir, "etc/passwd", USER_DB_MAX_BYTES)
        group = rootfs.read_text_in_rootfs(rootfs_dir, "etc/group", USER_DB_MAX_BYTES)
        spec = runtime_spec.build_runtime_spec(
            image.config,
            hostname=record.info.hostname,
            command=command,
            env=env,
            passwd=passwd or "",
            group=group or "",
            cgroups_path=f"/{self._cgroup_parent}/{sandbox_id}",
            extra_mounts=extra_mounts,
        )
        _write_json_atomic(bundle / "config.json", spec)

        # The log is bounded by `_keep_logs_bounded` (see log_cap.py).
        pid_file = bundle / "pid"
        await self._runc.run_detached(sandbox_id, bundle, pid_file, bundle / "log")
        return int(pid_file.read_text().strip())

    async def _stop(self, record: _Sandbox, grace_s: float) -> None:
        sandbox_id = record.info.sandbox_id
        for signal, wait_s in (("SIGTERM", grace_s), ("SIGKILL", KILL_WAIT_S)):
            try:
                await self._runc.kill(sandbox_id, signal)
            except RuntimeFailed as exc:
                # Most often the init exited between our look and the kill.
                log.debug("sandbox %s: kill %s failed: %s", sandbox_id, signal, exc)
            with trio.move_on_after(wait_s):
                await record.exited.wait()
            if record.exited.is_set():
                return
            log.warning(
                "sandbox %s: still running %gs after %s", sandbox_id, wait_s, signal
            )

    async def _teardown(self, sandbox_id: str) -> None:
        """Remove every trace of the sandbox: container, mount, bundle."""
        await self._runc.delete(sandbox_id, force=True)
        bundle = self._dir / sandbox_id
        rootfs_dir = bundle / "rootfs"
        await trio.to_thread.run_sync(rootfs.unmount, rootfs_dir)
        # rmtree crosses mount points; never let it walk into the image layers.
        if rootfs.is_mounted(rootfs_dir):
            raise RootfsMountFailed(
                f"sandbox {sandbox_id}: rootfs is still mounted; not removing it",
                resource_id=sandbox_id,
            )
        if bundle.exists():
            await trio.to_thread.run_sync(shutil.rmtree, bundle)

    async def _recover_one(
        self, nursery: trio.Nursery, sandbox_id: str, bundle: Path
    ) -> None:
        try:
            data = json.loads((bundle / "sandbox.json").read_text())
            info = SandboxInfo.from_json(data)
        except (OSError, ValueError, KeyError) as exc:
            log.warning(
                "sandbox %s: unreadable record (%s); removing it", sandbox_id, exc
            )
            await self._teardown(sandbox_id)
            return
        if info.state == "creating":
            log.warning("sandbox %s: left half-created; removing it", sandbox_id)
            await self._teardown(sandbox_id)
            return

        record = _Sandbox(info, bundle)
        self._sandboxes[sandbox_id] = record
        if info.state != "running":
            record.exited.set()
            return

        state = await self._runc.state(sandbox_id)
        if state is not None and state.get("status") in ("running", "paused"):
            # runc matched the pid against the init's start time just now, so
            # the pidfd names the container's init, not a recycled pid.
            pid = int(state["pid"])
            record.info = replace(info, pid=pid)
            nursery.start_soon(self._watch, record, pid, open_pidfd(pid))
            log.info("sandbox %s: recovered, running as pid %d", sandbox_id, pid)
            return

        if state is None:
            new_state = "stopped"
            message = "runc has no state for it; was the host restarted?"
        elif state.get("status") == "created":
            # We only ever use `runc run`; a container never started means a
            # run that died half-way.
            new_state = "failed"
            message = "runc created the container but never started it"
        else:
            new_state = "stopped"
            message = "exited while the agent was not running"
        self._transition(record, new_state, exit_code=None, message=message)
        record.exited.set()
        log.warning("sandbox %s: recovered as %s: %s", sandbox_id, new_state, message)
        self._notify(record)

    async def _watch(self, record: _Sandbox, pid: int, pidfd: int | None) -> None:
        try:
            code = None if pidfd is None else await wait_for_exit(pid, pidfd)
        finally:
            if pidfd is not None:
                os.close(pidfd)
        record.exited.set()
        if record.deleting:
            return
        message = ""
        if code:
            # Why a sandbox stopped is usually its last words: say them.
            last = _last_line(record.bundle / "log")
            message = f"exited with {code}" + (f": {last}" if last else "")
        self._transition(record, "stopped", exit_code=code, message=message)
        log.info("sandbox %s: process exited with %s", record.info.sandbox_id, code)
        self._notify(record)

    def _transition(self, record: _Sandbox, state: str, **changes: Any) -> None:
        current = record.info.state
        if state not in _TRANSITIONS[current]:
            raise IllegalStateTransition(
                f"sandbox {record.info.sandbox_id} cannot go from {current} to {state}",
                resource_id=record.info.sandbox_id,
            )
        record.info = replace(record.info, state=state, **changes)
        if not record.deleting:
            _write_json_atomic(record.bundle / "sandbox.json", asdict(record.info))

    def _notify(self, record: _Sandbox) -> None:
        if self._on_state_change is None:
            return
        try:
            self._on_state_change(record.info)
        except Exception:
            # A broken listener must not take the exit watcher down with it.
            log.exception("sandbox %s: on_state_change failed", record.info.sandbox_id)

    def _require_serving(self) -> trio.Nursery:
        if self._nursery is None:
            raise ManagerNotServing("SandboxManager.serve is not running")
        return self._nursery

    def _lock(self, sandbox_id: str) -> trio.Lock:
        return self._locks.setdefault(sandbox_id, trio.Lock())


def _last_line(path: Path, max_bytes: int = 4096) -> str:
    """The last non-empty line of a log file, at most 200 characters; "" if none."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - max_bytes))
            tail = file.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Replace `path` with `data` so that a crash leaves the old or new version."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=2)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
