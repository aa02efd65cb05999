"""Pure parts of volumes: runtime-spec bind mounts, mount tables, CLI sizes."""

from __future__ import annotations

import click
import pytest

from gstacks_agent.sandboxes.runtime_spec import build_runtime_spec
from gstacks_agent.volumes.mount_table import read_mounts
from gstacks_cli.volume_commands import parse_size

IMAGE = {"config": {"Cmd": ["/bin/sh"]}}


def test_volume_mounts_come_after_the_runtime_mounts():
    volume = {
        "destination": "/data",
        "type": "bind",
        "source": "/var/lib/gstacks/juicefs/mnt/volumes/vol_1",
        "options": ["rbind", "nosuid", "nodev", "ro"],
    }
    spec = build_runtime_spec(IMAGE, hostname="box", extra_mounts=[volume])
    destinations = [m["destination"] for m in spec["mounts"]]
    assert destinations[-1] == "/data"
    assert destinations.index("/proc") < destinations.index("/data")
    assert spec["mounts"][-1] == volume


def test_mount_table_unescapes_mount_points(tmp_path):
    table = tmp_path / "mountinfo"
    table.write_text(
        "45 27 0:40 / /tmp/a\\040b rw,relatime shared:1 - fuse.juicefs JuiceFS:gs rw\n"
        "46 27 0:41 / /data rw - ext4 /dev/sda1 rw\n"
    )
    entries = read_mounts(table)
    assert [(e.mount_point, e.fstype) for e in entries] == [
        ("/tmp/a b", "fuse.juicefs"),
        ("/data", "ext4"),
    ]


@pytest.mark.parametrize(
    ("text", "size"),
    [("512M", 512 * 1024**2), ("10G", 10 * 1024**3), ("1Ti", 1024**4), ("4096", 4096)],
)
def test_cli_sizes_are_in_binary_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "1.5G", "-1G", "10X"])
def test_cli_refuses_sizes_it_cannot_read(text):
    with pytest.raises(click.BadParameter):
        parse_size(text)
