"""Errors the embedded registry raises, each carrying its wire code and HTTP status.

    RegistryError                      base; `code` and `status` pick the response
    ├── NameInvalid                    NAME_INVALID, 400
    ├── NameUnknown                    NAME_UNKNOWN, 404
    ├── TagInvalid                     TAG_INVALID, 400
    ├── DigestInvalid                  DIGEST_INVALID, 400
    │   ├── UnsupportedDigestAlgorithm an algorithm other than sha256
    │   └── DigestMismatch             the bytes do not hash to the claimed digest
    ├── BlobUnknown                    BLOB_UNKNOWN, 404
    ├── BlobUploadUnknown              BLOB_UPLOAD_UNKNOWN, 404
    ├── BlobUploadInvalid              BLOB_UPLOAD_INVALID, 400
    │   └── UploadBusy                 another request is writing the same upload
    ├── RangeInvalid                   RANGE_INVALID, 416
    │   ├── UploadOutOfOrder           a chunk does not start at the upload's offset
    │   └── RangeNotSatisfiable        a blob Range starting past the blob's end
    ├── SizeInvalid                    SIZE_INVALID, 400
    ├── ManifestTooLarge               SIZE_INVALID, 413
    ├── ManifestInvalid                MANIFEST_INVALID, 400
    ├── ManifestBlobUnknown            MANIFEST_BLOB_UNKNOWN, 400
    ├── ManifestUnknown                MANIFEST_UNKNOWN, 404
    ├── PaginationInvalid              PAGINATION_NUMBER_INVALID, 400
    ├── Unsupported                    UNSUPPORTED, 405: a method the endpoint lacks
    ├── EndpointUnknown                UNSUPPORTED, 404: a path that names no endpoint
    ├── TooManyRequests                TOOMANYREQUESTS, 429
    ├── RegistryUnauthorized           UNAUTHORIZED, 401, with a WWW-Authenticate value
    ├── RegistryDenied                 DENIED, 403
    ├── StorageUnavailable             UNKNOWN, 503: the object store cannot be reached
    └── StorageFailed                  UNKNOWN, 500: the object store refused a call

The codes are those of the OCI distribution spec ("Error Codes" table), which spells
the rate-limit code TOOMANYREQUESTS. Three come from the Docker Registry HTTP API v2
error list that clients also understand: TAG_INVALID, RANGE_INVALID and
PAGINATION_NUMBER_INVALID. Storage failures have no code of their own in the spec
and answer UNKNOWN, its code for anything else. Every class also subclasses the
agent's base error that names the same cause (NotFound, InvalidArgument, ...), so
code outside the registry can catch them without knowing the registry.

The ASGI app renders any RegistryError once, at its edge, with `body()`.
"""

from __future__ import annotations

from typing import Any

from gstacks_agent.errors import AgentError, InvalidArgument, NotFound, Unavailable


class RegistryError(AgentError):
    """Base of every registry error; `code` and `status` choose the HTTP response."""

    code = "UNKNOWN"
    status = 500

    def __init__(
        self, message: str, *, detail: Any = None, resource_id: str = ""
    ) -> None:
        super().__init__(message, resource_id=resource_id)
        self.detail = detail

    def headers(self) -> dict[str, str]:
        """Extra response headers this error needs (a challenge, a range)."""
        return {}

    def body(self) -> dict[str, Any]:
        """The spec's error body: `{"errors": [{"code", "message", "detail"}]}`."""
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


class NameInvalid(RegistryError, InvalidArgument):
    code = "NAME_INVALID"
    status = 400


class NameUnknown(RegistryError, NotFound):
    code = "NAME_UNKNOWN"
    status = 404


class TagInvalid(RegistryError, InvalidArgument):
    code = "TAG_INVALID"
    status = 400


class DigestInvalid(RegistryError, InvalidArgument):
    code = "DIGEST_INVALID"
    status = 400


class UnsupportedDigestAlgorithm(DigestInvalid):
    """The digest is well formed but uses an algorithm this registry does not store."""


