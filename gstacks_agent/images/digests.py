"""Content digests: parsing, validation and streaming verification.

The OCI image spec (descriptor.md, "Digests") defines a digest as
`algorithm ":" encoded`, where the algorithm is lowercase alphanumerics joined by
`+._-` and the encoding is `[a-zA-Z0-9=_-]+`. We accept one algorithm, sha256, whose
encoding must be exactly 64 lowercase hex digits. Anything else that fits the grammar
is `UnsupportedDigest` (sha512 is registered but we do not store it); anything that
does not fit is `InvalidDigest`.

`Digest` is a `str` subclass, so a validated digest can go anywhere a string goes (JSON,
dict keys, log lines) while code that needs its parts reads `.algorithm` and `.hex`.
"""

from __future__ import annotations

import hashlib
import re

from gstacks_agent.images.errors import (
    DigestMismatch,
    InvalidDigest,
    UnsupportedDigest,
)

_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class Digest(str):
    """A validated `sha256:<64 lowercase hex>` digest."""

    __slots__ = ()

    def __new__(cls, text: str) -> Digest:
        if isinstance(text, Digest):
            return text
        if not isinstance(text, str):
            raise TypeError(f"digest must be a str, not {type(text).__name__}")
        if not _GRAMMAR.fullmatch(text):
            raise InvalidDigest(f"malformed digest {text!r}", resource_id=text)
        algorithm, encoded = text.split(":", 1)
        if algorithm != "sha256":
            raise UnsupportedDigest(
                f"digest algorithm {algorithm!r} is not supported, only sha256",
                resource_id=text,
            )
        if not _SHA256_HEX.fullmatch(encoded):
            raise InvalidDigest(
                f"sha256 digest must be 64 lowercase hex digits, not {encoded!r}",
                resource_id=text,
            )
        return super().__new__(cls, text)

    @property
    def algorithm(self) -> str:
        return "sha256"

    @property
    def hex(self) -> str:
        """The 64 hex digits after `sha256:`."""
        return self[len("sha256:") :]

    @classmethod
    def from_hex(cls, hex_digits: str) -> Digest:
        """Build a digest from the hex part alone, as found in a blob file name."""
        return cls("sha256:" + hex_digits)

    @classmethod
    def of_bytes(cls, data: bytes) -> Digest:
        """The sha256 digest of `data`."""
        return cls("sha256:" + hashlib.sha256(data).hexdigest())

    def __repr__(self) -> str:
        return f"Digest({str(self)!r})"


def is_digest(text: str) -> bool:
    """Whether `text` fits the digest grammar at all (any algorithm).

    A manifest reference is either a tag or a digest; this tells them apart without
    deciding whether the digest is one we support.
    """
    return _GRAMMAR.fullmatch(text) is not None


class DigestVerifier:
    """Hashes a stream chunk by chunk and checks it against an expected digest.

    Feed every chunk to `update`, then call `verify`; it raises `DigestMismatch` when
    the sha256 or the byte count differs from what was claimed.
    """

    def __init__(self, expected: Digest | str, expected_size: int | None = None):
        if expected_size is not None and expected_size < 0:
            raise ValueError(f"expected_size must be >= 0, not {expected_size}")
        self.expected = Digest(expected)
        self.expected_size = expected_size
        self.size = 0
        self._hash = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def actual(self) -> Digest:
        """The digest of everything fed so far."""
        return Digest.from_hex(self._hash.hexdigest())

    def verify(self) -> None:
        """Raise `DigestMismatch` unless the stream matched digest and size."""
        if self.expected_size is not None and self.size != self.expected_size:
            raise DigestMismatch(
                f"{self.expected}: expected {self.expected_size} bytes, "
                f"got {self.size}",
                resource_id=self.expected,
            )
        actual = self.actual
        if actual != self.expected:
            raise DigestMismatch(
                f"{self.expected}: content hashes to {actual}",
                resource_id=self.expected,
            )
