"""A second host in its own network namespace joins the lab with a provisioning token.

The lab listens on the host side of a veth pair (198.18.N.1/30); the other end
(198.18.N.2/30) is in a network namespace of its own, where `gstacks-agent enroll`
and then `gstacks-agent run` execute with their own state dir and runc root. Everything the
second host does (pulling the image, running runc for its sandbox, its log lines)
happens in that namespace and reaches the lab only over the veth link.

Also here: the refusals of bad tokens, revoked API keys (on HTTP, on an open log
follow, on an open terminal WebSocket), and another tenant's key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import h11
import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, wrap_client_stream

from .conftest import VENV_BIN, Lab, force_cleanup, start_lab, stop_lab

pytestmark = pytest.mark.root

CONNECT_TIMEOUT_S = 30


@dataclass
class Netns:
    name: str
    outer_link: str
    host_ip: str
    inner_ip: str

    def command(self, *args: str) -> list[str]:
        """`args` run in the namespace's network stack, and in nothing else of it.

        Not `ip netns exec`: that also gives the command a mount namespace with a
        fresh /sys, which hides the cgroup hierarchy runc needs. nsenter execs the
        command in place, so the PID it starts is the command's.
        """
        return ["nsenter", f"--net=/run/netns/{self.name}", *args]

    def run(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=60,
            **kwargs,
        )


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _free_subnet() -> int:
    """A third octet N whose 198.18.N.0/30 no interface here uses."""
    for _ in range(50):
        octet = 1 + secrets.randbelow(254)
        if not _ip("-4", "addr", "show", "to", f"198.18.{octet}.0/30").stdout.strip():
            return octet
    raise RuntimeError("no free 198.18.N.0/30 subnet")


@pytest.fixture(scope="module")
def netns() -> Iterator[Netns]:
    """A namespace joined to this one by a veth pair; removed with its links after."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tag = secrets.token_hex(3)
    octet = _free_subnet()
    space = Netns(
        f"gstacks-t-{tag}", f"gsth{tag}", f"198.18.{octet}.1", f"198.18.{octet}.2"
    )
    inner_link = f"gstn{tag}"
    try:
        _ip("netns", "add", space.name)
        _ip("link", "add", space.outer_link, "type", "veth", "peer", "name", inner_link)
        _ip("link", "set", inner_link, "netns", space.name)
        _ip("addr", "add", f"{space.host_ip}/30", "dev", space.outer_link)
        _ip("link", "set", space.outer_link, "up")
        _ip("-n", space.name, "addr", "add", f"{space.inner_ip}/30", "dev", inner_link)
        _ip("-n", space.name, "link", "set", inner_link, "up")
        _ip("-n", space.name, "link", "set", "lo", "up")
        yield space
    finally:
        # Deleting the namespace deletes the inner end, and with it the pair.
        _ip("netns", "del", space.name, check=False)
        _ip("link", "del", space.outer_link, check=False)


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory, busybox_layout: Path, netns: Netns
) -> Iterator[Lab]:
    """A lab reachable from the namespace: it listens on the veth's host side."""
    state_dir = tmp_path_factory.mktemp("lab-two-hosts") / "state"
    running = start_lab(state_dir, busybox_layout, bind=netns.host_ip)
    try:
        running.push(busybox_layout, "lab/busybox")
        yield running
    finally:
        stop_lab(running)


