"""The sans-io channel state: framing, request bookkeeping, and what it refuses."""

from __future__ import annotations

import pytest

from gstacks_proto import pb
from gstacks_proto.channel_state import (
    MAX_FRAME_BYTES,
    ChannelState,
    NoticeReceived,
    ProtocolError,
    ReplyReceived,
    RequestReceived,
    Role,
)


def hello() -> pb.Envelope:
    return pb.Envelope(agent_hello=pb.AgentHello(host_id="host_1"))


def test_request_and_reply_round_trip_between_agent_and_control_plane():
    agent, cp = ChannelState(Role.AGENT), ChannelState(Role.CONTROL_PLANE)
    request_id, frame = agent.start_request(hello())
    assert request_id % 2 == 1
    assert agent.pending_requests == {request_id}

    received = cp.receive(frame)
    assert isinstance(received, RequestReceived)
    assert received.envelope.agent_hello.host_id == "host_1"

    reply = cp.reply(
        request_id, pb.Envelope(agent_welcome=pb.AgentWelcome(host_id="host_1"))
    )
    answered = agent.receive(reply)
    assert isinstance(answered, ReplyReceived)
    assert answered.request_id == request_id
    assert agent.pending_requests == frozenset()


def test_the_two_sides_never_pick_the_same_request_id():
    agent, cp = ChannelState(Role.AGENT), ChannelState(Role.CONTROL_PLANE)
    agent_ids = {agent.start_request(hello())[0] for _ in range(50)}
    cp_ids = {
        cp.start_request(pb.Envelope(sandbox_list=pb.SandboxList()))[0]
        for _ in range(50)
    }
    assert not agent_ids & cp_ids


def test_reply_to_an_unknown_request_is_a_protocol_error():
    agent = ChannelState(Role.AGENT)
    stray = pb.Envelope(reply_to=41, ack=pb.Ack()).SerializeToString()
    with pytest.raises(ProtocolError, match="unknown request 41"):
        agent.receive(stray)


def test_late_reply_to_an_abandoned_request_is_dropped_once():
    agent, cp = ChannelState(Role.AGENT), ChannelState(Role.CONTROL_PLANE)
    request_id, frame = agent.start_request(hello())
    cp.receive(frame)
    agent.abandon_request(request_id)
    late = cp.reply(request_id, pb.Envelope(ack=pb.Ack()))
    assert agent.receive(late) is None
    with pytest.raises(ProtocolError):
        agent.receive(late)


def test_a_request_can_be_answered_only_once():
    agent, cp = ChannelState(Role.AGENT), ChannelState(Role.CONTROL_PLANE)
    request_id, frame = agent.start_request(hello())
    cp.receive(frame)
    cp.reply_error(request_id, "ERROR_CODE_NOT_FOUND", "no such thing")
    with pytest.raises(ValueError, match="not awaiting a reply"):
        cp.reply(request_id, pb.Envelope(ack=pb.Ack()))


def test_peer_request_with_our_parity_or_reused_id_is_refused():
    cp = ChannelState(Role.CONTROL_PLANE)
    even = pb.Envelope(request_id=2, sandbox_list=pb.SandboxList()).SerializeToString()
    with pytest.raises(ProtocolError, match="parity"):
        cp.receive(even)
    odd = pb.Envelope(request_id=3, heartbeat=pb.Heartbeat()).SerializeToString()
    cp.receive(odd)
    with pytest.raises(ProtocolError, match="reused"):
        cp.receive(odd)


def test_notices_carry_neither_id():
    agent = ChannelState(Role.AGENT)
    frame = agent.notice(
        pb.Envelope(stream_id=7, terminal_data=pb.TerminalData(data=b"\x00\xff"))
    )
    received = ChannelState(Role.CONTROL_PLANE).receive(frame)
    assert isinstance(received, NoticeReceived)
    assert received.envelope.terminal_data.data == b"\x00\xff"
    with pytest.raises(ValueError):
        agent.notice(pb.Envelope(request_id=5, heartbeat=pb.Heartbeat()))


@pytest.mark.parametrize(
    "frame, reason",
    [
        (b"\xff\xff\xff", "undecodable"),
        (pb.Envelope(request_id=1).SerializeToString(), "without a body"),
        (
            pb.Envelope(request_id=1, reply_to=2, ack=pb.Ack()).SerializeToString(),
            "both",
        ),
        (b"\x00" * (MAX_FRAME_BYTES + 1), "exceeds"),
    ],
)
def test_malformed_frames_are_protocol_errors(frame: bytes, reason: str):
    with pytest.raises(ProtocolError, match=reason):
        ChannelState(Role.CONTROL_PLANE).receive(frame)
