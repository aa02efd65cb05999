"""The agent's volumes on real JuiceFS over FUSE and real runc sandboxes."""

from __future__ import annotations

import os
import signal

import pytest
import trio

from gstacks_agent.volumes import Attachment
from gstacks_agent.volumes.errors import VolumeInUse
from gstacks_agent.volumes.juicefs import mount_processes
from gstacks_agent.volumes.mount_table import is_mount_point
from tests.integration.volumes.conftest import sh

pytestmark = pytest.mark.root

MIB = 1024 * 1024


async def test_volume_given_at_create_is_shared_and_outlives_sandboxes(
    volumes, manager, runc, image
):
    host_path = await volumes.attach(Attachment("h1", "vol-a"), 64 * MIB)
    assert is_mount_point(host_path)
    mounts = volumes.sandbox_mounts(
        "writer", [Attachment("a1", "vol-a", "writer", "/data")]
    )
    await manager.create("writer", image, extra_mounts=mounts)
    code, out = await sh(runc, "writer", "echo hello > /data/greeting && sync")
    assert code == 0, out

    mounts = volumes.sandbox_mounts(
        "reader", [Attachment("a2", "vol-a", "reader", "/srv/in", read_only=True)]
    )
    await manager.create("reader", image, extra_mounts=mounts)
    code, out = await sh(runc, "reader", "cat /srv/in/greeting")
    assert (code, out) == (0, "hello\n")
    code, out = await sh(runc, "reader", "echo no > /srv/in/other")
    assert code != 0 and "Read-only file system" in out

    for sandbox_id in ("writer", "reader"):
        await manager.delete(sandbox_id, grace_s=1)
        volumes.forget_sandbox(sandbox_id)
    assert (await volumes.usage("vol-a")).exists
    assert await (trio.Path(host_path) / "greeting").read_text() == "hello\n"


async def test_live_attach_and_detach_in_a_running_sandbox(
    volumes, manager, runc, image
):
    await volumes.attach(Attachment("h1", "vol-b"), 64 * MIB)
    await manager.create("live", image)
    pid = manager.get("live").pid

    await volumes.attach(Attachment("s1", "vol-b", "live", "/mnt/vol"), 64 * MIB)
    code, out = await sh(runc, "live", "echo live > /mnt/vol/f && cat /mnt/vol/f")
    assert (code, out) == (0, "live\n")
    # Idempotent on the id: a second attach changes nothing.
    await volumes.attach(Attachment("s1", "vol-b", "live", "/mnt/vol"), 64 * MIB)

    await volumes.detach("s1")
    code, out = await sh(runc, "live", "ls /mnt/vol")
    assert (code, out) == (0, "")
    assert manager.get("live").pid == pid  # the same process: no restart
    assert not await volumes.detach("s1")


async def test_write_past_the_size_fails_with_a_quota_error(
    volumes, manager, runc, image
):
    await volumes.attach(Attachment("h1", "vol-q"), 4 * MIB)
    await manager.create("quota", image)
    await volumes.attach(Attachment("s1", "vol-q", "quota", "/q"), 4 * MIB)
    code, out = await sh(
        runc, "quota", "dd if=/dev/zero of=/q/big bs=1M count=16 && sync"
    )
    assert code != 0
    assert "quota" in out.lower(), out
    usage = await volumes.usage("vol-q")
    assert usage.quota_bytes == 4 * MIB


async def test_killed_juicefs_is_remounted_and_live_mounts_come_back(
    volumes, manager, runc, image
):
    states = []
    volumes.filesystem.on_change = lambda state: states.append(state.state)
    host_path = await volumes.attach(Attachment("h1", "vol-k"), 64 * MIB)
    await manager.create("survivor", image)
    await volumes.attach(Attachment("s1", "vol-k", "survivor", "/data"), 64 * MIB)
    code, _ = await sh(runc, "survivor", "echo kept > /data/f && sync")
    assert code == 0

    killed = mount_processes(volumes.filesystem.mount_point)
    assert killed
    for process in killed:
        os.kill(process.pid, signal.SIGKILL)
    with trio.fail_after(30):
        while volumes.filesystem.state.remounts < 1:
            await trio.sleep(0.1)
    assert "degraded" in states and states[-1] == "mounted"

    assert await (trio.Path(host_path) / "f").read_text() == "kept\n"
    code, out = await sh(runc, "survivor", "cat /data/f")
    assert (code, out) == (0, "kept\n")


async def test_volume_in_use_is_not_deleted_and_detached_one_is(volumes):
    await volumes.attach(Attachment("h1", "vol-d"), 64 * MIB)
    with pytest.raises(VolumeInUse):
        await volumes.delete("vol-d")
    await volumes.detach("h1")
    assert await volumes.delete("vol-d")
    assert not (await volumes.usage("vol-d")).exists
    assert not await volumes.delete("vol-d")
