"""A small S3 client: the dozen object-store calls the registry needs, over httpx.

How it works
------------
Requests are signed with AWS Signature Version 4 ("Authenticating Requests: Using
the Authorization Header", AWS S3 API reference). `SigV4Signer` is pure: it takes
the method, the path, the query, the headers to sign and the payload's hash and
returns the headers to send, so it is tested without a server against the
examples of the AWS documentation. It signs `host`, `x-amz-date`,
`x-amz-content-sha256` and every header it is given; bodies are hashed (they are
at most one upload piece, held in memory anyway).

`S3Client` is the I/O layer: one `httpx.AsyncClient` (trio-native through anyio,
so nothing blocks the event loop), path-style URLs `<endpoint>/<bucket>/<key>`,
which every S3-compatible server accepts, and XML answers read with ElementTree.
Object keys here are built from validated repository names, tags and hex digests,
so they hold only `[A-Za-z0-9._/-]`; they are still percent-encoded the way SigV4
wants, so any key would sign correctly.

Foreign errors are translated once, here: a transport failure, a timeout or a 5xx
becomes StorageUnavailable; another unexpected status becomes StorageFailed with
the S3 error code. A missing key is not an error: callers get None or False.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import xml.etree.ElementTree as ElementTree
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import httpx

from .errors import StorageFailed, StorageUnavailable

log = logging.getLogger("gstacks.cp.registry.s3")

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair, with the session token of temporary credentials."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        # Never let the secret reach a log line or a traceback.
        return f"S3Credentials(access_key_id={self.access_key_id!r}, ...)"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object of a listing or a HEAD: its key, size and last modification."""

    key: str
    size: int
    modified_at: float


def _encode(text: str, *, keep_slash: bool) -> str:
    # SigV4 "UriEncode": only the unreserved characters stay as they are.
    return quote(text, safe="-_.~/" if keep_slash else "-_.~")


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """The query string, sorted and encoded the one way SigV4 signs it."""
    pairs = sorted(
        (_encode(k, keep_slash=False), _encode(v, keep_slash=False)) for k, v in params
    )
    return "&".join(f"{k}={v}" for k, v in pairs)


