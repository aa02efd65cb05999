"""A real registry (Debian's docker-registry) and a real busybox image for image tests.

skopeo, run as root, keeps a blob-info cache under /var/lib/containers; it runs here
in a private mount namespace with a tmpfs over /var/lib, so it leaves nothing behind.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_busybox_image.py"
REGISTRY_BINARY = Path("/usr/bin/docker-registry")


def skopeo(*args: str) -> str:
    command = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        'mount -t tmpfs tmpfs /var/lib && exec skopeo "$@"',
        "skopeo",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def build_busybox_layout(out_dir: Path, tag: str = "latest") -> str:
    done = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), str(out_dir), "--tag", tag],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.strip()


@dataclass(frozen=True)
class Registry:
    url: str
    host: str

    def push(self, layout: Path, tag: str, repository: str = "test/busybox") -> None:
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout}:{tag}",
            f"docker://{self.host}/{repository}:{tag}",
        )


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def registry(tmp_path):
    """A docker-registry on a free loopback port, storing into tmp_path."""
    if not REGISTRY_BINARY.exists():
        pytest.fail("docker-registry is missing: apt-get install docker-registry")
    port = _free_loopback_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "registry-data")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "test-only"},
    }
    config_path = tmp_path / "registry.yml"
    config_path.write_text(json.dumps(config))  # YAML is a superset of JSON

    with open(tmp_path / "registry.log", "wb") as log:
        process = subprocess.Popen(
            [str(REGISTRY_BINARY), "serve", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log_text = (tmp_path / "registry.log").read_text()
                pytest.fail(f"docker-registry did not come up: {log_text}")
            time.sleep(0.05)
        yield Registry(url, f"127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def busybox_layout(tmp_path):
    """The busybox OCI layout, tagged latest, and its manifest digest."""
    layout = tmp_path / "busybox-oci"
    return layout, build_busybox_layout(layout)


@pytest.fixture(name="skopeo")
def skopeo_fixture():
    """Run skopeo without leaving its cache behind; returns its stdout."""
    return skopeo


@pytest.fixture
def build_busybox():
    """Build the busybox layout into a directory; returns the manifest digest."""
    return build_busybox_layout
