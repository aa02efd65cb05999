"""Runtime networks on a host: bridges, veths into sandboxes, DNS, nftables policies."""

from __future__ import annotations

from gstacks_agent.networks.manager import NetworkManager
from gstacks_agent.rpc_dispatch import RequestContext, RequestDispatcher
from gstacks_proto import pb

__all__ = ["NetworkManager", "register_network_handlers"]


def register_network_handlers(
    dispatcher: RequestDispatcher, manager: NetworkManager
) -> None:
    """Answer `network_state` and `network_diagnose` requests with `manager`."""

    async def network_state(
        envelope: pb.Envelope, context: RequestContext
    ) -> pb.Envelope:
        applied = await manager.apply(envelope.network_state)
        return pb.Envelope(network_state_applied=applied)

    async def network_diagnose(
        envelope: pb.Envelope, context: RequestContext
    ) -> pb.Envelope:
        diagnosis = await manager.diagnose(envelope.network_diagnose.network_id)
        return pb.Envelope(network_diagnosis=diagnosis)

    dispatcher.register("network_state", network_state)
    dispatcher.register("network_diagnose", network_diagnose)
