"""PtySession on the host: output, input, resize, exit codes and hang-up.

These need a kernel PTY but not root.
"""

from __future__ import annotations

import pytest
import trio

from gstacks_agent.errors import InvalidArgument
from gstacks_agent.terminals import PtySession
from gstacks_agent.terminals.errors import TerminalClosed


async def read_until(session, needle: bytes, timeout_s: float = 10.0) -> bytes:
    seen = b""
    with trio.fail_after(timeout_s):
        while needle not in seen:
            chunk = await session.read(4096)
            if not chunk:
                break
            seen += chunk
    return seen


async def read_all(session, timeout_s: float = 10.0) -> bytes:
    seen = b""
    with trio.fail_after(timeout_s):
        while chunk := await session.read(4096):
            seen += chunk
    return seen


@pytest.fixture
async def sessions():
    opened = []

    async def spawn(argv, **kwargs):
        session = await PtySession.spawn(argv, **kwargs)
        opened.append(session)
        return session

    try:
        yield spawn
    finally:
        for session in opened:
            await session.close(grace_s=1.0)


async def test_output_is_read_and_eof_follows_exit(sessions):
    session = await sessions(["/bin/sh", "-c", "echo hello"])
    assert b"hello" in await read_all(session)
    assert await session.wait() == 0


async def test_child_sees_a_terminal_with_the_requested_size(sessions):
    session = await sessions(["/bin/sh", "-c", "tty; stty size"], cols=111, rows=33)
    output = await read_all(session)
    assert b"/dev/pts/" in output
    assert b"33 111" in output


async def test_input_reaches_the_process(sessions):
    session = await sessions(["/bin/sh"], env={"PS1": "$ ", "PATH": "/usr/bin:/bin"})
    await session.write(b"echo $((6 * 7))\n")
    assert b"42" in await read_until(session, b"42")


async def test_resize_is_seen_by_the_process(sessions):
    session = await sessions(["/bin/sh"], env={"PS1": "$ ", "PATH": "/usr/bin:/bin"})
    session.resize(132, 50)
    assert session.size() == (132, 50)
    await session.write(b"stty size\n")
    assert b"50 132" in await read_until(session, b"50 132")


@pytest.mark.parametrize("cols, rows", [(0, 24), (80, 0), (1001, 24), (80, 1001)])
async def test_size_outside_bounds_is_refused(sessions, cols, rows):
    session = await sessions(["/bin/sh"])
    with pytest.raises(InvalidArgument):
        session.resize(cols, rows)


async def test_exit_status_comes_back(sessions):
    session = await sessions(["/bin/sh", "-c", "exit 7"])
    assert await session.wait() == 7


async def test_killed_process_reports_128_plus_signal(sessions):
    session = await sessions(["/bin/sh", "-c", "kill -9 $$"])
    assert await session.wait() == 128 + 9


async def test_close_hangs_up_an_interactive_shell(sessions):
    session = await sessions(["/bin/sh"])
    code = await session.close(grace_s=2.0)
    # sh ends on SIGHUP: the shell reports the signal as 128 + 1.
    assert code == 128 + 1


async def test_close_kills_a_process_that_ignores_hangup_and_term(sessions):
    session = await sessions(
        ["/bin/sh", "-c", "trap '' HUP TERM; echo ready; while :; do sleep 1; done"]
    )
    await read_until(session, b"ready")
    with trio.fail_after(5):
        assert await session.close(grace_s=0.4) == 128 + 9


def is_dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


async def test_close_also_ends_children_that_ignore_hangup(sessions):
    session = await sessions(
        ["/bin/sh", "-c", "trap '' HUP TERM; sleep 1000 & echo child=$!; wait"]
    )
    output = await read_until(session, b"child=")
    while not output.endswith(b"\n"):
        output += await read_until(session, b"\n")
    child = int(output.split(b"child=")[1].split()[0])
    assert not is_dead(child)
    await session.close(grace_s=0.4)
    with trio.fail_after(5):
        while not is_dead(child):
            await trio.sleep(0.05)


async def test_reading_a_closed_session_is_refused(sessions):
    session = await sessions(["/bin/sh", "-c", "true"])
    await session.close(grace_s=1.0)
    with pytest.raises(TerminalClosed):
        await session.read()
