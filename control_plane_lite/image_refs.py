"""Parsing of image references as users write them.

`registry.example:5000/team/app:1.2@sha256:...`: an optional registry host (a first
component holding a `.` or `:`, or `localhost`), a repository path, an optional tag,
an optional digest. Without a tag or digest the tag is `latest`, as docker and skopeo
read it. A reference with no host, or with the control plane's own registry host,
names an artifact in the embedded registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from control_plane_lite.errors import InvalidRequest

_REPOSITORY_RE = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageReference:
    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest if known."""
        return self.digest or self.tag or "latest"


def parse_image_reference(text: str) -> ImageReference:
    """Parse `text`, raising InvalidRequest with the part that is wrong."""
    if not text or len(text) > 512 or text != text.strip():
        raise InvalidRequest(f"image reference {text!r} is empty, too long or padded")
    rest, _, digest = text.partition("@")
    if digest and not _DIGEST_RE.match(digest):
        raise InvalidRequest(f"image digest {digest!r} is not sha256:<64 hex digits>")

    registry = None
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, rest = first, remainder

    repository, tag = rest, None
    last_colon = rest.rfind(":")
    if last_colon > rest.rfind("/"):
        repository, tag = rest[:last_colon], rest[last_colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidRequest(f"image tag {tag!r} is not a valid tag")
    if not _REPOSITORY_RE.match(repository) or len(repository) > 255:
        raise InvalidRequest(
            f"image repository {repository!r} is not a valid repository name"
        )
    if tag is None and not digest:
        tag = "latest"
    return ImageReference(registry, repository, tag, digest or None)
