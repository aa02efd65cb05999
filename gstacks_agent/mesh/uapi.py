"""The cross-platform WireGuard configuration protocol (UAPI), as wireguard-go serves it.

How it works. A userspace WireGuard implementation listens on the Unix socket
`/var/run/wireguard/<interface>.sock`. A client writes one request and reads one
answer, both lines of `key=value` ended by an empty line (wireguard.com/xplatform):

- `get=1` answers the device's settings, then for each peer a `public_key=` line
  followed by that peer's settings (endpoint, allowed_ip lines, handshake time,
  byte counters), and last `errno=0`.
- `set=1` is followed by device settings (`private_key`, `listen_port`,
  `replace_peers`), then per peer a `public_key=` line and its settings (`remove`,
  `update_only`, `endpoint`, `persistent_keepalive_interval`,
  `replace_allowed_ips`, `allowed_ip`). The answer is only `errno=N`.

Keys travel in lowercase hex here, not base64. This module is the sans-io part
(encoding and parsing, tested without a socket) and a thin trio client over it.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from gstacks_agent.mesh.errors import InvalidMeshConfig, UapiError
from gstacks_agent.mesh.keys import decode_key, encode_key

SOCKET_DIR = "/var/run/wireguard"
REPLY_TIMEOUT_S = 5.0
MAX_REPLY_BYTES = 4 * 1024 * 1024


def key_to_hex(key_b64: str) -> str:
    return decode_key(key_b64).hex()


def key_from_hex(key_hex: str) -> str:
    try:
        return encode_key(binascii.unhexlify(key_hex))
    except (binascii.Error, ValueError) as exc:
        raise UapiError(f"wireguard-go sent a malformed key {key_hex!r}") from exc


@dataclass(frozen=True)
class PeerSettings:
    """What we want of one peer. An empty endpoint lets the peer dial us."""

    public_key: str
    allowed_ips: Sequence[str]
    endpoint: str = ""
    persistent_keepalive_s: int = 0


@dataclass
class PeerStatus:
    """One peer as the device reports it."""

    public_key: str
    endpoint: str = ""
    allowed_ips: list[str] = field(default_factory=list)
    last_handshake_unix: float = 0.0
    rx_bytes: int = 0
    tx_bytes: int = 0
    persistent_keepalive_s: int = 0


@dataclass
class DeviceStatus:
    """The device as `get=1` reports it (the private key is not kept)."""

    listen_port: int = 0
    public_peers: dict[str, PeerStatus] = field(default_factory=dict)


def _check_value(name: str, value: str) -> str:
    if "\n" in value:
        raise InvalidMeshConfig(f"{name} must not contain newlines: {value!r}")
    return value


def encode_device(private_key: str | None, listen_port: int | None) -> list[str]:
    """Device lines of a `set=1` request."""
    lines = []
    if private_key is not None:
        lines.append(f"private_key={key_to_hex(private_key)}")
    if listen_port is not None:
        if not 0 <= listen_port <= 65535:
            raise InvalidMeshConfig(f"listen_port must be 0..65535, not {listen_port}")
        lines.append(f"listen_port={listen_port}")
    return lines


def encode_peer(peer: PeerSettings) -> list[str]:
    """Lines that make one peer exactly `peer`, keeping its session if it exists."""
    lines = [f"public_key={key_to_hex(peer.public_key)}"]
    if peer.endpoint:
        lines.append(f"endpoint={_check_value('endpoint', peer.endpoint)}")
    lines.append(f"persistent_keepalive_interval={peer.persistent_keepalive_s}")
    lines.append("replace_allowed_ips=true")
    lines.extend(
        f"allowed_ip={_check_value('allowed_ip', cidr)}" for cidr in peer.allowed_ips
    )
    return lines


def encode_peer_removal(public_key: str) -> list[str]:
    return [f"public_key={key_to_hex(public_key)}", "remove=true"]


def encode_set(lines: Sequence[str]) -> bytes:
    return ("set=1\n" + "".join(line + "\n" for line in lines) + "\n").encode()


GET_REQUEST = b"get=1\n\n"


def parse_errno(reply: str) -> int:
    """The errno of a reply; UapiError if it has none."""
    for line in reply.splitlines():
        if line.startswith("errno="):
            try:
                return int(line.removeprefix("errno="))
            except ValueError as exc:
                raise UapiError(f"malformed UAPI reply line {line!r}") from exc
    raise UapiError("UAPI reply without an errno line")


def parse_get(reply: str) -> DeviceStatus:
    """The device and its peers from the answer to `get=1`."""
    status = DeviceStatus()
    peer: PeerStatus | None = None
    seconds = nanos = 0
    for line in reply.splitlines():
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise UapiError(f"malformed UAPI reply line {line!r}")
        if key == "public_key":
            if peer is not None:
                peer.last_handshake_unix = seconds + nanos / 1e9
            peer = PeerStatus(key_from_hex(value))
            status.public_peers[peer.public_key] = peer
            seconds = nanos = 0
        elif key == "listen_port" and peer is None:
            status.listen_port = int(value)
        elif peer is None:
            continue
        elif key == "endpoint":
            peer.endpoint = value
        elif key == "allowed_ip":
            peer.allowed_ips.append(value)
        elif key == "last_handshake_time_sec":
            seconds = int(value)
        elif key == "last_handshake_time_nsec":
            nanos = int(value)
        elif key == "rx_bytes":
            peer.rx_bytes = int(value)
        elif key == "tx_bytes":
            peer.tx_bytes = int(value)
        elif key == "persistent_keepalive_interval":
            peer.persistent_keepalive_s = int(value)
    if peer is not None:
        peer.last_handshake_unix = seconds + nanos / 1e9
    errno = parse_errno(reply)
    if errno:
        raise UapiError(f"get=1 failed with errno={errno}", errno=errno)
    return status


class UapiClient:
    """Requests to one wireguard-go device over its UAPI socket."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    async def _exchange(self, request: bytes) -> str:
        with trio.fail_after(REPLY_TIMEOUT_S):
            stream = await trio.open_unix_socket(self.socket_path)
            async with stream:
                await stream.send_all(request)
                reply = b""
                while not reply.endswith(b"\n\n"):
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    reply += chunk
                    if len(reply) > MAX_REPLY_BYTES:
                        raise UapiError("UAPI reply too large")
        return reply.decode(errors="replace")

    async def get(self) -> DeviceStatus:
        return parse_get(await self._exchange(GET_REQUEST))

    async def set(self, lines: Sequence[str]) -> None:
        reply = await self._exchange(encode_set(lines))
        errno = parse_errno(reply)
        if errno:
            raise UapiError(f"set=1 failed with errno={errno}", errno=errno)
