"""TCP throughput over the WireGuard mesh against the bare underlay; attach latency.

    sudo .venv/bin/python bench/mesh.py [--megabytes N] [--runs N]

What it does, all in one run, only between network namespaces it creates:

1. builds the busybox image and starts two namespace hosts on one underlay bridge
   with the harness the network tests use (tests/integration/networks): host a is
   a standalone lab, host b an agent; their underlay is a veth pair each into a
   bridge, their mesh is wireguard-go (this machine has no WireGuard module);
2. puts a `sink` sandbox on a and a `source` sandbox on b in one network, and N
   times streams `--megabytes` over TCP from source to sink: sandbox veth, bridge,
   WireGuard on b, the underlay, WireGuard on a, bridge, sandbox veth;
3. as reference, streams the same bytes with the same program between the two host
   namespaces directly over their underlay addresses: no WireGuard, no sandbox;
4. N times: attaches a fresh sandbox on b with a new alias and times until a
   sandbox on a resolves that alias (`nslookup` polled through `runc exec`), then
   detaches it.

Each stream is a small Python program run in the namespace under test with
`nsenter --net` (a sandbox's network namespace is its init's), timed by the
receiver from accept to the sender's close. A table goes to stdout,
then one JSON line; progress to stderr. Everything is removed at the end, also on
failure or Ctrl-C: sandboxes through the API, processes by PID, namespaces, bridge.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from lab_processes import bench_work_dir  # noqa: E402

from tests.integration.networks.conftest import MeshLab  # noqa: E402
from tests.integration.networks.netlab import NetLab, enter  # noqa: E402

log = logging.getLogger("gstacks.bench.mesh")

PORT = 9000
# One TCP stream, timed by its receiver from accept to the sender's close. Both ends
# run in the namespace under test (a sandbox's or a host's) with nsenter --net, so
# the path is the real one and the tool is the same on every path.
RECEIVER = """
import json, socket, sys, time
server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
conn, _ = server.accept()
started, total = time.perf_counter(), 0
while chunk := conn.recv(1 << 20):
    total += len(chunk)
print(json.dumps({"bytes": total, "seconds": time.perf_counter() - started}))
"""
SENDER = """
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
block = bytes(1 << 20)
for _ in range(int(sys.argv[3])):
    sock.sendall(block)
