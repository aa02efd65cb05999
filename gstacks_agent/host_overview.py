"""A snapshot of the host for heartbeats: load, memory, disk, uptime, kernel."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import psutil

from gstacks_agent import __version__
from gstacks_proto import pb


def host_overview(state_dir: Path, sandbox_count: int) -> pb.HostOverview:
    """Measure the host now. `cpu_percent` is since the previous call (0 the first time)."""
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(state_dir if state_dir.exists() else Path("/")))
    load_1m, load_5m, load_15m = os.getloadavg()
    return pb.HostOverview(
        cpu_percent=psutil.cpu_percent(interval=None),
        cpu_count=psutil.cpu_count() or 0,
        memory_total_bytes=memory.total,
        memory_used_bytes=memory.total - memory.available,
        disk_total_bytes=disk.total,
        disk_used_bytes=disk.used,
        load_1m=load_1m,
        load_5m=load_5m,
        load_15m=load_15m,
        uptime_s=int(time.time() - psutil.boot_time()),
        kernel=platform.release(),
        agent_version=__version__,
        sandbox_count=sandbox_count,
    )
