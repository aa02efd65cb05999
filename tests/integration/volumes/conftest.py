"""Fixtures for volume tests: a real JuiceFS mount over FUSE beside real runc sandboxes.

The sandbox fixtures (image, runc root, serving SandboxManager) are the sandbox
tests' own. `volumes` adds a VolumeManager whose embedded JuiceFS filesystem
(SQLite metadata, file storage) lives in the test's state dir. Teardown stops the
manager, ends the juicefs processes serving that mount point by pid, and then the
state dir fixture lazily unmounts whatever is left under it, also on failure.
"""

from __future__ import annotations

import subprocess

import psutil
import pytest
import trio

from gstacks_agent.config import VolumesConfig
from gstacks_agent.volumes import VolumeManager
from gstacks_agent.volumes.juicefs import mount_processes
from tests.integration.sandboxes import conftest as sandbox_fixtures

# The sandbox tests' fixtures, shared rather than copied.
cgroup_parent = sandbox_fixtures.cgroup_parent
image = sandbox_fixtures.image
image_layers = sandbox_fixtures.image_layers
manager = sandbox_fixtures.manager
runc = sandbox_fixtures.runc
runc_root = sandbox_fixtures.runc_root
start_manager = sandbox_fixtures.start_manager
state_dir = sandbox_fixtures.state_dir


def stop_juicefs(mount_point) -> None:
    """End the juicefs processes serving `mount_point`, by pid, and reap them."""
    processes = mount_processes(mount_point)
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


async def sh(runc, sandbox_id: str, script: str) -> tuple[int, str]:
    """Run `sh -c script` in the sandbox without a terminal; (status, output)."""
    result = await trio.run_process(
        [
            str(runc.binary),
            "--root",
            str(runc.root),
            "exec",
            sandbox_id,
            "sh",
            "-c",
            script,
        ],
        capture_stdout=True,
        stderr=subprocess.STDOUT,
        check=False,
    )
    return result.returncode, result.stdout.decode(errors="replace")


@pytest.fixture
async def volumes(nursery, manager, state_dir):
    volume_manager = VolumeManager(
        state_dir, VolumesConfig(), manager, health_interval_s=0.2
    )
    scope = trio.CancelScope()
    done = trio.Event()

    async def serve(task_status=trio.TASK_STATUS_IGNORED):
        try:
            with scope:
                await volume_manager.serve(task_status=task_status)
        finally:
            done.set()

    try:
        await nursery.start(serve)
        yield volume_manager
    finally:
        scope.cancel()
        await done.wait()
        stop_juicefs(volume_manager.filesystem.mount_point)
