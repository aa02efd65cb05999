"""Sans-io state of one agent-control channel.

How it works. Each side of the WebSocket owns one `ChannelState`. It turns outgoing
messages into frames and incoming frames into events, and it remembers which requests
are still waiting for a reply. It does no I/O, so it is tested with plain bytes.

- Request ids: the agent numbers its requests with odd ids and the control plane with
  even ids, so the two sides never collide and a reply can always be matched.
- A frame whose `reply_to` is set is a reply. It must name a request this side sent
  and has not yet seen answered; anything else is a protocol error, because a stray
  reply means the peers disagree about the conversation.
- A frame whose `request_id` is set is a request from the peer; this side must answer
  it exactly once with `reply()` or `reply_error()`.
- A frame with neither is a notice: stream data (it carries a `stream_id`) or a
  one-way report such as a heartbeat.

Frames are size-limited before decoding so a broken or hostile peer cannot make us
allocate without bound.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from gstacks_proto import pb

MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_ABANDONED = 1024


class Role(enum.Enum):
    AGENT = "agent"
    CONTROL_PLANE = "control_plane"


class ProtocolError(Exception):
    """The peer sent something the contract does not allow; the channel must close."""


@dataclass(frozen=True)
class ReplyReceived:
    request_id: int
    envelope: pb.Envelope


@dataclass(frozen=True)
class RequestReceived:
    request_id: int
    envelope: pb.Envelope


@dataclass(frozen=True)
class NoticeReceived:
    envelope: pb.Envelope


ChannelEvent = ReplyReceived | RequestReceived | NoticeReceived


class ChannelState:
    """Request bookkeeping and framing for one side of one connection."""

    def __init__(self, role: Role) -> None:
        self.role = role
        self._next_id = 1 if role is Role.AGENT else 2
        self._pending: set[int] = set()
        self._unanswered: set[int] = set()
        # Insertion-ordered so the oldest can be forgotten once the set is full.
        self._abandoned: dict[int, None] = {}

    @property
    def pending_requests(self) -> frozenset[int]:
        """Ids of our requests still waiting for a reply."""
        return frozenset(self._pending)

    def start_request(self, envelope: pb.Envelope) -> tuple[int, bytes]:
        """Give `envelope` a fresh request id; return the id and the frame to send."""
        if envelope.request_id or envelope.reply_to:
            raise ValueError("a new request must not carry request_id or reply_to")
        request_id = self._next_id
        self._next_id += 2
        envelope.request_id = request_id
        self._pending.add(request_id)
        return request_id, envelope.SerializeToString()

    def abandon_request(self, request_id: int) -> None:
        """Forget a request we stopped waiting for (timeout, cancellation).

        A late reply to it is then dropped rather than treated as a protocol error:
        the peer did nothing wrong by answering slowly.
        """
        if request_id in self._pending:
            self._pending.discard(request_id)
            self._abandoned[request_id] = None
            if len(self._abandoned) > MAX_ABANDONED:
                del self._abandoned[next(iter(self._abandoned))]

    def reply(self, request_id: int, envelope: pb.Envelope) -> bytes:
        """Frame `envelope` as the answer to the peer's request `request_id`."""
        if request_id not in self._unanswered:
            raise ValueError(f"request {request_id} is not awaiting a reply")
        self._unanswered.discard(request_id)
        envelope.reply_to = request_id
        envelope.request_id = 0
        return envelope.SerializeToString()

    def reply_error(
        self, request_id: int, code: str, message: str, resource_id: str = ""
    ) -> bytes:
        """Frame an Error as the answer to the peer's request `request_id`."""
        error = pb.Error(
            code=pb.ErrorCode.Value(code), message=message, resource_id=resource_id
        )
        return self.reply(request_id, pb.Envelope(error=error))

    def notice(self, envelope: pb.Envelope) -> bytes:
        """Frame a one-way message (stream data, heartbeat)."""
        if envelope.request_id or envelope.reply_to:
            raise ValueError("a notice must not carry request_id or reply_to")
        return envelope.SerializeToString()

    def receive(self, frame: bytes) -> ChannelEvent | None:
        """Decode one incoming frame into an event; None for a late reply we dropped."""
        if len(frame) > MAX_FRAME_BYTES:
            raise ProtocolError(
                f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}"
            )
        envelope = pb.Envelope()
        try:
            envelope.ParseFromString(frame)
        except DecodeError as exc:
            raise ProtocolError(f"undecodable frame: {exc}") from exc
        if envelope.WhichOneof("body") is None:
            raise ProtocolError("frame without a body")
        if envelope.request_id and envelope.reply_to:
            raise ProtocolError("frame is both a request and a reply")

        if envelope.reply_to:
            if envelope.reply_to in self._pending:
                self._pending.discard(envelope.reply_to)
                return ReplyReceived(envelope.reply_to, envelope)
            if envelope.reply_to in self._abandoned:
                del self._abandoned[envelope.reply_to]
                return None
            raise ProtocolError(f"reply to unknown request {envelope.reply_to}")

        if envelope.request_id:
            if envelope.request_id in self._unanswered:
                raise ProtocolError(f"request id {envelope.request_id} reused")
            if (envelope.request_id % 2 == 1) != (self.role is Role.CONTROL_PLANE):
                raise ProtocolError(f"request id {envelope.request_id} has our parity")
            self._unanswered.add(envelope.request_id)
            return RequestReceived(envelope.request_id, envelope)

        return NoticeReceived(envelope)
