"""One side of an agent-control channel, on trio.

`RpcPeer` drives a `ChannelState` over any frame transport (a trio-websocket
connection on the agent, an ASGI WebSocket on the control plane). It runs one receive
loop; each request from the peer is handled in its own task so a slow sandbox create
does not hold up terminal bytes, while notices (stream data, heartbeats) are handed to
`on_notice` in arrival order, inline, which keeps each byte stream ordered.
`on_notice` must therefore not block for long: it queues and returns.

When the transport closes, every request still waiting fails with `ChannelClosed`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from gstacks_proto import pb
from gstacks_proto.channel_state import (
    ChannelState,
    NoticeReceived,
    ProtocolError,
    ReplyReceived,
    RequestReceived,
    Role,
)

log = logging.getLogger("gstacks.channel")

DEFAULT_TIMEOUT_S = 30.0


class ChannelClosed(Exception):
    """The connection ended while something still needed it."""


class RemoteError(Exception):
    """The peer answered a request with an Error."""

    def __init__(self, code: str, message: str, resource_id: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.resource_id = resource_id


class FrameTransport(Protocol):
    async def send_frame(self, data: bytes) -> None: ...

    async def receive_frame(self) -> bytes:
        """Next binary frame; raises ChannelClosed when the connection ends."""
        ...


RequestHandler = Callable[[pb.Envelope], Awaitable[pb.Envelope]]
NoticeHandler = Callable[[pb.Envelope], Awaitable[None]]


def error_to_wire(exc: BaseException) -> tuple[str, str, str]:
    """Map an exception to (ErrorCode name, message, resource id).

    Our own errors carry `wire_code`; anything else is an internal error whose message
    is kept short, since it crosses a trust boundary.
    """
    code = getattr(exc, "wire_code", None)
    if code is not None:
        return code, str(getattr(exc, "message", exc)), getattr(exc, "resource_id", "")
    if isinstance(exc, RemoteError):
        return (
            "ERROR_CODE_" + exc.code.removeprefix("ERROR_CODE_"),
            exc.message,
            exc.resource_id,
        )
    return "ERROR_CODE_INTERNAL", f"{type(exc).__name__}: {exc}", ""


class RpcPeer:
    """Requests, replies and notices over one transport."""

    def __init__(
        self,
        transport: FrameTransport,
        role: Role,
        on_request: RequestHandler,
        on_notice: NoticeHandler,
        name: str = "",
    ) -> None:
        self._transport = transport
        self._state = ChannelState(role)
        self._on_request = on_request
        self._on_notice = on_notice
        self._name = name or role.value
        self._send_lock = trio.Lock()
        self._waiters: dict[int, trio.MemorySendChannel[pb.Envelope]] = {}
        self._closed = False
        self._closed_event = trio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_closed(self) -> None:
        """Return once the receive loop has ended."""
        await self._closed_event.wait()

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Receive until the transport closes; handle requests concurrently."""
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    try:
                        frame = await self._transport.receive_frame()
                    except ChannelClosed:
                        break
                    event = self._state.receive(frame)
                    if isinstance(event, ReplyReceived):
                        waiter = self._waiters.pop(event.request_id, None)
                        if waiter is not None:
                            waiter.send_nowait(event.envelope)
                    elif isinstance(event, RequestReceived):
                        nursery.start_soon(
                            self._answer, event.request_id, event.envelope
                        )
                    elif isinstance(event, NoticeReceived):
                        await self._on_notice(event.envelope)
                nursery.cancel_scope.cancel()
        except ProtocolError as exc:
            log.warning("channel %s: protocol error, closing: %s", self._name, exc)
            raise
        finally:
            self._closed = True
            self._closed_event.set()
            for waiter in self._waiters.values():
                waiter.close()
            self._waiters.clear()

    async def request(
        self, envelope: pb.Envelope, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> pb.Envelope:
        """Send a request and wait for its reply; raise RemoteError on an Error reply."""
        if self._closed:
            raise ChannelClosed(f"channel {self._name} is closed")
        send, receive = trio.open_memory_channel[pb.Envelope](1)
        request_id, frame = self._state.start_request(envelope)
        self._waiters[request_id] = send
        try:
            await self._send(frame)
            with trio.fail_after(timeout_s):
                try:
                    reply = await receive.receive()
                except trio.EndOfChannel:
                    raise ChannelClosed(
                        f"channel {self._name} closed before request {request_id} was answered"
                    ) from None
        except BaseException:
            self._waiters.pop(request_id, None)
            self._state.abandon_request(request_id)
            raise
        if reply.WhichOneof("body") == "error":
            raise RemoteError(
                pb.ErrorCode.Name(reply.error.code),
                reply.error.message,
                reply.error.resource_id,
            )
        return reply

    async def notify(self, envelope: pb.Envelope) -> None:
        """Send a one-way message."""
        await self._send(self._state.notice(envelope))

    async def _answer(self, request_id: int, envelope: pb.Envelope) -> None:
        kind = envelope.WhichOneof("body")
        try:
            reply = await self._on_request(envelope)
        except Exception as exc:
            code, message, resource_id = error_to_wire(exc)
            if code == "ERROR_CODE_INTERNAL":
                log.exception(
                    "channel %s: request %s (%s) failed", self._name, request_id, kind
                )
            else:
                log.info(
                    "channel %s: request %s (%s) refused: %s",
                    self._name,
                    request_id,
                    kind,
                    message,
                )
            frame = self._state.reply_error(request_id, code, message, resource_id)
        else:
            frame = self._state.reply(request_id, reply)
        try:
            await self._send(frame)
        except ChannelClosed:
            log.info(
                "channel %s: closed before reply to request %s", self._name, request_id
            )

    async def _send(self, frame: bytes) -> None:
        async with self._send_lock:
            await self._transport.send_frame(frame)
