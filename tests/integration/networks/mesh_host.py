"""Bring up one mesh device in the current namespace, for the mesh tests.

Run as `python mesh_host.py CONFIG_JSON` inside a test namespace: it brings the
device up with the given key, port and address, sets the peers, prints `ready` with
the wireguard-go PID, and keeps the device until its stdin closes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

from gstacks_agent.mesh import PeerSettings, open_device


async def main(config: dict) -> None:
    device = open_device(config["name"], Path(config["mesh_dir"]))
    try:
        await device.up(config["private_key"], config["port"], config["address"])
        await device.set_peers([PeerSettings(**p) for p in config["peers"]])
        print(f"ready {getattr(device, 'pid', 0)}", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
    finally:
        with trio.CancelScope(shield=True):
            await device.down()


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]))
