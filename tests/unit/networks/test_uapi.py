"""The UAPI text protocol, without a socket."""

from __future__ import annotations

import pytest

from gstacks_agent.mesh.errors import InvalidMeshConfig, UapiError
from gstacks_agent.mesh.keys import generate_key_pair
from gstacks_agent.mesh.uapi import (
    PeerSettings,
    encode_device,
    encode_peer,
    encode_peer_removal,
    encode_set,
    key_to_hex,
    parse_errno,
    parse_get,
)


def test_set_request_keeps_sessions_and_replaces_allowed_ips():
    device = generate_key_pair()
    peer = generate_key_pair()
    lines = encode_device(device.private_key, 51820) + encode_peer(
        PeerSettings(
            peer.public_key, ["100.64.0.2/32", "10.1.0.5/32"], "198.18.0.3:51820"
        )
    )
    request = encode_set(lines).decode()
    assert request.startswith("set=1\n") and request.endswith("\n\n")
    assert f"private_key={key_to_hex(device.private_key)}\n" in request
    assert (
        "replace_allowed_ips=true\nallowed_ip=100.64.0.2/32\nallowed_ip=10.1.0.5/32\n"
        in request
    )
    assert "replace_peers" not in request
    assert encode_peer_removal(peer.public_key)[1] == "remove=true"


def test_get_reply_is_parsed_per_peer():
    one, two = generate_key_pair(), generate_key_pair()
    reply = (
        "private_key=" + "00" * 32 + "\nlisten_port=51820\n"
        f"public_key={key_to_hex(one.public_key)}\nendpoint=198.18.0.3:51820\n"
        "last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=500000000\n"
        "rx_bytes=10\ntx_bytes=20\nallowed_ip=100.64.0.2/32\nallowed_ip=10.1.0.5/32\n"
        f"public_key={key_to_hex(two.public_key)}\nlast_handshake_time_sec=0\n"
        "last_handshake_time_nsec=0\nerrno=0\n\n"
    )
    status = parse_get(reply)
    assert status.listen_port == 51820
    first = status.public_peers[one.public_key]
    assert first.endpoint == "198.18.0.3:51820"
    assert first.allowed_ips == ["100.64.0.2/32", "10.1.0.5/32"]
    assert first.last_handshake_unix == pytest.approx(1700000000.5)
    assert status.public_peers[two.public_key].last_handshake_unix == 0


def test_error_reply_raises_with_its_errno():
    assert parse_errno("errno=0\n\n") == 0
    with pytest.raises(UapiError) as caught:
        parse_get("errno=22\n\n")
    assert caught.value.errno == 22
    with pytest.raises(UapiError):
        parse_errno("\n\n")


def test_newline_in_a_value_is_refused():
    with pytest.raises(InvalidMeshConfig):
        encode_peer(PeerSettings(generate_key_pair().public_key, ["1.2.3.4/32\nx=1"]))
