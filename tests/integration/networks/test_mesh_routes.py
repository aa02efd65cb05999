"""Routes through the mesh interface follow the wanted set, removals included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[3]

SCRIPT = """
import subprocess, sys
from gstacks_agent.mesh.links import sync_routes
sync_routes("gst-rt0", ["100.64.0.5/32", "100.64.0.6/32"])
sync_routes("gst-rt0", ["100.64.0.6/32"])
print(subprocess.run(["ip", "-4", "route", "show", "dev", "gst-rt0"],
                     capture_output=True, text=True, check=True).stdout)
"""


def test_a_route_no_longer_wanted_is_removed(tmp_path):
    netns = f"gst-rt-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        run = ["ip", "netns", "exec", netns]
        subprocess.run(
            [*run, "ip", "link", "add", "gst-rt0", "type", "bridge"], check=True
        )
        subprocess.run([*run, "ip", "link", "set", "gst-rt0", "up"], check=True)
        result = subprocess.run(
            ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", SCRIPT],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stderr
        assert "100.64.0.6" in result.stdout
        assert "100.64.0.5" not in result.stdout
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