class SigV4Signer:
    """Signs S3 requests (AWS Signature Version 4, service `s3`)."""

    def __init__(self, credentials: S3Credentials, region: str) -> None:
        self.credentials = credentials
        self.region = region

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        query: str,
        headers: dict[str, str],
        payload_sha256: str,
        now: datetime,
    ) -> dict[str, str]:
        """The headers to send: `headers` plus the date, payload hash and signature.

        `path` and `query` must be exactly as they go on the wire (already encoded).
        """
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        signed = {k.lower(): v.strip() for k, v in headers.items()}
        signed["host"] = host
        signed["x-amz-date"] = amz_date
        signed["x-amz-content-sha256"] = payload_sha256
        if self.credentials.session_token:
            signed["x-amz-security-token"] = self.credentials.session_token
        names = sorted(signed)
        canonical_headers = "".join(f"{n}:{signed[n]}\n" for n in names)
        signed_headers = ";".join(names)
        canonical_request = "\n".join(
            [method, path, query, canonical_headers, signed_headers, payload_sha256]
        )

        scope = f"{day}/{self.region}/s3/aws4_request"
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                amz_date,
                scope,
                hashlib.sha256(canonical_request.encode()).hexdigest(),
            ]
        )
        key = f"AWS4{self.credentials.secret_access_key}".encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()

        signed["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.credentials.access_key_id}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        del signed["host"]  # httpx sets it from the URL
        return signed


class S3Client:
    """Calls on one bucket of an S3-compatible server."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        bucket: str,
        credentials: S3Credentials,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be http:// or https://, not {endpoint!r}")
        if not bucket or "/" in bucket:
            raise ValueError(f"bucket must be a bucket name, not {bucket!r}")
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self._host = httpx.URL(self.endpoint).netloc.decode()
        self._signer = SigV4Signer(credentials, region)
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        self._http = httpx.AsyncClient(timeout=timeout, limits=limits)

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- requests ---------------------------------------------------------------------

    def _request(
        self,
        method: str,
        key: str | None,
        *,
        params: Iterable[tuple[str, str]] = (),
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> httpx.Request:
        path = f"/{self.bucket}" + (f"/{_encode(key, keep_slash=True)}" if key else "")
        query = canonical_query(params)
        payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        signed = self._signer.sign(
            method,
            self._host,
            path,
            query,
            headers or {},
            payload_hash,
            datetime.now(UTC),
        )
        url = f"{self.endpoint}{path}" + (f"?{query}" if query else "")
        return self._http.build_request(method, url, headers=signed, content=body)

    async def _send(
        self, request: httpx.Request, *, ok: tuple[int, ...] = (200,)
    ) -> httpx.Response:
        try:
            response = await self._http.send(request)
        except httpx.HTTPError as exc:
            raise _unavailable(request, exc) from exc
        if response.status_code not in ok:
            raise _failure(request, response)
        return response

    # ---- buckets ----------------------------------------------------------------------

    async def create_bucket(self) -> None:
        """Create the bucket; a bucket we already own is fine."""
        request = self._request("PUT", None)
        try:
            response = await self._http.send(request)
        except httpx.HTTPError as exc:
            raise _unavailable(request, exc) from exc
        if response.status_code == 200:
            return
        if _error_code(response) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return
        raise _failure(request, response)

    # ---- objects ----------------------------------------------------------------------

    async def put_object(self, key: str, body: bytes) -> None:
        """Write `body` under `key`, replacing any object there."""
        await self._send(self._request("PUT", key, body=body))

    async def get_object(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is no such key."""
        response = await self._send(self._request("GET", key), ok=(200, 404))
        return None if response.status_code == 404 else response.content

    async def head_object(self, key: str) -> ObjectInfo | None:
        """Size and modification time of `key`, or None if there is no such key."""
        response = await self._send(self._request("HEAD", key), ok=(200, 404))
        if response.status_code == 404:
            return None
        return ObjectInfo(
            key,
            int(response.headers.get("content-length", "0")),
            _http_date(response.headers.get("last-modified")),
        )

    @asynccontextmanager
    async def open_object(
        self, key: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[httpx.Response | None]:
        """A streaming GET of `key` (or a byte range of it); None if absent."""
        headers = {}
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{last}"
        request = self._request("GET", key)
        request.headers.update(headers)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _unavailable(request, exc) from exc
        try:
            if response.status_code == 404:
                yield None
                return
            if response.status_code not in (200, 206):
                await response.aread()
                raise _failure(request, response)
            yield response
        finally:
            await response.aclose()

    async def delete_object(self, key: str) -> None:
        """Delete `key`; deleting a missing key succeeds, as in S3."""
        await self._send(self._request("DELETE", key), ok=(200, 204, 404))

    async def copy_object(self, source_key: str, key: str) -> None:
        """Server-side copy of one object (up to 5 GiB) within the bucket."""
        source = f"/{self.bucket}/{_encode(source_key, keep_slash=True)}"
        request = self._request("PUT", key, headers={"x-amz-copy-source": source})
        response = await self._send(request)
        # S3 may answer 200 with an error document when a copy fails midway.
        _raise_embedded_error(request, response)

    async def list_objects(
        self, prefix: str, *, delimiter: str | None = None
    ) -> tuple[list[ObjectInfo], list[str]]:
        """Every object under `prefix`, and the common prefixes when `delimiter` is set.

        Follows continuation tokens (ListObjectsV2) until the listing is complete.
        """
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        token: str | None = None
        while True:
            params = [("list-type", "2"), ("prefix", prefix)]
            if delimiter is not None:
                params.append(("delimiter", delimiter))
            if token is not None:
                params.append(("continuation-token", token))
            response = await self._send(self._request("GET", None, params=params))
            root = _parse_xml(response)
            for item in root.iter("Contents"):
                objects.append(
                    ObjectInfo(
                        _text(item, "Key"),
                        int(_text(item, "Size") or 0),
                        _iso_date(_text(item, "LastModified")),
                    )
                )
            for item in root.iter("CommonPrefixes"):
                prefixes.append(_text(item, "Prefix"))
            if _text(root, "IsTruncated") != "true":
                return objects, prefixes
            token = _text(root, "NextContinuationToken")
            if not token:
                return objects, prefixes

    # ---- multipart uploads ------------------------------------------------------------

    async def create_multipart_upload(self, key: str) -> str:
        """Start a multipart upload to `key`; returns its upload id."""
        request = self._request("POST", key, params=[("uploads", "")])
        return _text(_parse_xml(await self._send(request)), "UploadId")

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, body: bytes
    ) -> str:
        """Upload one part from memory; returns its ETag."""
        params = [("partNumber", str(part_number)), ("uploadId", upload_id)]
        response = await self._send(self._request("PUT", key, params=params, body=body))
        return response.headers["etag"]

    async def upload_part_copy(
        self, key: str, upload_id: str, part_number: int, source_key: str
    ) -> str:
        """Make part `part_number` a server-side copy of `source_key`; its ETag."""
        params = [("partNumber", str(part_number)), ("uploadId", upload_id)]
        source = f"/{self.bucket}/{_encode(source_key, keep_slash=True)}"
        request = self._request(
            "PUT", key, params=params, headers={"x-amz-copy-source": source}
        )
        response = await self._send(request)
        _raise_embedded_error(request, response)
        return _text(_parse_xml(response), "ETag")

    async def complete_multipart_upload(
        self, key: str, upload_id: str, etags: list[str]
    ) -> None:
        """Join the parts into the object `key`, which appears all at once."""
        parts = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
            for n, etag in enumerate(etags, start=1)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        request = self._request(
            "POST", key, params=[("uploadId", upload_id)], body=body
        )
        response = await self._send(request)
        _raise_embedded_error(request, response)

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        """Drop a multipart upload and the parts it holds."""
        request = self._request("DELETE", key, params=[("uploadId", upload_id)])
        await self._send(request, ok=(200, 204, 404))


def _parse_xml(response: httpx.Response) -> ElementTree.Element:
    root = ElementTree.fromstring(response.content)
    # Drop the S3 namespace so lookups can use bare tag names.
    for element in root.iter():
        element.tag = element.tag.rpartition("}")[2]
    return root


def _text(element: ElementTree.Element, tag: str) -> str:
    found = element.find(tag)
    return (found.text or "") if found is not None else ""


def _error_code(response: httpx.Response) -> str:
    try:
        return _text(_parse_xml(response), "Code")
    except ElementTree.ParseError:
        return ""


def _raise_embedded_error(request: httpx.Request, response: httpx.Response) -> None:
    if b"<Error>" in response.content[:512]:
        raise _failure(request, response)


def _unavailable(request: httpx.Request, exc: Exception) -> StorageUnavailable:
    return StorageUnavailable(
        f"S3 {request.method} {request.url.path} failed: {type(exc).__name__}: {exc}"
    )


def _failure(
    request: httpx.Request, response: httpx.Response
) -> StorageFailed | StorageUnavailable:
    code = _error_code(response) if response.content else ""
    message = (
        f"S3 {request.method} {request.url.path} answered {response.status_code}"
        + (f" {code}" if code else "")
    )
    if response.status_code >= 500 or response.status_code == 429:
        return StorageUnavailable(message)
    return StorageFailed(message, detail={"s3_code": code} if code else None)


def _iso_date(text: str) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _http_date(text: str | None) -> float:
    if not text:
        return 0.0
    return parsedate_to_datetime(text).timestamp()