class NetnsAgent:
    """`gstacks-agent enroll` and `run` in the namespace, with their own state."""

    def __init__(self, lab: Lab, netns: Netns, root: Path, name: str) -> None:
        self.lab = lab
        self.netns = netns
        self.name = name
        self.state_dir = root / name
        self.runc_root = Path("/run/gstacks-test") / f"{netns.name}-{name}"
        self.log_path = root / f"{name}.log"
        self.process: subprocess.Popen | None = None
        # A clean environment: no GSTACKS_* of the caller leaks into the agent.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GSTACKS_")}
        self.env["GSTACKS_RUNC_ROOT"] = str(self.runc_root)

    @property
    def control_plane_url(self) -> str:
        return f"http://{self.netns.host_ip}:{self.lab.address.rsplit(':', 1)[1]}"

    def enroll(self, token: str, *extra: str) -> subprocess.CompletedProcess:
        return self.netns.run(
            str(VENV_BIN / "gstacks-agent"),
            "enroll",
            "--control-plane",
            self.control_plane_url,
            "--token",
            token,
            "--state-dir",
            str(self.state_dir),
            "--name",
            self.name,
            *extra,
            env=self.env,
        )

    @property
    def host_id(self) -> str:
        identity = json.loads((self.state_dir / "agent" / "identity.json").read_text())
        return identity["host_id"]

    @property
    def credential(self) -> str:
        return (self.state_dir / "agent" / "credential").read_text().strip()

    def start(self) -> None:
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self.netns.command(
                    str(VENV_BIN / "gstacks-agent"),
                    "run",
                    "--state-dir",
                    str(self.state_dir),
                ),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL; remove its containers and mounts."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        force_cleanup(self.state_dir, self.runc_root)


def new_token(lab: Lab, **body: object) -> dict:
    with lab.client() as client:
        if "cluster_id" not in body:
            clusters = client.get("/api/clusters").json()["items"]
            body["cluster_id"] = next(
                c["id"] for c in clusters if c["name"] == "default"
            )
        created = client.post("/api/provisioning-tokens", json=body)
        assert created.status_code == 201, created.text
        return created.json()


def wait_for_status(lab: Lab, host_id: str, status: str) -> dict:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    with lab.client() as client:
        while time.monotonic() < deadline:
            got = client.get(f"/api/hosts/{host_id}")
            if got.status_code == 200 and got.json()["status"] == status:
                return got.json()
            time.sleep(0.2)
    raise AssertionError(f"host {host_id} did not become {status}")


@pytest.fixture(scope="module")
def second_host(
    lab: Lab, netns: Netns, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NetnsAgent]:
    agent = NetnsAgent(lab, netns, tmp_path_factory.mktemp("second-host"), "second")
    try:
        token = new_token(lab)
        enrolled = agent.enroll(token["token"])
        assert enrolled.returncode == 0, enrolled.stderr
        agent.start()
        wait_for_status(lab, agent.host_id, "connected")
        yield agent
    finally:
        agent.stop()


@pytest.fixture(scope="module")
def remote_sandbox(lab: Lab, second_host: NetnsAgent) -> Iterator[dict]:
    """A sandbox placed on the second host."""
    sandbox = lab.create_sandbox(
        image="lab/busybox:latest", host_id=second_host.host_id
    )
    try:
        yield sandbox
    finally:
        with lab.client() as client:
            client.delete(f"/api/sandboxes/{sandbox['id']}")


@dataclass
class LogFollow:
    status: int
    content_type: str
    lines: trio.MemoryReceiveChannel[dict]


@asynccontextmanager
async def follow_logs(lab: Lab, host_id: str, key: str) -> AsyncIterator[LogFollow]:
    """GET the host's logs with follow=true; the lines arrive decoded, one by one.

    Plain h11 over a trio socket, so that leaving the block closes the connection
    at once, the way a client that goes away does.
    """
    address, port = lab.address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(address, int(port))
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=f"/api/hosts/{host_id}/logs?follow=true&limit=1",
        headers=[("Host", lab.address), ("Authorization", f"Bearer {key}")],
    )
    await stream.send_all(
        connection.send(request) + connection.send(h11.EndOfMessage())
    )

    async def next_event() -> h11.Event:
        while (event := connection.next_event()) is h11.NEED_DATA:
            connection.receive_data(await stream.receive_some())
        return event

    send, receive = trio.open_memory_channel[dict](1000)

    async def read_lines() -> None:
        pending = b""
        async with send:
            while isinstance(event := await next_event(), h11.Data):
                pending += event.data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    await send.send(json.loads(line))

    with trio.fail_after(10):
        response = await next_event()
    assert isinstance(response, h11.Response)
    headers = {k.decode(): v.decode() for k, v in response.headers}
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_lines)
            yield LogFollow(response.status_code, headers["content-type"], receive)
            nursery.cancel_scope.cancel()
    finally:
        await stream.aclose()


