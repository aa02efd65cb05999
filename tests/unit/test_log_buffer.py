"""The agent's in-memory log buffer and the host log streams served from it."""

from __future__ import annotations

import logging
import threading

import pytest
import trio

from gstacks_agent.errors import InvalidArgument
from gstacks_agent.host_logs import HostLogStreams
from gstacks_agent.log_buffer import LogBuffer
from gstacks_agent.rpc_dispatch import RequestContext
from gstacks_proto import pb


@pytest.fixture
def logger_and_buffer():
    buffer = LogBuffer(capacity=5)
    logger = logging.getLogger(f"gstacks.test.{id(buffer)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(buffer)
    try:
        yield logger, buffer
    finally:
        logger.removeHandler(buffer)


def test_buffer_keeps_only_the_newest_records(logger_and_buffer):
    logger, buffer = logger_and_buffer
    for n in range(8):
        logger.info("line %d", n)

    lines, last_seq = buffer.lines()

    assert [e.message for e in lines] == [f"line {n}" for n in range(3, 8)]
    assert last_seq == 8
    assert lines[-1].level == "INFO" and lines[-1].logger == logger.name


def test_limit_takes_the_newest_and_since_the_later_lines(logger_and_buffer):
    logger, buffer = logger_and_buffer
    for n in range(4):
        logger.warning("w%d", n)
    entries, _ = buffer.lines()

    newest_two, _ = buffer.lines(limit=2)
    since_third, _ = buffer.lines(since_ms=entries[2].time_unix_ms)

    assert [e.message for e in newest_two] == ["w2", "w3"]
    assert {"w2", "w3"} <= {e.message for e in since_third}
    assert buffer.lines(since_ms=entries[-1].time_unix_ms + 60_000)[0] == []


def test_exception_text_is_part_of_the_line(logger_and_buffer):
    logger, buffer = logger_and_buffer
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")

    (entry,), _ = buffer.lines()
    assert entry.message.startswith("failed\nTraceback")
    assert "RuntimeError: boom" in entry.message


def test_reader_behind_the_ring_learns_how_many_lines_it_missed(logger_and_buffer):
    logger, buffer = logger_and_buffer
    logger.info("a")
    _, seq = buffer.lines()
    for n in range(7):
        logger.info("b%d", n)

    newer, missed = buffer.entries_after(seq)

    assert missed == 2
    assert [e.message for e in newer] == [f"b{n}" for n in range(2, 7)]


async def test_waiter_wakes_for_a_record_logged_from_another_thread(
    logger_and_buffer,
):
    logger, buffer = logger_and_buffer
    seq = buffer.last_seq

    async def log_later() -> None:
        await trio.sleep(0.05)
        thread = threading.Thread(target=logger.info, args=("from a thread",))
        thread.start()
        thread.join()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(log_later)
            await buffer.wait_beyond(seq)

    assert buffer.entries_after(seq)[0][0].message == "from a thread"


async def test_follow_sends_new_lines_on_its_stream_until_stream_close(
    logger_and_buffer,
):
    logger, buffer = logger_and_buffer
    streams = HostLogStreams(buffer)
    logger.info("before")
    sent_to, received = trio.open_memory_channel[pb.Envelope](100)

    async with trio.open_nursery() as nursery:
        context = RequestContext(7, sent_to.send, nursery, object())
        request = pb.Envelope(
            stream_id=7,
            host_logs_request=pb.HostLogsRequest(limit=10, follow=True),
        )
        reply = await streams.handle_request(request, context)
        assert [line.message for line in reply.host_logs.lines] == ["before"]

        logger.info("after")
        with trio.fail_after(5):
            notice = await received.receive()
        assert notice.stream_id == 7
        assert notice.log_line.message == "after"

        close = pb.Envelope(stream_id=7, stream_close=pb.StreamClose())
        assert streams.on_stream_frame(close)
        # A frame on a stream that is not a log stream is left to others.
        assert not streams.on_stream_frame(pb.Envelope(stream_id=8))

    logger.info("after the close")
    with pytest.raises(trio.WouldBlock):
        received.receive_nowait()


async def test_follow_without_a_stream_is_refused(logger_and_buffer):
    _, buffer = logger_and_buffer

    async def send(envelope: pb.Envelope) -> None:
        raise AssertionError("nothing may be sent")

    async with trio.open_nursery() as nursery:
        context = RequestContext(0, send, nursery, object())
        request = pb.Envelope(host_logs_request=pb.HostLogsRequest(follow=True))
        with pytest.raises(InvalidArgument, match="needs a stream id"):
            await HostLogStreams(buffer).handle_request(request, context)
