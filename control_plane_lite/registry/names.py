"""Repository names, tags and digests, checked against the OCI distribution grammar.

Every name, tag and digest is validated here before any of it reaches a file path,
so the storage layer can join them onto its root without further checks: the
grammars below admit no `/` in tags or digests, no empty path component, no
component that starts with `.` or `_`, and hence no `..`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import DigestInvalid, NameInvalid, TagInvalid, UnsupportedDigestAlgorithm

# OCI distribution spec, "Pulling manifests": the <name> grammar and its length limit.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
MAX_NAME_LENGTH = 255

# Same section: a tag is at most 128 characters and cannot start with `.` or `-`.
_TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")

# OCI image spec, "Digests": algorithm ":" encoded, and the registered sha256 form.
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_SHA256_HEX_RE = re.compile(r"[a-f0-9]{64}")


def validate_repository(name: str) -> str:
    """Return `name` if it is a valid repository name, else raise NameInvalid."""
    if len(name) > MAX_NAME_LENGTH:
        raise NameInvalid(
            f"repository name is {len(name)} characters, the limit is "
            f"{MAX_NAME_LENGTH}",
            detail={"name": name[:MAX_NAME_LENGTH]},
        )
    if not _NAME_RE.fullmatch(name):
        raise NameInvalid(
            f"invalid repository name {name!r}: lowercase alphanumeric components "
            "joined by '/', separators '.', '_', '__' or '-' inside a component",
            detail={"name": name},
        )
    return name


def validate_tag(tag: str) -> str:
    """Return `tag` if it is a valid tag, else raise TagInvalid."""
    if not _TAG_RE.fullmatch(tag):
        raise TagInvalid(
            f"invalid tag {tag!r}: up to 128 of [a-zA-Z0-9._-], not starting "
            "with '.' or '-'",
            detail={"tag": tag},
        )
    return tag


@dataclass(frozen=True, slots=True)
class Digest:
    """A sha256 content digest; `str()` gives the `sha256:<hex>` wire form."""

    hex: str
    algorithm: str = "sha256"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse `sha256:<64 lowercase hex>`, raising DigestInvalid otherwise.

        A digest that is well formed under another algorithm (sha512, blake3)
        raises UnsupportedDigestAlgorithm, a subclass, so a client learns why.
        """
        if not _DIGEST_RE.fullmatch(text):
            raise DigestInvalid(f"invalid digest {text!r}", detail={"digest": text})
        algorithm, _, encoded = text.partition(":")
        if algorithm != "sha256":
            raise UnsupportedDigestAlgorithm(
                f"digest algorithm {algorithm!r} is not supported, only sha256",
                detail={"digest": text},
            )
        if not _SHA256_HEX_RE.fullmatch(encoded):
            raise DigestInvalid(
                f"invalid sha256 digest {text!r}: needs 64 lowercase hex digits",
                detail={"digest": text},
            )
        return cls(hex=encoded)

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The digest of `data`, for small in-memory bodies such as manifests."""
        return cls(hex=hashlib.sha256(data).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def is_digest_reference(reference: str) -> bool:
    """True when a manifest reference names a digest rather than a tag.

    Tags cannot contain ':', digests always do, so one character decides.
    """
    return ":" in reference
