"""Sandbox terminal throughput and keystroke echo latency, relayed against direct.

    sudo .venv/bin/python bench/terminal.py [--megabytes N] [--keys N]

What it does, all in one run and on this host only (loopback, temp dirs):

1. builds the busybox OCI image, starts a standalone lab of its own
   (lab_processes.StandaloneLab), pushes the image and starts one sandbox;
2. throughput, alternating the two kinds `--rounds` times:
   - **relayed**: a terminal session in the sandbox, read by the `gstacks` CLI's
     own client (`gstacks_cli.terminal.attach`, with client acknowledgements)
     through the control plane and the agent;
   - **direct**: the same `runc exec -t` command on a PTY of our own
     (`gstacks_agent.terminals.PtySession`), read in this process;
   both run `head -c N /dev/zero` after putting the sandbox's terminal in raw mode,
   and are timed from the key that starts the output to its last byte;
3. echo latency: one relayed session and one direct PTY each run `cat` on a raw
   terminal; one byte is typed and its echo awaited, `--keys` times, alternating
   between the two, and the round trips are summarized as p50 and p99.

The ratios are what we track: relayed / direct throughput (aim: at least 0.5) and
the relayed echo's p99 (aim: under 10 ms on loopback). A table goes to stdout,
then one JSON line with every figure; progress goes to stderr. Everything is
removed at the end, also after a failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import trio
from lab_processes import StandaloneLab, bench_work_dir
from sandbox_start import BUILD_IMAGE_SCRIPT
from trio_websocket import WebSocketConnection, open_websocket_url

from gstacks_agent.sandboxes.runc import Runc, sandbox_exec_argv
from gstacks_agent.terminals import PtySession
from gstacks_cli import terminal

log = logging.getLogger("gstacks.bench.terminal")

MIB = 1024 * 1024
THROUGHPUT_RATIO_AIM = 0.5
ECHO_P99_AIM_S = 0.010
# Raw mode inside the sandbox (no newline translation, no echo), then wait for
# one key, so that the clock starts when the client is attached and ready.
RAW_THEN_WAIT = "stty raw -echo; echo READY; head -c 1 >/dev/null; "
READ_CHUNK = 64 * 1024


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest sample with `fraction` at or below."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# -- throughput --------------------------------------------------------------------


class _CountingSink:
    """An output file for `terminal.attach`: counts bytes, and presses the start key
    on the session's stdin pipe when READY arrives."""

    def __init__(self, key_fd: int) -> None:
        self.key_fd = key_fd
        self.head = b""
        self.count = 0
        self.started_at: float | None = None

    def write(self, data: bytes) -> int:
        if self.started_at is None:
            self.head += data
            ready = self.head.find(b"READY")
            newline = self.head.find(b"\n", ready)
            if ready >= 0 and newline >= 0:
                self.count = len(self.head) - newline - 1
                self.started_at = time.perf_counter()
                os.write(self.key_fd, b"g")
        else:
            self.count += len(data)
        return len(data)

    def flush(self) -> None:
        pass


async def relayed_throughput(lab: StandaloneLab, sandbox_id: str, size: int) -> float:
    """Seconds for `size` bytes through control plane and agent to the CLI client."""
    command = RAW_THEN_WAIT + f"head -c {size} /dev/zero"
    session = lab.api(
        "POST",
        f"/api/sandboxes/{sandbox_id}/terminal-sessions",
        json={"command": ["sh", "-c", command]},
    )
    url = terminal.stream_url(lab.url, "sandboxes", sandbox_id, session["id"])
    key_read, key_write = os.pipe()
    try:
        sink = _CountingSink(key_write)
        code = await terminal.attach(
            url,
            lab.api_key,
            output=sink,
            stdin_fd=key_read,
            window_size=lambda: (80, 24),
        )
        finished = time.perf_counter()
    finally:
        os.close(key_read)
        os.close(key_write)
    if code != 0 or sink.count != size or sink.started_at is None:
        raise RuntimeError(f"relayed run got {sink.count} of {size} bytes, exit {code}")
    return finished - sink.started_at


