"""WireGuard keys: RFC 7748 vectors, clamping, and the host's key file."""

from __future__ import annotations

import stat

import pytest

from gstacks_agent.mesh.errors import InvalidMeshConfig
from gstacks_agent.mesh.keys import (
    decode_key,
    generate_key_pair,
    load_or_create_host_keys,
    public_key_of,
    x25519,
)

BASE = (9).to_bytes(32, "little")


def test_rfc7748_section_6_1_diffie_hellman_vectors():
    alice = bytes.fromhex(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
    )
    bob = bytes.fromhex(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
    )
    alice_public = x25519(alice, BASE)
    bob_public = x25519(bob, BASE)
    assert alice_public.hex() == (
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    )
    assert bob_public.hex() == (
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    )
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert x25519(alice, bob_public).hex() == shared
    assert x25519(bob, alice_public).hex() == shared


def test_generated_pair_is_clamped_and_consistent():
    pair = generate_key_pair()
    raw = decode_key(pair.private_key)
    assert raw[0] & 7 == 0 and raw[31] & 128 == 0 and raw[31] & 64
    assert public_key_of(pair.private_key) == pair.public_key
    assert pair.private_key not in repr(pair)


def test_malformed_key_is_refused():
    with pytest.raises(InvalidMeshConfig):
        decode_key("not base64!")
    with pytest.raises(InvalidMeshConfig):
        decode_key("AAAA")


def test_host_key_is_made_once_with_mode_0600(tmp_path):
    first = load_or_create_host_keys(tmp_path / "mesh")
    again = load_or_create_host_keys(tmp_path / "mesh")
    assert first == again
    mode = (tmp_path / "mesh" / "private-key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
