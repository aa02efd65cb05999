"""Volumes end to end: the HTTP API, the agent channel, real JuiceFS and runc.

One standalone lab serves the module. Sandboxes run the busybox image; commands
run in them through `gstacks sandbox exec`. Teardown deletes what is left through
the API, stops the lab, and then ends the JuiceFS processes serving the lab's
mount point by pid and unmounts it, also when a test failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gstacks_agent.volumes.juicefs import mount_processes
from tests.integration.lab import conftest as lab_fixtures
from tests.integration.lab.conftest import Lab, start_lab, stop_lab
from tests.integration.volumes.conftest import stop_juicefs

pytestmark = pytest.mark.root

busybox_layout = lab_fixtures.busybox_layout
MIB = 1024 * 1024
IMAGE = "lab/busybox:latest"


def mount_point(lab: Lab) -> Path:
    return lab.state_dir / "juicefs" / "mnt"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, busybox_layout) -> Iterator[Lab]:
    # The runc root is named for the state dir's last component: a name of our
    # own keeps other labs' teardown from deleting this lab's containers.
    state_dir = tmp_path_factory.mktemp("volume-lab") / f"volumes-{os.getpid()}"
    holder = {"lab": start_lab(state_dir, busybox_layout)}
    try:
        holder["lab"].push(busybox_layout, "lab/busybox")
        yield holder["lab"]
    finally:
        stop_lab(holder["lab"])
        stop_juicefs(mount_point(holder["lab"]))


def sh(lab: Lab, sandbox_id: str, script: str) -> subprocess.CompletedProcess:
    return lab.gstacks("sandbox", "exec", sandbox_id, "--", "sh", "-c", script)


def new_volume(lab: Lab, name: str, size_bytes: int = 64 * MIB) -> dict:
    with lab.client() as client:
        created = client.post(
            "/api/volumes",
            json={"name": name, "size_bytes": size_bytes, "labels": {"test": "yes"}},
        )
    assert created.status_code == 201, created.text
    return created.json()


def attach(lab: Lab, volume_id: str, **body) -> dict:
    with lab.client() as client:
        made = client.post(f"/api/volumes/{volume_id}/attachments", json=body)
    assert made.status_code == 201, made.text
    return made.json()


def attachments(lab: Lab, volume_id: str) -> list[dict]:
    with lab.client() as client:
        listed = client.get(f"/api/volumes/{volume_id}/attachments")
    assert listed.status_code == 200, listed.text
    return listed.json()["items"]


def volume(lab: Lab, volume_id: str) -> dict:
    with lab.client() as client:
        return client.get(f"/api/volumes/{volume_id}").json()


def test_file_written_by_one_sandbox_is_read_by_another_and_outlives_both_and_a_restart(
    lab: Lab,
):
    vol = new_volume(lab, "shared")
    assert vol["status"] == "detached"
    directory = mount_point(lab) / "volumes" / vol["id"]
    assert not directory.exists()

    writer = lab.create_sandbox(image=IMAGE)
    made = attach(lab, vol["id"], sandbox_id=writer["id"], mount_path="/data")
    assert made["target"] == "sandbox" and made["read_only"] is False
    assert directory.is_dir()
    implicit = [a for a in attachments(lab, vol["id"]) if a["target"] == "host"]
    assert len(implicit) == 1 and implicit[0]["implicit"] is True
    written = sh(lab, writer["id"], "echo shared-data > /data/file && sync")
    assert written.returncode == 0, written.stderr

    reader = lab.create_sandbox(image=IMAGE)
    attach(lab, vol["id"], sandbox_id=reader["id"], mount_path="/in", read_only=True)
    read = sh(lab, reader["id"], "cat /in/file")
    assert read.stdout.strip() == "shared-data", read.stderr
    refused = sh(lab, reader["id"], "echo nope > /in/other")
    assert refused.returncode != 0
    assert "Read-only file system" in refused.stdout + refused.stderr

    lab.delete_sandbox(writer["id"])
    lab.delete_sandbox(reader["id"])
    deadline = time.monotonic() + 30
    while attachments(lab, vol["id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert attachments(lab, vol["id"]) == []  # the implicit host one went too
    assert volume(lab, vol["id"])["status"] == "detached"

    # The agent restarts; the JuiceFS mount stays, and the data with it.
    lab.process.send_signal(signal.SIGTERM)
    assert lab.process.wait(timeout=30) == 0
    assert mount_processes(mount_point(lab))
    restarted = start_lab(lab.state_dir, lab.image_dir)
    lab.process, lab.address = restarted.process, restarted.address

    third = lab.create_sandbox(image=IMAGE)
    attach(lab, vol["id"], sandbox_id=third["id"], mount_path="/again")
    read = sh(lab, third["id"], "cat /again/file")
    assert read.stdout.strip() == "shared-data", read.stderr
    lab.delete_sandbox(third["id"])


def test_live_attach_detach_and_quota_in_a_running_sandbox(lab: Lab):
    vol = new_volume(lab, "live", size_bytes=4 * MIB)
    sandbox = lab.create_sandbox(image=IMAGE)
    before = sh(lab, sandbox["id"], "cat /proc/1/stat | cut -d' ' -f22")

    made = attach(lab, vol["id"], sandbox_id=sandbox["id"], mount_path="/live")
    written = sh(lab, sandbox["id"], "echo x > /live/x && cat /live/x")
    assert written.stdout.strip() == "x", written.stderr
    over = sh(lab, sandbox["id"], "dd if=/dev/zero of=/live/big bs=1M count=16")
    assert over.returncode != 0
    assert "quota" in (over.stdout + over.stderr).lower()

    with lab.client() as client:
        for method in ("PATCH", "PUT"):
            changed = client.request(
                method,
                f"/api/volumes/{vol['id']}/attachments/{made['id']}",
                json={"read_only": True},
            )
            assert changed.status_code == 405
        detached = client.delete(f"/api/volumes/{vol['id']}/attachments/{made['id']}")
        assert detached.status_code == 204
    gone = sh(lab, sandbox["id"], "ls /live")
    assert gone.returncode == 0 and gone.stdout.strip() == ""
    after = sh(lab, sandbox["id"], "cat /proc/1/stat | cut -d' ' -f22")
    assert after.stdout.split() == before.stdout.split()  # same init: no restart
    lab.delete_sandbox(sandbox["id"])


def test_bad_attachments_and_juicefs_fields_are_4xx_and_leave_no_record(lab: Lab):
    vol = new_volume(lab, "strict")
    sandbox = lab.create_sandbox(image=IMAGE)
    with lab.client() as client:
        volumes_before = client.get("/api/volumes").json()["items"]
        for body in (
            {"name": "jfs", "size_bytes": 64 * MIB, "meta_url": "redis://x"},
            {"name": "jfs", "size_bytes": 64 * MIB, "storage": "s3"},
            {"name": "jfs", "size_bytes": 64 * MIB, "juicefs": {"cache_size": 1}},
            {"name": "jfs"},
            {"name": "Bad Name", "size_bytes": 64 * MIB},
        ):
            refused = client.post("/api/volumes", json=body)
            assert refused.status_code == 400, (body, refused.text)
        assert client.get("/api/volumes").json()["items"] == volumes_before

        url = f"/api/volumes/{vol['id']}/attachments"
        cases = [
            ({"sandbox_id": "sbx_0000000000000000", "mount_path": "/data"}, 404),
            ({"host_id": "host_0000000000000000"}, 404),
            ({"sandbox_id": sandbox["id"], "mount_path": "data"}, 400),
            ({"sandbox_id": sandbox["id"], "mount_path": "/data/../etc"}, 400),
            ({"sandbox_id": sandbox["id"], "mount_path": "/"}, 400),
            ({"sandbox_id": sandbox["id"], "mount_path": "/proc"}, 400),
            ({"sandbox_id": sandbox["id"], "mount_path": "/sys/fs"}, 400),
            ({"sandbox_id": sandbox["id"], "mount_path": "/dev"}, 400),
            ({"sandbox_id": sandbox["id"]}, 400),
            (
                {"sandbox_id": sandbox["id"], "mount_path": "/d", "cache_dir": "/x"},
                400,
            ),
            ({"sandbox_id": sandbox["id"], "mount_path": "/d", "subdir": "/"}, 400),
        ]
        for body, status in cases:
            refused = client.post(url, json=body)
            assert refused.status_code == status, (body, refused.text)
            assert refused.json()["error"]["message"]
        assert attachments(lab, vol["id"]) == []
        assert not (mount_point(lab) / "volumes" / vol["id"]).exists()

        first = attach(lab, vol["id"], sandbox_id=sandbox["id"], mount_path="/data")
        for path in ("/data", "/data/sub", "/"):
            refused = client.post(
                url, json={"sandbox_id": sandbox["id"], "mount_path": path}
            )
            assert refused.status_code in (400, 409), (path, refused.text)
        host_id = sandbox["host_id"]
        second_host = client.post(url, json={"host_id": host_id})
        assert second_host.status_code == 409  # the implicit one holds the host path
        assert len(attachments(lab, vol["id"])) == 2

        busy = client.delete(f"/api/volumes/{vol['id']}")
        assert busy.status_code == 409
        client.delete(f"{url}/{first['id']}")
        assert attachments(lab, vol["id"]) == []
        assert client.delete(f"/api/volumes/{vol['id']}").status_code == 204
        assert client.get(f"/api/volumes/{vol['id']}").status_code == 404
    lab.delete_sandbox(sandbox["id"])


def test_killed_juicefs_is_reported_degraded_remounted_and_data_kept(lab: Lab):
    vol = new_volume(lab, "crash")
    sandbox = lab.create_sandbox(image=IMAGE)
    attach(lab, vol["id"], sandbox_id=sandbox["id"], mount_path="/data")
    written = sh(lab, sandbox["id"], "echo before-crash > /data/kept && sync")
    assert written.returncode == 0, written.stderr
    log_offset = lab.log_path.stat().st_size

    killed = mount_processes(mount_point(lab))
    assert killed
    for process in killed:
        os.kill(process.pid, signal.SIGKILL)

    deadline = time.monotonic() + 60
    log = ""
    while time.monotonic() < deadline:
        log = lab.log_path.read_text()[log_offset:]
        if "volume filesystem degraded" in log and "volume filesystem mounted" in log:
            break
        time.sleep(0.2)
    assert "volume filesystem degraded" in log  # the control plane heard it
    assert "volume filesystem mounted" in log
    assert volume(lab, vol["id"])["status"] == "attached"
    read = sh(lab, sandbox["id"], "cat /data/kept")
    assert read.stdout.strip() == "before-crash", read.stderr
    lab.delete_sandbox(sandbox["id"])


def test_cli_creates_attaches_to_the_host_detaches_and_deletes_a_volume(lab: Lab):
    created = lab.gstacks("--json", "volume", "create", "cli-vol", "--size", "64M")
    assert created.returncode == 0, created.stderr
    vol = json.loads(created.stdout)
    assert vol["size_bytes"] == 64 * MIB and vol["status"] == "detached"
    listed = lab.gstacks("volume", "list")
    assert vol["id"] in listed.stdout and "detached" in listed.stdout

    with lab.client() as client:
        (host,) = client.get("/api/hosts").json()["items"]
    attached = lab.gstacks(
        "--json", "volume", "attach", vol["id"], "--host", host["id"], "--read-only"
    )
    assert attached.returncode == 0, attached.stderr
    attachment = json.loads(attached.stdout)
    host_path = Path(attachment["host_path"])
    assert host_path == lab.state_dir / "volumes" / vol["id"]
    assert host_path.is_dir()
    with pytest.raises(OSError):
        (host_path / "x").write_text("read-only host attachment")
    shown = lab.gstacks("volume", "attachments", vol["id"])
    assert attachment["id"] in shown.stdout and "ro" in shown.stdout

    refused = lab.gstacks("volume", "delete", vol["id"])
    assert refused.returncode == 1 and "attachment" in refused.stderr
    detached = lab.gstacks("volume", "detach", vol["id"], attachment["id"])
    assert detached.returncode == 0, detached.stderr
    deleted = lab.gstacks("volume", "delete", vol["id"])
    assert deleted.returncode == 0, deleted.stderr
    assert not (mount_point(lab) / "volumes" / vol["id"]).exists()
