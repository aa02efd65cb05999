"""The terminal stream protocol against the real lab: pipes, reattach, exit codes."""

from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import open_websocket_url

from .conftest import Lab

pytestmark = pytest.mark.root


async def create_session(lab: Lab, sandbox_id: str, **body: object) -> dict:
    def post() -> dict:
        with lab.client() as client:
            created = client.post(
                f"/api/sandboxes/{sandbox_id}/terminal-sessions", json=body
            )
            assert created.status_code == 201, created.text
            return created.json()

    return await trio.to_thread.run_sync(post)


def stream_url(lab: Lab, sandbox_id: str, session_id: str, query: str = "") -> str:
    url = f"ws://{lab.address}/api/sandboxes/{sandbox_id}/terminal-sessions/{session_id}/stream"
    return url + (f"?{query}" if query else "")


async def collect(ws, until_exit: bool = True) -> tuple[bytes, int | None, dict]:
    """Read frames: (output bytes, exit code or None, the attached frame)."""
    attached = json.loads(await ws.get_message())
    assert attached["type"] == "attached"
    output = bytearray()
    while True:
        message = await ws.get_message()
        if isinstance(message, bytes):
            output += message
            continue
        control = json.loads(message)
        if control["type"] == "exit":
            return bytes(output), control["exit_code"], attached


@pytest.fixture
def running_sandbox(lab: Lab):
    sandbox = lab.create_sandbox(image="lab/busybox:latest")
    yield sandbox
    lab.delete_sandbox(sandbox["id"])


async def test_a_session_without_tty_passes_bytes_unchanged_and_ends_input(
    lab: Lab, running_sandbox: dict
):
    sandbox_id = running_sandbox["id"]
    script = "cat; printf 'line\\n'; echo to-stderr >&2; exit 5"
    session = await create_session(
        lab, sandbox_id, command=["sh", "-c", script], tty=False
    )
    headers = [("Authorization", f"Bearer {lab.key}")]
    with trio.fail_after(30):
        async with open_websocket_url(
            stream_url(lab, sandbox_id, session["id"]), extra_headers=headers
        ) as ws:
            await ws.send_message(b"\x00binary\xff\n")
            await ws.send_message(json.dumps({"type": "eof"}))
            output, code, attached = await collect(ws)
    assert attached["offset"] == 0
    # runc relays stdout and stderr separately, so only each stays in order.
    assert b"to-stderr\n" in output
    assert output.replace(b"to-stderr\n", b"", 1) == b"\x00binary\xff\nline\n"
    assert code == 5


async def test_a_tty_session_reports_a_terminal(lab: Lab, running_sandbox: dict):
    sandbox_id = running_sandbox["id"]
    session = await create_session(
        lab, sandbox_id, command=["sh", "-c", "tty; stty size"], cols=91, rows=33
    )
    headers = [("Authorization", f"Bearer {lab.key}")]
    with trio.fail_after(30):
        async with open_websocket_url(
            stream_url(lab, sandbox_id, session["id"]), extra_headers=headers
        ) as ws:
            output, code, _ = await collect(ws)
    lines = output.decode().split("\r\n")
    assert lines[0].startswith("/dev/pts/")
    assert lines[1] == "33 91"
    assert code == 0


async def test_a_detached_session_keeps_running_and_reattach_resumes_at_the_offset(
    lab: Lab, running_sandbox: dict
):
    sandbox_id = running_sandbox["id"]
    # Prints numbered lines slowly, so the client can leave halfway.
    script = "i=0; while [ $i -lt 40 ]; do echo line-$i; i=$((i+1)); sleep 0.05; done"
    session = await create_session(
        lab, sandbox_id, command=["sh", "-c", script], tty=False
    )
    headers = [("Authorization", f"Bearer {lab.key}")]
    url = stream_url(lab, sandbox_id, session["id"], "acks=client")
    received = bytearray()
    with trio.fail_after(30):
        async with open_websocket_url(url, extra_headers=headers) as ws:
            json.loads(await ws.get_message())
            while received.count(b"\n") < 10:
                received += await ws.get_message()
                await ws.send_message(
                    json.dumps({"type": "ack", "offset": len(received)})
                )
        # Gone for a while: the command goes on without a client.
        await trio.sleep(0.5)
        with lab.client() as client:
            row = client.get(
                f"/api/sandboxes/{sandbox_id}/terminal-sessions/{session['id']}"
            ).json()
        assert row["status"] == "open" and row["attached"] is False

        async with open_websocket_url(
            stream_url(
                lab, sandbox_id, session["id"], f"acks=client&offset={len(received)}"
            ),
            extra_headers=headers,
        ) as ws:
            rest, code, attached = await collect(ws)
    assert attached["offset"] == len(received)
    whole = bytes(received) + rest
    assert whole == b"".join(f"line-{i}\n".encode() for i in range(40))
    assert code == 0


