from __future__ import annotations

import hashlib
import json

import pytest

from gstacks_agent.images.digests import Digest, DigestVerifier, is_digest
from gstacks_agent.images.errors import (
    DigestMismatch,
    InvalidDigest,
    UnsupportedDigest,
)

HEX = hashlib.sha256(b"hello").hexdigest()


def test_sha256_digest_parses_into_parts():
    digest = Digest(f"sha256:{HEX}")
    assert digest.algorithm == "sha256"
    assert digest.hex == HEX
    assert digest == f"sha256:{HEX}"
    assert json.dumps({"d": digest}) == json.dumps({"d": f"sha256:{HEX}"})


def test_digest_of_bytes_matches_hashlib():
    assert Digest.of_bytes(b"hello") == Digest.from_hex(HEX)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        f"sha256{HEX}",
        f"SHA256:{HEX}",
        f"sha256:{HEX.upper()}",
        f"sha256:{HEX[:-1]}",
        f"sha256:{HEX}0",
        "sha256:",
        f":{HEX}",
        f"sha256:{HEX}/../x",
        f" sha256:{HEX}",
    ],
)
def test_malformed_digest_is_invalid(text):
    with pytest.raises(InvalidDigest):
        Digest(text)


@pytest.mark.parametrize(
    "text", ["sha512:" + "ab" * 64, "blake3:abc", "multihash+base58:QmRZxt2b1FVZPNqd8"]
)
def test_other_algorithms_are_unsupported(text):
    assert is_digest(text)
    with pytest.raises(UnsupportedDigest):
        Digest(text)


def test_tags_are_not_digests():
    assert not is_digest("latest")
    assert not is_digest("v1.2.3")


def test_non_string_digest_is_a_type_error():
    with pytest.raises(TypeError, match="must be a str"):
        Digest(None)


def test_verifier_accepts_matching_stream():
    verifier = DigestVerifier(Digest.of_bytes(b"hello world"), expected_size=11)
    verifier.update(b"hello ")
    verifier.update(b"world")
    verifier.verify()
    assert verifier.size == 11


def test_verifier_refuses_other_content():
    verifier = DigestVerifier(Digest.of_bytes(b"hello"))
    verifier.update(b"jello")
    with pytest.raises(DigestMismatch, match="hashes to"):
        verifier.verify()


def test_verifier_refuses_wrong_size_even_when_hash_matches():
    verifier = DigestVerifier(Digest.of_bytes(b"hello"), expected_size=6)
    verifier.update(b"hello")
    with pytest.raises(DigestMismatch, match="expected 6 bytes"):
        verifier.verify()
