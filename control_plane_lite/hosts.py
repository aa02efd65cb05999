"""Host records: registration, lookup, deletion, and the host's own log lines.

A host is recorded when it enrols (provisioning.py) or, for the standalone lab's own
host, at first start. Its credential is shown once and only its hash is kept in the
host row, so deleting the row is what revokes the credential: the next connection
with it is refused, and the channel open at that moment is closed at once.

Deleting a host that still has live sandboxes is refused (409) unless `force` is
given. Forced, the control plane first asks a connected host to delete each of them,
and marks those it could not reach `failed`: their records must not point at a host
that no longer exists.

Host logs come from the agent's in-memory log buffer over the channel: one
HostLogsRequest for the lines so far, and with `follow` a stream of LogLine notices
until the control plane sends StreamClose on that stream (the HTTP client left, or
the API key that opened it was revoked) or the channel ends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import trio

from control_plane_lite import ids
from control_plane_lite.agent_hub import AgentHub, StreamSink
from control_plane_lite.auth import Principal, hash_secret, new_secret
from control_plane_lite.clock import now_rfc3339, rfc3339_ms
from control_plane_lite.errors import AgentFailed, Conflict, HostUnavailable, NotFound
from control_plane_lite.sandboxes import LIVE_STATUSES, SandboxService
from control_plane_lite.store import Store
from gstacks_proto import pb
from gstacks_proto.rpc_peer import RemoteError

log = logging.getLogger("gstacks.cp.hosts")

CREDENTIAL_PREFIX = "ghc"
LOGS_TIMEOUT_S = 15.0
SANDBOX_DELETE_TIMEOUT_S = 60.0
STREAM_CLOSE_TIMEOUT_S = 5.0


def log_line_record(line: pb.LogLine) -> dict[str, Any]:
    """The API's shape of one agent log line."""
    return {
        "time": rfc3339_ms(line.time_unix_ms),
        "time_unix_ms": line.time_unix_ms,
        "level": line.level,
        "logger": line.logger,
        "message": line.message,
    }


@dataclass
class LogFollow:
    """An open follow of one host's logs: the lines so far, then the live stream."""

    host_id: str
    lines: list[dict[str, Any]]
    sink: StreamSink
    credential_id: str | None


