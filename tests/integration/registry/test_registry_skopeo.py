import json
import logging

from control_plane_lite.registry import (
    AllowAllAuthorizer,
    StaticBasicAuthorizer,
    build_registry_app,
)


def host_of(base_url):
    return base_url.removeprefix("http://")


def manifest_digest_of_layout(layout):
    index = json.loads((layout / "index.json").read_text())
    (manifest,) = index["manifests"]
    return manifest["digest"]


async def test_skopeo_push_inspect_and_pull_keep_the_manifest_digest(
    storage, serve_registry, tiny_layout, skopeo, tmp_path
):
    layout, pushed_digest = tiny_layout
    app = build_registry_app(storage, AllowAllAuthorizer())

    async with serve_registry(app) as base_url:
        image = f"docker://{host_of(base_url)}/lab/tiny:latest"
        await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:latest", image)

        inspected = await skopeo("inspect", "--tls-verify=false", image)
        raw = await skopeo("inspect", "--raw", "--tls-verify=false", image)

        pulled = tmp_path / "pulled-oci"
        await skopeo("copy", "--src-tls-verify=false", image, f"oci:{pulled}:latest")

    assert json.loads(inspected.stdout)["Digest"] == pushed_digest
    assert raw.stdout == (layout / "blobs" / "sha256" / pushed_digest[7:]).read_bytes()
    assert manifest_digest_of_layout(pulled) == pushed_digest


async def test_skopeo_lists_tags(storage, serve_registry, tiny_layout, skopeo):
    layout, _ = tiny_layout
    app = build_registry_app(storage, AllowAllAuthorizer())

    async with serve_registry(app) as base_url:
        host = host_of(base_url)
        for tag in ("v2", "v1", "latest"):
            await skopeo(
                "copy",
                "--dest-tls-verify=false",
                f"oci:{layout}:latest",
                f"docker://{host}/lab/tiny:{tag}",
            )
        listed = await skopeo(
            "list-tags", "--tls-verify=false", f"docker://{host}/lab/tiny"
        )

    assert json.loads(listed.stdout) == {
        "Repository": f"{host}/lab/tiny",
        "Tags": ["latest", "v1", "v2"],
    }


async def test_skopeo_copies_between_repositories_by_mounting(
    storage, serve_registry, tiny_layout, skopeo, caplog
):
    caplog.set_level(logging.INFO, logger="gstacks.cp.registry")
    layout, digest = tiny_layout
    app = build_registry_app(storage, AllowAllAuthorizer())

    async with serve_registry(app) as base_url:
        host = host_of(base_url)
        await skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout}:latest",
            f"docker://{host}/lab/tiny:latest",
        )
        await skopeo(
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{host}/lab/tiny:latest",
            f"docker://{host}/team/copy:latest",
        )
        inspected = await skopeo(
            "inspect", "--tls-verify=false", f"docker://{host}/team/copy:latest"
        )

    assert json.loads(inspected.stdout)["Digest"] == digest
    assert await storage.list_repositories() == ["lab/tiny", "team/copy"]
    mounted = [r.getMessage() for r in caplog.records if "mounted" in r.getMessage()]
    # skopeo mounts layers it knows from the source repository (configs it sends).
    assert len(mounted) == 1


async def test_skopeo_deletes_an_image(storage, serve_registry, tiny_layout, skopeo):
    layout, _ = tiny_layout
    app = build_registry_app(storage, AllowAllAuthorizer())

    async with serve_registry(app) as base_url:
        image = f"docker://{host_of(base_url)}/lab/tiny:latest"
        await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:latest", image)
        await skopeo("delete", "--tls-verify=false", image)
        gone = await skopeo("inspect", "--tls-verify=false", image, check=False)

    assert gone.returncode != 0
    assert await storage.list_tags("lab/tiny") == []


async def test_skopeo_with_creds_passes_basic_auth_and_without_fails(
    storage, serve_registry, tiny_layout, skopeo
):
    layout, digest = tiny_layout
    app = build_registry_app(storage, StaticBasicAuthorizer("lab", "s3cret"))

    async with serve_registry(app) as base_url:
        image = f"docker://{host_of(base_url)}/lab/tiny:latest"
        anonymous = await skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout}:latest",
            image,
            check=False,
        )
        wrong = await skopeo(
            "inspect", "--tls-verify=false", "--creds", "lab:wrong", image, check=False
        )
        await skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "lab:s3cret",
            f"oci:{layout}:latest",
            image,
        )
        inspected = await skopeo(
            "inspect", "--tls-verify=false", "--creds", "lab:s3cret", image
        )

    assert anonymous.returncode != 0
    assert b"unauthorized" in anonymous.stderr.lower()
    assert wrong.returncode != 0
    assert json.loads(inspected.stdout)["Digest"] == digest
