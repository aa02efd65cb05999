"""The control plane's registry authorization with real clients: the Bearer token
flow (skopeo, oras, the agent's registry client), scoped credentials, refusals."""

import base64
import json
from dataclasses import dataclass

import httpx
import oras.provider
import pytest
import trio
from starlette.applications import Starlette
from starlette.routing import Route

from control_plane_lite.auth import Authenticator
from control_plane_lite.errors import ApiError
from control_plane_lite.http_edge import error_response
from control_plane_lite.registry import build_registry_app
from control_plane_lite.registry_access import ControlPlaneRegistryAuthorizer
from control_plane_lite.registry_credentials import RegistryCredentials
from control_plane_lite.routes.registry import token_route
from control_plane_lite.store import Store
from gstacks_agent.images.content_store import ContentStore
from gstacks_agent.images.errors import RegistryUnauthorized
from gstacks_agent.images.registry_client import RegistryClient


@dataclass
class Secrets:
    credentials: RegistryCredentials
    api_key: str

    def credential(self, repository, action="pull", **kwargs):
        _, secret = self.credentials.issue("tnt_default", repository, action, **kwargs)
        return secret


@pytest.fixture
def secrets(tmp_path):
    store = Store(tmp_path / "cp.db")
    authenticator = Authenticator(store)
    api_key = authenticator.create_api_key("ops", "usr_ops", "ops")
    return Secrets(RegistryCredentials(store, authenticator, tmp_path / "key"), api_key)


@pytest.fixture
def registry(storage, secrets, serve_registry):
    """`serving(tokens_only=False)`: the registry and its realm, as the CP serves them."""

    def serving(tokens_only=False):
        authorizer = ControlPlaneRegistryAuthorizer(
            secrets.credentials, tokens_only=tokens_only
        )
        registry_app = build_registry_app(storage, authorizer)

        async def api_error(request, exc):
            return error_response(exc)

        app = Starlette(
            routes=[
                token_route(secrets.credentials),
                Route("/v2/{path:path}", registry_app),
            ],
            exception_handlers={ApiError: api_error},
        )
        return serve_registry(app)

    return serving


def basic(secret):
    return "Basic " + base64.b64encode(f"gstacks:{secret}".encode()).decode()


def codes(response):
    return [error["code"] for error in response.json()["errors"]]


async def push_tiny(skopeo, host, layout, secret, repository="lab/tiny"):
    await skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"gstacks:{secret}",
        f"oci:{layout}:latest",
        f"docker://{host}/{repository}:latest",
    )


async def test_anonymous_request_gets_a_bearer_challenge_naming_realm_and_scope(
    registry,
):
    async with registry() as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            response = await client.post("/v2/lab/app/blobs/uploads/")
    host = base_url.removeprefix("http://")
    assert response.status_code == 401
    assert codes(response) == ["UNAUTHORIZED"]
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer realm="http://{host}/api/registry/token",'
        'service="gstacks-registry",scope="repository:lab/app:pull,push"'
    )


async def test_realm_token_carries_only_the_granted_subset(registry, secrets):
    pull = secrets.credential("lab/app", "pull")
    async with registry() as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            issued = await client.get(
                "/api/registry/token",
                params={
                    "service": "gstacks-registry",
                    "scope": "repository:lab/app:pull,push",
                },
                headers={"Authorization": basic(pull)},
            )
            token = issued.json()["token"]
            bearer = {"Authorization": f"Bearer {token}"}
            check = await client.get("/v2/", headers=bearer)
            push = await client.post("/v2/lab/app/blobs/uploads/", headers=bearer)
            other = await client.get("/v2/lab/other/tags/list", headers=bearer)
            anonymous_realm = await client.get("/api/registry/token")

    assert issued.status_code == 200
    assert set(issued.json()) == {"token", "access_token", "expires_in", "issued_at"}
    assert check.status_code == 200
    assert (push.status_code, codes(push)) == (403, ["DENIED"])
    assert 'error="insufficient_scope"' in push.headers["WWW-Authenticate"]
    assert (other.status_code, codes(other)) == (403, ["DENIED"])
    assert anonymous_realm.status_code == 401


async def test_expired_and_unknown_secrets_get_401(registry, secrets):
    expired = secrets.credential("lab/app", "pull", ttl_s=1)
    secrets.credentials._store.delete_where("registry_credentials", "1 = 1", ())
    async with registry() as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            gone = await client.get(
                "/v2/lab/app/tags/list", headers={"Authorization": basic(expired)}
            )
            bogus = await client.get(
                "/v2/", headers={"Authorization": "Bearer grt_x.y"}
            )
    assert (gone.status_code, codes(gone)) == (401, ["UNAUTHORIZED"])
    assert 'error="invalid_token"' in gone.headers["WWW-Authenticate"]
    assert bogus.status_code == 401


