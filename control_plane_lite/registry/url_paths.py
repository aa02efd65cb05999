"""Splitting a `/v2/...` request path into the endpoint it addresses.

Repository names may contain slashes, so no fixed route pattern can find where the
name ends. The OCI distribution spec fixes what follows it instead: `/manifests/
<reference>`, `/blobs/<digest>`, `/blobs/uploads/[<uuid>]`, `/tags/list` or
`/referrers/<digest>`. This module matches those suffixes from the right; neither
a reference, a digest nor an upload id contains a slash, so the last match wins
and a repository named `lab/blobs` or `a/manifests/b` still parses.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Endpoint(enum.Enum):
    """The resources of the OCI distribution API below `/v2/`."""

    CATALOG = "catalog"
    TAGS = "tags"
    MANIFEST = "manifest"
    BLOB = "blob"
    UPLOADS = "uploads"
    UPLOAD = "upload"
    REFERRERS = "referrers"


@dataclass(frozen=True, slots=True)
class RegistryPath:
    """A parsed path: the endpoint, the repository name and the trailing argument.

    `argument` is the manifest reference, the blob digest or the upload id as it
    appears in the path, not yet validated; it is "" where the endpoint has none.
    """

    endpoint: Endpoint
    repository: str = ""
    argument: str = ""


# Order matters: uploads before blobs, since "<name>/blobs/uploads/" would
# otherwise read as a blob named "uploads" in a repository.
_PATTERNS = (
    (Endpoint.TAGS, re.compile(r"(?P<name>.+)/tags/list")),
    (Endpoint.REFERRERS, re.compile(r"(?P<name>.+)/referrers/(?P<arg>[^/]+)")),
    (Endpoint.MANIFEST, re.compile(r"(?P<name>.+)/manifests/(?P<arg>[^/]+)")),
    (Endpoint.UPLOADS, re.compile(r"(?P<name>.+)/blobs/uploads/?")),
    (Endpoint.UPLOAD, re.compile(r"(?P<name>.+)/blobs/uploads/(?P<arg>[^/]+)")),
    (Endpoint.BLOB, re.compile(r"(?P<name>.+)/blobs/(?P<arg>[^/]+)")),
)


def parse_registry_path(path: str) -> RegistryPath | None:
    """Parse the part of a request path after `/v2/`; None if it names nothing."""
    if path == "_catalog":
        return RegistryPath(Endpoint.CATALOG)
    for endpoint, pattern in _PATTERNS:
        match = pattern.fullmatch(path)
        if match:
            groups = match.groupdict()
            return RegistryPath(endpoint, groups["name"], groups.get("arg") or "")
    return None
