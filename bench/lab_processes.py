"""The processes of a throwaway lab that a benchmark starts, drives and stops.

How it works: `StandaloneLab` starts `gstacks-agent standalone` on a free loopback
port with a state dir and a runc root of its own under the caller's work dir, and
none of the caller's `GSTACKS_*` settings, in a session of its own so that a
Ctrl-C at the terminal reaches the benchmark, not the lab: the benchmark must stay
able to delete its sandboxes through the API before the lab stops. The lab is ready
once its log says "lab ready" and the admin API key file exists. It is driven
through one persistent httpx client, so connection set-up does not count in any
timing taken around its calls.

`EnrolledAgent` starts a second, agent-only process (`gstacks-agent run`) for the
same control plane: it registers a new host in the control plane's database, writes
that identity into a state dir of its own, and waits until the API lists the host
as connected. It gets its own runc root too, so it never sees the lab's containers.

Stopping is the same for both: SIGTERM to the PID we started, a grace period, then
SIGKILL, and the process is reaped. Sandboxes outlive the agent by design, so the
lab deletes every sandbox it created through the API before it stops, and if that
fails, removes the containers with runc and unmounts their rootfs itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import click
import httpx

from control_plane_lite.auth import Authenticator
from control_plane_lite.store import Store
from gstacks_agent.identity import HostIdentity, save_identity
from gstacks_agent.sandboxes import rootfs

log = logging.getLogger("gstacks.bench.lab")

AGENT_BINARY = Path(sys.executable).parent / "gstacks-agent"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 20.0
WAIT_ROUTE_TIMEOUT_S = 60
HTTP_TIMEOUT_S = WAIT_ROUTE_TIMEOUT_S + 30.0


class LabFailed(RuntimeError):
    """A lab process did not start, or its API refused what the benchmark asked."""


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def agent_environment(runc_root: Path) -> dict[str, str]:
    """Our environment without `GSTACKS_*` settings, and with runc kept in `runc_root`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GSTACKS_")}
    env["GSTACKS_RUNC_ROOT"] = str(runc_root)
    return env


def stop_process(process: subprocess.Popen, what: str) -> None:
    """SIGTERM, a grace period, then SIGKILL; the process is reaped either way."""
    if process.poll() is not None:
        return
    log.info("stopping %s (pid %d)", what, process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %d) ignored SIGTERM; killing it", what, process.pid)
        process.kill()
        process.wait()


class _OwnedProcess:
    """A process a benchmark starts on entry and always stops, by pid, on exit."""

    process: subprocess.Popen | None

    def _start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{type(self).__name__} is not started"
        return self.process.pid