async def test_skopeo_token_flow_with_a_pull_only_credential(
    registry, secrets, tiny_layout, skopeo, tmp_path
):
    layout, digest = tiny_layout
    async with registry() as base_url:
        host = base_url.removeprefix("http://")
        await push_tiny(skopeo, host, layout, secrets.api_key)
        pull = secrets.credential("lab/tiny", "pull")
        image = f"docker://{host}/lab/tiny:latest"

        inspected = await skopeo(
            "inspect", "--tls-verify=false", "--creds", f"gstacks:{pull}", image
        )
        pulled = tmp_path / "pulled"
        await skopeo(
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            f"gstacks:{pull}",
            image,
            f"oci:{pulled}:latest",
        )
        pushed = await skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"gstacks:{pull}",
            f"oci:{layout}:latest",
            f"docker://{host}/lab/tiny:v2",
            check=False,
        )
        elsewhere = await skopeo(
            "inspect",
            "--tls-verify=false",
            "--creds",
            f"gstacks:{pull}",
            f"docker://{host}/lab/other:latest",
            check=False,
        )
        anonymous = await skopeo("inspect", "--tls-verify=false", image, check=False)

    assert json.loads(inspected.stdout)["Digest"] == digest
    assert (
        json.loads((pulled / "index.json").read_text())["manifests"][0]["digest"]
        == digest
    )
    assert pushed.returncode != 0
    assert b"denied" in pushed.stderr.lower()
    assert elsewhere.returncode != 0
    assert anonymous.returncode != 0
    assert b"unauthorized" in anonymous.stderr.lower()


async def test_skopeo_lists_tags_and_deletes_with_a_push_credential(
    registry, secrets, tiny_layout, skopeo
):
    layout, _ = tiny_layout
    async with registry() as base_url:
        host = base_url.removeprefix("http://")
        push = secrets.credential("lab/tiny", "push")
        await push_tiny(skopeo, host, layout, push)
        image = f"docker://{host}/lab/tiny:latest"
        listed = await skopeo(
            "list-tags",
            "--tls-verify=false",
            "--creds",
            f"gstacks:{push}",
            f"docker://{host}/lab/tiny",
        )
        await skopeo(
            "delete", "--tls-verify=false", "--creds", f"gstacks:{push}", image
        )
        gone = await skopeo(
            "inspect",
            "--tls-verify=false",
            "--creds",
            f"gstacks:{push}",
            image,
            check=False,
        )

    assert json.loads(listed.stdout)["Tags"] == ["latest"]
    assert gone.returncode != 0


async def test_oras_pushes_and_pulls_through_the_token_flow(
    registry, secrets, tmp_path
):
    artifact = tmp_path / "hello.txt"
    artifact.write_text("hello from oras\n")
    out = tmp_path / "out"

    def push_and_pull(host, secret):
        client = oras.provider.Registry(hostname=host, insecure=True)
        client.auth.set_basic_auth("gstacks", secret)
        client.push(
            target=f"{host}/lab/notes:v1",
            files=[str(artifact)],
            disable_path_validation=True,
        )
        tags = client.get_tags(f"{host}/lab/notes")
        reader = oras.provider.Registry(hostname=host, insecure=True)
        reader.auth.set_basic_auth("gstacks", secrets.credential("lab/notes", "pull"))
        files = reader.pull(target=f"{host}/lab/notes:v1", outdir=str(out))
        return tags, files

    async with registry() as base_url:
        host = base_url.removeprefix("http://")
        tags, files = await trio.to_thread.run_sync(
            push_and_pull, host, secrets.api_key
        )

    assert tags == ["v1"]
    assert [p.rsplit("/", 1)[1] for p in files] == ["hello.txt"]
    assert (out / "hello.txt").read_text() == "hello from oras\n"


async def test_agent_client_pulls_through_the_token_flow_when_tokens_are_required(
    registry, secrets, tiny_layout, skopeo, tmp_path
):
    layout, digest = tiny_layout
    pull = secrets.credential("lab/tiny", "pull")

    async def credentials(repository):
        return pull

    async with registry(tokens_only=True) as base_url:
        await push_tiny(
            skopeo, base_url.removeprefix("http://"), layout, secrets.api_key
        )
        async with RegistryClient(base_url, credentials) as client:
            media_type, body, fetched = await client.get_manifest("lab/tiny", digest)
            layer = json.loads(body)["layers"][0]["digest"]
            path = await client.fetch_blob(
                "lab/tiny", layer, ContentStore(tmp_path / "cs")
            )
        async with RegistryClient(base_url, credentials) as client:
            with pytest.raises(RegistryUnauthorized):
                await client.get_manifest("lab/other", digest)

    assert str(fetched) == digest
    assert path.exists()