@asynccontextmanager
async def websocket(lab: Lab, resource: str, key: str) -> AsyncIterator[object]:
    """A WebSocket to `resource` whose TCP stream we own and close.

    trio-websocket leaves the socket open when the server closes first, which is
    what every refusal here does.
    """
    address, port = lab.address.rsplit(":", 1)
    tcp = await trio.open_tcp_stream(address, int(port))
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(
                nursery,
                tcp,
                lab.address,
                resource,
                extra_headers=[(b"authorization", f"Bearer {key}".encode())],
            )
            try:
                yield ws
            finally:
                with trio.move_on_after(2) as cleanup:
                    cleanup.shield = True
                    with suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                        await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await tcp.aclose()


def revoke_key(lab: Lab, key_id: str) -> httpx.Response:
    with lab.client() as client:
        return client.delete(f"/api/api-keys/{key_id}")


def api_key(lab: Lab, **body: object) -> dict:
    with lab.client() as client:
        created = client.post("/api/api-keys", json={"name": "test", **body})
        assert created.status_code == 201, created.text
        return created.json()


# -- enrollment and the host record ---------------------------------------------------


def test_enrolled_host_connects_with_its_identity_and_routing_addresses(
    lab: Lab, second_host: NetnsAgent
):
    identity_dir = second_host.state_dir / "agent"
    for name in ("credential", "identity.json"):
        assert (identity_dir / name).stat().st_mode & 0o777 == 0o600
    assert second_host.credential.startswith("ghc_")

    host = wait_for_status(lab, second_host.host_id, "connected")

    assert host["name"] == "second"
    assert f"{second_host.netns.inner_ip}/30" in host["routing"]["addresses"]
    # Every connected host gets its address on the mesh (100.64.0.0/10).
    mesh_address = ipaddress.ip_address(host["routing"]["mesh_address"])
    assert mesh_address in ipaddress.ip_network("100.64.0.0/10")
    assert host["overview"]["agent_version"] == host["agent_version"]
    assert any(c.startswith("oci-runtime") for c in host["capabilities"])
    with lab.client() as client:
        clusters = {c["name"]: c for c in client.get("/api/clusters").json()["items"]}
        hosts = client.get("/api/hosts").json()["items"]
    default = clusters["default"]
    assert host["cluster_id"] == default["id"]
    assert {h["cluster_id"] for h in hosts} == {default["id"]}
    # The lab's own host does not have the namespace's address.
    local = next(h for h in hosts if h["id"] != second_host.host_id)
    assert f"{second_host.netns.inner_ip}/30" not in local["routing"]["addresses"]

    listed = lab.gstacks("host", "list")
    assert listed.returncode == 0, listed.stderr
    assert second_host.host_id in listed.stdout