class StandaloneLab(_OwnedProcess):
    """`gstacks-agent standalone` under `work_dir`, stopped with all it created."""

    def __init__(self, work_dir: Path) -> None:
        self.state_dir = work_dir / "state"
        self.runc_root = work_dir / "runc"
        self.log_path = work_dir / "standalone.log"
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = ""
        self.process: subprocess.Popen | None = None
        self.client: httpx.Client | None = None
        self._live_sandboxes: set[str] = set()

    def _start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [str(AGENT_BINARY), "standalone", "--state-dir", str(self.state_dir)]
        argv += ["--port", str(self.port)]
        log.info("starting %s (log: %s)", " ".join(argv), self.log_path)
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=agent_environment(self.runc_root),
                start_new_session=True,
            )

        key_file = self.state_dir / "admin-api-key"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (key_file.exists() and b"lab ready" in self.log_path.read_bytes()):
            if self.process.poll() is not None:
                raise LabFailed(
                    f"the standalone lab exited with status {self.process.returncode}:"
                    f" {_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                raise LabFailed(
                    f"the standalone lab was not ready within {START_TIMEOUT_S:g}s:"
                    f" {_tail(self.log_path)}"
                )
            time.sleep(0.1)
        self.api_key = key_file.read_text().strip()
        self.client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=HTTP_TIMEOUT_S,
        )
        log.info("standalone lab ready at %s (pid %d)", self.url, self.pid)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the lab's HTTP API; an error status raises LabFailed."""
        assert self.client is not None, "the lab is not started"
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                detail = f"{error['code']}: {error['message']}"
            except (ValueError, KeyError, TypeError):
                detail = response.text[:300]
            raise LabFailed(f"{method} {path} -> {response.status_code} {detail}")
        return response.json() if response.content else None

    def push_image(self, oci_dir: Path, repository: str, tag: str = "latest") -> None:
        """Copy the OCI layout's `tag` into the embedded registry with skopeo."""
        log.info("pushing %s:%s to %s/%s", oci_dir, tag, self.url, repository)
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--dest-creds",
                f"admin:{self.api_key}",
                f"oci:{oci_dir}:{tag}",
                f"docker://127.0.0.1:{self.port}/{repository}:{tag}",
            ],
            check=True,
            stdin=subprocess.DEVNULL,
        )

    def create_sandbox(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /api/sandboxes; the sandbox is deleted again when the lab closes."""
        sandbox = self.api("POST", "/api/sandboxes", json=body)
        self._live_sandboxes.add(sandbox["id"])
        return sandbox

    def wait_running(self, sandbox_id: str) -> dict[str, Any]:
        """Block on the /wait route until the sandbox runs."""
        return self.api(
            "GET",
            f"/api/sandboxes/{sandbox_id}/wait",
            params={"status": "running", "timeout_s": WAIT_ROUTE_TIMEOUT_S},
        )

    def delete_sandbox(self, sandbox_id: str) -> None:
        """DELETE the sandbox through the API."""
        self.api("DELETE", f"/api/sandboxes/{sandbox_id}")
        self._live_sandboxes.discard(sandbox_id)

    def close(self) -> None:
        """Delete our sandboxes, stop the process, and clear what it left running."""
        if self.client is not None:
            for sandbox_id in sorted(self._live_sandboxes):
                try:
                    self.delete_sandbox(sandbox_id)
                    log.info("sandbox %s: deleted", sandbox_id)
                except (LabFailed, httpx.HTTPError) as exc:
                    log.warning("sandbox %s: delete failed: %s", sandbox_id, exc)
            self.client.close()
            self.client = None
        if self.process is not None:
            stop_process(self.process, "standalone lab")
        for sandbox_id in sorted(self._live_sandboxes):
            self._remove_leftovers(sandbox_id)
        self._live_sandboxes.clear()

    def _remove_leftovers(self, sandbox_id: str) -> None:
        """Remove a sandbox's container and rootfs by hand, once the lab stopped."""
        if (self.runc_root / sandbox_id / "state.json").exists():
            log.warning("sandbox %s: removing its container with runc", sandbox_id)
            subprocess.run(
                [
                    "runc",
                    "--root",
                    str(self.runc_root),
                    "delete",
                    "--force",
                    sandbox_id,
                ],
                check=False,
                stdin=subprocess.DEVNULL,
            )
        rootfs_dir = self.state_dir / "sandboxes" / sandbox_id / "rootfs"
        if rootfs.unmount(rootfs_dir):
            log.warning("sandbox %s: unmounted its rootfs by hand", sandbox_id)


class EnrolledAgent(_OwnedProcess):
    """A `gstacks-agent run` process enrolled as a second host of `lab`."""

    def __init__(self, lab: StandaloneLab, work_dir: Path) -> None:
        self.lab = lab
        self.state_dir = work_dir / "state"
        self.runc_root = work_dir / "runc"
        self.log_path = work_dir / "agent.log"
        self.host_id = ""
        self.process: subprocess.Popen | None = None

    def _start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The control plane's own database is the only way to enrol a host today.
        store = Store(self.lab.state_dir / "control-plane.db")
        try:
            row, credential = Authenticator(store).create_host(
                "bench-agent", socket.gethostname()
            )
        finally:
            store.close()
        self.host_id = row["id"]
        save_identity(
            self.state_dir / "agent",
            HostIdentity(self.host_id, self.lab.url, credential),
        )

        argv = [str(AGENT_BINARY), "run", "--state-dir", str(self.state_dir)]
        log.info("host %s: starting %s", self.host_id, " ".join(argv))
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=agent_environment(self.runc_root),
                start_new_session=True,
            )

        deadline = time.monotonic() + START_TIMEOUT_S
        while self._host_status() != "connected":
            if self.process.poll() is not None:
                raise LabFailed(
                    f"host {self.host_id}: the agent exited with status "
                    f"{self.process.returncode}: {_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                raise LabFailed(
                    f"host {self.host_id}: the agent did not connect within "
                    f"{START_TIMEOUT_S:g}s: {_tail(self.log_path)}"
                )
            time.sleep(0.1)
        log.info("host %s: agent connected (pid %d)", self.host_id, self.pid)

    def _host_status(self) -> str:
        return self.lab.api("GET", f"/api/hosts/{self.host_id}")["status"]

    def close(self) -> None:
        """Stop the agent process; its state dir is the caller's to remove."""
        if self.process is not None:
            stop_process(self.process, f"agent of host {self.host_id}")


def _tail(path: Path, max_bytes: int = 2000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "(no log)"
    return data[-max_bytes:].decode(errors="replace").strip()


class StopOnce:
    """A signal handler: the first SIGINT or SIGTERM stops the benchmark (as Ctrl-C
    would), later ones are ignored so that its cleanup runs to the end."""

    def __init__(self) -> None:
        self.stopping = False

    def __call__(self, signum: int, frame: object) -> None:
        if self.stopping:
            log.warning("cleaning up; ignoring %s", signal.Signals(signum).name)
            return
        self.stopping = True
        raise KeyboardInterrupt


def remove_work_dir(work: Path) -> None:
    """Unmount whatever is still mounted under `work`, then remove it."""
    prefix = f"{os.path.realpath(work)}/"
    mounted = [p for p in rootfs.mount_points() if p.startswith(prefix)]
    for point in sorted(mounted, key=len, reverse=True):
        log.warning("unmounting leftover %s", point)
        rootfs.unmount(Path(point))
    # rmtree crosses mount points; never let it walk into someone's files.
    if any(p.startswith(prefix) for p in rootfs.mount_points()):
        log.error("%s still holds mounts; leaving it in place", work)
        return
    shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def bench_work_dir() -> Iterator[Path]:
    """What every benchmark's main needs: logging on stderr, root, a stop-once
    handler for SIGINT and SIGTERM, and a temp dir removed (mounts first) at the end.
    """
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if os.geteuid() != 0:
        raise click.ClickException("run as root: sandboxes need mounts and runc")
    stop = StopOnce()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    work = Path(tempfile.mkdtemp(prefix="gstacks-bench-"))
    try:
        yield work
    finally:
        stop.stopping = True
        remove_work_dir(work)
