"""Which code answers which request from the control plane.

Each capability registers a handler per request kind (the name of the Envelope body
field, e.g. "sandbox_create"); the daemon's channel session hands every request to
`dispatch`. A kind nobody registered is refused with INVALID_ARGUMENT, so an older
agent tells a newer control plane plainly what it cannot do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from gstacks_agent.errors import InvalidArgument
from gstacks_proto import pb

_BODY_KINDS = frozenset(
    field.name for field in pb.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields
)


@dataclass(frozen=True)
class RequestContext:
    """What a handler may use beyond the request itself."""

    # The stream the request opens, if any (terminal, log follow).
    stream_id: int
    # Sends a one-way frame on the channel the request came on.
    send: Callable[[pb.Envelope], Awaitable[None]]
    # Tasks that must end with that channel (stream pumps) start here.
    session_nursery: trio.Nursery
    # Identifies the channel, for state that must be let go when it drops.
    channel: object


Handler = Callable[[pb.Envelope, RequestContext], Awaitable[pb.Envelope]]


class RequestDispatcher:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, kind: str, handler: Handler) -> None:
        if kind not in _BODY_KINDS:
            raise ValueError(f"{kind!r} is not an Envelope body kind")
        if kind in self._handlers:
            raise ValueError(f"a handler for {kind!r} is already registered")
        self._handlers[kind] = handler

    async def dispatch(
        self, envelope: pb.Envelope, context: RequestContext
    ) -> pb.Envelope:
        kind = envelope.WhichOneof("body")
        handler = self._handlers.get(kind or "")
        if handler is None:
            raise InvalidArgument(f"this agent does not handle {kind} requests")
        return await handler(envelope, context)
