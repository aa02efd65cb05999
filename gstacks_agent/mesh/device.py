"""The host's WireGuard interface: kernel module through netlink, or wireguard-go.

How it works. `open_device` picks the implementation once: the kernel's when
`/sys/module/wireguard` exists, else `wireguard-go` when it is on PATH, else it
refuses with WireGuardMissing. Both offer the same four steps:

- `up(private_key, listen_port, address)` creates the interface if needed, sets its
  key and port, gives it the host's mesh address and brings it up;
- `set_peers(peers)` makes the peer set exactly `peers`: each wanted peer is set with
  `replace_allowed_ips` (an existing session survives), each other peer is removed,
  and the routes through the interface become the union of the allowed IPs;
- `status()` reads peers, endpoints and handshake times back;
- `down()` removes the interface.

wireguard-go runs as our child in the foreground (`-f`), so it ends when we stop it;
its PID is kept in `<mesh_dir>/wireguard-go.pid` so that one left behind by an
agent that was killed is stopped before a new one starts. Its TUN device lives in the
agent's network namespace, its UAPI socket in /var/run/wireguard, which is why the
interface name is unique per host (`gsm` and the host id's digits).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import trio

from gstacks_agent.mesh import links
from gstacks_agent.mesh.errors import InterfaceFailed, WireGuardMissing
from gstacks_agent.mesh.uapi import (
    SOCKET_DIR,
    DeviceStatus,
    PeerSettings,
    PeerStatus,
    UapiClient,
    encode_device,
    encode_peer,
    encode_peer_removal,
)

log = logging.getLogger("gstacks.agent.mesh")

START_TIMEOUT_S = 10.0
STOP_GRACE_S = 5.0
PID_FILE = "wireguard-go.pid"


class MeshDevice(Protocol):
    """One WireGuard interface, whatever implements it."""

    name: str
    kind: str

    async def up(self, private_key: str, listen_port: int, address: str) -> None: ...

    async def set_peers(self, peers: Sequence[PeerSettings]) -> None: ...

    async def status(self) -> DeviceStatus: ...

    async def down(self) -> None: ...

    def is_up(self) -> bool: ...


def interface_name(host_id: str) -> str:
    """`gsm` and up to 12 characters of the host id's suffix (IFNAMSIZ is 16)."""
    suffix = host_id.rpartition("_")[2] or host_id
    return ("gsm" + "".join(c for c in suffix if c.isalnum()))[:15]


def open_device(name: str, mesh_dir: Path) -> MeshDevice:
    """The kernel implementation where the module is loaded, else wireguard-go."""
    if Path("/sys/module/wireguard").exists():
        return KernelDevice(name)
    binary = shutil.which("wireguard-go")
    if binary is not None:
        return UserspaceDevice(name, binary, mesh_dir)
    raise WireGuardMissing(
        "WireGuard is missing: no kernel module (/sys/module/wireguard) and no "
        "wireguard-go; install it with 'apt-get install wireguard-go wireguard-tools'"
    )


async def _sync_routes(name: str, peers: Sequence[PeerSettings]) -> None:
    cidrs = {cidr for peer in peers for cidr in peer.allowed_ips}
    await trio.to_thread.run_sync(links.sync_routes, name, sorted(cidrs))


