"""The standalone lab end to end: a pushed image, a blueprint, a sandbox, a terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from gstacks_agent.images.layer_builder import BuiltLayer
from gstacks_agent.images.oci_layout import ImageConfig, OciLayout

from .conftest import Lab, mounts_under, process_alive

pytestmark = pytest.mark.root


def exec_in(lab: Lab, sandbox_id: str, script: str) -> subprocess.CompletedProcess:
    return lab.gstacks("sandbox", "exec", sandbox_id, "--", "sh", "-c", script)


def test_skopeo_push_then_inspect_and_copy_back_give_the_same_digest(
    lab: Lab, tmp_path: Path
):
    reference = f"docker://{lab.address}/lab/busybox:latest"
    creds = f"admin:{lab.key}"
    inspected = json.loads(
        lab.skopeo("inspect", "--tls-verify=false", "--creds", creds, reference).stdout
    )
    layout_index = json.loads((lab.image_dir / "index.json").read_text())
    pushed_digest = layout_index["manifests"][0]["digest"]
    assert inspected["Digest"] == pushed_digest

    lab.skopeo(
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--src-creds",
        creds,
        reference,
        f"oci:{tmp_path / 'out'}:latest",
    )
    copied_index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert copied_index["manifests"][0]["digest"] == pushed_digest

    tags = json.loads(
        lab.skopeo(
            "list-tags",
            "--tls-verify=false",
            "--creds",
            creds,
            f"docker://{lab.address}/lab/busybox",
        ).stdout
    )
    assert tags["Tags"] == ["latest"]


def test_sandbox_from_blueprint_runs_isolated_and_answers_through_a_terminal(
    lab: Lab, busybox_blueprint: dict
):
    sandbox = lab.create_sandbox(blueprint=busybox_blueprint["name"])
    assert sandbox["source_blueprint_id"] == busybox_blueprint["id"]
    assert sandbox["artifact_ref"] == busybox_blueprint["artifact_ref"]
    assert sandbox["image_digest"] == busybox_blueprint["artifact_digest"]

    echoed = exec_in(lab, sandbox["id"], "echo hello-from-the-sandbox")
    assert echoed.returncode == 0, echoed.stderr
    assert echoed.stdout.strip() == "hello-from-the-sandbox"

    hostname = exec_in(lab, sandbox["id"], "hostname")
    assert hostname.stdout.strip() == sandbox["name"]

    # Only the sandbox's own processes: its init (the image's command), its sleep,
    # and the shell running ps. No host process (python, the agent) shows.
    ps = exec_in(lab, sandbox["id"], "ps")
    rows = [line.split(None, 2) for line in ps.stdout.strip().splitlines()[1:]]
    assert all(len(row) == 3 for row in rows), ps.stdout
    programs = {row[2].split()[0].strip("{}") for row in rows}
    assert programs <= {"/bin/sh", "sh", "sleep", "ps"}, ps.stdout
    assert rows[0][0] == "1" and rows[0][2].startswith("/bin/sh"), ps.stdout
    assert "python" not in ps.stdout and "gstacks" not in ps.stdout

    # `/` is the image's filesystem, not the host's.
    listing = exec_in(lab, sandbox["id"], "ls /")
    assert set(listing.stdout.split()) == {
        "bin",
        "dev",
        "etc",
        "proc",
        "root",
        "sys",
        "tmp",
    }

    failing = exec_in(lab, sandbox["id"], "exit 7")
    assert failing.returncode == 7

    lab.delete_sandbox(sandbox["id"])


def test_second_sandbox_from_the_same_image_fetches_no_blob(
    lab: Lab, busybox_blueprint: dict
):
    first = lab.create_sandbox(blueprint=busybox_blueprint["id"])
    fetched_before = lab.blob_fetches()
    second = lab.create_sandbox(blueprint=busybox_blueprint["id"])
    assert second["image_digest"] == first["image_digest"]
    assert lab.blob_fetches() == fetched_before
    lab.delete_sandbox(first["id"])
    lab.delete_sandbox(second["id"])


def test_deleting_a_sandbox_leaves_no_mount_process_or_bundle(
    lab: Lab, busybox_blueprint: dict
):
    sandbox = lab.create_sandbox(blueprint=busybox_blueprint["id"])
    bundle = lab.state_dir / "sandboxes" / sandbox["id"]
    record = json.loads((bundle / "sandbox.json").read_text())
    pid = record["pid"]
    assert process_alive(pid)
    assert any(sandbox["id"] in point for point in mounts_under(lab.state_dir))

    deleted = lab.delete_sandbox(sandbox["id"])
    assert deleted["status"] == "deleted"
    assert not bundle.exists()
    assert not any(sandbox["id"] in point for point in mounts_under(lab.state_dir))
    assert not process_alive(pid)
    state = subprocess.run(
        ["runc", "--root", str(lab.runc_root), "state", sandbox["id"]],
        capture_output=True,
    )
    assert state.returncode != 0

    with lab.client() as client:
        assert (
            client.get(f"/api/sandboxes/{sandbox['id']}").json()["status"] == "deleted"
        )
        listed = [s["id"] for s in client.get("/api/sandboxes").json()["items"]]
        assert sandbox["id"] not in listed


# ---- bad input -------------------------------------------------------------------


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body


def sandbox_count(lab: Lab) -> int:
    with lab.client() as client:
        return len(client.get("/api/sandboxes", params={"limit": 500}).json()["items"])


def test_request_without_a_valid_api_key_is_refused(lab: Lab):
    with lab.client(key="") as client:
        assert_error(client.get("/api/sandboxes"), 401, "unauthenticated")
    with lab.client(key="gsk_not-a-real-key") as client:
        assert_error(
            client.post("/api/sandboxes", json={"image": "lab/busybox"}),
            401,
            "unauthenticated",
        )
    # The registry wants a credential too.
    with lab.client(key="") as client:
        refused = client.get("/v2/lab/busybox/tags/list")
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert "WWW-Authenticate" in refused.headers


def test_both_image_and_blueprint_is_refused_and_creates_nothing(
    lab: Lab, busybox_blueprint: dict
):
    before = sandbox_count(lab)
    with lab.client() as client:
        body = {"image": "lab/busybox:latest", "blueprint": busybox_blueprint["id"]}
        assert_error(client.post("/api/sandboxes", json=body), 400, "invalid_argument")
        assert_error(client.post("/api/sandboxes", json={}), 400, "invalid_argument")
    assert sandbox_count(lab) == before


def test_unknown_or_inactive_blueprint_is_refused(lab: Lab, busybox_blueprint: dict):
    before = sandbox_count(lab)
    with lab.client() as client:
        assert_error(
            client.post("/api/sandboxes", json={"blueprint": "no-such-blueprint"}),
            404,
            "not_found",
        )
        client.post(
            f"/api/blueprints/{busybox_blueprint['id']}/deactivate"
        ).raise_for_status()
        refused = assert_error(
            client.post(
                "/api/sandboxes", json={"blueprint": busybox_blueprint["name"]}
            ),
            409,
            "conflict",
        )
        assert "inactive" in refused["error"]["message"]
    assert sandbox_count(lab) == before


def test_blueprint_delete_is_blocked_while_a_live_sandbox_uses_it(
    lab: Lab, busybox_blueprint: dict
):
    sandbox = lab.create_sandbox(blueprint=busybox_blueprint["id"])
    with lab.client() as client:
        assert_error(
            client.delete(f"/api/blueprints/{busybox_blueprint['id']}"), 409, "conflict"
        )
        lab.delete_sandbox(sandbox["id"])
        assert (
            client.delete(f"/api/blueprints/{busybox_blueprint['id']}").status_code
            == 204
        )
        assert_error(
            client.get(f"/api/blueprints/{busybox_blueprint['id']}"), 404, "not_found"
        )


def test_blob_whose_bytes_do_not_match_its_digest_is_refused_and_not_stored(lab: Lab):
    claimed = "sha256:" + "ab" * 32
    with lab.client() as client:
        started = client.post("/v2/lab/corrupt/blobs/uploads/")
        assert started.status_code == 202
        location = started.headers["Location"]
        finished = client.put(
            location,
            params={"digest": claimed},
            content=b"not the bytes of that digest",
        )
        assert finished.status_code == 400
        assert finished.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert client.head(f"/v2/lab/corrupt/blobs/{claimed}").status_code == 404


def build_image_with_raw_layer(
    layout_dir: Path, layer_bytes: bytes, busybox_layout: Path
) -> None:
    """An OCI layout whose single layer is `layer_bytes`, an uncompressed tar."""
    import hashlib

    from gstacks_agent.images.digests import Digest

    layout = OciLayout(layout_dir)
    digest = Digest.of_bytes(layer_bytes)
    layout.add_blob(layer_bytes, "application/vnd.oci.image.layer.v1.tar")
    layer = BuiltLayer(
        digest=digest,
        diff_id=Digest("sha256:" + hashlib.sha256(layer_bytes).hexdigest()),
        size=len(layer_bytes),
        media_type="application/vnd.oci.image.layer.v1.tar",
    )
    layout.add_image(ImageConfig(cmd=["/bin/sh"]), [layer], tag="latest")


def evil_tar(name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ok = tarfile.TarInfo("etc/ok")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"ok\n"))
        info = tarfile.TarInfo(name)
        payload = b"escaped\n"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_layer_escaping_its_directory_fails_the_sandbox_and_writes_nothing_outside(
    lab: Lab, tmp_path: Path, busybox_layout: Path, kind: str
):
    marker = f"gstacks-escape-{os.urandom(4).hex()}"
    target = Path("/tmp") / marker
    name = (
        f"../../../../../../../../tmp/{marker}"
        if kind == "dotdot"
        else f"/tmp/{marker}"
    )
    build_image_with_raw_layer(tmp_path / "evil", evil_tar(name), busybox_layout)
    repository = f"lab/evil-{kind}"
    lab.push(tmp_path / "evil", repository)

    with lab.client() as client:
        created = client.post("/api/sandboxes", json={"image": f"{repository}:latest"})
        assert created.status_code == 201, created.text
        sandbox_id = created.json()["id"]
        waited = client.get(
            f"/api/sandboxes/{sandbox_id}/wait",
            params={"status": "running", "timeout_s": 60},
        )
        assert waited.status_code == 409, waited.text
        assert waited.json()["error"]["details"]["status"] == "failed"
        record = client.get(f"/api/sandboxes/{sandbox_id}").json()
        assert record["status"] == "failed"
        assert record["message"]
    assert not target.exists()
    assert not (lab.state_dir / "sandboxes" / sandbox_id).exists()
    layers = lab.state_dir / "images" / "layers"
    assert not [p for p in layers.rglob(marker)] if layers.exists() else True


def test_cli_reports_errors_in_one_line_with_a_nonzero_exit(lab: Lab):
    both = lab.gstacks(
        "sandbox", "create", "--image", "lab/busybox", "--blueprint", "x"
    )
    assert both.returncode != 0
    assert len(both.stderr.strip().splitlines()) == 1

    missing = lab.gstacks("sandbox", "get", "sbx_0000000000000000")
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("gstacks: ")
    assert len(missing.stderr.strip().splitlines()) == 1


def test_a_blueprints_artifact_cannot_be_deleted_from_the_registry_while_it_exists(
    lab: Lab, busybox_blueprint: dict
):
    repository, digest = busybox_blueprint["artifact_ref"].split("/", 1)[1].split("@")
    with lab.client() as client:
        refused = client.delete(f"/v2/{repository}/manifests/{digest}")
        assert refused.status_code == 403, refused.text
        assert refused.json()["errors"][0]["code"] == "DENIED"
        assert "delete the blueprint first" in refused.json()["errors"][0]["message"]
        assert client.head(f"/v2/{repository}/manifests/{digest}").status_code == 200
