"""Count what crosses one interface, for the encryption test.

Run as `python capture.py IFACE SECONDS OUT_JSON NEEDLE` inside a namespace: an
AF_PACKET socket bound to IFACE records, for every IPv4 packet, its protocol and
ports, and whether NEEDLE appears anywhere in it, then writes a summary as JSON.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003


def main(interface: str, seconds: float, out_path: str, needle: bytes) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((interface, 0))
    sock.settimeout(0.2)
    flows: dict[str, int] = {}
    needle_seen = 0
    deadline = time.monotonic() + seconds
    print("capturing", flush=True)
    while time.monotonic() < deadline:
        try:
            frame = sock.recv(65535)
        except TimeoutError:
            continue
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        header = (ip[0] & 0x0F) * 4
        proto = ip[9]
        if needle and needle in frame:
            needle_seen += 1
        if proto in (6, 17) and len(ip) >= header + 4:
            sport, dport = struct.unpack("!HH", ip[header : header + 4])
            name = "tcp" if proto == 6 else "udp"
            key = f"{name}:{sport}>{dport}"
        else:
            key = f"ip-proto-{proto}"
        flows[key] = flows.get(key, 0) + 1
    with open(out_path, "w") as out:
        json.dump({"flows": flows, "needle_seen": needle_seen}, out)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4].encode())
