"""Several hosts in network namespaces around one standalone lab, for network tests.

`MeshLab` puts the standalone lab (control plane plus its own agent: host "a") in a
namespace on a NetLab underlay, listening on its underlay address, and adds agent
hosts ("b", ...) in namespaces of their own, each with its own state dir and runc
root, registered directly in the lab's database. Everything is torn down in
`close`, whatever state the test left: sandboxes through the API while the lab
still runs, then the processes by PID (agents, the lab, any wireguard-go they left),
runc containers and mounts under each state dir, then the namespaces and bridge.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane_lite.auth import Authenticator
from control_plane_lite.store import Store
from gstacks_agent.identity import HostIdentity, save_identity

from ..lab.conftest import force_cleanup
from .netlab import NetLab, stop

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
READY_RE = re.compile(r"lab ready: API http://(?P<address>\S+), .* host (?P<host>\S+)")
HTTP_TIMEOUT_S = 90.0
START_TIMEOUT_S = 45.0
WEB_COMMAND = [
    "/bin/sh",
    "-c",
    "mkdir -p /www && echo hello-from-web > /www/index.html && "
    "exec httpd -f -p 8080 -h /www",
]


@dataclass
class Host:
    role: str
    namespace: str
    state_dir: Path
    runc_root: Path
    log_path: Path
    host_id: str = ""
    process: subprocess.Popen | None = None

    def wireguard_go_pid(self) -> int | None:
        try:
            return int((self.state_dir / "mesh" / "wireguard-go.pid").read_text())
        except (OSError, ValueError):
            return None


@dataclass
class MeshLab:
    net: NetLab
    work: Path
    hosts: dict[str, Host] = field(default_factory=dict)
    url: str = ""
    key: str = ""
    client: httpx.Client | None = None
    _sandboxes: list[str] = field(default_factory=list)

    # ---- processes ------------------------------------------------------------------

    def start_lab(self) -> Host:
        namespace = self.net.namespace("a")
        host = Host(
            "a",
            namespace,
            self.work / "a" / "state",
            Path("/run/gstacks-test") / f"{self.net.tag}-a",
            self.work / "a" / "agent.log",
        )
        self.hosts["a"] = host
        address = self.net.addresses[namespace]
        host.process = self.net.spawn(
            namespace,
            [
                str(VENV_BIN / "gstacks-agent"),
                "standalone",
                "--state-dir",
                str(host.state_dir),
                "--bind",
                address,
                "--port",
                "0",
            ],
            host.log_path,
            env=_agent_env(host.runc_root),
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            text = host.log_path.read_text() if host.log_path.exists() else ""
            match = READY_RE.search(text)
            if match:
                break
            if host.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lab did not start:\n{text[-3000:]}")
            time.sleep(0.1)
        self.url = f"http://{match['address']}"
        host.host_id = match["host"].rstrip(",")
        self.key = (host.state_dir / "admin-api-key").read_text().strip()
        self.client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=HTTP_TIMEOUT_S,
        )
        return host

    def add_host(self, role: str) -> Host:
        namespace = self.net.namespace(role)
        host = Host(
            role,
            namespace,
            self.work / role / "state",
            Path("/run/gstacks-test") / f"{self.net.tag}-{role}",
            self.work / role / "agent.log",
        )
        store = Store(self.hosts["a"].state_dir / "control-plane.db")
        try:
            row, credential = Authenticator(store).create_host(f"host-{role}", role)
        finally:
            store.close()
        host.host_id = row["id"]
        save_identity(
            host.state_dir / "agent", HostIdentity(host.host_id, self.url, credential)
        )
        self.hosts[role] = host
        self.start_agent(role)
        return host

    def start_agent(self, role: str) -> None:
        host = self.hosts[role]
        host.process = self.net.spawn(
            host.namespace,
            [
                str(VENV_BIN / "gstacks-agent"),
                "run",
                "--state-dir",
                str(host.state_dir),
            ],
            host.log_path,
            env=_agent_env(host.runc_root),
        )
        self.wait_host(role, "connected")

    def stop_agent(self, role: str) -> None:
        host = self.hosts[role]
        assert host.process is not None
        stop(host.process)
        self.wait_host(role, "disconnected")

    def wait_host(self, role: str, status: str) -> None:
        host = self.hosts[role]
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.api("GET", f"/api/hosts/{host.host_id}").json()["status"] != status:
            if time.monotonic() > deadline:
                log = host.log_path.read_text()[-3000:]
                raise RuntimeError(f"host {role} did not become {status}:\n{log}")
            time.sleep(0.1)

    # ---- API ----------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self.client is not None
        return self.client.request(method, path, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.api(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def sandbox(self, role: str, name: str, command: list[str] | None = None) -> dict:
        body: dict[str, Any] = {
            "image": "lab/busybox:latest",
            "name": name,
            "host_id": self.hosts[role].host_id,
        }
        if command:
            body["command"] = command
        created = self.ok("POST", "/api/sandboxes", json=body)
        self._sandboxes.append(created["id"])
        return self.ok(
            "GET",
            f"/api/sandboxes/{created['id']}/wait",
            params={"status": "running", "timeout_s": 60},
        )

    def network(self, name: str, **body: Any) -> dict:
        return self.ok("POST", "/api/networks", json={"name": name, **body})

    def attach(self, sandbox: dict, network: dict, **body: Any) -> httpx.Response:
        return self.api(
            "POST",
            f"/api/sandboxes/{sandbox['id']}/networks/{network['id']}/attach",
            json=body,
        )

    def exec(
        self, sandbox: dict, *argv: str, timeout_s: float = 30
    ) -> subprocess.CompletedProcess:
        """Run `argv` in the sandbox with runc exec, from outside its host's agent."""
        host = next(h for h in self.hosts.values() if h.host_id == sandbox["host_id"])
        return subprocess.run(
            ["runc", "--root", str(host.runc_root), "exec", sandbox["id"], *argv],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def links(self, role: str, prefix: str) -> list[str]:
        out = self.net.exec(self.hosts[role].namespace, "ip", "-o", "link").stdout
        names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
        return [n for n in names if n.startswith(prefix)]

    # ---- teardown -----------------------------------------------------------------

    def close(self) -> None:
        try:
            if self.client is not None:
                for sandbox_id in self._sandboxes:
                    try:
                        self.client.delete(f"/api/sandboxes/{sandbox_id}")
                    except httpx.HTTPError:
                        pass
                self.client.close()
        finally:
            for host in reversed(list(self.hosts.values())):
                if host.process is not None:
                    stop(host.process)
                pid = host.wireguard_go_pid()
                if pid is not None:
                    self.net.adopt_pid(pid)
            for host in self.hosts.values():
                force_cleanup(host.state_dir, host.runc_root)
            self.net.close()


def _agent_env(runc_root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GSTACKS_")}
    env["GSTACKS_RUNC_ROOT"] = str(runc_root)
    return env


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("images") / "busybox-oci"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_busybox_image.py"), str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def mesh_lab(
    tmp_path_factory: pytest.TempPathFactory, busybox_layout: Path
) -> Iterator[MeshLab]:
    """Host a (the lab) and host b, each in its own namespace."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    lab = MeshLab(NetLab(), tmp_path_factory.mktemp("mesh-lab"))
    try:
        lab.start_lab()
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--dest-creds",
                f"admin:{lab.key}",
                f"oci:{busybox_layout}:latest",
                f"docker://{lab.url.removeprefix('http://')}/lab/busybox:latest",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        lab.add_host("b")
        yield lab
    finally:
        lab.close()
