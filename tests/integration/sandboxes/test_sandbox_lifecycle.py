"""Sandboxes on real runc and overlayfs: isolation, terminals, exit, recovery."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from gstacks_agent.errors import AlreadyExists, InvalidArgument
from gstacks_agent.sandboxes import rootfs, sandbox_exec_argv
from gstacks_agent.terminals import PtySession

pytestmark = pytest.mark.root


async def run_in_sandbox(runc, sandbox_id, argv, **spawn_args):
    """Run argv in the sandbox on a PTY; returns (output, exit code)."""
    session = await PtySession.spawn(sandbox_exec_argv(runc, sandbox_id, argv))
    try:
        output = b""
        with trio.fail_after(20):
            while chunk := await session.read():
                output += chunk
            code = await session.wait()
    finally:
        await session.close(grace_s=1.0)
    return output.decode().replace("\r\n", "\n"), code


def bundle_of(state_dir: Path, sandbox_id: str) -> Path:
    return state_dir / "sandboxes" / sandbox_id


def process_gone(pid: int) -> bool:
    # A zombie still has /proc/<pid>; gone means reaped.
    return not Path(f"/proc/{pid}").exists()


async def test_exec_in_sandbox_prints_hello(manager, runc, image):
    info = await manager.create("hello", image)
    assert info.state == "running"
    output, code = await run_in_sandbox(runc, "hello", ["echo", "hello"])
    assert "hello" in output
    assert code == 0


async def test_sandbox_sees_only_its_own_processes(manager, runc, image):
    await manager.create("pids", image)
    output, _ = await run_in_sandbox(runc, "pids", ["ps", "-o", "pid,args"])
    rows = [line.split(None, 1) for line in output.strip().splitlines()[1:]]
    by_pid = {int(pid): args for pid, args in rows}
    assert "trap" in by_pid[1]
    assert set(by_pid) - {1} and max(by_pid) < 100
    assert "python" not in output and "pytest" not in output


async def test_hostname_is_the_sandboxs(manager, runc, image):
    await manager.create("named", image, hostname="box-one")
    output, _ = await run_in_sandbox(runc, "named", ["hostname"])
    assert output.strip() == "box-one"


async def test_hostname_defaults_to_the_sandbox_id(manager, runc, image):
    info = await manager.create("sbx_default", image)
    assert info.hostname == "sbx-default"
    output, _ = await run_in_sandbox(runc, "sbx_default", ["hostname"])
    assert output.strip() == "sbx-default"


async def test_rootfs_stacks_layers_and_honours_whiteouts(manager, runc, image):
    await manager.create("layers", image)
    output, _ = await run_in_sandbox(runc, "layers", ["ls", "/"])
    names = output.split()
    assert "lower-marker" in names and "upper-marker" in names
    assert "doomed" not in names


async def test_writes_land_in_the_sandboxs_upper_dir(manager, runc, image, state_dir):
    await manager.create("writer", image)
    _, code = await run_in_sandbox(runc, "writer", ["sh", "-c", "echo x > /written"])
    assert code == 0
    assert (bundle_of(state_dir, "writer") / "upper" / "written").read_text() == "x\n"
    assert not (image.layer_dirs[-1] / "written").exists()


async def test_network_namespace_holds_only_loopback(manager, runc, image):
    await manager.create("net", image)
    output, _ = await run_in_sandbox(runc, "net", ["cat", "/proc/net/dev"])
    interfaces = [line.split(":")[0].strip() for line in output.splitlines()[2:]]
    assert interfaces == ["lo"]


async def test_terminal_inside_is_a_tty_that_follows_resize(manager, runc, image):
    await manager.create("tty", image)
    argv = sandbox_exec_argv(runc, "tty", ["sh"], {"PS1": "$ "})
    session = await PtySession.spawn(argv, cols=80, rows=24)
    try:
        seen = b""

        async def until(needle: bytes) -> None:
            nonlocal seen
            with trio.fail_after(10):
                while needle not in seen:
                    chunk = await session.read()
                    assert chunk, f"terminal ended before {needle!r}: {seen!r}"
                    seen += chunk

        await session.write(b"tty\n")
        await until(b"/dev/pts/")
        session.resize(132, 50)
        # runc relays the size on SIGWINCH, asynchronously: ask until it shows.
        with trio.fail_after(10):
            while b"50 132" not in seen:
                await session.write(b"stty size\n")
                with trio.move_on_after(0.5):
                    await until(b"50 132")
        await session.write(b"exit 3\n")
        with trio.fail_after(10):
            assert await session.wait() == 3
    finally:
        await session.close(grace_s=1.0)


async def test_exit_code_of_exec_comes_back(manager, runc, image):
    await manager.create("exit", image)
    _, code = await run_in_sandbox(runc, "exit", ["sh", "-c", "exit 7"])
    assert code == 7


async def test_delete_leaves_nothing_behind(
    manager, runc, image, state_dir, cgroup_parent
):
    info = await manager.create("doomed", image)
    bundle = bundle_of(state_dir, "doomed")
    assert rootfs.is_mounted(bundle / "rootfs")

    with trio.fail_after(10):
        assert await manager.delete("doomed") is True

    assert not rootfs.is_mounted(bundle / "rootfs")
    assert process_gone(info.pid)
    assert await runc.state("doomed") is None
    assert not bundle.exists()
    cgroups = os.listdir(f"/sys/fs/cgroup/pids/{cgroup_parent}")
    assert "doomed" not in cgroups
    assert manager.list() == []


async def test_delete_is_idempotent(manager, image):
    await manager.create("twice", image)
    assert await manager.delete("twice") is True
    assert await manager.delete("twice") is False
    assert await manager.delete("never-was") is False


async def test_delete_kills_a_sandbox_that_ignores_sigterm(manager, image):
    command = ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 1; done"]
    info = await manager.create("stubborn", image, command=command)
    with trio.fail_after(10):
        assert await manager.delete("stubborn", grace_s=0.5) is True
    assert process_gone(info.pid)


async def test_create_is_idempotent_on_the_id(manager, image):
    first = await manager.create("same", image)
    again = await manager.create("same", image)
    assert again == first
    assert manager.get("same") == first


async def test_create_with_the_id_of_another_images_sandbox_is_refused(manager, image):
    await manager.create("taken", image)
    image.digest = "sha256:" + "cd" * 32
    with pytest.raises(AlreadyExists):
        await manager.create("taken", image)


async def test_create_with_invalid_id_touches_nothing(manager, image, state_dir):
    with pytest.raises(InvalidArgument):
        await manager.create("Bad_Id", image)
    assert list((state_dir / "sandboxes").iterdir()) == []


async def test_failed_create_cleans_up_everything(manager, runc, image, state_dir):
    image.config["config"]["User"] = "ghost"
    with pytest.raises(InvalidArgument, match="ghost"):
        await manager.create("ghostly", image)
    assert not rootfs.is_mounted(bundle_of(state_dir, "ghostly") / "rootfs")
    assert not bundle_of(state_dir, "ghostly").exists()
    assert manager.list() == []


async def test_failed_runc_run_cleans_up_everything(manager, runc, image, state_dir):
    from gstacks_agent.sandboxes.errors import RuntimeFailed

    with pytest.raises(RuntimeFailed):
        await manager.create("nothing", image, command=["/no/such/program"])
    assert not bundle_of(state_dir, "nothing").exists()
    assert await runc.state("nothing") is None
    assert manager.list() == []


async def test_image_user_is_resolved_from_the_rootfs(manager, runc, image):
    image.config["config"]["User"] = "guest"
    await manager.create("guest", image)
    output, _ = await run_in_sandbox(runc, "guest", ["id"])
    # runc exec runs as the container's process user by default.
    assert "uid=405(guest) gid=100(users)" in output


async def test_exit_of_the_sandbox_process_is_reported(start_manager, image):
    start, started = start_manager
    changes = []
    changed = trio.Event()

    def on_state_change(info):
        changes.append(info)
        changed.set()

    manager, _ = await start(on_state_change)
    try:
        await manager.create("short", image, command=["/bin/sh", "-c", "exit 3"])
        with trio.fail_after(10):
            await changed.wait()
        assert changes[-1].state == "stopped"
        assert changes[-1].exit_code == 3
        assert manager.get("short").exit_code == 3
    finally:
        await manager.delete("short")


async def test_state_is_written_to_disk_atomically(manager, image, state_dir):
    info = await manager.create("on-disk", image)
    record = json.loads((bundle_of(state_dir, "on-disk") / "sandbox.json").read_text())
    assert record["state"] == "running"
    assert record["pid"] == info.pid
    assert not list(bundle_of(state_dir, "on-disk").glob(".*.tmp"))


async def test_restarted_agent_recovers_and_deletes_a_running_sandbox(
    start_manager, runc, image, state_dir
):
    start, started = start_manager
    first, stop_first = await start()
    info = await first.create("survivor", image)
    await stop_first()
    assert not process_gone(info.pid)

    second, _ = await start()
    [recovered] = second.list()
    assert recovered.sandbox_id == "survivor"
    assert recovered.state == "running"
    assert recovered.pid == info.pid

    with trio.fail_after(10):
        assert await second.delete("survivor") is True
    assert process_gone(info.pid)
    assert await runc.state("survivor") is None
    assert not bundle_of(state_dir, "survivor").exists()


async def test_recovery_removes_a_half_created_sandbox(start_manager, state_dir):
    start, started = start_manager
    bundle = bundle_of(state_dir, "half")
    (bundle / "upper").mkdir(parents=True)
    (bundle / "sandbox.json").write_text(
        json.dumps(
            {"sandbox_id": "half", "state": "creating", "image_digest": "sha256:x"}
        )
    )
    manager, _ = await start()
    assert manager.list() == []
    assert not bundle.exists()


async def test_recovery_marks_a_sandbox_without_container_stopped(
    start_manager, state_dir
):
    start, started = start_manager
    bundle = bundle_of(state_dir, "lost")
    bundle.mkdir(parents=True)
    (bundle / "sandbox.json").write_text(
        json.dumps(
            {
                "sandbox_id": "lost",
                "state": "running",
                "image_digest": "sha256:x",
                "pid": 1,
            }
        )
    )
    manager, _ = await start()
    [info] = manager.list()
    assert info.state == "stopped"
    assert "no state" in info.message
    assert await manager.delete("lost") is True
    assert not bundle.exists()
