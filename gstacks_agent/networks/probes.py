"""Read-only probes the diagnostics run: ICMP echo and a DNS question.

An echo request goes out on a raw ICMP socket (the agent runs as root) with an
identifier of its own; the probe waits for the echo reply from the same address with
that identifier, or gives up after its timeout. Nothing here changes the host.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import trio

from gstacks_agent.networks import dns_message
from gstacks_agent.networks.errors import MalformedDnsMessage

ECHO_REQUEST = 8
ECHO_REPLY = 0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(identifier: int, sequence: int, payload: bytes) -> bytes:
    """An ICMP echo request (RFC 792) with its checksum."""
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, identifier, sequence)
    checksum = _checksum(header + payload)
    return (
        struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum, identifier, sequence) + payload
    )


async def ping(
    address: str, timeout_s: float, source: str | None = None
) -> float | None:
    """Round-trip time in milliseconds of one echo to `address`, or None."""
    identifier = (os.getpid() ^ id(object())) & 0xFFFF
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with sock:
        if source is not None:
            await sock.bind((source, 0))
        started = time.perf_counter()
        await sock.sendto(echo_request(identifier, 1, b"gstacks-diag"), (address, 0))
        with trio.move_on_after(timeout_s):
            while True:
                packet, (sender, _) = await sock.recvfrom(2048)
                header_length = (packet[0] & 0x0F) * 4
                icmp = packet[header_length : header_length + 8]
                if len(icmp) < 8 or sender != address:
                    continue
                kind, _, _, reply_id, _ = struct.unpack("!BBHHH", icmp)
                if kind == ECHO_REPLY and reply_id == identifier:
                    return (time.perf_counter() - started) * 1000
    return None


async def resolve(
    server: str, name: str, timeout_s: float, source: str | None = None
) -> tuple[int, list[str]] | None:
    """The rcode and A addresses `server` gives for `name`, or None on no answer."""
    message_id = int.from_bytes(os.urandom(2), "big")
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        await sock.bind((source or "0.0.0.0", 0))
        await sock.connect((server, 53))
        await sock.send(dns_message.build_query(message_id, name))
        with trio.move_on_after(timeout_s):
            while True:
                reply = await sock.recv(4096)
                if reply[:2] != message_id.to_bytes(2, "big"):
                    continue
                try:
                    return dns_message.parse_a_answers(reply)
                except MalformedDnsMessage:
                    return None
    return None
