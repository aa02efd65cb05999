"""The agent's side of host logs: HostLogsRequest, and the follow streams it opens.

How it works. A HostLogsRequest is answered with HostLogs: the newest `limit` lines
at or after `since_unix_ms` from the log buffer. With `follow` the request carries a
stream id, and after the answer every newer line goes out as a LogLine notice on that
stream, in order, until the control plane sends StreamClose on it or the channel
ends (the follow task lives in the channel's session nursery). The answer covers the
buffer up to one sequence number and the stream starts after it, so no line is sent
twice or skipped, whichever of the two the control plane reads first.
"""

from __future__ import annotations

import logging
import time

import trio

from gstacks_agent.errors import AlreadyExists, InvalidArgument
from gstacks_agent.log_buffer import LogBuffer, LogEntry
from gstacks_agent.rpc_dispatch import RequestContext
from gstacks_proto import pb
from gstacks_proto.rpc_peer import ChannelClosed

log = logging.getLogger("gstacks.agent.host_logs")


def log_line_message(entry: LogEntry) -> pb.LogLine:
    return pb.LogLine(
        time_unix_ms=entry.time_unix_ms,
        level=entry.level,
        logger=entry.logger,
        message=entry.message,
    )


class HostLogStreams:
    """Answers host log requests and runs their follow streams."""

    def __init__(self, buffer: LogBuffer) -> None:
        self._buffer = buffer
        self._follows: dict[int, trio.CancelScope] = {}

    async def handle_request(
        self, envelope: pb.Envelope, context: RequestContext
    ) -> pb.Envelope:
        """The `host_logs_request` handler for the request dispatcher."""
        request = envelope.host_logs_request
        entries, last_seq = self._buffer.lines(request.since_unix_ms, request.limit)
        if request.follow:
            stream_id = context.stream_id
            if not stream_id:
                raise InvalidArgument("following host logs needs a stream id")
            if stream_id in self._follows:
                raise AlreadyExists(f"log stream {stream_id} is already open")
            scope = trio.CancelScope()
            self._follows[stream_id] = scope
            context.session_nursery.start_soon(
                self._follow, context, stream_id, scope, last_seq
            )
        return pb.Envelope(
            host_logs=pb.HostLogs(lines=[log_line_message(e) for e in entries])
        )

    def on_stream_frame(self, envelope: pb.Envelope) -> bool:
        """Take a frame on one of our streams; False if the stream is not ours."""
        scope = self._follows.get(envelope.stream_id)
        if scope is None:
            return False
        if envelope.WhichOneof("body") == "stream_close":
            scope.cancel()
        return True

    async def _follow(
        self,
        context: RequestContext,
        stream_id: int,
        scope: trio.CancelScope,
        seq: int,
    ) -> None:
        # DEBUG only: a line per follow step at a kept level would feed itself.
        log.debug("log stream %s: following after entry %s", stream_id, seq)
        try:
            with scope:
                while True:
                    await self._buffer.wait_beyond(seq)
                    entries, missed = self._buffer.entries_after(seq)
                    if missed:
                        await context.send(
                            pb.Envelope(
                                stream_id=stream_id,
                                log_line=self._missed_line(missed),
                            )
                        )
                    for entry in entries:
                        await context.send(
                            pb.Envelope(
                                stream_id=stream_id, log_line=log_line_message(entry)
                            )
                        )
                    seq += missed + len(entries)
        except ChannelClosed:
            pass
        finally:
            self._follows.pop(stream_id, None)
            log.debug("log stream %s: ended", stream_id)

    def _missed_line(self, missed: int) -> pb.LogLine:
        return pb.LogLine(
            time_unix_ms=int(time.time() * 1000),
            level="WARNING",
            logger=log.name,
            message=(
                f"{missed} log line(s) were dropped: this follower fell more than "
                f"{self._buffer.capacity} lines behind"
            ),
        )
