"""The agent daemon: one channel to the control plane, and the host work it asks for.

How it works. `Agent.run` starts the sandbox manager (which first recovers what an
earlier agent process left running) and then keeps one WebSocket open to the control
plane, reconnecting with capped exponential backoff and jitter whenever it drops.
Each connection is a session:

1. open the socket with the host credential in the Authorization header;
2. send AgentHello with what exists on this host, and get AgentWelcome back;
3. send a Heartbeat every `heartbeat_interval_s`, forward sandbox state changes, and
   serve the control plane's requests until the socket closes.

Requests are idempotent on their resource ids, so one that was in flight when the
link dropped can simply be sent again by the control plane after the reconnect.
Nothing of the host's state lives in the session: sandboxes keep running across
reconnects and agent restarts; only terminal streams end with their channel.
"""

from __future__ import annotations

import logging
import math
import random
import socket
import time

import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from gstacks_agent import __version__, log_buffer
from gstacks_agent.capabilities import present_capabilities
from gstacks_agent.config import AgentConfig
from gstacks_agent.errors import InvalidArgument
from gstacks_agent.host_addresses import host_addresses
from gstacks_agent.host_logs import HostLogStreams
from gstacks_agent.host_overview import host_overview
from gstacks_agent.identity import HostIdentity
from gstacks_agent.images.image_cache import ImageCache, PulledImage
from gstacks_agent.images.registry_client import RegistryClient
from gstacks_agent.log_buffer import LogBuffer
from gstacks_agent.networks import NetworkManager, register_network_handlers
from gstacks_agent.rpc_dispatch import RequestContext, RequestDispatcher
from gstacks_agent.sandboxes.manager import SandboxInfo, SandboxManager
from gstacks_agent.sandboxes.runc import Runc
from gstacks_agent.terminals.manager import TerminalManager
from gstacks_agent.volumes import (
    VolumeManager,
    attachment_of,
    filesystem_status_message,
    register_volume_handlers,
)
from gstacks_proto import pb
from gstacks_proto.channel_state import ProtocolError, Role
from gstacks_proto.rpc_peer import ChannelClosed, RpcPeer

log = logging.getLogger("gstacks.agent.daemon")

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
CONNECT_TIMEOUT_S = 10.0
CREDENTIAL_MARGIN_S = 30.0
PULL_PROGRESS_INTERVAL_S = 0.5

_STATES = {
    "creating": pb.SANDBOX_STATE_CREATING,
    "running": pb.SANDBOX_STATE_RUNNING,
    "stopped": pb.SANDBOX_STATE_STOPPED,
    "failed": pb.SANDBOX_STATE_FAILED,
}


def sandbox_info_message(info: SandboxInfo) -> pb.SandboxInfo:
    return pb.SandboxInfo(
        sandbox_id=info.sandbox_id,
        state=_STATES.get(info.state, pb.SANDBOX_STATE_UNSPECIFIED),
        image_digest=str(info.image_digest),
        pid=info.pid or 0,
        exit_code=info.exit_code if info.exit_code is not None else 0,
        has_exit_code=info.exit_code is not None,
        message=info.message,
        hostname=info.hostname,
    )


