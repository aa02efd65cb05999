"""A real standalone lab for the end-to-end tests: one `gstacks-agent standalone`
process on a kernel-chosen loopback port, with its own state dir, the busybox image
built from Debian's busybox-static and pushed into it with skopeo.

The lab is shared by the tests of a module (starting it costs a second); each test
creates and deletes its own sandboxes. Teardown deletes whatever sandboxes remain
through the API, stops the process with SIGTERM, and then force-removes any runc
container or mount the state dir still holds, so a failing test leaks nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
READY_RE = re.compile(r"lab ready: API http://(?P<address>\S+),")


@dataclass
class Lab:
    process: subprocess.Popen
    address: str
    state_dir: Path
    log_path: Path
    access_log: Path
    image_dir: Path
    runc_root: Path
    key: str

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.key}"} if key != "" else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def gstacks(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        env = {**os.environ, "GSTACKS_URL": self.url, "GSTACKS_API_KEY": self.key}
        return subprocess.run(
            [str(VENV_BIN / "gstacks"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def skopeo(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["skopeo", *args], capture_output=True, text=True, timeout=120, check=True
        )

    def push(self, layout: Path, repository: str, tag: str = "latest") -> None:
        self.skopeo(
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"admin:{self.key}",
            f"oci:{layout}:{tag}",
            f"docker://{self.address}/{repository}:{tag}",
        )

    def blob_fetches(self) -> int:
        """GETs of blobs served so far, read from the access log."""
        if not self.access_log.exists():
            return 0
        return len(
            re.findall(r'"GET /v2/\S+/blobs/sha256:', self.access_log.read_text())
        )

    def create_sandbox(self, **body: object) -> dict:
        with self.client() as client:
            created = client.post("/api/sandboxes", json=body)
            assert created.status_code == 201, created.text
            sandbox = created.json()
            waited = client.get(
                f"/api/sandboxes/{sandbox['id']}/wait",
                params={"status": "running", "timeout_s": 60},
            )
            assert waited.status_code == 200, waited.text
            return waited.json()

    def delete_sandbox(self, sandbox_id: str) -> dict:
        with self.client() as client:
            deleted = client.delete(f"/api/sandboxes/{sandbox_id}")
            assert deleted.status_code == 200, deleted.text
            return deleted.json()


def start_lab(
    state_dir: Path,
    image_dir: Path,
    bind: str = "127.0.0.1",
    extra_env: dict[str, str] | None = None,
) -> Lab:
    """Start a lab listening on `bind` (a kernel-chosen port); wait until it is ready."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir.parent / f"{state_dir.name}.log"
    access_log = state_dir.parent / f"{state_dir.name}.access.log"
    # One per state dir, the same across restarts of a lab, and never shared by two
    # labs: a test run at once with another must not clean up the other's containers.
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    runc_root = Path("/run/gstacks-test") / f"{state_dir.name}-{digest}"
    env = {**os.environ, **(extra_env or {}), "GSTACKS_RUNC_ROOT": str(runc_root)}
    # A restarted lab appends to the same log: only read what this process writes.
    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "gstacks-agent"),
                "standalone",
                "--state-dir",
                str(state_dir),
                "--bind",
                bind,
                "--port",
                "0",
                "--access-log",
                str(access_log),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = READY_RE.search(log_path.read_text()[offset:])
        if match:
            key = (state_dir / "admin-api-key").read_text().strip()
            return Lab(
                process,
                match["address"],
                state_dir,
                log_path,
                access_log,
                image_dir,
                runc_root,
                key,
            )
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"lab did not start:\n{log_path.read_text()}")


def stop_lab(lab: Lab) -> int | None:
    """Delete remaining sandboxes, SIGTERM the lab, then remove anything left over."""
    try:
        if lab.process.poll() is None:
            with lab.client() as client:
                listed = client.get("/api/sandboxes", params={"limit": 500})
                for sandbox in listed.json().get("items", []):
                    if sandbox["status"] != "deleted":
                        client.delete(f"/api/sandboxes/{sandbox['id']}")
    except httpx.HTTPError:
        pass
    code = None
    if lab.process.poll() is None:
        lab.process.send_signal(signal.SIGTERM)
        try:
            code = lab.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.process.kill()
            lab.process.wait()
    else:
        code = lab.process.returncode
    force_cleanup(lab.state_dir, lab.runc_root)
    return code


def force_cleanup(state_dir: Path, runc_root: Path) -> None:
    """Remove containers under `runc_root` and mounts under `state_dir`, whatever state."""
    if runc_root.exists():
        listed = subprocess.run(
            ["runc", "--root", str(runc_root), "list", "--format", "json"],
            capture_output=True,
            text=True,
        )
        for container in json.loads(listed.stdout or "null") or []:
            subprocess.run(
                [
                    "runc",
                    "--root",
                    str(runc_root),
                    "delete",
                    "--force",
                    container["id"],
                ],
                capture_output=True,
            )
        shutil.rmtree(runc_root, ignore_errors=True)
    for mount_point in sorted(mounts_under(state_dir), reverse=True):
        subprocess.run(["umount", "-l", mount_point], capture_output=True)


def process_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie waiting for its parent to reap it has ended."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def mounts_under(path: Path) -> list[str]:
    prefix = str(path) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    return [p for p in points if p.startswith(prefix)]


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("images") / "busybox-oci"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_busybox_image.py"), str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory, busybox_layout: Path
) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    state_dir = tmp_path_factory.mktemp("lab") / "state"
    running = start_lab(state_dir, busybox_layout)
    try:
        running.push(busybox_layout, "lab/busybox")
        yield running
    finally:
        stop_lab(running)


@pytest.fixture
def busybox_blueprint(lab: Lab) -> Iterator[dict]:
    """An active blueprint of the busybox image, removed after the test."""
    name = f"busybox-{os.urandom(3).hex()}"
    with lab.client() as client:
        created = client.post(
            "/api/blueprints", json={"name": name, "image": "lab/busybox:latest"}
        )
        assert created.status_code == 201, created.text
        blueprint = created.json()
        activated = client.post(f"/api/blueprints/{blueprint['id']}/activate")
        assert activated.status_code == 200, activated.text
        yield activated.json()
        for sandbox in client.get("/api/sandboxes").json()["items"]:
            if (
                sandbox["source_blueprint_id"] == blueprint["id"]
                and sandbox["status"] != "deleted"
            ):
                client.delete(f"/api/sandboxes/{sandbox['id']}")
        client.delete(f"/api/blueprints/{blueprint['id']}")
