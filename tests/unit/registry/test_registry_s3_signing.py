"""SigV4 signing against the worked examples of the AWS S3 API reference
("Signature Calculations for the Authorization Header: Transferring Payload in a
Single Chunk"), whose keys and expected signatures are published there."""

from datetime import UTC, datetime

from control_plane_lite.registry.s3_client import (
    EMPTY_SHA256,
    S3Credentials,
    SigV4Signer,
    canonical_query,
)

EXAMPLE_KEYS = S3Credentials(
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)
EXAMPLE_TIME = datetime(2013, 5, 24, tzinfo=UTC)
EXAMPLE_HOST = "examplebucket.s3.amazonaws.com"


def signature_of(headers):
    return headers["authorization"].rpartition("Signature=")[2]


def test_get_object_with_a_range_matches_the_aws_example():
    signer = SigV4Signer(EXAMPLE_KEYS, "us-east-1")
    headers = signer.sign(
        "GET",
        EXAMPLE_HOST,
        "/test.txt",
        "",
        {"Range": "bytes=0-9"},
        EMPTY_SHA256,
        EXAMPLE_TIME,
    )
    assert signature_of(headers) == (
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert (
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date"
        in (headers["authorization"])
    )
    assert headers["x-amz-date"] == "20130524T000000Z"


def test_list_objects_matches_the_aws_example():
    signer = SigV4Signer(EXAMPLE_KEYS, "us-east-1")
    query = canonical_query([("prefix", "J"), ("max-keys", "2")])
    headers = signer.sign(
        "GET", EXAMPLE_HOST, "/", query, {}, EMPTY_SHA256, EXAMPLE_TIME
    )
    assert query == "max-keys=2&prefix=J"
    assert signature_of(headers) == (
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )


def test_query_values_are_encoded_slashes_and_all():
    assert canonical_query([("prefix", "a/b c"), ("uploads", "")]) == (
        "prefix=a%2Fb%20c&uploads="
    )


def test_credentials_never_show_the_secret():
    assert "EXAMPLEKEY" not in repr(EXAMPLE_KEYS)
