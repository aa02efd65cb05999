"""Running the `namespace_mount` child from the agent, with a deadline."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from gstacks_agent.volumes.errors import MountFailed

CHILD_TIMEOUT_S = 20.0


async def attach_in_sandbox(
    pid: int, source: Path, target: str, *, read_only: bool
) -> None:
    """Bind `source` (a host path) at `target` inside the sandbox whose init is `pid`."""
    args = ["attach", str(pid), str(source), target]
    await _run_child([*args, "--read-only"] if read_only else args)


async def detach_in_sandbox(pid: int, target: str) -> None:
    """Unmount `target` inside the sandbox whose init is `pid`, if it is mounted."""
    await _run_child(["detach", str(pid), "/", target])


async def _run_child(args: list[str]) -> None:
    argv = [sys.executable, "-m", "gstacks_agent.volumes.namespace_mount", *args]
    with trio.fail_after(CHILD_TIMEOUT_S):
        result = await trio.run_process(
            argv, capture_stdout=True, capture_stderr=True, check=False
        )
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip() or "no reason given"
        raise MountFailed(
            f"{args[0]} {args[-1]} in the sandbox of pid {args[1]}: {reason}"
        )
