"""Terminal sessions end to end: a real lab, a real sandbox, real PTYs.

Commands that produce binary output first put the sandbox's terminal in raw mode and
then wait for one key, sent once READY is seen: runc relays the sandbox's own PTY
through the agent's, and output written before runc has made the agent's PTY raw
would have its newlines translated.
"""

from __future__ import annotations

import hashlib
import socket
import statistics
import time

import pytest
import trio

from control_plane_lite.auth import Authenticator, hash_secret
from control_plane_lite.store import Store
from gstacks_cli import terminal
from tests.integration.terminals.conftest import (
    Lab,
    create_session,
    get_session,
    open_stream,
    reattach_stream,
)

pytestmark = pytest.mark.root

FIFTY_MB = 50 * 1024 * 1024
RAW_THEN_WAIT = "stty raw -echo; echo READY; head -c 1 >/dev/null; "
CLOSE_UNAUTHENTICATED = 4401
CLOSE_INVALID = 4400
CLOSE_NOT_FOUND = 4404
CLOSE_BUSY = 4409


def after_ready(output: bytes) -> bytes:
    """The output after the READY line."""
    start = output.index(b"READY")
    return output[output.index(b"\n", start) + 1 :]


# -- output integrity --------------------------------------------------------------


class _Collected:
    """An output file for `terminal.attach` that keeps what arrives."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass


async def test_fifty_megabytes_of_binary_output_arrive_byte_exact_through_the_cli(
    lab: Lab, sandbox: dict
):
    # The sandbox hashes exactly what it writes (tee into a FIFO read by sha256sum)
    # and prints the hash after the data. A session without a terminal ("tty":
    # false): a PTY would turn each "\n" of the data into "\r\n".
    command = (
        "mkfifo /tmp/hashed; sha256sum </tmp/hashed >/tmp/sum & "
        f"head -c {FIFTY_MB} /dev/urandom | tee /tmp/hashed; wait; cat /tmp/sum; "
        "rm /tmp/hashed /tmp/sum"
    )
    session_id = create_session(
        lab, "sandboxes", sandbox["id"], ["sh", "-c", command], tty=False
    )
    url = terminal.stream_url(lab.url, "sandboxes", sandbox["id"], session_id)
    received = _Collected()
    started = time.monotonic()
    with trio.fail_after(120):
        code = await terminal.attach(url, lab.key, output=received)
    elapsed = time.monotonic() - started

    assert code == 0
    data, trailer = received.data[:FIFTY_MB], bytes(received.data[FIFTY_MB:])
    assert trailer.split()[0].decode() == hashlib.sha256(data).hexdigest()
    print(f"50 MiB through the CLI in {elapsed:.1f} s")


async def test_stream_cut_mid_output_and_reattached_loses_and_repeats_no_byte(
    lab: Lab, sandbox: dict
):
    count = 500_000
    expected = b"".join(b"%d\n" % i for i in range(1, count + 1))
    session_id = create_session(
        lab, "sandboxes", sandbox["id"], ["sh", "-c", RAW_THEN_WAIT + f"seq {count}"]
    )

    async with open_stream(lab, "sandboxes", sandbox["id"], session_id) as first:
        await first.read_until(b"READY")
        await first.send(b"g")
        await first.read_bytes(1024 * 1024)
        # Gone mid-output, without a close frame, and with bytes in flight past
        # the last acknowledgement.
        await first.drop()
        cut_at = first.offset
    assert 1024 * 1024 <= cut_at < 2 * len(expected)

    async with reattach_stream(
        lab, "sandboxes", sandbox["id"], session_id, offset=cut_at
    ) as second:
        assert await second.read_to_exit() == 0
        assert second.attached_at == cut_at

    # Counted in the bytes the PTY sent: it turns each "\n" into "\r\n".
    whole = after_ready(bytes(first.data) + bytes(second.data))
    assert whole == expected.replace(b"\n", b"\r\n")


# -- flow control ------------------------------------------------------------------


def _attach_and_never_read(lab: Lab, path: str) -> socket.socket:
    """A client that completes the WebSocket handshake and then reads nothing."""
    host, port = lab.address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {lab.address}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {lab.key}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_second_session_keeps_answering_while_a_first_client_reads_nothing(
    lab: Lab, sandbox: dict
):
    flooding = create_session(lab, "sandboxes", sandbox["id"], ["yes", "flood"])
    path = f"/api/sandboxes/{sandbox['id']}/terminal-sessions/{flooding}/stream"
    # Without acks=client the server acknowledges what the socket accepted: a
    # client that never reads fills the socket and then the relay waits on it.
    stalled = _attach_and_never_read(lab, path)
    try:
        await trio.sleep(1)
        echo = create_session(
            lab, "sandboxes", sandbox["id"], ["sh", "-c", "stty -echo; echo READY; cat"]
        )
        round_trips = []
        async with open_stream(lab, "sandboxes", sandbox["id"], echo) as answering:
            await answering.read_until(b"READY")
            for i in range(30):
                started = time.monotonic()
                await answering.send(b"ping-%d\n" % i)
                await answering.read_until(b"ping-%d\r\n" % i, timeout_s=5)
                round_trips.append(time.monotonic() - started)
            await answering.send(b"\x04")
            assert await answering.read_to_exit() == 0
        with lab.client() as client:
            assert client.get("/api/hosts").status_code == 200
    finally:
        stalled.close()
        with lab.client() as client:
            client.delete(
                f"/api/sandboxes/{sandbox['id']}/terminal-sessions/{flooding}"
            )

    assert statistics.median(round_trips) < 0.1, round_trips
    assert max(round_trips) < 1.0, round_trips


# -- the terminal itself -----------------------------------------------------------


async def test_resize_is_seen_by_stty_size(lab: Lab, sandbox: dict):
    session_id = create_session(lab, "sandboxes", sandbox["id"], ["sh"], cols=80)

    async with open_stream(lab, "sandboxes", sandbox["id"], session_id) as shell:
        await shell.read_until(b"# ")
        await shell.resize(132, 43)
        await shell.send(b"stty size\n")
        await shell.read_until(b"43 132")
        await shell.send(b"exit 0\n")
        assert await shell.read_to_exit() == 0


async def test_absurd_sizes_are_ignored_and_the_session_keeps_working(
    lab: Lab, sandbox: dict
):
    session_id = create_session(lab, "sandboxes", sandbox["id"], ["sh"])

    async with open_stream(lab, "sandboxes", sandbox["id"], session_id) as shell:
        await shell.read_until(b"# ")
        await shell.resize(100, 30)
        for cols, rows in [(0, 0), (100_000, 5), (-1, 10), ("wide", 3), (None, 2)]:
            await shell.resize(cols, rows)
        await shell.ws.send_message("not json")
        await shell.ws.send_message('{"type": "unknown"}')
        await shell.send(b"stty size\n")
        await shell.read_until(b"30 100")
        await shell.send(b"exit 0\n")
        assert await shell.read_to_exit() == 0


def test_session_created_with_an_absurd_size_is_refused(lab: Lab, sandbox: dict):
    with lab.client() as client:
        for size in ({"cols": 0, "rows": 0}, {"cols": 100_000}, {"rows": "tall"}):
            created = client.post(
                f"/api/sandboxes/{sandbox['id']}/terminal-sessions", json=size
            )
            assert created.status_code == 400, created.text


async def test_several_sessions_at_once_each_get_their_output_and_exit_code(
    lab: Lab, sandbox: dict
):
    sessions = {
        code: create_session(
            lab,
            "sandboxes",
            sandbox["id"],
            ["sh", "-c", f"sleep 0.5; echo session-{code}; exit {code}"],
        )
        for code in range(1, 6)
    }
    results: dict[int, tuple[int | None, bytes]] = {}

    async def run(code: int, session_id: str) -> None:
        async with open_stream(lab, "sandboxes", sandbox["id"], session_id) as s:
            exit_code = await s.read_to_exit()
            results[code] = (exit_code, bytes(s.data))

    async with trio.open_nursery() as nursery:
        for code, session_id in sessions.items():
            nursery.start_soon(run, code, session_id)

    for code, (exit_code, output) in results.items():
        assert exit_code == code
        assert output.strip() == b"session-%d" % code
        record = get_session(lab, "sandboxes", sandbox["id"], sessions[code])
        assert (record["status"], record["exit_code"]) == ("exited", code)
    assert len(results) == 5


async def test_host_terminal_is_a_shell_on_the_host(lab: Lab, host_id: str):
    session_id = create_session(lab, "hosts", host_id)

    async with open_stream(lab, "hosts", host_id, session_id) as shell:
        await shell.send(b"echo host=$(cat /proc/sys/kernel/hostname) $((6*7))\n")
        await shell.read_until(f"host={socket.gethostname()} 42".encode())
        await shell.send(b"exit 3\n")
        assert await shell.read_to_exit() == 3

    record = get_session(lab, "hosts", host_id, session_id)
    assert (record["sandbox_id"], record["created_by"]) == (None, "admin")


# -- refusals ----------------------------------------------------------------------


async def test_unknown_session_id_is_closed_with_4404(lab: Lab, sandbox: dict):
    async with open_stream(lab, "sandboxes", sandbox["id"], "ts_0000000000000000") as s:
        assert await s.close_code() == CLOSE_NOT_FOUND


async def test_second_client_on_an_attached_session_gets_4409(lab: Lab, sandbox: dict):
    session_id = create_session(lab, "sandboxes", sandbox["id"], ["sh"])

    async with open_stream(lab, "sandboxes", sandbox["id"], session_id) as first:
        await first.read_until(b"# ")
        async with open_stream(lab, "sandboxes", sandbox["id"], session_id) as second:
            assert await second.close_code() == CLOSE_BUSY
        # The first client is not disturbed.
        await first.send(b"echo still-here\n")
        await first.read_until(b"still-here\r\n")
        await first.send(b"exit 0\n")
        assert await first.read_to_exit() == 0


async def test_stream_opened_with_another_tenants_key_is_refused(
    lab: Lab, sandbox: dict
):
    session_id = create_session(lab, "sandboxes", sandbox["id"], ["sh"])
    # A real key in the lab's database, belonging to another tenant.
    store = Store(lab.state_dir / "control-plane.db")
    secret = Authenticator(store).create_api_key("other-tenant", "u_other", "mallory")
    key_row = store.find_one("api_keys", key_hash=hash_secret(secret))
    store.update("api_keys", key_row["id"], tenant_id="tenant-other")

    async with open_stream(
        lab, "sandboxes", sandbox["id"], session_id, key=secret
    ) as intruder:
        assert await intruder.close_code() == CLOSE_NOT_FOUND
        assert intruder.data == b""
    with lab.client(secret) as client:
        got = client.get(f"/api/sandboxes/{sandbox['id']}/terminal-sessions")
        assert got.status_code == 404, got.text

    # The session was not started by the refused attempt.
    assert (
        get_session(lab, "sandboxes", sandbox["id"], session_id)["started_at"] is None
    )


async def test_stream_with_a_bad_key_is_closed_with_4401(lab: Lab, sandbox: dict):
    session_id = create_session(lab, "sandboxes", sandbox["id"], ["sh"])

    async with open_stream(
        lab, "sandboxes", sandbox["id"], session_id, key="gsk_not-a-key"
    ) as s:
        assert await s.close_code() == CLOSE_UNAUTHENTICATED


async def test_offset_on_a_never_started_session_is_4400(lab: Lab, sandbox: dict):
    session_id = create_session(lab, "sandboxes", sandbox["id"], ["sh"])

    async with open_stream(lab, "sandboxes", sandbox["id"], session_id, offset=10) as s:
        assert await s.close_code() == CLOSE_INVALID
    for query in ("offset=-1", "offset=abc", "acks=maybe", "colour=red"):
        async with open_stream(
            lab, "sandboxes", sandbox["id"], session_id, query=query
        ) as s:
            assert await s.close_code() == CLOSE_INVALID, query

    assert (
        get_session(lab, "sandboxes", sandbox["id"], session_id)["started_at"] is None
    )


# -- sessions outlive their client -------------------------------------------------


async def test_session_survives_its_client_and_is_found_again_on_reattach(
    lab: Lab, sandbox: dict
):
    session_id = create_session(lab, "sandboxes", sandbox["id"], ["sh"])

    async with open_stream(lab, "sandboxes", sandbox["id"], session_id) as first:
        await first.read_until(b"# ")
        await first.send(b"remembered=yes-$$\n")
        # The typed line is echoed too; only the command's output says "set-2".
        await first.send(b"echo set-$((1+1))\n")
        await first.read_until(b"set-2\r\n")
        left_at = first.offset

    await trio.sleep(3)
    record = get_session(lab, "sandboxes", sandbox["id"], session_id)
    assert (record["status"], record["attached"]) == ("open", False)

    async with reattach_stream(
        lab, "sandboxes", sandbox["id"], session_id, offset=left_at
    ) as second:
        await second.send(b"echo got=$remembered\n")
        output = await second.read_until(b"got=yes-")
        assert second.attached_at == left_at
        assert b"set-2" not in output  # nothing resent from before the offset
        await second.send(b"exit 0\n")
        assert await second.read_to_exit() == 0


async def test_exit_while_detached_is_delivered_on_reattach(lab: Lab, sandbox: dict):
    session_id = create_session(
        lab, "sandboxes", sandbox["id"], ["sh", "-c", "echo begun; sleep 1; exit 6"]
    )

    async with open_stream(lab, "sandboxes", sandbox["id"], session_id) as first:
        await first.read_until(b"begun")
        left_at = first.offset
    await trio.sleep(2.5)

    async with reattach_stream(
        lab, "sandboxes", sandbox["id"], session_id, offset=left_at
    ) as second:
        assert await second.read_to_exit() == 6
    record = get_session(lab, "sandboxes", sandbox["id"], session_id)
    assert (record["status"], record["exit_code"]) == ("exited", 6)


async def test_deleted_session_ends_its_process_and_refuses_reattach(
    lab: Lab, sandbox: dict
):
    session_id = create_session(lab, "sandboxes", sandbox["id"], ["sh"])
    async with open_stream(lab, "sandboxes", sandbox["id"], session_id) as first:
        await first.read_until(b"# ")

    with lab.client() as client:
        deleted = client.delete(
            f"/api/sandboxes/{sandbox['id']}/terminal-sessions/{session_id}"
        )
    assert deleted.status_code == 204, deleted.text
    assert (
        get_session(lab, "sandboxes", sandbox["id"], session_id)["status"] == "closed"
    )

    async with open_stream(
        lab, "sandboxes", sandbox["id"], session_id, offset=0
    ) as again:
        assert await again.close_code() == 4410
