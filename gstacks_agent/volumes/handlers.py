"""The volume requests of the agent channel, answered by a VolumeManager.

Each request is typed (VolumeEnsure, VolumeAttach, VolumeDetach, VolumeDelete,
VolumeUsageRequest) and idempotent on its ids; none carries a command to run.
"""

from __future__ import annotations

from gstacks_agent.rpc_dispatch import RequestContext, RequestDispatcher
from gstacks_agent.volumes.manager import Attachment, VolumeManager, VolumeUsage
from gstacks_agent.volumes.shared_filesystem import FilesystemState
from gstacks_proto import pb

_STATES = {
    "mounted": pb.FILESYSTEM_STATE_MOUNTED,
    "degraded": pb.FILESYSTEM_STATE_DEGRADED,
    "unmounted": pb.FILESYSTEM_STATE_UNMOUNTED,
}


def filesystem_status_message(state: FilesystemState) -> pb.FilesystemStatus:
    """The heartbeat's view of the shared filesystem."""
    return pb.FilesystemStatus(
        state=_STATES.get(state.state, pb.FILESYSTEM_STATE_UNSPECIFIED),
        mount_point=str(state.mount_point),
        message=state.message,
        filesystem_id=state.filesystem_id,
        remounts=state.remounts,
        last_failure=state.last_failure,
        last_failure_unix_ms=state.last_failure_unix_ms,
    )


def attachment_of(sandbox_id: str, mount: pb.VolumeMount) -> Attachment:
    return Attachment(
        attachment_id=mount.attachment_id,
        volume_id=mount.volume_id,
        sandbox_id=sandbox_id,
        mount_path=mount.mount_path if sandbox_id else "",
        read_only=mount.read_only,
    )


def register_volume_handlers(
    dispatcher: RequestDispatcher, volumes: VolumeManager
) -> None:
    """Answer the five volume requests with `volumes`."""

    async def ensure(envelope: pb.Envelope, context: RequestContext) -> pb.Envelope:
        request = envelope.volume_ensure
        await volumes.ensure(request.volume_id, request.size_bytes)
        return pb.Envelope(volume_info=_info(await volumes.usage(request.volume_id)))

    async def attach(envelope: pb.Envelope, context: RequestContext) -> pb.Envelope:
        request = envelope.volume_attach
        host_path = await volumes.attach(
            attachment_of(request.sandbox_id, request.mount),
            request.size_bytes,
            request.filesystem_id,
        )
        return pb.Envelope(
            volume_attached=pb.VolumeAttached(
                attachment_id=request.mount.attachment_id,
                host_path=host_path,
                filesystem_id=volumes.filesystem.state.filesystem_id,
            )
        )

    async def detach(envelope: pb.Envelope, context: RequestContext) -> pb.Envelope:
        await volumes.detach(envelope.volume_detach.attachment_id)
        return pb.Envelope(ack=pb.Ack())

    async def delete(envelope: pb.Envelope, context: RequestContext) -> pb.Envelope:
        await volumes.delete(envelope.volume_delete.volume_id)
        return pb.Envelope(ack=pb.Ack())

    async def usage(envelope: pb.Envelope, context: RequestContext) -> pb.Envelope:
        found = await volumes.usage(envelope.volume_usage_request.volume_id)
        return pb.Envelope(volume_info=_info(found))

    dispatcher.register("volume_ensure", ensure)
    dispatcher.register("volume_attach", attach)
    dispatcher.register("volume_detach", detach)
    dispatcher.register("volume_delete", delete)
    dispatcher.register("volume_usage_request", usage)


def _info(usage: VolumeUsage) -> pb.VolumeInfo:
    return pb.VolumeInfo(
        volume_id=usage.volume_id,
        exists=usage.exists,
        used_bytes=usage.used_bytes,
        quota_bytes=usage.quota_bytes,
        inodes=usage.inodes,
        host_path=usage.host_path,
        filesystem_id=usage.filesystem_id,
    )
