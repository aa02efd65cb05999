"""Errors of the images subpackage, named for their cause.

    AgentError
    ├── InvalidArgument
    │   ├── InvalidDigest           not `algorithm:encoded`, or a malformed sha256 hex
    │   ├── UnsupportedDigest       well formed, but an algorithm other than sha256
    │   ├── UnsupportedMediaType    a manifest, index or layer type we cannot read
    │   ├── InvalidManifest         manifest or index JSON that breaks the OCI schema
    │   ├── MalformedLayer          a layer that is not a readable tar stream
    │   ├── UnsafeLayer             a layer entry that would land outside its directory
    │   └── RegistryRejected        the registry refused the request (4xx we do not map)
    ├── NotFound
    │   ├── BlobNotInStore          the content store does not hold that digest
    │   ├── ManifestUnknown         the registry has no such manifest (404)
    │   ├── BlobUnknown             the registry has no such blob (404)
    │   └── NoMatchingPlatform      an index with no manifest for this host's platform
    ├── FailedPrecondition
    │   └── RegistryUnauthorized    the registry refused our credentials (401/403)
    └── Unavailable
        ├── DigestMismatch          content whose sha256 or size differs from the claim
        ├── RegistryUnavailable     transport failure, timeout or 5xx from the registry
        └── LayerWriteFailed        the disk refused an unpacked layer (ENOSPC, EIO)

DigestMismatch is retryable because it nearly always means a truncated or corrupted
transfer; a registry that serves wrong content every time fails every retry too.
"""

from __future__ import annotations

from gstacks_agent.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)


class InvalidDigest(InvalidArgument):
    pass


class UnsupportedDigest(InvalidArgument):
    pass


class UnsupportedMediaType(InvalidArgument):
    pass


class InvalidManifest(InvalidArgument):
    pass


class MalformedLayer(InvalidArgument):
    pass


class UnsafeLayer(InvalidArgument):
    pass


class RegistryRejected(InvalidArgument):
    pass


class BlobNotInStore(NotFound):
    pass


class ManifestUnknown(NotFound):
    pass


class BlobUnknown(NotFound):
    pass


class NoMatchingPlatform(NotFound):
    pass


class RegistryUnauthorized(FailedPrecondition):
    pass


class DigestMismatch(Unavailable):
    pass


class RegistryUnavailable(Unavailable):
    pass


class LayerWriteFailed(Unavailable):
    pass
