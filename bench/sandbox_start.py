"""Sandbox start time on a warm image cache, against bare runc; idle memory.

    sudo .venv/bin/python bench/sandbox_start.py [--runs N]

What it does, all in one run and on this host only (loopback, temp dirs):

1. builds the busybox OCI image (scripts/build_busybox_image.py) and starts a
   standalone lab of its own (lab_processes.StandaloneLab), pushes the image with
   skopeo, and creates and activates a blueprint from it;
2. creates and deletes one sandbox, so that the image is pulled and unpacked and
   every later start finds it in the agent's cache;
3. N times, side by side: one sandbox start through the API, timed from
   `POST /api/sandboxes` until the /wait route answers "running", then deleted; and
   one bare `runc run --detach` of an equivalent bundle (bare_runc.BareRunc),
   timed around the runc call alone, then removed;
4. after 5 s of idle, reads the resident memory of the standalone process, then
   enrols a second, agent-only process and reads its resident memory after 5 s
   connected and idle.

The ratio ours/runc is what we track (aim: under 2); absolute times depend on the
machine. A table goes to stdout, then one JSON line with every figure; progress
goes to stderr. Everything is removed at the end, also after a failure, Ctrl-C or
SIGTERM: sandboxes through the API, processes by PID, mounts, temp dirs.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
import httpx
import psutil
from bare_runc import BareRunc, cached_image
from lab_processes import EnrolledAgent, LabFailed, StandaloneLab, bench_work_dir

log = logging.getLogger("gstacks.bench.sandbox_start")

PROJECT_DIR = Path(__file__).resolve().parent.parent
BUILD_IMAGE_SCRIPT = PROJECT_DIR / "scripts" / "build_busybox_image.py"
IDLE_S = 5.0
RATIO_AIM = 2.0
AGENT_RSS_AIM_BYTES = 60 * 1024 * 1024
MIB = 1024 * 1024


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest sample with `fraction` at or below."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summarize(samples: list[float]) -> dict[str, Any]:
    """Median, p90 and the samples themselves, in seconds."""
    return {
        "median_s": statistics.median(samples),
        "p90_s": percentile(samples, 0.9),
        "samples_s": samples,
    }


def measure(work: Path, runs: int) -> dict[str, Any]:
    """Run the whole benchmark under `work`; return its figures."""
    image_dir = work / "busybox-oci"
    log.info("building the busybox OCI image in %s", image_dir)
    subprocess.run(
        [sys.executable, str(BUILD_IMAGE_SCRIPT), str(image_dir), "--tag", "latest"],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )

    with ExitStack() as stack:
        lab = stack.enter_context(StandaloneLab(work / "lab"))
        lab.push_image(image_dir, "bench/busybox")
        blueprint = lab.api(
            "POST",
            "/api/blueprints",
            json={"name": "bench-busybox", "image": "bench/busybox:latest"},
        )
        lab.api("POST", f"/api/blueprints/{blueprint['id']}/activate")
        # Name the host, so that the agent-only host enrolled later never gets one.
        (host,) = lab.api("GET", "/api/hosts")["items"]
        request = {"blueprint": blueprint["id"], "host_id": host["id"]}

        # The first start pulls and unpacks the image; later ones find it cached.
        warm = lab.create_sandbox(request)
        warm = lab.wait_running(warm["id"])
        lab.delete_sandbox(warm["id"])
        log.info("image %s is in the agent's cache", warm["image_digest"])
        runc = stack.enter_context(
            BareRunc(work / "bare", cached_image(lab.state_dir, warm["image_digest"]))
        )

        # Alternate the two, so that a drift of the machine hits both alike.
        ours, bare = [], []
        for run in range(runs):
            started = time.perf_counter()
            sandbox = lab.create_sandbox(request)
            lab.wait_running(sandbox["id"])
            ours.append(time.perf_counter() - started)
            lab.delete_sandbox(sandbox["id"])

            container_id = f"bench-runc-{run}"
            bare.append(runc.start(container_id))
            runc.remove(container_id)
            log.info("run %d: ours %.3fs, runc %.3fs", run + 1, ours[-1], bare[-1])

        log.info("idling %gs before reading memory", IDLE_S)
        time.sleep(IDLE_S)
        standalone_rss = psutil.Process(lab.pid).memory_info().rss

        try:
            with EnrolledAgent(lab, work / "agent") as agent:
                time.sleep(IDLE_S)
                agent_rss: int | None = psutil.Process(agent.pid).memory_info().rss
        except (LabFailed, httpx.HTTPError, OSError, psutil.Error) as exc:
            # The start figures stand on their own; report the gap instead.
            log.warning("no agent-only figure: %s", exc)
            agent_rss = None

    return {
        "runs": runs,
        "ours": summarize(ours),
        "runc": summarize(bare),
        "ratio_median": statistics.median(ours) / statistics.median(bare),
        "ratio_p90": percentile(ours, 0.9) / percentile(bare, 0.9),
        "standalone_idle_rss_bytes": standalone_rss,
        "agent_idle_rss_bytes": agent_rss,
    }


def report(figures: dict[str, Any]) -> str:
    """The human-readable table."""
    ours, bare = figures["ours"], figures["runc"]
    agent_rss = figures["agent_idle_rss_bytes"]
    agent_text = "n/a" if agent_rss is None else f"{agent_rss / MIB:.1f} MiB"
    rows = [
        (f"sandbox start, warm cache, {figures['runs']} runs", "median", "p90"),
        (
            "  gstacks: POST /api/sandboxes -> running",
            f"{ours['median_s'] * 1000:.0f} ms",
            f"{ours['p90_s'] * 1000:.0f} ms",
        ),
        (
            "  bare runc run --detach",
            f"{bare['median_s'] * 1000:.0f} ms",
            f"{bare['p90_s'] * 1000:.0f} ms",
        ),
        (
            f"  ratio gstacks / runc (aim < {RATIO_AIM:g}x)",
            f"{figures['ratio_median']:.2f}x",
            f"{figures['ratio_p90']:.2f}x",
        ),
        ("idle resident memory", "", ""),
        (
            "  standalone (control plane + agent)",
            f"{figures['standalone_idle_rss_bytes'] / MIB:.1f} MiB",
            "",
        ),
        (f"  agent only (aim < {AGENT_RSS_AIM_BYTES // MIB} MiB)", agent_text, ""),
    ]
    return "\n".join(f"{a:<46}{b:>10}{c:>10}".rstrip() for a, b, c in rows)


@click.command(help=__doc__.split("\n\n")[0])
@click.option(
    "--runs",
    default=10,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Starts to time of each kind.",
)
def main(runs: int) -> None:
    with bench_work_dir() as work:
        figures = measure(work, runs)
    click.echo(report(figures))
    click.echo(json.dumps({"benchmark": "sandbox_start", **figures}))


if __name__ == "__main__":
    main()
