"""Bare `runc run --detach` starts of a sandbox-like bundle: the benchmarks' reference.

How it works: each start gets a bundle of its own, made the way the agent makes a
sandbox's (gstacks_agent/sandboxes/manager.py `_start`): an overlay mount over the
very layer directories the agent's image cache unpacked, with fresh upper and work
dirs, and a config.json from `runtime_spec.build_runtime_spec` with the image's
user database read out of that rootfs. Only the `runc run --detach` call is timed,
from invoking runc to runc returning with the container's process running: that
is the floor any runtime built on runc can reach.

Everything lives under the caller's work dir and a runc `--root` of our own, so the
agent's containers and ours never meet. Containers get the cgroup
`/<parent>/<id>` with a parent named for this process; `close` removes the
containers, their mounts and bundles, and then the parent cgroup directories
runc leaves behind in each hierarchy.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import trio

from gstacks_agent.images.image_cache import ImageCache, PulledImage
from gstacks_agent.sandboxes import rootfs, runtime_spec

log = logging.getLogger("gstacks.bench.runc")

CGROUP_ROOT = Path("/sys/fs/cgroup")
USER_DB_MAX_BYTES = 1024 * 1024
RUNC_TIMEOUT_S = 60.0


class BareRuncFailed(RuntimeError):
    """runc refused to start or remove a reference container."""


def cached_image(state_dir: Path, digest: str) -> PulledImage:
    """The image `digest` as the agent under `state_dir` has it unpacked.

    Asks the agent's own image cache, which answers a complete image from disk
    without a registry; an image it lacks is an error, never a pull.
    """
    cache = ImageCache(state_dir)
    if not cache.has(digest):
        raise BareRuncFailed(f"image {digest} is not in the image cache of {state_dir}")
    # The client is never used: `has` just said the image is answered from disk.
    return trio.run(cache.ensure, None, "", digest)


class BareRunc:
    """Reference containers of `image` under `work_dir`, removed on `close`."""

    def __init__(self, work_dir: Path, image: PulledImage) -> None:
        self.binary = shutil.which("runc") or "runc"
        self.root = work_dir / "runc"
        self.bundles = work_dir / "bundles"
        self.cgroup_parent = f"gstacks-bench-{os.getpid()}"
        self._image = image
        self._containers: list[str] = []

    def __enter__(self) -> BareRunc:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self, container_id: str) -> float:
        """Make a bundle, start a container from it; return runc's seconds."""
        bundle = self.bundles / container_id
        self._containers.append(container_id)
        self._make_bundle(container_id, bundle)

        argv = [self.binary, "--root", str(self.root), "run", "--detach"]
        argv += ["--bundle", str(bundle), "--pid-file", str(bundle / "pid")]
        argv.append(container_id)
        with open(bundle / "log", "ab") as output:
            started = time.perf_counter()
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                timeout=RUNC_TIMEOUT_S,
                check=False,
            )
            elapsed_s = time.perf_counter() - started
        if result.returncode != 0:
            raise BareRuncFailed(
                f"runc run {container_id} exited with status {result.returncode}: "
                f"{(bundle / 'log').read_text(errors='replace')[-2000:].strip()}"
            )

        status = self._state(container_id).get("status")
        if status != "running":
            raise BareRuncFailed(f"container {container_id} is {status}, not running")
        return elapsed_s

    def remove(self, container_id: str) -> None:
        """Kill and delete the container, unmount its rootfs, remove its bundle."""
        if (self.root / container_id / "state.json").exists():
            self._runc("delete", "--force", container_id)
        bundle = self.bundles / container_id
        rootfs_dir = bundle / "rootfs"
        rootfs.unmount(rootfs_dir)
        # rmtree crosses mount points; never let it walk into the image layers.
        if rootfs.is_mounted(rootfs_dir):
            raise BareRuncFailed(f"{rootfs_dir} is still mounted; not removing it")
        shutil.rmtree(bundle, ignore_errors=True)
        if container_id in self._containers:
            self._containers.remove(container_id)

    def close(self) -> None:
        """Remove every container this made, then the cgroup parent runc left."""
        failures = []
        for container_id in list(self._containers):
            try:
                self.remove(container_id)
            except (BareRuncFailed, OSError, subprocess.SubprocessError) as exc:
                log.warning("container %s: removal failed: %s", container_id, exc)
                failures.append(container_id)
        self._remove_cgroup_parent()
        if failures:
            raise BareRuncFailed(f"could not remove containers {', '.join(failures)}")

    def _make_bundle(self, container_id: str, bundle: Path) -> None:
        rootfs_dir = bundle / "rootfs"
        rootfs.mount_overlay(
            list(self._image.layer_dirs), rootfs_dir, bundle / "upper", bundle / "work"
        )
        passwd = rootfs.read_text_in_rootfs(rootfs_dir, "etc/passwd", USER_DB_MAX_BYTES)
        group = rootfs.read_text_in_rootfs(rootfs_dir, "etc/group", USER_DB_MAX_BYTES)
        spec = runtime_spec.build_runtime_spec(
            self._image.config,
            hostname=container_id,
            passwd=passwd or "",
            group=group or "",
            cgroups_path=f"/{self.cgroup_parent}/{container_id}",
        )
        (bundle / "config.json").write_text(json.dumps(spec, indent=2) + "\n")

    def _state(self, container_id: str) -> dict[str, Any]:
        return json.loads(self._runc("state", container_id))

    def _runc(self, *args: str) -> str:
        result = subprocess.run(
            [self.binary, "--root", str(self.root), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=RUNC_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise BareRuncFailed(
                f"runc {' '.join(args)} exited with status {result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return result.stdout.decode()

    def _remove_cgroup_parent(self) -> None:
        # cgroup v1 mounts one hierarchy per controller (some under two names,
        # as symlinks); cgroup v2 has one. runc removes a container's own cgroup
        # on delete but never the parent it created on the way.
        hierarchies = [CGROUP_ROOT, *CGROUP_ROOT.iterdir()]
        seen = set()
        for hierarchy in hierarchies:
            real = os.path.realpath(hierarchy / self.cgroup_parent)
            if real in seen or not os.path.isdir(real):
                continue
            seen.add(real)
            try:
                os.rmdir(real)
            except OSError as exc:
                log.warning("cgroup %s: cannot remove it: %s", real, exc)