class HostService:
    """Registers, finds and deletes hosts; reads their logs through the agent."""

    def __init__(self, store: Store, hub: AgentHub, sandboxes: SandboxService) -> None:
        self._store = store
        self._hub = hub
        self._sandboxes = sandboxes
        self._follows: dict[int, LogFollow] = {}

    def register(
        self,
        tenant_id: str,
        cluster_id: str,
        name: str,
        hostname: str = "",
        *,
        provisioning_token_id: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Record a host and return it with its credential (shown once)."""
        secret = new_secret(CREDENTIAL_PREFIX)
        row = self._store.insert(
            "hosts",
            {
                "id": ids.new_id("host"),
                "name": name,
                "tenant_id": tenant_id,
                "cluster_id": cluster_id,
                "hostname": hostname,
                "credential_hash": hash_secret(secret),
                "status": "disconnected",
                "created_at": now_rfc3339(),
                "provisioning_token_id": provisioning_token_id,
            },
        )
        return row, secret

    def get(self, principal: Principal, host_id: str) -> dict[str, Any]:
        row = self._store.get("hosts", host_id)
        if row is None or row["tenant_id"] != principal.tenant_id:
            raise NotFound(f"host {host_id} does not exist", host_id=host_id)
        return row

    def list(
        self,
        principal: Principal,
        limit: int,
        after_id: str | None,
        cluster_id: str | None = None,
    ) -> list[dict[str, Any]]:
        where: dict[str, Any] = {"tenant_id": principal.tenant_id}
        if cluster_id is not None:
            where["cluster_id"] = cluster_id
        return self._store.select("hosts", limit=limit, after_id=after_id, **where)

    async def delete(self, principal: Principal, host_id: str, *, force: bool) -> None:
        """Revoke the host's credential and close its channel now."""
        row = self.get(principal, host_id)
        live = self._store.select("sandboxes", host_id=host_id, status=LIVE_STATUSES)
        if live and not force:
            raise Conflict(
                f"host {host_id} still has {len(live)} live sandbox(es); delete them "
                "first or pass force=true",
                host_id=host_id,
                sandbox_ids=[s["id"] for s in live],
            )
        for sandbox in live:
            await self._remove_sandbox(principal, host_id, sandbox["id"])

        self._store.delete("hosts", host_id)
        closed = self._hub.disconnect(host_id)
        log.info(
            "host %s: deleted %r by %s; credential revoked%s",
            host_id,
            row["name"],
            principal.name,
            ", open channel closed" if closed else "",
        )

    async def _remove_sandbox(
        self, principal: Principal, host_id: str, sandbox_id: str
    ) -> None:
        if self._hub.is_connected(host_id):
            with trio.move_on_after(SANDBOX_DELETE_TIMEOUT_S):
                try:
                    await self._sandboxes.delete(principal, sandbox_id)
                    return
                except (AgentFailed, HostUnavailable, NotFound) as exc:
                    log.warning(
                        "sandbox %s: not deleted with its host %s: %s",
                        sandbox_id,
                        host_id,
                        exc.message,
                    )
        # Not deleted on the host: the record must still stop pointing at a live one.
        # This bypasses SandboxService's change events, so a waiter on this sandbox
        # only notices when its wait times out.
        self._store.update(
            "sandboxes",
            sandbox_id,
            status="failed",
            message=f"its host {host_id} was deleted",
            updated_at=now_rfc3339(),
        )

    # ---- logs ------------------------------------------------------------------------

    async def logs(
        self, principal: Principal, host_id: str, since_ms: int, limit: int
    ) -> list[dict[str, Any]]:
        """The host agent's most recent `limit` log lines at or after `since_ms`."""
        self.get(principal, host_id)
        reply = await self._request_logs(host_id, since_ms, limit, 0)
        return [log_line_record(line) for line in reply.lines]

    async def open_log_follow(
        self, principal: Principal, host_id: str, since_ms: int, limit: int
    ) -> LogFollow:
        """Start following a host's logs; the caller must end it with `close_follow`."""
        self.get(principal, host_id)
        sink = self._hub.open_stream(host_id)
        try:
            reply = await self._request_logs(host_id, since_ms, limit, sink.stream_id)
        except BaseException:
            self._hub.close_stream(sink)
            raise
        follow = LogFollow(
            host_id,
            [log_line_record(line) for line in reply.lines],
            sink,
            principal.credential_id,
        )
        self._follows[sink.stream_id] = follow
        log.info(
            "host %s: logs followed on stream %s by %s",
            host_id,
            sink.stream_id,
            principal.name,
        )
        return follow

    async def follow_lines(
        self, follow: LogFollow
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The lines so far, then each new one, until the stream ends."""
        for line in follow.lines:
            yield line
        async for envelope in follow.sink.receive:
            kind = envelope.WhichOneof("body")
            if kind == "log_line":
                yield log_line_record(envelope.log_line)
            elif kind == "stream_close":
                return

    async def close_follow(self, follow: LogFollow) -> None:
        """Stop the stream here and tell the agent to stop sending on it."""
        stream_id = follow.sink.stream_id
        if self._follows.pop(stream_id, None) is None:
            return
        self._hub.close_stream(follow.sink)
        with trio.move_on_after(STREAM_CLOSE_TIMEOUT_S):
            try:
                await self._hub.notify(
                    follow.host_id,
                    pb.Envelope(stream_id=stream_id, stream_close=pb.StreamClose()),
                )
            except HostUnavailable:
                pass
        log.info("host %s: log stream %s closed", follow.host_id, stream_id)

    def end_follows_of(self, credential_id: str) -> int:
        """End every log follow opened with a credential that was just revoked."""
        ended = 0
        for follow in list(self._follows.values()):
            if follow.credential_id == credential_id:
                # The response loop sees its stream end and calls close_follow.
                follow.sink.send.close()
                ended += 1
        return ended

    async def _request_logs(
        self, host_id: str, since_ms: int, limit: int, stream_id: int
    ) -> pb.HostLogs:
        request = pb.HostLogsRequest(
            since_unix_ms=since_ms, limit=limit, follow=bool(stream_id)
        )
        try:
            reply = await self._hub.request(
                host_id,
                pb.Envelope(stream_id=stream_id, host_logs_request=request),
                timeout_s=LOGS_TIMEOUT_S,
            )
        except RemoteError as exc:
            raise AgentFailed(
                f"host {host_id} could not read its logs: {exc.message}",
                host_id=host_id,
            ) from exc
        except trio.TooSlowError as exc:
            raise HostUnavailable(
                f"host {host_id} did not answer for its logs within {LOGS_TIMEOUT_S:g}s",
                host_id=host_id,
            ) from exc
        return reply.host_logs
