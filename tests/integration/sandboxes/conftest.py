"""Fixtures for sandbox tests: a two-layer busybox image, runc, a serving manager.

Everything runc knows lives under a temporary --root for the test session, and
every mount and container the tests make is removed in teardown, also on failure.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from gstacks_agent.sandboxes import rootfs
from gstacks_agent.sandboxes.manager import SandboxManager
from gstacks_agent.sandboxes.runc import Runc

BUSYBOX = Path("/usr/bin/busybox")
LONG_RUNNING = [
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done",
]


@dataclass
class LayeredImage:
    """Stands in for the images subsystem's PulledImage."""

    digest: str
    layer_dirs: list[Path]
    config: dict[str, Any] = field(default_factory=dict)


def build_lower_layer(layer: Path) -> None:
    """busybox with its applets, a user database and a few marker files."""
    for name in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (layer / name).mkdir(parents=True)
    shutil.copy2(BUSYBOX, layer / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (layer / "bin" / applet).symlink_to("busybox")
    (layer / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nguest:x:405:100:guest:/:/bin/sh\n"
    )
    (layer / "etc" / "group").write_text("root:x:0:\nusers:x:100:guest\n")
    (layer / "lower-marker").write_text("from the lower layer\n")
    (layer / "doomed").write_text("hidden by a whiteout above\n")


def build_upper_layer(layer: Path) -> None:
    """A marker file and an overlayfs whiteout (char device 0/0) for /doomed."""
    layer.mkdir(parents=True)
    (layer / "upper-marker").write_text("from the upper layer\n")
    os.mknod(layer / "doomed", stat.S_IFCHR, os.makedev(0, 0))


@pytest.fixture(scope="session")
def image_layers(tmp_path_factory) -> list[Path]:
    base = tmp_path_factory.mktemp("layers")
    lower, upper = base / "lower", base / "upper"
    build_lower_layer(lower)
    build_upper_layer(upper)
    return [lower, upper]


@pytest.fixture
def image(image_layers) -> LayeredImage:
    return LayeredImage(
        digest="sha256:" + "ab" * 32,
        layer_dirs=image_layers,
        config={"config": {"Cmd": LONG_RUNNING, "Env": ["PATH=/bin"]}},
    )


@pytest.fixture(scope="session")
def runc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runc-root")
    try:
        yield root
    finally:
        remove_runc_containers(root)


@pytest.fixture(scope="session")
def cgroup_parent():
    """A cgroup parent of this session's own; runc leaves it, so we remove it."""
    parent = f"gstacks-test-{os.getpid()}"
    try:
        yield parent
    finally:
        for directory in Path("/sys/fs/cgroup").glob(f"*/{parent}"):
            try:
                directory.rmdir()
            except OSError:
                pass


@pytest.fixture
def runc(runc_root) -> Runc:
    return Runc.locate(root=runc_root)


@pytest.fixture
def state_dir(tmp_path, runc_root):
    state = tmp_path / "state"
    try:
        yield state
    finally:
        # Last resort, after the manager fixture: nothing may outlive a test.
        remove_runc_containers(runc_root)
        unmount_everything_under(state)


@pytest.fixture
def start_manager(nursery, state_dir, runc, cgroup_parent):
    """Start a SandboxManager; returns it and a function that stops its serve."""
    started: list[SandboxManager] = []

    async def start(on_state_change=None):
        manager = SandboxManager(
            state_dir, runc, on_state_change, cgroup_parent=cgroup_parent
        )
        scope = trio.CancelScope()
        stopped = trio.Event()

        async def serve(task_status=trio.TASK_STATUS_IGNORED):
            try:
                with scope:
                    await manager.serve(task_status=task_status)
            finally:
                stopped.set()

        async def stop():
            scope.cancel()
            await stopped.wait()

        await nursery.start(serve)
        started.append(manager)
        return manager, stop

    return start, started


@pytest.fixture
async def manager(start_manager):
    start, started = start_manager
    manager, _ = await start()
    try:
        yield manager
    finally:
        for info in manager.list():
            await manager.delete(info.sandbox_id, grace_s=1.0)


def remove_runc_containers(root: Path) -> None:
    listing = subprocess.run(
        ["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True
    )
    for container_id in listing.stdout.split():
        subprocess.run(
            ["runc", "--root", str(root), "delete", "--force", container_id],
            capture_output=True,
        )


def unmount_everything_under(directory: Path) -> None:
    prefix = str(directory.resolve()) + "/"
    for point in sorted(rootfs.mount_points(), reverse=True):
        if point.startswith(prefix):
            subprocess.run(["umount", "-l", point], capture_output=True)
