"""Build a small, real OCI image from Debian's static busybox.

    python scripts/build_busybox_image.py OUT_DIR [--tag latest]

writes an OCI image layout to OUT_DIR holding one single-layer image: /bin/busybox
with a symlink per applet, a minimal /etc, and the empty mount points a runtime
expects. Its command sleeps until SIGTERM, so a sandbox made from it stays up until
it is stopped. The image is reproducible: the same busybox binary gives the same
digest, which is printed on stdout. Push it with
`skopeo copy oci:OUT_DIR:latest docker://REGISTRY/REPO:latest`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from gstacks_agent.errors import AgentError
from gstacks_agent.images.layer_builder import LayerEntry
from gstacks_agent.images.manifests import Descriptor, Platform
from gstacks_agent.images.oci_layout import ImageConfig, OciLayout

BUSYBOX = Path("/usr/bin/busybox")

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\nnobody:x:65534:\n"

# `sleep & wait` rather than a bare `sleep`: the shell runs traps only between
# commands, and `wait` returns at once when SIGTERM arrives.
KEEP_ALIVE = [
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done",
]
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def rootfs_entries(busybox: Path) -> list[LayerEntry]:
    """The whole root file system of the image, as layer entries."""
    listed = subprocess.run(
        [str(busybox), "--list"], check=True, capture_output=True, text=True
    )
    applets = sorted(set(listed.stdout.split()) - {"busybox"})

    entries = [
        LayerEntry.directory("bin"),
        LayerEntry.directory("dev"),
        LayerEntry.directory("etc"),
        LayerEntry.directory("proc", 0o555),
        LayerEntry.directory("root", 0o700),
        LayerEntry.directory("sys", 0o555),
        LayerEntry.directory("tmp", 0o1777),
        LayerEntry("bin/busybox", "file", 0o755, source=busybox),
        LayerEntry.file("etc/passwd", PASSWD.encode()),
        LayerEntry.file("etc/group", GROUP.encode()),
        LayerEntry.file("etc/hostname", b"sandbox\n"),
    ]
    entries += [LayerEntry.symlink(f"bin/{name}", "busybox") for name in applets]
    return entries


def build_busybox_image(out_dir: Path, tag: str, busybox: Path = BUSYBOX) -> Descriptor:
    """Write the image into the OCI layout `out_dir`; return its index entry."""
    layout = OciLayout(out_dir)
    layer = layout.add_layer(rootfs_entries(busybox))
    config = ImageConfig(
        architecture=Platform.host().architecture,
        cmd=KEEP_ALIVE,
        env=[PATH],
        working_dir="/",
    )
    return layout.add_image(config, [layer], tag=tag)


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--tag", default="latest", show_default=True, help="ref name in index")
@click.option(
    "--busybox",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=BUSYBOX,
    show_default=True,
    help="a statically linked busybox binary",
)
def main(out_dir: Path, tag: str, busybox: Path) -> None:
    """Build the busybox image into OUT_DIR and print its manifest digest."""
    try:
        entry = build_busybox_image(out_dir, tag, busybox)
    except (AgentError, OSError, subprocess.CalledProcessError) as exc:
        click.echo(f"build_busybox_image: {exc}", err=True)
        sys.exit(1)
    click.echo(entry.digest)


if __name__ == "__main__":
    main()