class DigestMismatch(DigestInvalid):
    """The uploaded bytes hash to something other than the digest the client claimed."""


class BlobUnknown(RegistryError, NotFound):
    code = "BLOB_UNKNOWN"
    status = 404


class BlobUploadUnknown(RegistryError, NotFound):
    code = "BLOB_UPLOAD_UNKNOWN"
    status = 404


class BlobUploadInvalid(RegistryError, InvalidArgument):
    code = "BLOB_UPLOAD_INVALID"
    status = 400


class UploadBusy(BlobUploadInvalid):
    """Two requests tried to write the same upload session at once."""


class RangeInvalid(RegistryError, InvalidArgument):
    code = "RANGE_INVALID"
    status = 416


class UploadOutOfOrder(RangeInvalid):
    """A chunk's Content-Range does not start where the upload currently ends.

    The response repeats the upload's current Range so the client can resume.
    """

    def __init__(self, message: str, *, offset: int, resource_id: str = "") -> None:
        super().__init__(message, resource_id=resource_id)
        self.offset = offset

    def headers(self) -> dict[str, str]:
        return {"Range": f"0-{max(self.offset - 1, 0)}"}


class RangeNotSatisfiable(RangeInvalid):
    """A Range header selects nothing of the blob; the answer states its size."""

    def __init__(self, message: str, *, size: int, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.size = size

    def headers(self) -> dict[str, str]:
        # RFC 9110 section 15.5.17: a 416 names the current length.
        return {"Content-Range": f"bytes */{self.size}"}


class SizeInvalid(RegistryError, InvalidArgument):
    code = "SIZE_INVALID"
    status = 400


class ManifestTooLarge(SizeInvalid):
    status = 413


class ManifestInvalid(RegistryError, InvalidArgument):
    code = "MANIFEST_INVALID"
    status = 400


class ManifestBlobUnknown(RegistryError, InvalidArgument):
    code = "MANIFEST_BLOB_UNKNOWN"
    status = 400


class ManifestUnknown(RegistryError, NotFound):
    code = "MANIFEST_UNKNOWN"
    status = 404


class PaginationInvalid(RegistryError, InvalidArgument):
    code = "PAGINATION_NUMBER_INVALID"
    status = 400


class Unsupported(RegistryError, InvalidArgument):
    code = "UNSUPPORTED"
    status = 405


class EndpointUnknown(RegistryError, NotFound):
    code = "UNSUPPORTED"
    status = 404


class TooManyRequests(RegistryError, Unavailable):
    code = "TOOMANYREQUESTS"
    status = 429


class RegistryUnauthorized(RegistryError):
    """No credential, or one that is not valid; the client should authenticate.

    `www_authenticate` is the challenge sent back (RFC 7235 section 4.1), e.g.
    `Basic realm="gstacks"` or a Bearer challenge naming the token endpoint.
    """

    code = "UNAUTHORIZED"
    status = 401

    def __init__(
        self, message: str, *, www_authenticate: str, detail: Any = None
    ) -> None:
        super().__init__(message, detail=detail)
        self.www_authenticate = www_authenticate

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.www_authenticate}


class RegistryDenied(RegistryError):
    """A valid credential that does not grant the requested action.

    `www_authenticate`, when given, repeats the Bearer challenge with
    `error="insufficient_scope"` (RFC 6750 section 3.1), naming the scope needed.
    """

    code = "DENIED"
    status = 403

    def __init__(
        self,
        message: str,
        *,
        detail: Any = None,
        www_authenticate: str | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.www_authenticate = www_authenticate

    def headers(self) -> dict[str, str]:
        if self.www_authenticate is None:
            return {}
        return {"WWW-Authenticate": self.www_authenticate}


class StorageUnavailable(RegistryError, Unavailable):
    """The storage backend did not answer (network failure, timeout, 5xx)."""

    code = "UNKNOWN"
    status = 503


class StorageFailed(RegistryError):
    """The storage backend refused a call we expected to succeed."""

    code = "UNKNOWN"
    status = 500