class WebSocketFrameTransport:
    """Binary frames over a trio-websocket connection."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws

    async def send_frame(self, data: bytes) -> None:
        try:
            await self._ws.send_message(data)
        except ConnectionClosed as exc:
            raise ChannelClosed(str(exc.reason)) from exc

    async def receive_frame(self) -> bytes:
        try:
            message = await self._ws.get_message()
        except ConnectionClosed as exc:
            raise ChannelClosed(str(exc.reason)) from exc
        if isinstance(message, str):
            raise ProtocolError("text frame on a binary channel")
        return message


def channel_url(control_plane_url: str) -> str:
    base = control_plane_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/api/agents/connect"
    return "ws://" + base.removeprefix("http://") + "/api/agents/connect"


class Agent:
    """Everything one host runs for its control plane."""

    def __init__(self, config: AgentConfig, identity: HostIdentity) -> None:
        self.config = config
        self.identity = identity
        self.images = ImageCache(config.state_dir)
        self.runc = Runc.locate(root=config.runc_root)
        # One-way reports (state changes, pull progress) queue here and go out in
        # order once a channel is up; the hello covers whatever changed while down.
        self._outbox_send, self._outbox = trio.open_memory_channel[pb.Envelope](
            math.inf
        )
        self.sandboxes = SandboxManager(
            config.state_dir, self.runc, on_state_change=self._sandbox_changed
        )
        self.volumes = VolumeManager(
            config.state_dir,
            config.volumes,
            self.sandboxes,
            on_filesystem_change=lambda _: self._outbox_send.send_nowait(
                pb.Envelope(heartbeat=self._heartbeat())
            ),
        )
        self._registry_clients: dict[str, RegistryClient] = {}
        self._credentials: dict[str, tuple[str, float]] = {}
        self._peer: RpcPeer | None = None
        self.terminals = TerminalManager(
            self.runc,
            self.sandboxes,
            config.terminals,
            on_uncollected_exit=lambda ended: self._outbox_send.send_nowait(
                pb.Envelope(terminal_exit=ended)
            ),
        )
        self.networks = NetworkManager(
            config.state_dir, identity.host_id, config.mesh, self.sandboxes
        )
        self.host_logs = HostLogStreams(log_buffer.installed() or LogBuffer())
        self.dispatcher = RequestDispatcher()
        self._register_handlers()
        self.connected = trio.Event()

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled. Ready once recovered sandboxes are under watch."""
        swept = self.images.remove_temp_files()
        if swept:
            log.info(
                "host %s: removed %d leftovers of interrupted pulls",
                self.identity.host_id,
                swept,
            )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.sandboxes.serve)
                await nursery.start(self.volumes.serve)
                await nursery.start(self.terminals.serve)
                await nursery.start(self.networks.serve)
                task_status.started()
                await self._connect_forever()
        finally:
            with trio.CancelScope(shield=True):
                for client in self._registry_clients.values():
                    await client.aclose()

    async def _connect_forever(self) -> None:
        url = channel_url(
            self.config.control_plane_url or self.identity.control_plane_url
        )
        headers = [("Authorization", f"Bearer {self.identity.credential}")]
        backoff = BACKOFF_INITIAL_S
        while True:
            started = time.monotonic()
            try:
                async with open_websocket_url(
                    url,
                    extra_headers=headers,
                    message_queue_size=64,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    disconnect_timeout=2,
                ) as ws:
                    await self._session(ws)
            except (OSError, HandshakeError, trio.TooSlowError) as exc:
                log.warning(
                    "host %s: cannot reach control plane at %s: %s",
                    self.identity.host_id,
                    url,
                    exc,
                )
            except (ChannelClosed, ConnectionClosed) as exc:
                log.warning("host %s: channel closed: %s", self.identity.host_id, exc)
            except ProtocolError as exc:
                log.error(
                    "host %s: protocol error, reconnecting: %s",
                    self.identity.host_id,
                    exc,
                )
            finally:
                self.connected = trio.Event()
            if time.monotonic() - started > BACKOFF_MAX_S:
                backoff = BACKOFF_INITIAL_S
            delay = backoff * random.uniform(0.5, 1.0)
            log.info("host %s: reconnecting in %.1fs", self.identity.host_id, delay)
            await trio.sleep(delay)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _session(self, ws: WebSocketConnection) -> None:
        async with trio.open_nursery() as nursery:
            peer = RpcPeer(
                WebSocketFrameTransport(ws),
                Role.AGENT,
                on_request=lambda envelope: self._on_request(nursery, envelope),
                on_notice=self._on_notice,
                name=self.identity.host_id,
            )
            self._peer = peer
            try:
                await nursery.start(peer.run)
                try:
                    welcome = await peer.request(pb.Envelope(agent_hello=self._hello()))
                except ChannelClosed:
                    # Closed before the welcome (a refused credential, say). Raised
                    # from here it would leave the nursery inside an ExceptionGroup
                    # that the reconnect loop does not catch; cancelling ends the
                    # session like any other close, with the ChannelClosed below.
                    nursery.cancel_scope.cancel()
                    await trio.sleep_forever()
                interval = welcome.agent_welcome.heartbeat_interval_s or 10
                log.info(
                    "host %s: connected; heartbeat every %ss",
                    self.identity.host_id,
                    interval,
                )
                self.connected.set()
                nursery.start_soon(self._heartbeats, peer, interval)
                nursery.start_soon(self._forward_outbox, peer)
                await peer.wait_closed()
                nursery.cancel_scope.cancel()
            finally:
                self._peer = None
                self._credentials.clear()
                # Terminal sessions outlive the channel; only their streams end here.
                self.terminals.detach_channel(peer)
        raise ChannelClosed("control plane closed the channel")

    def _hello(self) -> pb.AgentHello:
        sandboxes = self.sandboxes.list()
        return pb.AgentHello(
            host_id=self.identity.host_id,
            agent_version=__version__,
            hostname=socket.gethostname(),
            overview=host_overview(self.config.state_dir, len(sandboxes)),
            sandboxes=[sandbox_info_message(s) for s in sandboxes],
            cached_images=self._cached_images(),
            capabilities=present_capabilities(),
            addresses=host_addresses(),
            terminal_session_ids=self.terminals.session_ids(),
            mesh_public_key=self.networks.keys.public_key,
            endpoint=self.networks.endpoint(
                self.config.control_plane_url or self.identity.control_plane_url
            ),
        )

    def _cached_images(self) -> list[pb.CachedImage]:
        return [
            pb.CachedImage(digest=str(d), size_bytes=size)
            for d, size in self.images.cached_images()
        ]

    async def _heartbeats(self, peer: RpcPeer, interval_s: int) -> None:
        while True:
            await trio.sleep(interval_s)
            await peer.notify(pb.Envelope(heartbeat=self._heartbeat()))

    def _heartbeat(self) -> pb.Heartbeat:
        overview = host_overview(self.config.state_dir, len(self.sandboxes.list()))
        return pb.Heartbeat(
            overview=overview,
            cached_images=self._cached_images(),
            volume_filesystem=filesystem_status_message(self.volumes.filesystem.state),
        )

    def _sandbox_changed(self, info: SandboxInfo) -> None:
        change = pb.SandboxStatusChanged(sandbox=sandbox_info_message(info))
        self._outbox_send.send_nowait(pb.Envelope(sandbox_status_changed=change))

    async def _forward_outbox(self, peer: RpcPeer) -> None:
        async for envelope in self._outbox:
            await peer.notify(envelope)

    # ---- requests from the control plane ---------------------------------------------

    def _register_handlers(self) -> None:
        register = self.dispatcher.register
        register("sandbox_create", self._handle_sandbox_create)
        register("sandbox_get", self._handle_sandbox_get)
        register("sandbox_list", self._handle_sandbox_list)
        register("sandbox_delete", self._handle_sandbox_delete)
        register("image_pull", self._handle_image_pull)
        register_volume_handlers(self.dispatcher, self.volumes)
        register_network_handlers(self.dispatcher, self.networks)
        register("terminal_open", self._handle_terminal_open)
        register("terminal_attach", self._handle_terminal_attach)
        register("terminal_detach", self._handle_terminal_detach)
        register("terminal_close", self._handle_terminal_close)
        register("host_logs_request", self.host_logs.handle_request)

    async def _handle_sandbox_create(
        self, envelope: pb.Envelope, context: RequestContext
    ) -> pb.Envelope:
        info = await self._create_sandbox(envelope.sandbox_create)
        return pb.Envelope(sandbox_info=sandbox_info_message(info))

    async def _handle_sandbox_get(
        self, envelope: pb.Envelope, context: RequestContext
    ) -> pb.Envelope:
        info = self.sandboxes.get(envelope.sandbox_get.sandbox_id)
        return pb.Envelope(sandbox_info=sandbox_info_message(info))

    async def _handle_sandbox_list(
        self, envelope: pb.Envelope, context: RequestContext
    ) -> pb.Envelope:
        infos = [sandbox_info_message(s) for s in self.sandboxes.list()]
        return pb.Envelope(sandbox_inventory=pb.SandboxInventory(sandboxes=infos))

    async def _handle_sandbox_delete(
        self, envelope: pb.Envelope, context: RequestContext
    ) -> pb.Envelope:
        request = envelope.sandbox_delete
        existed = await self.sandboxes.delete(
            request.sandbox_id, grace_s=request.grace_s or 5
        )
        self.volumes.forget_sandbox(request.sandbox_id)
        deleted = pb.SandboxDeleted(sandbox_id=request.sandbox_id, existed=existed)
        return pb.Envelope(sandbox_deleted=deleted)

    async def _handle_image_pull(
        self, envelope: pb.Envelope, context: RequestContext
    ) -> pb.Envelope:
        pulled = await self._pull(envelope.image_pull.image, sandbox_id="")
        return pb.Envelope(
            image_pulled=pb.ImagePulled(
                digest=str(pulled.digest),
                bytes_downloaded=pulled.bytes_downloaded,
                blobs_downloaded=pulled.blobs_downloaded,
                blobs_cached=pulled.blobs_cached,
            )
        )

    async def _on_request(
        self, nursery: trio.Nursery, envelope: pb.Envelope
    ) -> pb.Envelope:
        assert self._peer is not None
        context = RequestContext(
            envelope.stream_id, self._peer.notify, nursery, self._peer
        )
        return await self.dispatcher.dispatch(envelope, context)

    async def _on_notice(self, envelope: pb.Envelope) -> None:
        if envelope.stream_id:
            if not self.host_logs.on_stream_frame(envelope):
                self.terminals.on_stream_frame(envelope)
        else:
            log.warning(
                "host %s: unexpected %s notice",
                self.identity.host_id,
                envelope.WhichOneof("body"),
            )

    async def _handle_terminal_open(
        self, envelope: pb.Envelope, context: RequestContext
    ) -> pb.Envelope:
        opened = await self.terminals.open(
            context.stream_id, envelope.terminal_open, context.send, context.channel
        )
        return pb.Envelope(terminal_opened=opened)

    async def _handle_terminal_attach(
        self, envelope: pb.Envelope, context: RequestContext
    ) -> pb.Envelope:
        attached = await self.terminals.attach(
            context.stream_id, envelope.terminal_attach, context.send, context.channel
        )
        return pb.Envelope(terminal_attached=attached)

    async def _handle_terminal_detach(
        self, envelope: pb.Envelope, context: RequestContext
    ) -> pb.Envelope:
        self.terminals.detach(envelope.terminal_detach.session_id)
        return pb.Envelope(ack=pb.Ack())

    async def _handle_terminal_close(
        self, envelope: pb.Envelope, context: RequestContext
    ) -> pb.Envelope:
        await self.terminals.close(envelope.terminal_close.session_id)
        return pb.Envelope(ack=pb.Ack())

    async def _create_sandbox(self, request: pb.SandboxCreate) -> SandboxInfo:
        pulled = await self._pull(request.image, sandbox_id=request.sandbox_id)
        mounts = self.volumes.sandbox_mounts(
            request.sandbox_id,
            [attachment_of(request.sandbox_id, m) for m in request.volumes],
        )
        try:
            return await self.sandboxes.create(
                request.sandbox_id,
                pulled,
                command=list(request.command) or None,
                env=dict(request.env) or None,
                hostname=request.hostname or None,
                extra_mounts=mounts,
            )
        except BaseException:
            if mounts and request.sandbox_id not in {
                s.sandbox_id for s in self.sandboxes.list()
            }:
                self.volumes.forget_sandbox(request.sandbox_id)
            raise

    async def _pull(self, image: pb.ImageRef, sandbox_id: str) -> PulledImage:
        if not image.registry_url or not image.repository or not image.digest:
            raise InvalidArgument(
                "image needs registry_url, repository and digest",
                resource_id=sandbox_id,
            )
        client = self._registry_client(image.registry_url)
        last_report = 0.0
        done = 0

        def progress(count: int) -> None:
            nonlocal done, last_report
            done += count
            now = time.monotonic()
            if self._peer is not None and now - last_report >= PULL_PROGRESS_INTERVAL_S:
                last_report = now
                report = pb.ImagePullProgress(
                    sandbox_id=sandbox_id, digest=image.digest, bytes_done=done
                )
                self._outbox_send.send_nowait(pb.Envelope(image_pull_progress=report))

        pulled = await self.images.ensure(
            client, image.repository, image.digest, progress
        )
        log.info(
            "image %s: ready for sandbox %s (%d bytes and %d blobs downloaded, %d cached)",
            image.digest,
            sandbox_id or "-",
            pulled.bytes_downloaded,
            pulled.blobs_downloaded,
            pulled.blobs_cached,
        )
        return pulled

    def _registry_client(self, registry_url: str) -> RegistryClient:
        client = self._registry_clients.get(registry_url)
        if client is None:
            client = RegistryClient(registry_url, self._registry_token)
            self._registry_clients[registry_url] = client
        return client

    async def _registry_token(self, repository: str) -> str | None:
        """A pull token for `repository` from the control plane, reused until near expiry."""
        cached = self._credentials.get(repository)
        if cached is not None and cached[1] - CREDENTIAL_MARGIN_S > time.time():
            return cached[0]
        if self._peer is None:
            raise ChannelClosed("no control channel to ask for a registry credential")
        reply = await self._peer.request(
            pb.Envelope(
                registry_credential_request=pb.RegistryCredentialRequest(
                    repository=repository, action="pull"
                )
            )
        )
        credential = reply.registry_credential
        self._credentials[repository] = (
            credential.token,
            float(credential.expires_at_unix),
        )
        return credential.token
