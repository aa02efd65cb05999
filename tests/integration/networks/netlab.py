"""Test hosts as network namespaces on one underlay bridge, removed whatever happens.

How it works. `NetLab` makes a bridge in the root namespace with an address from
198.18.0.0/15 (a random /24 that no interface here uses yet) and, for each test host,
a network namespace `gstacks-<tag>-<role>` joined to that bridge by a veth pair: the
namespace's end is `uplink0` with the next address of the /24. Processes started with
`spawn` run inside a namespace and are remembered by PID. `close` stops those PIDs
(SIGTERM, a grace period, SIGKILL), deletes the namespaces (which takes their veth
ends, bridges, WireGuard TUN devices and nftables tables with them) and then the
root-side veths and the bridge. Only names carrying this lab's random tag are touched.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import secrets
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger("gstacks.tests.netlab")

UNDERLAY = ipaddress.ip_network("198.18.0.0/15")
STOP_GRACE_S = 10.0


def enter(namespace: str) -> list[str]:
    """The command prefix that runs a program in `namespace`'s network only.

    Not `ip netns exec`: that also gives the program a mount namespace with a fresh
    /sys, which hides the cgroup v1 mounts runc needs to start sandboxes.
    """
    return ["nsenter", f"--net=/run/netns/{namespace}"]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=60)


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = sh("ip", "-o", "-4", "addr", "show").stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            found.append(
                ipaddress.ip_interface(fields[fields.index("inet") + 1]).network
            )
    return found


class NetLab:
    """A bridge, namespaces on it, and the processes started in them."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.bridge = f"gsu{self.tag}"
        used = _used_networks()
        subnets = list(UNDERLAY.subnets(new_prefix=24))
        random.shuffle(subnets)
        self.subnet = next(s for s in subnets if not any(s.overlaps(u) for u in used))
        hosts = self.subnet.hosts()
        self.root_address = str(next(hosts))
        self._addresses = hosts
        self.namespaces: list[str] = []
        self.addresses: dict[str, str] = {}
        self._veths: list[str] = []
        self._processes: list[subprocess.Popen] = []
        self._extra_pids: list[int] = []
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.root_address}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def __enter__(self) -> NetLab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def namespace(self, role: str) -> str:
        """A new namespace on the underlay; returns its name. Its address is in
        `addresses[name]`."""
        name = f"gstacks-{self.tag}-{role}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        root_end = f"{self.bridge}v{len(self.namespaces)}"
        sh(
            "ip",
            "link",
            "add",
            root_end,
            "type",
            "veth",
            "peer",
            "name",
            "uplink0",
            "netns",
            name,
        )
        self._veths.append(root_end)
        sh("ip", "link", "set", root_end, "master", self.bridge, "up")
        address = str(next(self._addresses))
        self.addresses[name] = address
        self.exec(name, "ip", "addr", "add", f"{address}/24", "dev", "uplink0")
        self.exec(name, "ip", "link", "set", "uplink0", "up")
        self.exec(name, "ip", "link", "set", "lo", "up")
        return name

    def exec(
        self, namespace: str, *argv: str, check: bool = True
    ) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", namespace, *argv, check=check)

    def spawn(
        self,
        namespace: str,
        argv: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        **kwargs,
    ) -> subprocess.Popen:
        """Start `argv` in `namespace`, output to `log_path`; stopped by `close`."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            process = subprocess.Popen(
                [*enter(namespace), *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                **kwargs,
            )
        self._processes.append(process)
        return process

    def adopt_pid(self, pid: int) -> None:
        """A PID something we started started (wireguard-go): stop it in `close`."""
        self._extra_pids.append(pid)

    def close(self) -> None:
        for process in reversed(self._processes):
            stop(process)
        for pid in self._extra_pids:
            _stop_pid(pid)
        for name in reversed(self.namespaces):
            sh("ip", "netns", "del", name, check=False)
        for veth in self._veths:
            sh("ip", "link", "del", veth, check=False)
        sh("ip", "link", "del", self.bridge, check=False)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, a grace period, SIGKILL; reaped either way."""
    if process.stdin is not None:
        process.stdin.close()
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _stop_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
