"""Two RpcPeers talking over an in-memory frame transport, on trio."""

from __future__ import annotations

import pytest
import trio

from gstacks_agent.errors import NotFound
from gstacks_proto import pb
from gstacks_proto.channel_state import Role
from gstacks_proto.rpc_peer import ChannelClosed, RemoteError, RpcPeer


class MemoryTransport:
    """One end of a pair of trio memory channels carrying frames."""

    def __init__(
        self, send: trio.MemorySendChannel, receive: trio.MemoryReceiveChannel
    ):
        self._send, self._receive = send, receive

    async def send_frame(self, data: bytes) -> None:
        try:
            await self._send.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ChannelClosed("peer gone") from exc

    async def receive_frame(self) -> bytes:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError) as exc:
            raise ChannelClosed("peer gone") from exc

    def close(self) -> None:
        self._send.close()


def transport_pair() -> tuple[MemoryTransport, MemoryTransport]:
    a_send, b_receive = trio.open_memory_channel(100)
    b_send, a_receive = trio.open_memory_channel(100)
    return MemoryTransport(a_send, a_receive), MemoryTransport(b_send, b_receive)


async def no_notice(envelope: pb.Envelope) -> None:
    raise AssertionError(f"unexpected notice {envelope}")


async def test_requests_are_answered_concurrently_and_errors_cross_typed():
    agent_end, cp_end = transport_pair()
    release_slow = trio.Event()

    async def agent_handler(envelope: pb.Envelope) -> pb.Envelope:
        sandbox_id = envelope.sandbox_get.sandbox_id
        if sandbox_id == "slow":
            await release_slow.wait()
        if sandbox_id == "missing":
            raise NotFound("sandbox missing does not exist", resource_id="missing")
        return pb.Envelope(sandbox_info=pb.SandboxInfo(sandbox_id=sandbox_id))

    async def cp_handler(envelope: pb.Envelope) -> pb.Envelope:
        raise AssertionError("agent sent a request")

    agent = RpcPeer(agent_end, Role.AGENT, agent_handler, no_notice)
    cp = RpcPeer(cp_end, Role.CONTROL_PLANE, cp_handler, no_notice)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await nursery.start(cp.run)
        answers: dict[str, str] = {}

        async def ask(sandbox_id: str) -> None:
            reply = await cp.request(
                pb.Envelope(sandbox_get=pb.SandboxGet(sandbox_id=sandbox_id))
            )
            answers[sandbox_id] = reply.sandbox_info.sandbox_id

        nursery.start_soon(ask, "slow")
        await trio.sleep(0.05)
        await ask("fast")
        assert answers == {"fast": "fast"}
        release_slow.set()
        await trio.sleep(0.05)
        assert answers == {"fast": "fast", "slow": "slow"}

        with pytest.raises(RemoteError) as caught:
            await cp.request(
                pb.Envelope(sandbox_get=pb.SandboxGet(sandbox_id="missing"))
            )
        assert caught.value.code == "ERROR_CODE_NOT_FOUND"
        assert caught.value.resource_id == "missing"
        nursery.cancel_scope.cancel()


async def test_pending_request_fails_with_channel_closed_when_the_peer_goes_away():
    agent_end, cp_end = transport_pair()

    async def never_answers(envelope: pb.Envelope) -> pb.Envelope:
        await trio.sleep_forever()
        raise AssertionError

    agent = RpcPeer(agent_end, Role.AGENT, never_answers, no_notice)
    cp = RpcPeer(cp_end, Role.CONTROL_PLANE, never_answers, no_notice)
    async with trio.open_nursery() as nursery:
        agent_scope = trio.CancelScope()

        async def run_agent() -> None:
            with agent_scope:
                await agent.run()
            agent_end.close()

        nursery.start_soon(run_agent)
        await nursery.start(cp.run)

        async def drop_agent() -> None:
            await trio.sleep(0.05)
            agent_scope.cancel()

        nursery.start_soon(drop_agent)
        with pytest.raises(ChannelClosed):
            await cp.request(pb.Envelope(sandbox_list=pb.SandboxList()))
        assert cp.closed
        with pytest.raises(ChannelClosed):
            await cp.request(pb.Envelope(sandbox_list=pb.SandboxList()))


async def test_request_times_out_and_a_late_reply_is_harmless():
    agent_end, cp_end = transport_pair()
    release = trio.Event()

    async def slow(envelope: pb.Envelope) -> pb.Envelope:
        await release.wait()
        return pb.Envelope(ack=pb.Ack())

    agent = RpcPeer(agent_end, Role.AGENT, slow, no_notice)
    cp = RpcPeer(cp_end, Role.CONTROL_PLANE, slow, no_notice)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await nursery.start(cp.run)
        with pytest.raises(trio.TooSlowError):
            await cp.request(pb.Envelope(sandbox_list=pb.SandboxList()), timeout_s=0.05)
        release.set()
        await trio.sleep(0.05)
        # The channel survived the late reply and still works.
        reply = await cp.request(pb.Envelope(sandbox_list=pb.SandboxList()))
        assert reply.WhichOneof("body") == "ack"
        nursery.cancel_scope.cancel()


async def test_notices_arrive_in_order():
    agent_end, cp_end = transport_pair()
    seen: list[bytes] = []

    async def collect(envelope: pb.Envelope) -> None:
        seen.append(envelope.terminal_data.data)

    async def unused(envelope: pb.Envelope) -> pb.Envelope:
        raise AssertionError

    agent = RpcPeer(agent_end, Role.AGENT, unused, no_notice)
    cp = RpcPeer(cp_end, Role.CONTROL_PLANE, unused, collect)
    async with trio.open_nursery() as nursery:
        await nursery.start(cp.run)
        for i in range(50):
            await agent.notify(
                pb.Envelope(stream_id=1, terminal_data=pb.TerminalData(data=bytes([i])))
            )
        await trio.sleep(0.05)
        assert seen == [bytes([i]) for i in range(50)]
        nursery.cancel_scope.cancel()
