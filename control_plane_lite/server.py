"""Assembly of the lite control plane and the task that serves it.

`ControlPlane` wires the store, credentials, registry, agent hub and resource
services together once; `serve_control_plane` runs hypercorn on trio with the ASGI
app until cancelled, and reports the address it bound through `task_status`, which
is how tests and the standalone lab learn a port picked by the kernel.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from control_plane_lite import hypercorn_guard
from control_plane_lite.activity import ActivityLog
from control_plane_lite.agent_hub import AgentHub
from control_plane_lite.api import build_app
from control_plane_lite.api_keys import ApiKeyService
from control_plane_lite.artifacts import ArtifactCatalog
from control_plane_lite.auth import DEFAULT_TENANT, Authenticator
from control_plane_lite.blueprints import BlueprintService
from control_plane_lite.clusters import ClusterService
from control_plane_lite.hosts import HostService
from control_plane_lite.mesh import MeshService
from control_plane_lite.networks import NetworkService
from control_plane_lite.provisioning import ProvisioningService
from control_plane_lite.registry.app import build_registry_app
from control_plane_lite.registry.maintenance import serve_registry_storage
from control_plane_lite.registry.storage_config import S3Settings, open_storage
from control_plane_lite.registry_access import ControlPlaneRegistryAuthorizer
from control_plane_lite.registry_credentials import (
    DEFAULT_TTL_S,
    TOKEN_KEY_FILE,
    RegistryCredentials,
)
from control_plane_lite.sandboxes import SandboxService
from control_plane_lite.store import Store
from control_plane_lite.terminals import TerminalService
from control_plane_lite.volumes import VolumeService
from gstacks_proto import pb

log = logging.getLogger("gstacks.cp.server")

DEFAULT_PORT = 7480
ADMIN_KEY_FILE = "admin-api-key"


@dataclass(frozen=True)
class ControlPlaneConfig:
    state_dir: Path
    bind_host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # One line per HTTP request (hypercorn's access log format), when set.
    access_log: Path | None = None
    # Registry storage: an S3-compatible bucket when set, else the state dir.
    registry_s3: S3Settings | None = None


class ControlPlane:
    """Every part of the control plane, built once per process."""

    def __init__(self, config: ControlPlaneConfig) -> None:
        self.config = config
        self.state_dir = config.state_dir
        self.store = Store(config.state_dir / "control-plane.db")
        self.authenticator = Authenticator(self.store)
        self.admin_key = self.authenticator.ensure_admin_key(
            config.state_dir / ADMIN_KEY_FILE
        )
        self.registry_storage = open_storage(config.state_dir, config.registry_s3)
        self.artifacts = ArtifactCatalog(
            self.registry_storage, f"{config.bind_host}:{config.port}"
        )
        self.registry_credentials = RegistryCredentials(
            self.store, self.authenticator, config.state_dir / TOKEN_KEY_FILE
        )
        self.blueprints = BlueprintService(self.store, self.artifacts)
        self.registry_app = build_registry_app(
            self.registry_storage,
            ControlPlaneRegistryAuthorizer(
                self.registry_credentials,
                deletion_guard=self.blueprints.artifact_deletion_refusal,
            ),
        )
        self.hub = AgentHub(
            self.store,
            self.authenticator,
            listener=self,
            issue_credential=self._issue_agent_credential,
            registry_url=self.artifacts.registry_url,
        )
        self.activity = ActivityLog(self.store)
        self.sandboxes = SandboxService(
            self.store, self.hub, self.artifacts, self.blueprints, self.activity
        )
        self.blueprints.live_sandbox_count = self.sandboxes.live_sandboxes_of_blueprint
        self.volumes = VolumeService(
            self.store, self.hub, self.sandboxes, self.activity
        )
        self.sandboxes.volume_mounts = self.volumes.sandbox_mounts
        self.sandboxes.on_sandbox_ended = self.volumes.sandbox_ended
        self.terminals = TerminalService(
            self.store, self.hub, self.sandboxes, self.activity
        )
        self.clusters = ClusterService(self.store)
        self.default_cluster_id = self.clusters.ensure_default(DEFAULT_TENANT)
        self.hosts = HostService(self.store, self.hub, self.sandboxes)
        self.provisioning = ProvisioningService(self.store, self.clusters, self.hosts)
        self.api_keys = ApiKeyService(self.store)
        self.networks = NetworkService(
            self.store, self.hub, self.sandboxes, MeshService(self.store)
        )
        self.app = build_app(self)

    def close(self) -> None:
        self.store.close()

    def set_public_address(self, host_port: str) -> None:
        """Record where clients reach us (known only after binding port 0)."""
        self.artifacts.registry_host = host_port
        self.hub.registry_url = self.artifacts.registry_url

    # ---- HubListener -----------------------------------------------------------------

    async def agent_connected(self, host_id: str, hello: pb.AgentHello) -> None:
        await self.sandboxes.reconcile(host_id, list(hello.sandboxes))
        self.terminals.agent_connected(host_id, list(hello.terminal_session_ids))
        await self.networks.agent_connected(host_id, hello)

    async def terminal_ended(self, host_id: str, ended: pb.TerminalExit) -> None:
        self.terminals.session_ended(host_id, ended)

    async def sandbox_status_changed(self, host_id: str, info: pb.SandboxInfo) -> None:
        await self.sandboxes.status_reported(host_id, info)

    def volume_filesystem_reported(
        self, host_id: str, status: pb.FilesystemStatus
    ) -> None:
        self.volumes.filesystem_reported(host_id, status)

    # ---- registry ----------------------------------------------------------------------

    def registry_discovery(self) -> dict[str, Any]:
        return {
            "url": f"{self.artifacts.registry_url}/registry",
            "namespace": self.artifacts.namespace,
            "storage_driver": self.registry_storage.driver,
            "s3_configured": self.config.registry_s3 is not None,
            "digest_algorithms": ["sha256"],
            "digest_behavior": (
                "content-addressed: blobs and manifests are verified against their sha256 "
                "digest on upload and served by digest; artifacts are referenced by digest"
            ),
            "default_credential_ttl_s": DEFAULT_TTL_S,
        }

    async def _issue_agent_credential(
        self, host_id: str, request: pb.RegistryCredentialRequest
    ) -> pb.RegistryCredential:
        return await self.registry_credentials.issue_for_host(
            host_id, request, self.artifacts.registry_url
        )


_BIND_RE = re.compile(r"^https?://(?P<address>.+)$")


async def serve_control_plane(
    cp: ControlPlane, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the control plane until cancelled; report `host:port` once listening."""
    hypercorn_guard.install()
    config = HypercornConfig()
    config.bind = [f"{cp.config.bind_host}:{cp.config.port}"]
    config.accesslog = str(cp.config.access_log) if cp.config.access_log else None
    config.errorlog = logging.getLogger("gstacks.cp.http")
    # Blob uploads stream through; this only bounds how long an idle socket lingers.
    config.keep_alive_timeout = 75
    config.websocket_ping_interval = 20
    async with trio.open_nursery() as nursery:
        await nursery.start(cp.sandboxes.run)
        await nursery.start(cp.networks.run)
        nursery.start_soon(serve_registry_storage, cp.registry_storage)
        binds = await nursery.start(serve, cp.app, config)
        match = _BIND_RE.match(binds[0])
        address = match.group("address") if match else binds[0]
        cp.set_public_address(address)
        log.info("control plane listening on %s (state in %s)", address, cp.state_dir)
        task_status.started(address)
