"""The mesh device on its own: two namespace hosts, wireguard-go, real traffic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gstacks_agent.mesh import generate_key_pair
from gstacks_agent.mesh.uapi import SOCKET_DIR, parse_get

from .netlab import NetLab, stop

pytestmark = pytest.mark.root

HERE = Path(__file__).resolve().parent
PORT = 51820


def start_mesh_host(lab: NetLab, ns: str, config: dict, work: Path):
    process = lab.spawn(
        ns,
        [sys.executable, str(HERE / "mesh_host.py"), json.dumps(config)],
        work / f"{ns}.log",
        stdin=subprocess.PIPE,
    )
    log = work / f"{ns}.log"
    for _ in range(200):
        text = log.read_text() if log.exists() else ""
        if "ready" in text:
            lab.adopt_pid(int(text.split("ready")[1].split()[0]))
            return process
        if process.poll() is not None:
            break
        subprocess.run(["sleep", "0.05"])
    raise AssertionError(f"mesh host {ns} did not come up: {log.read_text()}")


def test_two_hosts_reach_each_other_over_wireguard_go(tmp_path):
    with NetLab() as lab:
        a, b = lab.namespace("a"), lab.namespace("b")
        keys_a, keys_b = generate_key_pair(), generate_key_pair()
        name_a, name_b = f"gsm{lab.tag}a", f"gsm{lab.tag}b"
        host_a = start_mesh_host(
            lab,
            a,
            {
                "name": name_a,
                "mesh_dir": str(tmp_path / "a"),
                "private_key": keys_a.private_key,
                "port": PORT,
                "address": "100.64.0.1/32",
                "peers": [
                    {
                        "public_key": keys_b.public_key,
                        "endpoint": f"{lab.addresses[b]}:{PORT}",
                        "allowed_ips": ["100.64.0.2/32"],
                    }
                ],
            },
            tmp_path,
        )
        start_mesh_host(
            lab,
            b,
            {
                "name": name_b,
                "mesh_dir": str(tmp_path / "b"),
                "private_key": keys_b.private_key,
                "port": PORT,
                "address": "100.64.0.2/32",
                "peers": [
                    {
                        "public_key": keys_a.public_key,
                        "endpoint": f"{lab.addresses[a]}:{PORT}",
                        "allowed_ips": ["100.64.0.1/32"],
                    }
                ],
            },
            tmp_path,
        )

        pinged = lab.exec(
            a, "busybox", "ping", "-c", "2", "-W", "2", "100.64.0.2", check=False
        )
        assert pinged.returncode == 0, pinged.stdout + pinged.stderr

        # The handshake is visible through UAPI, and the route came from the peer.
        status = parse_get(
            lab.exec(
                a,
                sys.executable,
                "-c",
                "import socket,sys;s=socket.socket(socket.AF_UNIX);"
                f"s.connect('{SOCKET_DIR}/{name_a}.sock');s.sendall(b'get=1\\n\\n');"
                "d=b''\nwhile not d.endswith(b'\\n\\n'): d+=s.recv(65536)\n"
                "sys.stdout.write(d.decode())",
            ).stdout
        )
        peer = status.public_peers[keys_b.public_key]
        assert peer.last_handshake_unix > 0
        assert peer.allowed_ips == ["100.64.0.2/32"]
        routes = lab.exec(a, "ip", "-4", "route", "show", "dev", name_a).stdout
        assert "100.64.0.2" in routes

        stop(host_a)