async def test_sandbox_on_the_second_host_runs_there_and_its_log_is_followed(
    lab: Lab, second_host: NetnsAgent
):
    async with follow_logs(lab, second_host.host_id, lab.key) as follow:
        assert follow.status == 200
        assert follow.content_type == "application/x-ndjson"
        with trio.fail_after(10):
            first = await follow.lines.receive()
        assert {"time", "level", "logger", "message"} <= set(first)

        sandbox = await trio.to_thread.run_sync(
            lambda: lab.create_sandbox(
                image="lab/busybox:latest", host_id=second_host.host_id
            )
        )
        # The agent in the namespace logs the pull for this sandbox.
        with trio.fail_after(20):
            async for line in follow.lines:
                if sandbox["id"] in line["message"]:
                    break
        assert line["logger"].startswith("gstacks.agent")

    try:
        assert sandbox["host_id"] == second_host.host_id
        # runc ran in the namespace's agent: the container is under its runc root.
        listed = await trio.run_process(
            ["runc", "--root", str(second_host.runc_root), "list", "-q"],
            capture_stdout=True,
        )
        assert sandbox["id"] in listed.stdout.decode().split()

        echoed = await trio.to_thread.run_sync(
            lambda: lab.gstacks("sandbox", "exec", sandbox["id"], "--", "hostname")
        )
        assert echoed.returncode == 0, echoed.stderr
        assert echoed.stdout.strip() == sandbox["name"]

        # The client's leaving reached the control plane, which closed the stream.
        opened = re.findall(r"logs followed on stream (\d+)", lab.log_path.read_text())
        with trio.fail_after(10):
            while f"log stream {opened[-1]} closed" not in lab.log_path.read_text():
                await trio.sleep(0.1)
    finally:
        await trio.to_thread.run_sync(lab.delete_sandbox, sandbox["id"])


def test_host_logs_without_follow_are_a_list_newest_last(
    lab: Lab, second_host: NetnsAgent
):
    with lab.client() as client:
        got = client.get(
            f"/api/hosts/{second_host.host_id}/logs", params={"limit": 500}
        )
        assert got.status_code == 200, got.text
        lines = got.json()["items"]
        assert any("connected; heartbeat every" in line["message"] for line in lines)
        times = [line["time_unix_ms"] for line in lines]
        assert times == sorted(times)

        later = client.get(
            f"/api/hosts/{second_host.host_id}/logs",
            params={"since": str(times[-1] + 60_000)},
        )
        assert later.json()["items"] == []
        bad = client.get(
            f"/api/hosts/{second_host.host_id}/logs", params={"since": "yesterday"}
        )
        assert bad.status_code == 400

    shown = lab.gstacks("host", "logs", second_host.host_id, "--limit", "3")
    assert shown.returncode == 0, shown.stderr
    assert len(shown.stdout.splitlines()) == 3


# -- tokens that must not enroll ----------------------------------------------------------


def test_bad_tokens_are_refused_and_leave_no_host(lab: Lab):
    with lab.client() as client:
        hosts_before = len(client.get("/api/hosts").json()["items"])

        def enroll(secret: str, **body: object) -> httpx.Response:
            # No API key: the token is the credential.
            with lab.client(key="") as anonymous:
                return anonymous.post(
                    "/api/hosts/enroll", json={"token": secret, **body}
                )

        expired = new_token(lab, ttl_s=1)
        revoked = new_token(lab)
        client.delete(f"/api/provisioning-tokens/{revoked['id']}")
        once = new_token(lab, max_uses=1)
        other_cluster = client.post("/api/clusters", json={"name": "edge"}).json()
        time.sleep(1.1)

        refused = enroll(expired["token"])
        assert (refused.status_code, refused.json()["error"]["details"]["status"]) == (
            401,
            "expired",
        )
        refused = enroll(revoked["token"])
        assert refused.status_code == 401
        assert "revoked" in refused.json()["error"]["message"]
        refused = enroll(once["token"], cluster_id=other_cluster["id"])
        assert refused.status_code == 403
        assert f"not {other_cluster['id']}" in refused.json()["error"]["message"]
        assert enroll("gpt_not-a-token").status_code == 401

        first = enroll(once["token"], name="throwaway")
        assert first.status_code == 201, first.text
        refused = enroll(once["token"])
        assert refused.status_code == 401
        assert "used 1 of 1 times" in refused.json()["error"]["message"]
        deleted = client.delete(f"/api/hosts/{first.json()['host_id']}")
        assert deleted.status_code == 204

        managed = client.post(
            "/api/clusters", json={"name": "capacity", "kind": "managed"}
        ).json()
        refused = client.post(
            "/api/provisioning-tokens", json={"cluster_id": managed["id"]}
        )
        assert refused.status_code == 400
        assert "only target BYO clusters" in refused.json()["error"]["message"]

        assert len(client.get("/api/hosts").json()["items"]) == hosts_before
        # The secrets are never shown again.
        listed = client.get("/api/provisioning-tokens").json()["items"]
        assert all("token" not in t for t in listed)
        assert client.get(f"/api/provisioning-tokens/{once['id']}").json()[
            "status"
        ] == ("exhausted")

        for cluster in (other_cluster, managed):
            assert client.delete(f"/api/clusters/{cluster['id']}").status_code == 204


