"""Volumes: small files on an attached volume inside a sandbox, against the host's
JuiceFS mount; and how long an attach takes until the volume is usable.

    sudo .venv/bin/python bench/volumes.py [--files N] [--rounds R]

What it does, all in one run, on this host only (temp dirs, loopback metrics):

1. builds a one-layer busybox image (Debian's busybox-static), starts the agent's
   SandboxManager and VolumeManager on a temp state dir (embedded JuiceFS: SQLite
   metadata, file storage, a real FUSE mount), and starts one sandbox;
2. attaches a volume to the host and then live into the running sandbox, timing
   each attach call (it returns once the mount is in place) and then the first
   `runc exec` that sees the mount: attach-to-usable;
3. R rounds, alternating: the same busybox script creates N small files in a fresh
   directory and reads them all back, once in the sandbox through the bind mount
   (`runc exec`) and once on the host directly on the JuiceFS mount. The fixed
   cost of starting each (`runc exec true` and `busybox sh -c true`, measured in
   the same rounds) is subtracted, so the ratio compares the file work alone.

The ratio sandbox/host is what we track (aim: under 1.1: the bind mount should
cost nothing). A table goes to stdout, then one JSON line with every figure.
Everything is removed at the end, also after a failure or Ctrl-C: the sandbox,
the juicefs processes (by pid), the mounts, the temp dir.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import psutil
import trio

from gstacks_agent.config import VolumesConfig
from gstacks_agent.sandboxes import rootfs
from gstacks_agent.sandboxes.manager import SandboxManager
from gstacks_agent.sandboxes.runc import Runc
from gstacks_agent.volumes import Attachment, VolumeManager
from gstacks_agent.volumes.juicefs import mount_processes

log = logging.getLogger("gstacks.bench.volumes")

BUSYBOX = Path("/usr/bin/busybox")
RATIO_AIM = 1.1
MIB = 1024 * 1024
SLEEPER = [
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done",
]
# Create N files, then read them all: the small-file work of a build or a checkout.
WORKLOAD = (
    'd="$1/round-$2"; mkdir "$d"; i=0; '
    'while [ $i -lt "$3" ]; do echo "file $i" > "$d/f$i"; i=$((i+1)); done; '
    'cat "$d"/f* > /dev/null'
)


class BusyboxImage:
    """A one-layer image of busybox and its applets, as the sandbox runtime wants."""

    digest = "sha256:" + "be" * 32

    def __init__(self, layer: Path) -> None:
        self.layer_dirs = [layer]
        self.config = {"config": {"Cmd": SLEEPER, "Env": ["PATH=/bin"]}}
        for name in ("bin", "etc", "proc", "sys", "dev", "tmp"):
            (layer / name).mkdir(parents=True)
        shutil.copy2(BUSYBOX, layer / "bin" / "busybox")
        applets = subprocess.run(
            [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
        ).stdout.split()
        for applet in applets:
            if applet != "busybox":
                (layer / "bin" / applet).symlink_to("busybox")
        (layer / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
        (layer / "etc" / "group").write_text("root:x:0:\n")


async def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    await trio.run_process(argv, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


async def measure(work: Path, files: int, rounds: int) -> dict[str, Any]:
    runc = Runc.locate(root=work / "runc")
    sandboxes = SandboxManager(work / "state", runc, cgroup_parent="gstacks-bench")
    volumes = VolumeManager(work / "state", VolumesConfig(), sandboxes)
    image = BusyboxImage(work / "layer")
    async with trio.open_nursery() as nursery:
        await nursery.start(sandboxes.serve)
        await nursery.start(volumes.serve)
        try:
            figures = await _measure(runc, sandboxes, volumes, image, files, rounds)
        finally:
            with trio.CancelScope(shield=True):
                for info in sandboxes.list():
                    await sandboxes.delete(info.sandbox_id, grace_s=1)
            nursery.cancel_scope.cancel()
    return figures


async def _measure(
    runc: Runc,
    sandboxes: SandboxManager,
    volumes: VolumeManager,
    image: BusyboxImage,
    files: int,
    rounds: int,
) -> dict[str, Any]:
    await sandboxes.create("bench", image)

    started = time.perf_counter()
    host_path = await volumes.attach(Attachment("host-1", "bench-vol"), 1024 * MIB)
    first_attach_s = time.perf_counter() - started
    log.info("volume formatted, mounted and attached at %s", host_path)

    exec_argv = [str(runc.binary), "--root", str(runc.root), "exec", "bench"]
    started = time.perf_counter()
    await volumes.attach(Attachment("sbx-1", "bench-vol", "bench", "/vol"), 1024 * MIB)
    live_attach_s = time.perf_counter() - started
    await trio.run_process([*exec_argv, "test", "-d", "/vol"])
    attach_to_usable_s = time.perf_counter() - started

    # Detach and attach again a few times: the live attach alone, volume ready.
    relive = []
    for n in range(5):
        await volumes.detach("sbx-1" if n == 0 else f"sbx-re-{n - 1}")
        started = time.perf_counter()
        await volumes.attach(
            Attachment(f"sbx-re-{n}", "bench-vol", "bench", "/vol"), 1024 * MIB
        )
        await trio.run_process([*exec_argv, "test", "-d", "/vol"])
        relive.append(time.perf_counter() - started)

    host_sh = [str(BUSYBOX), "sh", "-c"]
    inside, outside, inside_base, outside_base = [], [], [], []
    for n in range(rounds):
        inside_base.append(await timed([*exec_argv, "true"]))
        outside_base.append(await timed([*host_sh, "true"]))
        inside.append(
            await timed(
                [*exec_argv, "sh", "-c", WORKLOAD, "sh", "/vol", f"in{n}", str(files)]
            )
        )
        outside.append(
            await timed([*host_sh, WORKLOAD, "sh", host_path, f"out{n}", str(files)])
        )
        log.info("round %d: sandbox %.3fs, host %.3fs", n, inside[-1], outside[-1])

    inside_work = statistics.median(inside) - statistics.median(inside_base)
    outside_work = statistics.median(outside) - statistics.median(outside_base)
    return {
        "files": files,
        "rounds": rounds,
        "sandbox_s": inside,
        "host_s": outside,
        "runc_exec_true_s": inside_base,
        "host_sh_true_s": outside_base,
        "sandbox_work_median_s": inside_work,
        "host_work_median_s": outside_work,
        "ratio_sandbox_over_host": inside_work / outside_work,
        "first_attach_s": first_attach_s,
        "live_attach_s": live_attach_s,
        "attach_to_usable_s": attach_to_usable_s,
        "reattach_to_usable_median_s": statistics.median(relive),
    }


def cleanup(work: Path) -> None:
    """End our juicefs processes by pid and unmount everything under `work`."""
    mount_point = work / "state" / "juicefs" / "mnt"
    processes = mount_processes(mount_point)
    for process in processes:
        process.kill()
    psutil.wait_procs(processes, timeout=10)
    prefix = str(work) + "/"
    for point in sorted(rootfs.mount_points(), reverse=True):
        if point.startswith(prefix):
            subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
    for directory in Path("/sys/fs/cgroup").glob("*/gstacks-bench"):
        try:
            directory.rmdir()
        except OSError:
            pass


@click.command()
@click.option("--files", default=500, show_default=True, help="Small files per round.")
@click.option("--rounds", default=5, show_default=True, help="Rounds of each kind.")
def main(files: int, rounds: int) -> None:
    """Small-file work through a volume bind mount against the bare JuiceFS mount."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    if os.geteuid() != 0:
        raise SystemExit("run as root: it mounts JuiceFS and runs runc")
    work = Path(tempfile.mkdtemp(prefix="gstacks-bench-volumes-"))
    try:
        figures = trio.run(measure, work, files, rounds)
    finally:
        cleanup(work)
    print(f"{'':34}{'median':>10}")
    print(
        f"{'sandbox, via bind mount (work)':34}{figures['sandbox_work_median_s']:>9.3f}s"
    )
    print(
        f"{'host, on the JuiceFS mount (work)':34}{figures['host_work_median_s']:>9.3f}s"
    )
    ratio = figures["ratio_sandbox_over_host"]
    print(f"{'ratio sandbox/host':34}{ratio:>10.3f}  (aim < {RATIO_AIM})")
    print(
        f"{'first attach (format, mount, quota)':34}{figures['first_attach_s']:>9.3f}s"
    )
    print(f"{'live attach to usable':34}{figures['attach_to_usable_s']:>9.3f}s")
    print(
        f"{'live re-attach to usable':34}{figures['reattach_to_usable_median_s']:>9.3f}s"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
