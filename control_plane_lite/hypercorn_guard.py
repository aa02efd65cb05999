"""A guard against a hypercorn race that would stop the whole control plane.

When a client closes its connection while the app is sending to it, hypercorn's trio
`TCPServer` half-closes the socket (`send_eof` in `_close`) outside the lock that
serializes its writes. The app's concurrent `send_all` then fails with
`trio.BusyResourceError`, which `protocol_send` does not catch (it only expects
`BrokenResourceError` and `ClosedResourceError` from a peer that went away). The error
escapes the connection's task into hypercorn's listener nursery and ends every other
connection with it, the agent channels included. Seen with hypercorn 0.18.0 when a
terminal client and the server closed a WebSocket at the same moment.

The guard treats that error as what it means there, the peer is gone, exactly as
hypercorn treats the other two. It replaces the TCPServer class hypercorn's trio
worker instantiates; nothing else changes.
"""

from __future__ import annotations

import logging

import hypercorn.trio.run
import trio
from hypercorn.events import Closed, Event
from hypercorn.trio.tcp_server import TCPServer

log = logging.getLogger("gstacks.cp.http")


class GuardedTCPServer(TCPServer):
    async def protocol_send(self, event: Event) -> None:
        try:
            await super().protocol_send(event)
        except trio.BusyResourceError:
            # Only `_close` can hold the stream here: the connection is closing.
            log.debug("write raced with the connection closing; dropped")
            await self.protocol.handle(Closed())


def install() -> None:
    """Make hypercorn's trio worker use GuardedTCPServer (idempotent)."""
    hypercorn.trio.run.TCPServer = GuardedTCPServer  # type: ignore[misc]
