"""Registry push and pull with skopeo: our embedded registry against Debian's
`docker-registry` (the CNCF distribution registry) on loopback, same images, same run.

How it works: two OCI image layouts are built in a temp dir, one with a single
200 MB layer of random bytes and one with 200 small layers. A standalone lab
(`StandaloneLab`) serves our registry; `docker-registry serve` serves the
reference with filesystem storage in a temp dir. Each round builds its images
anew, with new random bytes, so no registry holds any of their blobs yet and
skopeo (whose blob cache, as root, lives in /var/lib/containers and remembers
where a blob was pushed) cannot turn an upload into a cross-repository mount.
For each registry (in turns, the first one alternating between rounds), skopeo
copies every image from its layout into the registry, then copies it back into a
fresh layout; both are timed from starting skopeo until it exits, after a
`sync`, so that writing back one step's dirty pages is not billed to the next.
Our registry fsyncs every blob before acknowledging it; docker-registry does not.
While our registry takes the 200 MB image, the standalone process's resident
memory is sampled every 20 ms and its peak kept.

Run as root from the project directory, after `scripts/setup.sh`:

    .venv/bin/python bench/registry.py            # 3 rounds
    .venv/bin/python bench/registry.py --rounds 5
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab_processes import (  # noqa: E402
    StandaloneLab,
    free_loopback_port,
    stop_process,
)

log = logging.getLogger("gstacks.bench.registry")

MIB = 1024 * 1024
BIG_LAYER_BYTES = 200 * 1000 * 1000
SMALL_LAYERS = 200
SMALL_LAYER_BYTES = 16 * 1024
SKOPEO_TIMEOUT_S = 600
RSS_SAMPLE_S = 0.02

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


# ---- images -------------------------------------------------------------------------


def _tar_of(name: str, size: int) -> bytes:
    """One uncompressed tar holding `name` of `size` random bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return raw.getvalue()


def _write_blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build_layout(layout: Path, layer_sizes: list[int]) -> None:
    """An OCI image layout tagged `latest` with one uncompressed layer per size."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    layers, diff_ids = [], []
    for number, size in enumerate(layer_sizes):
        tar = _tar_of(f"layer-{number}.bin", size)
        layers.append({"mediaType": OCI_LAYER, **_write_blob(layout, tar)})
        diff_ids.append(layers[-1]["digest"])
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            **_write_blob(layout, json.dumps(config).encode()),
        },
        "layers": layers,
    }
    descriptor = _write_blob(layout, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                **descriptor,
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


# ---- the reference registry ---------------------------------------------------------


class ReferenceRegistry:
    """`docker-registry serve` on a free loopback port, storage in `work_dir`."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.port = free_loopback_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ReferenceRegistry:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise SystemExit(
                "docker-registry is not installed (Debian 'docker-registry')"
            )
        config = self.work_dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: error}\n"
            "storage:\n"
            f"  filesystem: {{rootdirectory: {self.work_dir / 'data'}}}\n"
            "  delete: {enabled: true}\n"
            f"http: {{addr: '{self.address}'}}\n"
        )
        log_file = open(self.work_dir / "registry.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log_file, stderr=subprocess.STDOUT
        )
        log_file.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if (
                    httpx.get(f"http://{self.address}/v2/", timeout=1).status_code
                    == 200
                ):
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("docker-registry did not start")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            stop_process(self.process, "docker-registry")


# ---- skopeo -------------------------------------------------------------------------


def skopeo(work_dir: Path, *args: str) -> float:
    """Run skopeo with a fresh HOME; returns how long it took in seconds."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work_dir))
    policy = home / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    env = {
        "HOME": str(home),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "XDG_RUNTIME_DIR": str(home),
        "REGISTRY_AUTH_FILE": str(home / "auth.json"),
    }
    (home / "auth.json").write_text('{"auths": {}}')
    os.sync()
    started = time.perf_counter()
    result = subprocess.run(
        ["skopeo", "--policy", str(policy), *args],
        env=env,
        capture_output=True,
        timeout=SKOPEO_TIMEOUT_S,
    )
    elapsed = time.perf_counter() - started
    shutil.rmtree(home, ignore_errors=True)
    if result.returncode != 0:
        raise SystemExit(f"skopeo {' '.join(args)} failed:\n{result.stderr.decode()}")
    return elapsed


class PeakRss:
    """Samples a process's RSS in a thread while in the `with` block; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self.peak = 0
        self.before = self._process.memory_info().rss

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(RSS_SAMPLE_S)

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