class UserspaceDevice:
    """wireguard-go, configured through its UAPI socket."""

    kind = "userspace"

    def __init__(self, name: str, binary: str, mesh_dir: Path) -> None:
        self.name = name
        self._binary = binary
        self._pid_file = mesh_dir / PID_FILE
        self._mesh_dir = mesh_dir
        self._process: subprocess.Popen | None = None
        self._uapi = UapiClient(f"{SOCKET_DIR}/{name}.sock")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_up(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def up(self, private_key: str, listen_port: int, address: str) -> None:
        if not self.is_up():
            await self._start()
        await self._uapi.set(encode_device(private_key, listen_port))
        await trio.to_thread.run_sync(links.ensure_address, self.name, address)

    async def _start(self) -> None:
        process = self._launch()
        with trio.move_on_after(START_TIMEOUT_S):
            while not self._socket_ready():
                if process.poll() is not None:
                    break
                await trio.sleep(0.02)
        if not self._socket_ready():
            await self.down()
            raise InterfaceFailed(
                f"wireguard-go did not open {self._uapi.socket_path} within "
                f"{START_TIMEOUT_S:g}s",
                resource_id=self.name,
            )
        log.info(
            "mesh interface %s: wireguard-go started (pid %d)", self.name, process.pid
        )

    def _socket_ready(self) -> bool:
        return Path(self._uapi.socket_path).exists()

    def _launch(self) -> subprocess.Popen:
        self._stop_leftover()
        Path(self._uapi.socket_path).unlink(missing_ok=True)
        self._mesh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self._mesh_dir / "wireguard-go.log", "ab") as log_file:
            process = subprocess.Popen(
                [self._binary, "-f", self.name],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._process = process
        self._pid_file.write_text(f"{process.pid}\n")
        return process

    def _stop_leftover(self) -> None:
        """Stop a wireguard-go an earlier agent process started and left behind."""
        try:
            pid = int(self._pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if len(cmdline) > 2 and cmdline[0].endswith(b"wireguard-go"):
            if cmdline[-2].decode(errors="replace") == self.name:
                log.warning(
                    "mesh interface %s: stopping leftover wireguard-go pid %d",
                    self.name,
                    pid,
                )
                os.kill(pid, signal.SIGTERM)

    async def set_peers(self, peers: Sequence[PeerSettings]) -> None:
        current = await self._uapi.get()
        wanted = {peer.public_key for peer in peers}
        lines: list[str] = []
        for key in current.public_peers:
            if key not in wanted:
                lines += encode_peer_removal(key)
        for peer in peers:
            lines += encode_peer(peer)
        if lines:
            await self._uapi.set(lines)
        await _sync_routes(self.name, peers)

    async def status(self) -> DeviceStatus:
        return await self._uapi.get()

    async def down(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(STOP_GRACE_S):
                while process.poll() is None:
                    await trio.sleep(0.02)
            if process.poll() is None:
                process.kill()
        await trio.to_thread.run_sync(process.wait)
        self._pid_file.unlink(missing_ok=True)
        log.info("mesh interface %s: wireguard-go stopped", self.name)


class KernelDevice:
    """The kernel's WireGuard, through pyroute2's generic netlink family.

    Not exercised by the tests on this machine, which has no kernel module: the
    userspace device is what runs here. Same contract as UserspaceDevice.
    """

    kind = "kernel"

    def __init__(self, name: str) -> None:
        self.name = name

    def is_up(self) -> bool:
        return links.link_exists(self.name)

    async def up(self, private_key: str, listen_port: int, address: str) -> None:
        def create() -> None:
            from pyroute2 import IPRoute, WireGuard

            with IPRoute() as ipr:
                if not ipr.link_lookup(ifname=self.name):
                    ipr.link("add", ifname=self.name, kind="wireguard")
            with WireGuard() as wg:
                wg.set(self.name, private_key=private_key, listen_port=listen_port)
            links.ensure_address(self.name, address)

        await trio.to_thread.run_sync(create)

    async def set_peers(self, peers: Sequence[PeerSettings]) -> None:
        current = await self.status()
        wanted = {peer.public_key for peer in peers}

        def apply() -> None:
            from pyroute2 import WireGuard

            with WireGuard() as wg:
                for key in current.public_peers:
                    if key not in wanted:
                        wg.set(self.name, peer={"public_key": key, "remove": True})
                for peer in peers:
                    settings: dict[str, object] = {
                        "public_key": peer.public_key,
                        "allowed_ips": list(peer.allowed_ips),
                        "persistent_keepalive": peer.persistent_keepalive_s,
                    }
                    if peer.endpoint:
                        host, _, port = peer.endpoint.rpartition(":")
                        settings["endpoint_addr"] = host.strip("[]")
                        settings["endpoint_port"] = int(port)
                    wg.set(self.name, peer=settings)

        await trio.to_thread.run_sync(apply)
        await _sync_routes(self.name, peers)

    async def status(self) -> DeviceStatus:
        def read() -> DeviceStatus:
            from pyroute2 import WireGuard

            status = DeviceStatus()
            with WireGuard() as wg:
                for message in wg.info(self.name):
                    status.listen_port = message.get_attr("WGDEVICE_A_LISTEN_PORT") or 0
                    for peer in message.get_attr("WGDEVICE_A_PEERS") or []:
                        key = peer.get_attr("WGPEER_A_PUBLIC_KEY")
                        if isinstance(key, bytes):
                            key = key.decode()
                        handshake = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME") or {}
                        status.public_peers[key] = PeerStatus(
                            key,
                            last_handshake_unix=float(
                                handshake.get("tv_sec", 0) if handshake else 0
                            ),
                        )
            return status

        return await trio.to_thread.run_sync(read)

    async def down(self) -> None:
        await trio.to_thread.run_sync(links.delete_link, self.name)
