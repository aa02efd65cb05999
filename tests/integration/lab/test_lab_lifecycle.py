"""Stopping and restarting the lab: clean exit, and sandboxes that outlive the agent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import force_cleanup, process_alive, start_lab, stop_lab

pytestmark = pytest.mark.root


def test_sigterm_stops_the_lab_cleanly_and_a_restart_recovers_its_sandbox(
    tmp_path: Path, busybox_layout: Path
):
    state_dir = tmp_path / "state"
    lab = start_lab(state_dir, busybox_layout)
    try:
        lab.push(busybox_layout, "lab/busybox")
        sandbox = lab.create_sandbox(image="lab/busybox:latest")
        pid = json.loads(
            (state_dir / "sandboxes" / sandbox["id"] / "sandbox.json").read_text()
        )["pid"]

        # SIGTERM ends the daemon with status 0; the sandbox keeps running without it.
        lab.process.terminate()
        assert lab.process.wait(timeout=20) == 0
        assert "stopping" in lab.log_path.read_text()
        assert process_alive(pid)

        # A new lab on the same state dir finds the sandbox and reports it running.
        lab = start_lab(state_dir, busybox_layout)
        with lab.client() as client:
            again = client.get(f"/api/sandboxes/{sandbox['id']}").json()
            assert again["status"] == "running"
            hosts = client.get("/api/hosts").json()["items"]
            assert [h["status"] for h in hosts] == ["connected"]
        echoed = lab.gstacks(
            "sandbox", "exec", sandbox["id"], "--", "echo", "still-here"
        )
        assert echoed.stdout.strip() == "still-here"

        lab.delete_sandbox(sandbox["id"])
        assert not process_alive(pid)
    finally:
        assert stop_lab(lab) in (0, None)
        force_cleanup(state_dir, lab.runc_root)
