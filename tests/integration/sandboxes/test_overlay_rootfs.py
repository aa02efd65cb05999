"""Overlay rootfs mounts: stacking, whiteouts, long layer lists, safe reads."""

from __future__ import annotations

import os

import pytest

from gstacks_agent.errors import FailedPrecondition
from gstacks_agent.sandboxes import rootfs

pytestmark = pytest.mark.root


@pytest.fixture
def mount_target(tmp_path):
    target = tmp_path / "rootfs"
    try:
        yield target
    finally:
        rootfs.unmount(target)


def test_layers_stack_with_upper_over_lower(image_layers, mount_target, tmp_path):
    rootfs.mount_overlay(image_layers, mount_target, tmp_path / "u", tmp_path / "w")
    assert rootfs.is_mounted(mount_target)
    names = os.listdir(mount_target)
    assert "lower-marker" in names and "upper-marker" in names
    assert "doomed" not in names


def test_the_top_layer_wins_a_name_both_hold(tmp_path, mount_target):
    lower, upper = tmp_path / "a", tmp_path / "b"
    lower.mkdir()
    upper.mkdir()
    (lower / "f").write_text("lower")
    (upper / "f").write_text("upper")
    rootfs.mount_overlay([lower, upper], mount_target, tmp_path / "u", tmp_path / "w")
    assert (mount_target / "f").read_text() == "upper"


def test_unmount_reports_whether_it_was_mounted(image_layers, tmp_path):
    target = tmp_path / "rootfs"
    rootfs.mount_overlay(image_layers, target, tmp_path / "u", tmp_path / "w")
    assert rootfs.unmount(target) is True
    assert not rootfs.is_mounted(target)
    assert rootfs.unmount(target) is False


def test_busy_mount_is_detached_lazily(image_layers, tmp_path):
    target = tmp_path / "rootfs"
    rootfs.mount_overlay(image_layers, target, tmp_path / "u", tmp_path / "w")
    busy = os.open(target / "lower-marker", os.O_RDONLY)
    try:
        # A mount with an open file is busy; it must still leave the namespace.
        os.chdir(target)
        try:
            assert rootfs.unmount(target) is True
        finally:
            os.chdir(tmp_path)
        assert not rootfs.is_mounted(target)
    finally:
        os.close(busy)


def test_layer_list_longer_than_a_page_is_mounted_through_fds(tmp_path, mount_target):
    layers = []
    for index in range(80):
        layer = tmp_path / f"layer-{index:03d}-{'x' * 60}"
        layer.mkdir()
        (layer / f"file-{index}").write_text(str(index))
        layers.append(layer)
    assert sum(len(str(p)) + 1 for p in layers) > rootfs.MOUNT_OPTIONS_MAX
    rootfs.mount_overlay(layers, mount_target, tmp_path / "u", tmp_path / "w")
    assert len(os.listdir(mount_target)) == 80


def test_more_layers_than_overlayfs_stacks_are_refused(tmp_path, mount_target):
    layers = [tmp_path / f"l{i}" for i in range(rootfs.OVERLAY_MAX_LAYERS + 1)]
    with pytest.raises(FailedPrecondition, match="at most"):
        rootfs.mount_overlay(layers, mount_target, tmp_path / "u", tmp_path / "w")
    assert not rootfs.is_mounted(mount_target)


def test_reading_from_the_rootfs_refuses_symlinks(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").symlink_to("/etc/shadow")
    (tmp_path / "etc" / "group").write_text("root:x:0:\n")
    assert rootfs.read_text_in_rootfs(tmp_path, "etc/passwd", 4096) is None
    assert rootfs.read_text_in_rootfs(tmp_path, "etc/group", 4096) == "root:x:0:\n"
    assert rootfs.read_text_in_rootfs(tmp_path, "etc/missing", 4096) is None


def test_reading_through_a_symlinked_directory_is_refused(tmp_path):
    (tmp_path / "etc").symlink_to("/etc")
    assert rootfs.read_text_in_rootfs(tmp_path, "etc/passwd", 1 << 20) is None


def test_reading_an_oversized_file_gives_nothing(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 100)
    assert rootfs.read_text_in_rootfs(tmp_path, "big", 99) is None
