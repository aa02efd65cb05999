"""Fixtures that serve the registry over real HTTP and drive it with real clients.

The registry runs in hypercorn's trio worker inside the test's own trio run, bound
to a free port on 127.0.0.1, so skopeo (run as a subprocess through
`trio.run_process`) and httpx talk to it while the loop keeps serving.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import hypercorn.trio
import pytest
import trio
from hypercorn.config import Config

from control_plane_lite.registry import FilesystemStorage
from control_plane_lite.registry.s3_client import S3Credentials
from control_plane_lite.registry.storage_config import S3Settings, open_storage

from .s3_server import running_s3_gateway

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

SKOPEO_TIMEOUT_S = 60


@pytest.fixture
def storage(tmp_path):
    return FilesystemStorage(tmp_path / "registry")


@pytest.fixture
def serve_registry():
    """Returns `serving(app)`, an async context manager yielding the base URL."""

    @asynccontextmanager
    async def serving(app):
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.graceful_timeout = 1
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            serve = partial(hypercorn.trio.serve, app, config)
            binds = await nursery.start(partial(serve, shutdown_trigger=shutdown.wait))
            try:
                yield binds[0]
            finally:
                shutdown.set()

    return serving


def _write_blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layer_tar(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


@pytest.fixture
def tiny_layout(tmp_path):
    """A one-layer OCI image layout tagged `latest`; yields (dir, manifest digest).

    The layer is gzip-compressed already, so skopeo pushes it unchanged and the
    manifest digest survives the round trip.
    """
    layout = tmp_path / "tiny-oci"
    (layout / "blobs" / "sha256").mkdir(parents=True)

    tar = _layer_tar({"hello.txt": b"hello from the embedded registry\n"})
    layer = _write_blob(layout, gzip.compress(tar, mtime=0))
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    config = _write_blob(
        layout,
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
        ).encode(),
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **config},
        "layers": [{"mediaType": OCI_LAYER_GZIP, **layer}],
    }
    manifest_blob = _write_blob(layout, json.dumps(manifest, indent=2).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                **manifest_blob,
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return layout, manifest_blob["digest"]


@pytest.fixture
def skopeo(tmp_path):
    """Returns `run(*args)`: skopeo with a private policy and no stored credentials."""
    binary = shutil.which("skopeo")
    if binary is None:
        pytest.skip("skopeo is not installed (Debian package 'skopeo')")
    home = tmp_path / "skopeo-home"
    home.mkdir()
    policy = home / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    auth = home / "auth.json"
    auth.write_text('{"auths": {}}')
    env = {
        "HOME": str(home),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "REGISTRY_AUTH_FILE": str(auth),
        "XDG_RUNTIME_DIR": str(home),
    }

    async def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [binary, "--policy", str(policy), *args]
        with trio.fail_after(SKOPEO_TIMEOUT_S):
            result = await trio.run_process(
                command,
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {result.returncode}:\n"
                f"{result.stderr.decode(errors='replace')}"
            )
        return result

    return run


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One juicefs S3 gateway for the session; each test takes its own bucket."""
    with running_s3_gateway(tmp_path_factory.mktemp("s3-gateway")) as server:
        yield server


@pytest.fixture
def s3_settings(s3_server, request):
    """S3Settings for a bucket of this test's own (created by `s3_storage`)."""
    bucket = "t-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]
    return S3Settings(
        endpoint=s3_server.endpoint,
        bucket=bucket,
        credentials=S3Credentials(s3_server.access_key, s3_server.secret_key),
        prefix="registry",
    )


@pytest.fixture
async def s3_storage(s3_settings):
    """An S3Storage on a fresh bucket, closed after the test."""
    storage = open_storage(Path("/nonexistent"), s3_settings)
    try:
        await storage.client.create_bucket()
        yield storage
    finally:
        await storage.aclose()