sock.close()
"""
RESOLVE_TIMEOUT_S = 30.0
MIB = 1024 * 1024


def _sandbox_netns(lab: MeshLab, sandbox: dict) -> list[str]:
    host = next(h for h in lab.hosts.values() if h.host_id == sandbox["host_id"])
    state = subprocess.run(
        ["runc", "--root", str(host.runc_root), "state", sandbox["id"]],
        check=True,
        capture_output=True,
        text=True,
    )
    return ["nsenter", f"--net=/proc/{json.loads(state.stdout)['pid']}/ns/net"]


def _stream(
    receiver_ns: list[str], sender_ns: list[str], target: str, mib: int
) -> float:
    """Seconds one stream of `mib` MiB takes, as its receiver saw it."""
    receiver = subprocess.Popen(
        [*receiver_ns, sys.executable, "-c", RECEIVER, str(PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        if receiver.stdout.readline().strip() != "listening":
            raise RuntimeError("the receiver did not start")
        subprocess.run(
            [*sender_ns, sys.executable, "-c", SENDER, target, str(PORT), str(mib)],
            check=True,
            timeout=300,
        )
        result = json.loads(receiver.stdout.readline())
    finally:
        receiver.kill()
        receiver.wait()
    if result["bytes"] != mib * MIB:
        raise RuntimeError(f"received {result['bytes']} bytes of {mib * MIB}")
    return result["seconds"]


def _throughput(lab: MeshLab, megabytes: int, runs: int) -> dict[str, list[float]]:
    host_a, host_b = lab.hosts["a"], lab.hosts["b"]
    network = lab.network(f"bench{lab.net.tag}")
    sink = lab.sandbox("a", "sink")
    source = lab.sandbox("b", "source")
    addresses = {}
    for sandbox, alias in ((sink, "sink"), (source, "source")):
        attached = lab.attach(sandbox, network, aliases=[alias], ports=[PORT])
        if attached.status_code != 201:
            raise RuntimeError(f"attach failed: {attached.text}")
        addresses[alias] = attached.json()["address"]
    in_sink, in_source = _sandbox_netns(lab, sink), _sandbox_netns(lab, source)
    in_a, in_b = enter(host_a.namespace), enter(host_b.namespace)
    underlay_a = lab.net.addresses[host_a.namespace]

    results: dict[str, list[float]] = {"mesh_s": [], "underlay_s": []}
    _stream(in_sink, in_source, addresses["sink"], 1)  # warm: handshake, ARP
    for run in range(runs):
        mesh = _stream(in_sink, in_source, addresses["sink"], megabytes)
        underlay = _stream(in_a, in_b, underlay_a, megabytes)
        results["mesh_s"].append(mesh)
        results["underlay_s"].append(underlay)
        log.info("run %d: mesh %.3fs, underlay %.3fs", run + 1, mesh, underlay)
    return results


def _attach_latency(lab: MeshLab, runs: int) -> dict[str, list[float]]:
    network = lab.network(f"names{lab.net.tag}")
    watcher = lab.sandbox("a", "watcher")
    lab.attach(watcher, network, aliases=["watcher"])
    results: dict[str, list[float]] = {"attach_call_s": [], "resolvable_s": []}
    for run in range(runs):
        member = lab.sandbox("b", f"member{run}")
        alias = f"m{run}"
        name = f"{alias}.{network['name']}.gstacks"
        started = time.perf_counter()
        attached = lab.attach(member, network, aliases=[alias])
        called = time.perf_counter()
        if attached.status_code != 201:
            raise RuntimeError(f"attach failed: {attached.text}")
        address = attached.json()["address"]
        while address not in lab.exec(watcher, "nslookup", name).stdout:
            if time.perf_counter() - started > RESOLVE_TIMEOUT_S:
                raise RuntimeError(f"{name} did not resolve on host a")
        resolved = time.perf_counter()
        results["attach_call_s"].append(called - started)
        results["resolvable_s"].append(resolved - started)
        log.info(
            "attach %d: call %.3fs, resolvable %.3fs",
            run,
            called - started,
            resolved - started,
        )
        lab.api(
            "POST", f"/api/sandboxes/{member['id']}/networks/{network['id']}/detach"
        )
        lab.api("DELETE", f"/api/sandboxes/{member['id']}")
    return results


@click.command()
@click.option(
    "--megabytes", default=64, show_default=True, help="Bytes per transfer (MiB)."
)
@click.option("--runs", default=5, show_default=True, help="Transfers and attaches.")
def main(megabytes: int, runs: int) -> None:
    # Logging, root, signals, and the work dir removed at the end, even on Ctrl-C.
    with bench_work_dir() as work:
        subprocess.run(
            [
                sys.executable,
                str(PROJECT_DIR / "scripts" / "build_busybox_image.py"),
                str(work / "image"),
            ],
            check=True,
            capture_output=True,
        )
        lab = MeshLab(NetLab(), work)
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
                    f"oci:{work / 'image'}:latest",
                    f"docker://{lab.url.removeprefix('http://')}/lab/busybox:latest",
                ],
                check=True,
                capture_output=True,
            )
            lab.add_host("b")
            transfer = _throughput(lab, megabytes, runs)
            attach = _attach_latency(lab, runs)
        finally:
            lab.close()

    mesh_s = statistics.median(transfer["mesh_s"])
    underlay_s = statistics.median(transfer["underlay_s"])
    mesh_mibps = megabytes / mesh_s
    underlay_mibps = megabytes / underlay_s
    figures = {
        "megabytes": megabytes,
        "runs": runs,
        "mesh_mib_per_s": round(mesh_mibps, 1),
        "underlay_mib_per_s": round(underlay_mibps, 1),
        "ratio_mesh_over_underlay": round(mesh_mibps / underlay_mibps, 3),
        "attach_call_s": round(statistics.median(attach["attach_call_s"]), 3),
        "attach_to_resolvable_s": round(statistics.median(attach["resolvable_s"]), 3),
        "attach_to_resolvable_max_s": round(max(attach["resolvable_s"]), 3),
    }
    print(f"{'':44}median")
    print(f"{'TCP sandbox->sandbox over the mesh':44}{mesh_mibps:8.1f} MiB/s")
    print(f"{'TCP host->host over the bare underlay':44}{underlay_mibps:8.1f} MiB/s")
    print(f"{'ratio mesh/underlay':44}{figures['ratio_mesh_over_underlay']:8.3f}")
    print(f"{'attach call (sandbox host applied)':44}{figures['attach_call_s']:8.3f}s")
    print(
        f"{'attach to resolvable on the other host':44}{figures['attach_to_resolvable_s']:8.3f}s"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
