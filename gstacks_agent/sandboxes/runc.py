"""A thin async wrapper over the runc binary.

Every call passes our own `--root`, so runc keeps the state of our containers
apart and we never see or touch containers that belong to anyone else on the
host. A non-zero exit status becomes `RuntimeFailed` here, with the tail of runc's
stderr in the message; nothing above this module parses runc output.

Whether a container exists is read from the state directory runc keeps under the
root (`<root>/<id>/state.json`) rather than from runc's error text, which is not
a stable interface.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from gstacks_agent.sandboxes.errors import RuntimeFailed, RuntimeMissing

log = logging.getLogger("gstacks.agent.sandboxes")

DEFAULT_ROOT = Path("/run/gstacks/runc")
CALL_TIMEOUT_S = 60.0
STDERR_TAIL_BYTES = 2048


class Runc:
    """The runc binary at `binary`, keeping its container state under `root`."""

    def __init__(self, binary: Path, root: Path = DEFAULT_ROOT) -> None:
        self.binary = Path(binary)
        self.root = Path(root)

    @classmethod
    def locate(cls, root: Path = DEFAULT_ROOT, name: str = "runc") -> Runc:
        """Find runc on PATH once, at start-up; absent means RuntimeMissing."""
        found = shutil.which(name)
        if found is None:
            raise RuntimeMissing(
                "runc is not installed; install it with: apt-get install runc"
            )
        return cls(Path(found), root)

    def exists(self, container_id: str) -> bool:
        """Whether runc keeps state for `container_id` under our root."""
        return (self.root / container_id / "state.json").exists()

    async def run_detached(
        self, container_id: str, bundle: Path, pid_file: Path, stdout_path: Path
    ) -> None:
        """Create and start a container whose stdout and stderr go to `stdout_path`.

        With --detach the container's process inherits runc's stdio; stdin is
        /dev/null and stdout and stderr append to the log. runc's own error
        message lands in the same file, so a failure quotes the log's tail.
        """
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        args = self._argv(
            "run", "--detach", "--bundle", str(bundle), "--pid-file", str(pid_file)
        )
        args.append(container_id)
        log_fd = os.open(stdout_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            offset = os.lseek(log_fd, 0, os.SEEK_END)
            with trio.fail_after(CALL_TIMEOUT_S):
                result = await trio.run_process(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=log_fd,
                    check=False,
                )
        except trio.TooSlowError as exc:
            raise RuntimeFailed(
                f"runc run {container_id} did not finish within {CALL_TIMEOUT_S:g}s",
                resource_id=container_id,
            ) from exc
        finally:
            os.close(log_fd)
        if result.returncode != 0:
            raise RuntimeFailed(
                f"runc run {container_id} exited with status {result.returncode}: "
                f"{_tail_of_file(stdout_path, offset)}",
                resource_id=container_id,
            )
        log.info("runc started container %s", container_id)

    async def state(self, container_id: str) -> dict[str, Any] | None:
        """runc's state of the container, or None when it does not exist."""
        if not self.exists(container_id):
            return None
        output = await self._call("state", container_id, resource_id=container_id)
        return json.loads(output)

    async def kill(self, container_id: str, signal: str = "SIGTERM") -> None:
        """Send `signal` (a name such as "SIGKILL") to the container's init."""
        await self._call("kill", container_id, signal, resource_id=container_id)

    async def delete(self, container_id: str, *, force: bool = False) -> bool:
        """Delete the container; returns whether it existed.

        With `force` a running container is killed first.
        """
        if not self.exists(container_id):
            return False
        flags = ["--force"] if force else []
        await self._call("delete", *flags, container_id, resource_id=container_id)
        log.info("runc deleted container %s", container_id)
        return True

    async def list(self) -> list[dict[str, Any]]:
        """Every container under our root, as runc's JSON objects."""
        if not self.root.exists():
            return []
        output = await self._call("list", "--format", "json")
        # runc prints "null" when there is none.
        return json.loads(output) or []

    def exec_argv(
        self,
        container_id: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: str = "/",
        tty: bool = True,
    ) -> list[str]:
        """The command line that runs `argv` in the container.

        With `tty`, `-t` makes runc allocate a PTY inside the container's own devpts
        and relay it to runc's stdio; run it on a host PTY as its controlling
        terminal, so that runc follows the host PTY's size on SIGWINCH. Without it
        the process gets runc's own stdio, pipes, and its bytes pass unchanged.
        """
        if not argv:
            raise ValueError("argv must name a program")
        args = self._argv("exec", *(["-t"] if tty else []), "--cwd", cwd)
        merged = {"TERM": "xterm-256color", **(env or {})}
        for name, value in merged.items():
            args += ["--env", f"{name}={value}"]
        args.append(container_id)
        args += list(argv)
        return args

    def _argv(self, *args: str) -> list[str]:
        return [str(self.binary), "--root", str(self.root), *args]

    async def _call(self, *args: str, resource_id: str = "") -> bytes:
        argv = self._argv(*args)
        try:
            with trio.fail_after(CALL_TIMEOUT_S):
                result = await trio.run_process(
                    argv,
                    stdin=subprocess.DEVNULL,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
        except trio.TooSlowError as exc:
            raise RuntimeFailed(
                f"runc {args[0]} did not finish within {CALL_TIMEOUT_S:g}s",
                resource_id=resource_id,
            ) from exc
        if result.returncode != 0:
            stderr = result.stderr[-STDERR_TAIL_BYTES:].decode(errors="replace")
            raise RuntimeFailed(
                f"runc {args[0]} exited with status {result.returncode}: "
                f"{stderr.strip()}",
                resource_id=resource_id,
            )
        return result.stdout


def sandbox_exec_argv(
    runc: Runc,
    sandbox_id: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    tty: bool = True,
) -> list[str]:
    """The command line for a terminal running `argv` inside `sandbox_id`."""
    return runc.exec_argv(sandbox_id, argv, env, tty=tty)


def _tail_of_file(path: Path, offset: int) -> str:
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        file.seek(max(offset, size - STDERR_TAIL_BYTES))
        return file.read().decode(errors="replace").strip()