async def test_sandbox_activity_lists_what_happened_newest_first(lab: Lab):
    sandbox = lab.create_sandbox(image="lab/busybox:latest")
    session = await create_session(
        lab, sandbox["id"], command=["sh", "-c", "exit 3"], tty=False
    )
    headers = [("Authorization", f"Bearer {lab.key}")]
    with trio.fail_after(30):
        async with open_websocket_url(
            stream_url(lab, sandbox["id"], session["id"]), extra_headers=headers
        ) as ws:
            _, code, _ = await collect(ws)
    assert code == 3
    lab.delete_sandbox(sandbox["id"])

    with lab.client() as client:
        everything = client.get(f"/api/sandboxes/{sandbox['id']}/activity").json()
        kinds = [entry["kind"] for entry in everything["items"]]
        assert kinds[0] == "deleted" and kinds[-1] == "created", kinds
        for kind in ("running", "terminal_opened", "terminal_closed", "deleting"):
            assert kind in kinds
        assert kinds.index("terminal_closed") < kinds.index("terminal_opened")
        closed = everything["items"][kinds.index("terminal_closed")]
        assert closed["details"]["exit_code"] == 3

        # Paged two at a time, the same entries come back in the same order.
        paged, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get(f"/api/sandboxes/{sandbox['id']}/activity", params=params)
            paged += [entry["kind"] for entry in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert paged == kinds


async def test_a_session_left_without_its_client_past_its_grace_is_closed(
    tmp_path, busybox_layout
):
    from .conftest import start_lab, stop_lab

    short = start_lab(
        tmp_path / "state",
        busybox_layout,
        extra_env={"GSTACKS_TERMINALS": "{grace_s: 2}"},
    )
    try:
        short.push(busybox_layout, "lab/busybox")
        sandbox = short.create_sandbox(image="lab/busybox:latest")
        session = await create_session(short, sandbox["id"], command=["sleep", "600"])
        headers = [("Authorization", f"Bearer {short.key}")]
        with trio.fail_after(30):
            async with open_websocket_url(
                stream_url(short, sandbox["id"], session["id"]), extra_headers=headers
            ) as ws:
                json.loads(await ws.get_message())
        url = f"/api/sandboxes/{sandbox['id']}/terminal-sessions/{session['id']}"
        with short.client() as client:
            assert client.get(url).json()["status"] == "open"
            with trio.fail_after(20):
                while client.get(url).json()["status"] == "open":
                    await trio.sleep(0.5)
            assert client.get(url).json()["status"] == "closed"
        short.delete_sandbox(sandbox["id"])
    finally:
        stop_lab(short)


@pytest.mark.parametrize("tty", [False, True])
async def test_a_missing_program_exits_127_as_in_a_shell(
    lab: Lab, running_sandbox: dict, tty: bool
):
    sandbox_id = running_sandbox["id"]
    session = await create_session(
        lab, sandbox_id, command=["/no/such/program"], tty=tty
    )
    headers = [("Authorization", f"Bearer {lab.key}")]
    with trio.fail_after(30):
        async with open_websocket_url(
            stream_url(lab, sandbox_id, session["id"]), extra_headers=headers
        ) as ws:
            _, code, _ = await collect(ws)
    assert code == 127
