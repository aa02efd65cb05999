import pytest

from control_plane_lite.registry.errors import (
    DigestInvalid,
    NameInvalid,
    TagInvalid,
    UnsupportedDigestAlgorithm,
)
from control_plane_lite.registry.names import (
    Digest,
    is_digest_reference,
    validate_repository,
    validate_tag,
)

HEX = "a" * 64


@pytest.mark.parametrize(
    "name",
    ["a", "lab/tiny", "lab/team/tiny", "a.b_c__d---e/f0", "x" * 255, "0/1"],
)
def test_valid_repository_names_are_accepted(name):
    assert validate_repository(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Lab/tiny",
        "lab/../etc",
        "lab/..",
        "a..b",
        "lab//tiny",
        "/lab",
        "lab/",
        "_lab",
        "lab_",
        "lab/.hidden",
        "lab/_blobs",
        "a___b",
        "lab tiny",
        "x" * 256,
    ],
)
def test_invalid_repository_names_are_refused(name):
    with pytest.raises(NameInvalid) as caught:
        validate_repository(name)
    assert caught.value.code == "NAME_INVALID"
    assert caught.value.status == 400


@pytest.mark.parametrize("tag", ["latest", "v1.0-rc_2", "_x", "A", "x" * 128])
def test_valid_tags_are_accepted(tag):
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "..", "a/b", "a:b", "x" * 129])
def test_invalid_tags_are_refused(tag):
    with pytest.raises(TagInvalid):
        validate_tag(tag)


def test_sha256_digest_round_trips_to_its_wire_form():
    digest = Digest.parse(f"sha256:{HEX}")
    assert digest.hex == HEX
    assert str(digest) == f"sha256:{HEX}"


def test_digest_of_bytes_is_their_sha256():
    assert str(Digest.of(b"")) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize(
    "text",
    [f"sha256:{HEX.upper()}", "sha256:abc", f"sha256:{HEX}0", "nope", "sha256:", ""],
)
def test_malformed_digests_are_invalid(text):
    with pytest.raises(DigestInvalid) as caught:
        Digest.parse(text)
    assert not isinstance(caught.value, UnsupportedDigestAlgorithm)
    assert caught.value.code == "DIGEST_INVALID"


@pytest.mark.parametrize("text", [f"sha512:{'b' * 128}", f"blake3:{HEX}"])
def test_other_digest_algorithms_are_unsupported(text):
    with pytest.raises(UnsupportedDigestAlgorithm) as caught:
        Digest.parse(text)
    assert caught.value.code == "DIGEST_INVALID"


def test_a_reference_with_a_colon_is_a_digest():
    assert is_digest_reference(f"sha256:{HEX}")
    assert not is_digest_reference("latest")
