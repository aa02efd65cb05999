"""WireGuard keys: Curve25519 (X25519) key pairs, and where a host keeps its own.

How it works. A WireGuard private key is 32 random bytes clamped as RFC 7748
section 5 says; its public key is the X25519 function of it and the base point 9.
Both travel in base64, as `wg genkey` and `wg pubkey` print them. The curve
arithmetic is the `cryptography` package's (OpenSSL's constant-time X25519): key
material is no place for arithmetic of our own.

The host's private key lives in `<state_dir>/mesh/private-key`, mode 0600, written
atomically; it never leaves the host. Only the public key goes to the control plane.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from gstacks_agent.mesh.errors import InvalidMeshConfig

KEY_BYTES = 32
PRIVATE_KEY_FILE = "private-key"


def x25519(scalar: bytes, u_point: bytes) -> bytes:
    """X25519(scalar, u) of RFC 7748 section 5, both 32 bytes little-endian."""
    if len(scalar) != KEY_BYTES or len(u_point) != KEY_BYTES:
        raise ValueError("x25519 takes a 32-byte scalar and a 32-byte u-coordinate")
    # Loaded here, not at import: a few MiB the agent needs once per key.
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    private = X25519PrivateKey.from_private_bytes(scalar)
    return private.exchange(X25519PublicKey.from_public_bytes(u_point))


_BASE_POINT = (9).to_bytes(KEY_BYTES, "little")


def decode_key(text: str) -> bytes:
    """The 32 bytes of a base64 WireGuard key; InvalidMeshConfig otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidMeshConfig(f"not a base64 WireGuard key: {text!r}") from exc
    if len(raw) != KEY_BYTES:
        raise InvalidMeshConfig(
            f"a WireGuard key is {KEY_BYTES} bytes, not {len(raw)}: {text!r}"
        )
    return raw


def encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class KeyPair:
    """A WireGuard key pair in base64; `private_key` must never leave its owner."""

    private_key: str
    public_key: str

    def __repr__(self) -> str:
        return f"KeyPair(public_key={self.public_key!r})"


def public_key_of(private_key: str) -> str:
    """The base64 public key of a base64 private key."""
    return encode_key(x25519(decode_key(private_key), _BASE_POINT))


def generate_key_pair() -> KeyPair:
    """A fresh key pair from the OS's CSPRNG, clamped as `wg genkey` does."""
    raw = bytearray(secrets.token_bytes(KEY_BYTES))
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    private_key = encode_key(bytes(raw))
    return KeyPair(private_key, public_key_of(private_key))


def load_or_create_host_keys(mesh_dir: Path) -> KeyPair:
    """The host's key pair from `mesh_dir`, made (0600, atomically) on first use."""
    path = mesh_dir / PRIVATE_KEY_FILE
    try:
        private_key = path.read_text().strip()
    except FileNotFoundError:
        pair = generate_key_pair()
        mesh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, pair.private_key.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return pair
    return KeyPair(private_key, public_key_of(private_key))
