"""The control plane's end of every agent channel.

How it works. An agent opens a WebSocket to `/api/agents/connect` with its host
credential; the hub wraps the socket in an `RpcPeer` and waits for `AgentHello`, which
must be the agent's first request. The hello reports what actually exists on the host;
the hub records the host as connected and hands the report to its listener, which
reconciles sandbox records. From then on:

- services call `request(host_id, envelope)` to make the agent act;
- the agent's own requests (a registry pull credential) are answered here;
- notices from the agent are heartbeats, status changes, and stream frames. A stream
  frame carries a `stream_id` that a service registered with `open_stream()` before it
  asked the agent to start the stream, so no early byte can arrive unclaimed.

A host has at most one live channel. When a second one authenticates as the same host
(the agent reconnected before the old socket timed out), the old one is closed: the
newest connection is the one the agent is listening on.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from control_plane_lite.auth import Authenticator, Principal
from control_plane_lite.clock import now_rfc3339
from control_plane_lite.errors import HostUnavailable
from control_plane_lite.store import Store
from gstacks_proto import pb
from gstacks_proto.channel_state import ProtocolError, Role
from gstacks_proto.rpc_peer import ChannelClosed, RpcPeer

log = logging.getLogger("gstacks.cp.agent_hub")

HEARTBEAT_INTERVAL_S = 10
HELLO_TIMEOUT_S = 15


class HubListener(Protocol):
    """What the hub tells the rest of the control plane."""

    async def agent_connected(self, host_id: str, hello: pb.AgentHello) -> None: ...

    async def sandbox_status_changed(
        self, host_id: str, info: pb.SandboxInfo
    ) -> None: ...

    def volume_filesystem_reported(
        self, host_id: str, status: pb.FilesystemStatus
    ) -> None: ...


class StarletteFrameTransport:
    """Binary frames over a Starlette WebSocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def send_frame(self, data: bytes) -> None:
        try:
            await self._ws.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise ChannelClosed(str(exc)) from exc

    async def receive_frame(self) -> bytes:
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            raise ChannelClosed(f"agent closed the socket (code {message.get('code')})")
        if message.get("bytes") is None:
            raise ProtocolError("text frame on a binary channel")
        return message["bytes"]


@dataclass
class StreamSink:
    """Where one stream's frames from the agent go, in order."""

    host_id: str
    stream_id: int
    send: trio.MemorySendChannel[pb.Envelope]
    receive: trio.MemoryReceiveChannel[pb.Envelope]


@dataclass
class _Connection:
    host_id: str
    peer: RpcPeer = field(init=False)
    cancel_scope: trio.CancelScope = field(init=False)
    registered: trio.Event = field(default_factory=trio.Event)


def overview_record(overview: pb.HostOverview) -> dict:
    """The API's shape of a host overview."""
    return {
        "cpu_percent": round(overview.cpu_percent, 1),
        "cpu_count": overview.cpu_count,
        "memory_total_bytes": overview.memory_total_bytes,
        "memory_used_bytes": overview.memory_used_bytes,
        "disk_total_bytes": overview.disk_total_bytes,
        "disk_used_bytes": overview.disk_used_bytes,
        "load_1m": round(overview.load_1m, 2),
        "load_5m": round(overview.load_5m, 2),
        "load_15m": round(overview.load_15m, 2),
        "uptime_s": overview.uptime_s,
        "kernel": overview.kernel,
        "agent_version": overview.agent_version,
        "sandbox_count": overview.sandbox_count,
    }


CredentialIssuer = Callable[
    [str, pb.RegistryCredentialRequest], Awaitable[pb.RegistryCredential]
]


