"""The registry conformance suite: the OCI distribution spec (v1.1) checked over HTTP,
one module per category of the spec's own conformance tests (pull, push, content
discovery, content management).

Every test runs against each storage driver: the filesystem driver in a temp dir,
and the S3 driver on a bucket of a real S3 server (`juicefs gateway`) on loopback.
The registry is served by hypercorn inside the test's trio run; `client` is an
httpx client on it with no credentials (the registry allows everything), and
`guarded` serves the same storage behind the control plane's authorizer for the
UNAUTHORIZED and DENIED cases.
"""

from __future__ import annotations

import hashlib
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import hypercorn.trio
import pytest
import trio
from hypercorn.config import Config

from control_plane_lite.auth import Authenticator
from control_plane_lite.registry import (
    AllowAllAuthorizer,
    FilesystemStorage,
    build_registry_app,
)
from control_plane_lite.registry.s3_client import S3Credentials
from control_plane_lite.registry.storage_config import S3Settings, open_storage
from control_plane_lite.registry_access import ControlPlaneRegistryAuthorizer
from control_plane_lite.registry_credentials import RegistryCredentials
from control_plane_lite.store import Store
from tests.integration.registry.s3_server import running_s3_gateway


@pytest.fixture(scope="session")
def s3_gateway(tmp_path_factory):
    with running_s3_gateway(tmp_path_factory.mktemp("conformance-s3")) as server:
        yield server


@pytest.fixture(params=["filesystem", "s3"])
async def storage(request, tmp_path):
    if request.param == "filesystem":
        yield FilesystemStorage(tmp_path / "registry")
        return
    server = request.getfixturevalue("s3_gateway")
    bucket = "c-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:24]
    settings = S3Settings(
        endpoint=server.endpoint,
        bucket=bucket,
        credentials=S3Credentials(server.access_key, server.secret_key),
    )
    s3 = open_storage(tmp_path, settings)
    try:
        await s3.client.create_bucket()
        yield s3
    finally:
        await s3.aclose()


@asynccontextmanager
async def serving(app):
    """Serve `app` on a free loopback port; yields an httpx client on it."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 1
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        serve = partial(hypercorn.trio.serve, app, config)
        binds = await nursery.start(partial(serve, shutdown_trigger=shutdown.wait))
        try:
            async with httpx.AsyncClient(base_url=binds[0], timeout=60) as client:
                yield client
        finally:
            shutdown.set()


@pytest.fixture
async def client(storage):
    async with serving(build_registry_app(storage, AllowAllAuthorizer())) as client:
        yield client


@dataclass
class Guarded:
    """A registry behind the control plane's authorizer, and secrets for it."""

    client: httpx.AsyncClient
    credentials: RegistryCredentials
    api_key: str

    def credential(self, repository: str, action: str = "pull", **kwargs) -> str:
        _, secret = self.credentials.issue("tnt_default", repository, action, **kwargs)
        return secret


@pytest.fixture
async def guarded(storage, tmp_path: Path):
    store = Store(tmp_path / "cp.db")
    authenticator = Authenticator(store)
    api_key = authenticator.create_api_key("ops", "usr_ops", "ops")
    credentials = RegistryCredentials(store, authenticator, tmp_path / "token-key")
    app = build_registry_app(storage, ControlPlaneRegistryAuthorizer(credentials))
    async with serving(app) as client:
        yield Guarded(client, credentials, api_key)
    store.close()