async def direct_throughput(runc: Runc, sandbox_id: str, size: int) -> float:
    """Seconds for `size` bytes read straight from a PTY running the same command."""
    command = RAW_THEN_WAIT + f"head -c {size} /dev/zero"
    pty = await PtySession.spawn(
        sandbox_exec_argv(runc, sandbox_id, ["sh", "-c", command])
    )
    try:
        head = b""
        while b"READY" not in head or b"\n" not in head[head.find(b"READY") :]:
            head += await pty.read(READ_CHUNK)
        count = len(head) - head.index(b"\n", head.index(b"READY")) - 1
        started = time.perf_counter()
        await pty.write(b"g")
        while count < size:
            data = await pty.read(READ_CHUNK)
            if not data:
                break
            count += len(data)
        finished = time.perf_counter()
    finally:
        await pty.close()
    if count != size:
        raise RuntimeError(f"direct run got {count} of {size} bytes")
    return finished - started


# -- echo latency ------------------------------------------------------------------


class _RelayedEcho:
    """A `cat` session in the sandbox, typed into through the relay."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.offset = 0
        self.buffer = b""

    async def wait_for(self, needle: bytes) -> None:
        while needle not in self.buffer:
            frame = await self.ws.get_message()
            if isinstance(frame, bytes):
                self.offset += len(frame)
                self.buffer += frame
            elif json.loads(frame)["type"] == "attached":
                self.offset = json.loads(frame)["offset"]
        self.buffer = b""

    async def round_trip(self, key: bytes) -> float:
        started = time.perf_counter()
        await self.ws.send_message(key)
        await self.wait_for(key)
        elapsed = time.perf_counter() - started
        await self.ws.send_message(terminal.ack_frame(self.offset))
        return elapsed


async def echo_latency(
    lab: StandaloneLab, runc: Runc, sandbox_id: str, keys: int
) -> tuple[list[float], list[float]]:
    """Round trips of one typed byte, relayed and direct, alternating."""
    command = ["sh", "-c", RAW_THEN_WAIT + "cat"]
    session = lab.api(
        "POST",
        f"/api/sandboxes/{sandbox_id}/terminal-sessions",
        json={"command": command},
    )
    url = terminal.stream_url(lab.url, "sandboxes", sandbox_id, session["id"])
    headers = [(b"authorization", f"Bearer {lab.api_key}".encode())]
    relayed: list[float] = []
    direct: list[float] = []
    pty = await PtySession.spawn(sandbox_exec_argv(runc, sandbox_id, command))
    try:
        async with open_websocket_url(
            url + "?acks=client", extra_headers=headers
        ) as ws:
            echo = _RelayedEcho(ws)
            await echo.wait_for(b"READY")
            await ws.send_message(b"g")

            head = b""
            while b"READY" not in head:
                head += await pty.read(READ_CHUNK)
            await pty.write(b"g")
            # Let both settle past the start key before timing.
            await trio.sleep(0.5)
            await echo.round_trip(b"w")
            await _direct_round_trip(pty, b"w")

            for i in range(keys):
                key = bytes([ord("a") + i % 26])
                relayed.append(await echo.round_trip(key))
                direct.append(await _direct_round_trip(pty, key))
            await ws.send_message(b"\x04")
    finally:
        await pty.close()
        lab.api(
            "DELETE", f"/api/sandboxes/{sandbox_id}/terminal-sessions/{session['id']}"
        )
    return relayed, direct


async def _direct_round_trip(pty: PtySession, key: bytes) -> float:
    started = time.perf_counter()
    await pty.write(key)
    seen = b""
    while key not in seen:
        seen += await pty.read(READ_CHUNK)
    return time.perf_counter() - started


# -- the run -----------------------------------------------------------------------


async def measure_in_lab(
    lab: StandaloneLab, sandbox_id: str, size: int, rounds: int, keys: int
) -> dict[str, Any]:
    runc = Runc.locate(root=lab.runc_root)
    relayed_s, direct_s = [], []
    for round_number in range(rounds):
        relayed_s.append(await relayed_throughput(lab, sandbox_id, size))
        direct_s.append(await direct_throughput(runc, sandbox_id, size))
        log.info(
            "round %d: relayed %.0f MiB/s, direct %.0f MiB/s",
            round_number + 1,
            size / relayed_s[-1] / MIB,
            size / direct_s[-1] / MIB,
        )

    relayed_echo, direct_echo = await echo_latency(lab, runc, sandbox_id, keys)
    relayed_rate = size / statistics.median(relayed_s)
    direct_rate = size / statistics.median(direct_s)
    return {
        "bytes": size,
        "rounds": rounds,
        "relayed_bytes_per_s": relayed_rate,
        "direct_bytes_per_s": direct_rate,
        "throughput_ratio": relayed_rate / direct_rate,
        "relayed_samples_s": relayed_s,
        "direct_samples_s": direct_s,
        "keys": keys,
        "relayed_echo_p50_s": statistics.median(relayed_echo),
        "relayed_echo_p99_s": percentile(relayed_echo, 0.99),
        "direct_echo_p50_s": statistics.median(direct_echo),
        "direct_echo_p99_s": percentile(direct_echo, 0.99),
    }


def measure(work: Path, size: int, rounds: int, keys: int) -> dict[str, Any]:
    """Run the whole benchmark under `work`; return its figures."""
    image_dir = work / "busybox-oci"
    log.info("building the busybox OCI image in %s", image_dir)
    subprocess.run(
        [sys.executable, str(BUILD_IMAGE_SCRIPT), str(image_dir), "--tag", "latest"],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    with StandaloneLab(work / "lab") as lab:
        lab.push_image(image_dir, "bench/busybox")
        sandbox = lab.create_sandbox({"image": "bench/busybox:latest"})
        lab.wait_running(sandbox["id"])
        log.info("sandbox %s is running", sandbox["id"])
        return trio.run(measure_in_lab, lab, sandbox["id"], size, rounds, keys)


def report(figures: dict[str, Any]) -> str:
    """The human-readable table."""

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.2f} ms"

    rows = [
        (
            f"terminal throughput, {figures['bytes'] // MIB} MiB, "
            f"median of {figures['rounds']}",
            "",
            "",
        ),
        (
            "  relayed (CLI <- control plane <- agent)",
            f"{figures['relayed_bytes_per_s'] / MIB:.0f} MiB/s",
            "",
        ),
        ("  direct PTY", f"{figures['direct_bytes_per_s'] / MIB:.0f} MiB/s", ""),
        (
            f"  ratio relayed / direct (aim >= {THROUGHPUT_RATIO_AIM:g})",
            f"{figures['throughput_ratio']:.2f}",
            "",
        ),
        (f"keystroke echo, {figures['keys']} keys", "p50", "p99"),
        (
            f"  relayed (aim p99 < {ECHO_P99_AIM_S * 1000:g} ms)",
            ms(figures["relayed_echo_p50_s"]),
            ms(figures["relayed_echo_p99_s"]),
        ),
        (
            "  direct PTY",
            ms(figures["direct_echo_p50_s"]),
            ms(figures["direct_echo_p99_s"]),
        ),
        (
            "  ratio relayed / direct",
            f"{figures['relayed_echo_p50_s'] / figures['direct_echo_p50_s']:.1f}x",
            f"{figures['relayed_echo_p99_s'] / figures['direct_echo_p99_s']:.1f}x",
        ),
    ]
    return "\n".join(f"{a:<50}{b:>12}{c:>12}".rstrip() for a, b, c in rows)


@click.command(help=__doc__.split("\n\n")[0])
@click.option(
    "--megabytes",
    default=64,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="MiB of output per throughput run.",
)
@click.option(
    "--rounds",
    default=3,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Throughput runs of each kind.",
)
@click.option(
    "--keys",
    default=500,
    show_default=True,
    type=click.IntRange(10, 100_000),
    help="Keystrokes timed of each kind.",
)
def main(megabytes: int, rounds: int, keys: int) -> None:
    with bench_work_dir() as work:
        figures = measure(work, megabytes * MIB, rounds, keys)
    click.echo(report(figures))
    click.echo(json.dumps({"benchmark": "terminal", **figures}))


if __name__ == "__main__":
    main()