class AgentHub:
    """Registry of connected agents and the router of their frames."""

    def __init__(
        self,
        store: Store,
        authenticator: Authenticator,
        listener: HubListener,
        issue_credential: CredentialIssuer,
        registry_url: str,
    ) -> None:
        self._store = store
        self._auth = authenticator
        self._listener = listener
        self._issue_credential = issue_credential
        self.registry_url = registry_url
        self._connections: dict[str, _Connection] = {}
        self._streams: dict[int, StreamSink] = {}
        self._stream_ids = itertools.count(1)
        self._connected = trio.Event()

    def is_connected(self, host_id: str) -> bool:
        return host_id in self._connections

    def connected_hosts(self) -> list[str]:
        return list(self._connections)

    async def request(
        self, host_id: str, envelope: pb.Envelope, timeout_s: float = 30.0
    ) -> pb.Envelope:
        """Ask the agent on `host_id` to act; raises HostUnavailable if it is not here."""
        connection = self._connections.get(host_id)
        if connection is None:
            raise HostUnavailable(f"host {host_id} is not connected", host_id=host_id)
        try:
            return await connection.peer.request(envelope, timeout_s=timeout_s)
        except ChannelClosed as exc:
            raise HostUnavailable(
                f"host {host_id} disconnected: {exc}", host_id=host_id
            ) from exc

    async def notify(self, host_id: str, envelope: pb.Envelope) -> None:
        connection = self._connections.get(host_id)
        if connection is None:
            raise HostUnavailable(f"host {host_id} is not connected", host_id=host_id)
        try:
            await connection.peer.notify(envelope)
        except ChannelClosed as exc:
            raise HostUnavailable(
                f"host {host_id} disconnected: {exc}", host_id=host_id
            ) from exc

    def disconnect(self, host_id: str) -> bool:
        """Close the host's channel now (its credential was revoked).

        True if it had one open. The agent may dial again at once; whether that
        succeeds is up to its credential.
        """
        connection = self._connections.get(host_id)
        if connection is None:
            return False
        log.info("host %s: closing its channel", host_id)
        connection.cancel_scope.cancel()
        return True

    def open_stream(self, host_id: str) -> StreamSink:
        """Reserve a stream id whose frames from `host_id` will be queued on the sink.

        Flow control bounds the bytes in flight, so the queue itself need not be bounded.
        """
        send, receive = trio.open_memory_channel[pb.Envelope](math.inf)
        sink = StreamSink(host_id, next(self._stream_ids), send, receive)
        self._streams[sink.stream_id] = sink
        return sink

    def close_stream(self, sink: StreamSink) -> None:
        self._streams.pop(sink.stream_id, None)
        sink.send.close()

    async def wait_for_any_host(self, timeout_s: float) -> None:
        with trio.fail_after(timeout_s):
            await self._connected.wait()

    async def serve_agent(self, websocket: WebSocket, principal: Principal) -> None:
        """Run one agent's channel until it closes or fails to say hello in time."""
        connection = _Connection(principal.id)
        connection.peer = RpcPeer(
            StarletteFrameTransport(websocket),
            Role.CONTROL_PLANE,
            on_request=functools.partial(self._on_request, connection),
            on_notice=functools.partial(self._on_notice, connection),
            name=principal.id,
        )
        try:
            async with trio.open_nursery() as nursery:
                connection.cancel_scope = nursery.cancel_scope
                nursery.start_soon(self._run_peer, connection, websocket)
                with trio.move_on_after(HELLO_TIMEOUT_S) as hello_wait:
                    await connection.registered.wait()
                if hello_wait.cancelled_caught:
                    log.warning(
                        "host %s sent no hello within %ss; closing",
                        principal.id,
                        HELLO_TIMEOUT_S,
                    )
                    nursery.cancel_scope.cancel()
        finally:
            if self._connections.get(principal.id) is connection:
                del self._connections[principal.id]
                self._store.update(
                    "hosts",
                    principal.id,
                    status="disconnected",
                    last_seen_at=now_rfc3339(),
                )
                self._fail_streams(principal.id)
                log.info("host %s disconnected", principal.id)

    async def _run_peer(self, connection: _Connection, websocket: WebSocket) -> None:
        try:
            await connection.peer.run()
        except ProtocolError:
            with contextlib.suppress(Exception):
                await websocket.close(code=1002)
        finally:
            connection.cancel_scope.cancel()

    async def _on_request(
        self, connection: _Connection, envelope: pb.Envelope
    ) -> pb.Envelope:
        kind = envelope.WhichOneof("body")
        if kind == "agent_hello":
            return await self._on_hello(connection, envelope.agent_hello)
        if not connection.registered.is_set():
            raise ProtocolError(
                f"host {connection.host_id} sent {kind} before its hello"
            )
        if kind == "registry_credential_request":
            credential = await self._issue_credential(
                connection.host_id, envelope.registry_credential_request
            )
            return pb.Envelope(registry_credential=credential)
        raise ProtocolError(f"agents may not send {kind} requests")

    async def _on_hello(
        self, connection: _Connection, hello: pb.AgentHello
    ) -> pb.Envelope:
        host_id = connection.host_id
        previous = self._connections.get(host_id)
        if previous is not None and previous is not connection:
            log.info("host %s reconnected; closing its previous channel", host_id)
            previous.cancel_scope.cancel()
        self._connections[host_id] = connection
        self._store.update(
            "hosts",
            host_id,
            status="connected",
            hostname=hello.hostname,
            agent_version=hello.agent_version,
            last_seen_at=now_rfc3339(),
            overview=overview_record(hello.overview),
            capabilities=list(hello.capabilities),
            cached_images=[
                {"digest": i.digest, "size_bytes": i.size_bytes}
                for i in hello.cached_images
            ],
            addresses=list(hello.addresses),
            endpoint=hello.endpoint,
        )
        connection.registered.set()
        self._connected.set()
        log.info(
            "host %s connected: agent %s on %s reporting %d sandboxes",
            host_id,
            hello.agent_version,
            hello.hostname,
            len(hello.sandboxes),
        )
        await self._listener.agent_connected(host_id, hello)
        return pb.Envelope(
            agent_welcome=pb.AgentWelcome(
                host_id=host_id,
                heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
                registry_url=self.registry_url,
            )
        )

    async def _on_notice(self, connection: _Connection, envelope: pb.Envelope) -> None:
        host_id = connection.host_id
        if envelope.stream_id:
            sink = self._streams.get(envelope.stream_id)
            if sink is None or sink.host_id != host_id:
                log.debug(
                    "host %s: frame for unknown stream %s dropped",
                    host_id,
                    envelope.stream_id,
                )
                return
            with contextlib.suppress(
                trio.ClosedResourceError, trio.BrokenResourceError
            ):
                sink.send.send_nowait(envelope)
            return

        kind = envelope.WhichOneof("body")
        if kind == "heartbeat":
            beat = envelope.heartbeat
            self._store.update(
                "hosts",
                host_id,
                last_seen_at=now_rfc3339(),
                overview=overview_record(beat.overview),
                cached_images=[
                    {"digest": i.digest, "size_bytes": i.size_bytes}
                    for i in beat.cached_images
                ],
            )
            if beat.HasField("volume_filesystem"):
                self._listener.volume_filesystem_reported(
                    host_id, beat.volume_filesystem
                )
        elif kind == "sandbox_status_changed":
            await self._listener.sandbox_status_changed(
                host_id, envelope.sandbox_status_changed.sandbox
            )
        elif kind == "terminal_exit":
            await self._listener.terminal_ended(host_id, envelope.terminal_exit)
        elif kind == "image_pull_progress":
            progress = envelope.image_pull_progress
            log.debug(
                "host %s: sandbox %s pulling %s: %d/%d bytes",
                host_id,
                progress.sandbox_id,
                progress.digest,
                progress.bytes_done,
                progress.bytes_total,
            )
        else:
            log.warning("host %s sent an unexpected %s notice", host_id, kind)

    def _fail_streams(self, host_id: str) -> None:
        for stream_id, sink in list(self._streams.items()):
            if sink.host_id == host_id:
                del self._streams[stream_id]
                sink.send.close()
