"""The registry of a real standalone lab: S3 storage shared by two control planes,
credentials through the API, retention of artifacts, garbage collection via the API
and the CLI."""

from __future__ import annotations

import json
import subprocess

import pytest
import trio

from control_plane_lite.registry.storage_config import open_storage
from tests.integration.lab.conftest import busybox_layout, start_lab, stop_lab

__all__ = ["busybox_layout"]  # a fixture, shared with the lab tests

pytestmark = pytest.mark.root


def inspect(lab, image, secret, check=True):
    return subprocess.run(
        [
            "skopeo",
            "inspect",
            "--tls-verify=false",
            "--creds",
            f"gstacks:{secret}",
            f"docker://{lab.address}/{image}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def push(lab, layout, image, secret, check=True):
    return subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"gstacks:{secret}",
            f"oci:{layout}:latest",
            f"docker://{lab.address}/{image}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def create_bucket(settings, tmp_path):
    async def create():
        storage = open_storage(tmp_path, settings)
        try:
            await storage.client.create_bucket()
        finally:
            await storage.aclose()

    trio.run(create)


def test_second_control_plane_on_the_same_bucket_serves_what_the_first_pushed(
    s3_settings, busybox_layout, tmp_path, monkeypatch
):
    create_bucket(s3_settings, tmp_path)
    monkeypatch.setenv("GSTACKS_REGISTRY_S3_ENDPOINT", s3_settings.endpoint)
    monkeypatch.setenv("GSTACKS_REGISTRY_S3_BUCKET", s3_settings.bucket)
    monkeypatch.setenv("GSTACKS_REGISTRY_S3_PREFIX", "lab")
    secret_file = tmp_path / "s3-credentials"
    secret_file.write_text(
        f"access_key_id={s3_settings.credentials.access_key_id}\n"
        f"secret_access_key={s3_settings.credentials.secret_access_key}\n"
    )
    monkeypatch.setenv("GSTACKS_REGISTRY_S3_CREDENTIALS_FILE", str(secret_file))

    first = start_lab(tmp_path / "registry-s3-one", busybox_layout)
    try:
        first.push(busybox_layout, "lab/busybox")
        with first.client() as client:
            info = client.get("/api/registry").json()
            created = client.post(
                "/api/blueprints", json={"name": "bb", "image": "lab/busybox:latest"}
            )
        assert created.status_code == 201, created.text
        pushed = json.loads(inspect(first, "lab/busybox:latest", first.key).stdout)
    finally:
        stop_lab(first)
    assert (info["storage_driver"], info["s3_configured"]) == ("s3", True)
    assert not (first.state_dir / "registry").exists()

    second = start_lab(tmp_path / "registry-s3-two", busybox_layout)
    try:
        served = json.loads(inspect(second, "lab/busybox:latest", second.key).stdout)
        with second.client() as client:
            artifacts = client.get("/api/registry/artifacts").json()["items"]
            repositories = client.get("/api/registry/repositories").json()["items"]
    finally:
        stop_lab(second)
    assert served["Digest"] == pushed["Digest"]
    assert [a["repository"] for a in artifacts] == ["blueprints/bb"]
    assert artifacts[0]["digest"] == created.json()["artifact_digest"]
    assert {r["name"] for r in repositories} == {"lab/busybox", "blueprints/bb"}


@pytest.fixture
def lab(tmp_path, busybox_layout):
    # The state dir names the lab's runc root: keep it apart from other labs.
    running = start_lab(tmp_path / f"registry-{tmp_path.name}", busybox_layout)
    try:
        running.push(busybox_layout, "lab/busybox")
        yield running
    finally:
        stop_lab(running)


def test_credentials_from_the_api_are_scoped_for_skopeo(lab, tiny_layout):
    layout, _ = tiny_layout
    with lab.client() as client:
        issued = client.post(
            "/api/registry/credentials",
            json={"repository": "lab/busybox", "action": "pull", "ttl_s": 60},
        )
    assert issued.status_code == 201, issued.text
    secret = issued.json()["password"]

    assert inspect(lab, "lab/busybox:latest", secret).returncode == 0
    refused_push = push(lab, layout, "lab/busybox:other", secret, check=False)
    refused_other = inspect(lab, "lab/tiny:latest", secret, check=False)
    assert refused_push.returncode != 0
    assert "denied" in refused_push.stderr.lower()
    assert refused_other.returncode != 0


def test_deleted_blueprint_keeps_its_artifact_and_gc_frees_only_garbage(
    lab, tiny_layout
):
    layout, tiny_digest = tiny_layout
    with lab.client() as client:
        created = client.post(
            "/api/blueprints", json={"name": "kept", "image": "lab/busybox:latest"}
        ).json()
        deleted = client.delete(f"/api/blueprints/{created['id']}")
        artifacts = client.get("/api/registry/artifacts").json()["items"]
    assert deleted.status_code == 204
    assert [(a["repository"], a["blueprint_id"]) for a in artifacts] == [
        ("blueprints/kept", None)
    ]

    # An image pushed and deleted again leaves blobs nothing references.
    push(lab, layout, "lab/tiny:latest", lab.key)
    subprocess.run(
        [
            "skopeo",
            "delete",
            "--tls-verify=false",
            "--creds",
            f"gstacks:{lab.key}",
            f"docker://{lab.address}/lab/tiny@{tiny_digest}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with lab.client() as client:
        dry = client.post("/api/registry/gc", json={"min_age_s": 0, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["blobs_deleted"] == 3  # the manifest, its config, its layer
    freed = lab.gstacks("registry", "gc", "--min-age", "0")
    again = lab.gstacks("--json", "registry", "gc", "--min-age", "0")
    listed = lab.gstacks("registry", "artifacts")

    assert freed.returncode == 0, freed.stderr
    assert freed.stdout.startswith("freed 3 blobs")
    assert f"({dry.json()['bytes_freed']} bytes)" in freed.stdout
    assert json.loads(again.stdout)["blobs_deleted"] == 0
    assert "blueprints/kept" in listed.stdout
    # The artifact and its source survive: everything they reference is kept.
    digest = artifacts[0]["digest"]
    assert inspect(lab, f"blueprints/kept@{digest}", lab.key).returncode == 0
    assert inspect(lab, "lab/busybox:latest", lab.key).returncode == 0
