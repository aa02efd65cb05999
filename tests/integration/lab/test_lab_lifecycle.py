"""Stopping and restarting the lab: clean exit, and sandboxes that outlive the agent."""

from __future__ import annotations

import json
import socket
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
        # A volume starts a JuiceFS mount, a process that outlives the agent.
        with lab.client() as client:
            volume = client.post(
                "/api/volumes", json={"name": "keep", "size_bytes": 64 * 2**20}
            ).json()
            attached = client.post(
                f"/api/volumes/{volume['id']}/attachments",
                json={"sandbox_id": sandbox["id"], "mount_path": "/data"},
            )
            assert attached.status_code == 201, attached.text

        # SIGTERM ends the daemon with status 0; the sandbox keeps running without it.
        lab.process.terminate()
        assert lab.process.wait(timeout=20) == 0
        assert "stopping" in lab.log_path.read_text()
        assert process_alive(pid)
        # Nothing left behind holds the API's port: a lab can listen there again.
        host, port = lab.address.rsplit(":", 1)
        with socket.socket() as probe:
            # As a server would: connections in TIME_WAIT do not count, a listener does.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, int(port)))
            probe.listen()

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