# ---- the benchmark ------------------------------------------------------------------


def push_and_pull(
    work_dir: Path, layout: Path, address: str, repository: str, creds: list[str]
) -> tuple[float, float]:
    target = f"docker://{address}/{repository}:latest"
    push = skopeo(
        work_dir,
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        *(["--dest-creds", creds[0]] if creds else []),
        f"oci:{layout}:latest",
        target,
    )
    pulled = work_dir / f"pulled-{repository.replace('/', '-')}"
    pull = skopeo(
        work_dir,
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        *(["--src-creds", creds[0]] if creds else []),
        target,
        f"oci:{pulled}:latest",
    )
    shutil.rmtree(pulled, ignore_errors=True)
    return push, pull


def main(rounds: int) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="gstacks-bench-registry-") as tmp:
        work = Path(tmp)
        shapes = {
            "one 200 MB layer": [BIG_LAYER_BYTES],
            f"{SMALL_LAYERS} small layers": [SMALL_LAYER_BYTES] * SMALL_LAYERS,
        }
        (work / "lab").mkdir()
        (work / "reference").mkdir()

        times: dict[tuple[str, str, str], list[float]] = {}
        peak_rss = 0
        idle_rss = 0
        with (
            StandaloneLab(work / "lab") as lab,
            ReferenceRegistry(work / "reference") as ref,
        ):
            ours = ("ours", lab.url.removeprefix("http://"), [f"admin:{lab.api_key}"])
            theirs = ("docker-registry", ref.address, [])
            idle_rss = psutil.Process(lab.pid).memory_info().rss
            for number in range(rounds):
                log.info("round %d of %d: building images", number + 1, rounds)
                images = {}
                for index, (label, sizes) in enumerate(shapes.items()):
                    images[label] = work / f"image-{number}-{index}"
                    build_layout(images[label], sizes)
                order = (ours, theirs) if number % 2 == 0 else (theirs, ours)
                for kind, address, creds in order:
                    for label, layout in images.items():
                        repository = f"bench/{layout.name}"
                        if kind == "ours" and label.startswith("one"):
                            with PeakRss(lab.pid) as rss:
                                push, pull = push_and_pull(
                                    work, layout, address, repository, creds
                                )
                            peak_rss = max(peak_rss, rss.peak)
                        else:
                            push, pull = push_and_pull(
                                work, layout, address, repository, creds
                            )
                        times.setdefault((kind, label, "push"), []).append(push)
                        times.setdefault((kind, label, "pull"), []).append(pull)
                for layout in images.values():
                    shutil.rmtree(layout)

    report: dict[str, object] = {"benchmark": "registry", "rounds": rounds}
    print(f"registry push/pull with skopeo, median of {rounds} rounds")
    print(f"  {'':32}{'ours':>10}{'theirs':>10}{'ratio':>9}")
    for label in shapes:
        for step in ("push", "pull"):
            our = statistics.median(times[("ours", label, step)])
            their = statistics.median(times[("docker-registry", label, step)])
            ratio = our / their
            print(
                f"  {step} {label:27}{our * 1000:8.0f} ms{their * 1000:7.0f} ms"
                f"{ratio:8.2f}x"
            )
            report[f"{step} {label}"] = {
                "ours_s": times[("ours", label, step)],
                "theirs_s": times[("docker-registry", label, step)],
                "ratio_median": round(ratio, 3),
            }
    print("standalone process memory (control plane + agent)")
    print(f"  idle before pushes            {idle_rss / MIB:8.1f} MiB")
    print(f"  peak during the 200 MB pushes {peak_rss / MIB:8.1f} MiB")
    report["standalone_idle_rss_bytes"] = idle_rss
    report["standalone_peak_rss_during_big_push_bytes"] = peak_rss
    print(json.dumps(report))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args().rounds)