def test_agent_enroll_with_a_used_up_token_says_why_in_one_line(
    lab: Lab, netns: Netns, tmp_path: Path
):
    token = new_token(lab, max_uses=1)
    agent = NetnsAgent(lab, netns, tmp_path, "late")
    with lab.client(key="") as anonymous:
        used = anonymous.post("/api/hosts/enroll", json={"token": token["token"]})
    try:
        refused = agent.enroll(token["token"])

        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines()[-1] == (
            f"Error: the control plane at {agent.control_plane_url} refused to enroll "
            f"this host: provisioning token {token['id']} has been used 1 of 1 times"
        )
        assert not (agent.state_dir / "agent" / "credential").exists()
    finally:
        with lab.client() as client:
            client.delete(f"/api/hosts/{used.json()['host_id']}")


def test_cluster_with_an_enrolled_host_cannot_be_deleted(
    lab: Lab, second_host: NetnsAgent
):
    with lab.client() as client:
        host = client.get(f"/api/hosts/{second_host.host_id}").json()
        refused = client.delete(f"/api/clusters/{host['cluster_id']}")
        assert refused.status_code == 409
        assert "enrolled host" in refused.json()["error"]["message"]


# -- API keys ----------------------------------------------------------------------------


async def test_revoked_key_is_refused_at_once_on_requests_and_open_streams(
    lab: Lab, second_host: NetnsAgent, remote_sandbox: dict
):
    key = api_key(lab)
    with lab.client(key=key["key"]) as client:
        assert client.get("/api/hosts").status_code == 200
        session = client.post(
            f"/api/sandboxes/{remote_sandbox['id']}/terminal-sessions",
            json={"command": ["sleep", "60"]},
        ).json()
    stream = (
        f"/api/sandboxes/{remote_sandbox['id']}"
        f"/terminal-sessions/{session['id']}/stream"
    )

    async with follow_logs(lab, second_host.host_id, key["key"]) as follow:
        with trio.fail_after(10):
            await follow.lines.receive()
        async with websocket(lab, stream, key["key"]) as ws:
            with trio.fail_after(10):
                assert json.loads(await ws.get_message())["type"] == "attached"

            revoked = await trio.to_thread.run_sync(revoke_key, lab, key["id"])
            assert revoked.status_code == 200
            assert revoked.json()["revoked_at"] is not None

            # Both open streams end within moments.
            with trio.fail_after(5):
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await ws.get_message()
            assert closed.value.reason.code == 4401
            with trio.fail_after(5):
                async for _ in follow.lines:
                    pass

    with lab.client(key=key["key"]) as client:
        refused = client.get("/api/hosts")
        assert refused.status_code == 401
    with lab.client() as client:
        listed = client.get("/api/api-keys").json()["items"]
        mine = next(k for k in listed if k["id"] == key["id"])
        assert mine["revoked_at"] is not None and "key" not in mine


