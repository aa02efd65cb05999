"""Which mount paths a volume may take, as the control plane and the agent judge."""

from __future__ import annotations

import pytest

from control_plane_lite.errors import InvalidRequest
from control_plane_lite.volumes import check_mount_path, paths_conflict
from gstacks_agent.volumes.errors import InvalidVolumeRequest
from gstacks_agent.volumes.mount_paths import check_mount_path as agent_check
from gstacks_agent.volumes.mount_paths import check_volume_id

REFUSED = [
    "data",
    "",
    "/",
    "/data/../etc",
    "/./data",
    "/data//x",
    "/data/",
    "/proc",
    "/proc/self",
    "/sys",
    "/sys/fs/cgroup",
    "/dev",
    "/dev/shm",
    "/with space",
    "/new\nline",
    "/" + "a" * 1100,
    None,
    7,
]
ACCEPTED = [
    "/data",
    "/mnt/vol-1",
    "/srv/in",
    "/home/user/.cache",
    "/procfs",
    "/devices",
]


@pytest.mark.parametrize("path", REFUSED)
def test_bad_mount_path_is_refused_by_both_sides(path):
    with pytest.raises(InvalidRequest):
        check_mount_path(path)
    with pytest.raises(InvalidVolumeRequest):
        agent_check(path)


@pytest.mark.parametrize("path", ACCEPTED)
def test_plain_absolute_mount_path_is_accepted_by_both_sides(path):
    assert check_mount_path(path) == path
    assert agent_check(path) == path


@pytest.mark.parametrize(
    ("a", "b", "conflict"),
    [
        ("/data", "/data", True),
        ("/data", "/data/sub", True),
        ("/data/sub", "/data", True),
        ("/data", "/database", False),
        ("/a/b", "/a/c", False),
    ],
)
def test_equal_or_nested_mount_paths_conflict(a, b, conflict):
    assert paths_conflict(a, b) is conflict


@pytest.mark.parametrize("volume_id", ["vol_0123456789abcdef", "a", "vol-1"])
def test_volume_ids_the_agent_accepts(volume_id):
    assert check_volume_id(volume_id) == volume_id


@pytest.mark.parametrize("volume_id", ["", "../x", "Vol", "a/b", "x" * 64])
def test_volume_ids_the_agent_refuses(volume_id):
    with pytest.raises(InvalidVolumeRequest):
        check_volume_id(volume_id)