async def test_another_tenants_key_sees_and_opens_nothing_of_this_tenant(
    lab: Lab, second_host: NetnsAgent, remote_sandbox: dict
):
    other = api_key(lab, name="intruder", tenant_id="tnt_other")
    assert other["tenant_id"] == "tnt_other"
    sandbox_id = remote_sandbox["id"]
    with lab.client() as client:
        session = client.post(
            f"/api/sandboxes/{sandbox_id}/terminal-sessions",
            json={"command": ["true"]},
        ).json()

    with lab.client(key=other["key"]) as client:
        assert client.get("/api/hosts").json()["items"] == []
        assert client.get("/api/clusters").json()["items"] == []
        assert client.get("/api/provisioning-tokens").json()["items"] == []
        sandboxes = client.get("/api/sandboxes").json()["items"]
        assert sandbox_id not in {s["id"] for s in sandboxes}
        for path in (
            f"/api/sandboxes/{sandbox_id}",
            f"/api/sandboxes/{sandbox_id}/terminal-sessions",
            f"/api/sandboxes/{sandbox_id}/terminal-sessions/{session['id']}",
            f"/api/hosts/{second_host.host_id}",
            f"/api/hosts/{second_host.host_id}/logs",
        ):
            assert client.get(path).status_code == 404, path
        assert (
            client.post(
                f"/api/sandboxes/{sandbox_id}/terminal-sessions", json={}
            ).status_code
            == 404
        )
        placed = client.post(
            "/api/sandboxes",
            json={"image": "lab/busybox:latest", "host_id": second_host.host_id},
        )
        assert placed.status_code == 404, placed.text
        assert client.delete(f"/api/hosts/{second_host.host_id}").status_code == 404
        assert client.delete(f"/api/api-keys/{other['id']}").status_code == 200

    # The other tenant cannot attach to this tenant's session either.
    other_key = api_key(lab, name="intruder-2", tenant_id="tnt_other")
    stream = f"/api/sandboxes/{sandbox_id}/terminal-sessions/{session['id']}/stream"
    with trio.fail_after(10):
        async with websocket(lab, stream, other_key["key"]) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
    assert closed.value.reason.code == 4404
    with lab.client() as client:
        assert client.get(f"/api/hosts/{second_host.host_id}").status_code == 200


# -- deleting a host ----------------------------------------------------------------------


def test_deleting_a_host_closes_its_channel_now_and_its_credential_stops_working(
    lab: Lab, netns: Netns, tmp_path: Path
):
    agent = NetnsAgent(lab, netns, tmp_path, "doomed")
    try:
        enrolled = agent.enroll(new_token(lab)["token"])
        assert enrolled.returncode == 0, enrolled.stderr
        agent.start()
        wait_for_status(lab, agent.host_id, "connected")
        sandbox = lab.create_sandbox(image="lab/busybox:latest", host_id=agent.host_id)

        with lab.client() as client:
            busy = client.delete(f"/api/hosts/{agent.host_id}")
            assert busy.status_code == 409
            assert sandbox["id"] in busy.json()["error"]["details"]["sandbox_ids"]

            started = time.monotonic()
            deleted = client.delete(
                f"/api/hosts/{agent.host_id}", params={"force": "true"}
            )
            assert deleted.status_code == 204, deleted.text
            assert client.get(f"/api/hosts/{agent.host_id}").status_code == 404
            gone = client.get(f"/api/sandboxes/{sandbox['id']}").json()
            assert gone["status"] == "deleted"

        # The agent sees its channel close at once and is refused from then on.
        while "channel closed" not in agent.log():
            assert time.monotonic() - started < 5, agent.log()
            time.sleep(0.05)
        assert "connected; heartbeat" not in agent.log().split("channel closed", 1)[1]
        assert agent.process is not None and agent.process.poll() is None

        async def connect_with_the_old_credential() -> int:
            with trio.fail_after(10):
                async with websocket(
                    lab, "/api/agents/connect", agent.credential
                ) as ws:
                    try:
                        await ws.get_message()
                    except ConnectionClosed as exc:
                        return exc.reason.code
            raise AssertionError("the revoked credential was not refused")

        assert trio.run(connect_with_the_old_credential) == 4401
    finally:
        agent.stop()
