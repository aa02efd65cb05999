"""The OCI distribution API (v1.1 of the spec, "/v2/" paths) as an ASGI app.

How it works
------------
Two routes: `/v2/` answers the API check, and `/v2/{path}` takes everything
else. Repository names contain slashes, so url_paths.py splits the path into an
endpoint, a repository and an argument. The dispatcher then validates the name,
asks the authorizer about the one action the endpoint needs, and calls the
handler from a table keyed by endpoint and method. Handlers talk to storage only
through the BlobStorage protocol.

Errors are RegistryError subclasses raised anywhere below; one exception handler
renders them as the spec's JSON error body with the status and headers each
error carries. Nothing else builds an error response.

Blob uploads follow the spec's three shapes: monolithic (`POST ?digest=` with the
body), chunked (`POST`, then `PATCH`es, then `PUT ?digest=`), and cross-repository
mount (`POST ?mount=&from=`, falling back to an upload session when the source
does not have the blob or the caller may not read it). Bodies are streamed from
the request into storage, never read whole, except manifests, capped at 4 MiB.

Every URL in a Location or Link header is a path built on the request's
`root_path`, so the app works mounted at `/registry` as well as at the root.

The OCI 1.1 referrers API (`/v2/<name>/referrers/<digest>`) lists the manifests
of the repository whose `subject` is the digest, as an image index, filtered by
`artifactType` on request. Manifests never change once stored under their digest,
so what each one refers to is read once and remembered; a listing costs one
storage listing of the repository's manifests. A push of a manifest with a
subject is answered with `OCI-Subject`, so clients know not to maintain the
fallback referrers tag themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from urllib.parse import urlencode

import trio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Send

from .authorization import Action, RegistryAuthorizer
from .errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestInvalid,
    DigestMismatch,
    EndpointUnknown,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    PaginationInvalid,
    RegistryError,
    Unsupported,
)
from .manifest import (
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    ManifestReferences,
    inspect_manifest,
)
from .names import Digest, is_digest_reference, validate_repository, validate_tag
from .ranges import parse_blob_range, parse_content_range
from .storage import BlobStorage, UploadStatus
from .url_paths import Endpoint, parse_registry_path

log = logging.getLogger("gstacks.cp.registry")

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}

Handler = Callable[[Request, str, str], Awaitable[Response]]

# Manifest summaries kept for referrers listings before the cache starts over.
_SUMMARY_CACHE_ENTRIES = 10_000


def build_registry_app(
    storage: BlobStorage, authorizer: RegistryAuthorizer
) -> Starlette:
    """The registry as a Starlette app whose routes start at `/v2/`.

    Serve it at the root for plain `/v2/` clients, or mount it (Starlette `Mount`)
    under a prefix such as `/registry`; URLs it hands out follow the mount.
    """
    api = _RegistryApi(storage, authorizer)
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            Route("/v2/", api.check_api, methods=["GET", "HEAD"]),
            Route("/v2/{path:path}", api.dispatch, methods=methods),
        ],
        exception_handlers={
            RegistryError: _render_error,
            ClientDisconnect: _client_gone,
        },
    )


async def _render_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    log.debug(
        "%s %s -> %d %s: %s",
        request.method,
        request.url.path,
        exc.status,
        exc.code,
        exc.message,
    )
    headers = {**API_VERSION_HEADER, **exc.headers()}
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def _client_gone(request: Request, exc: Exception) -> Response:
    # Whatever the handler had written stays in its upload session, whose
    # status tells the client where to resume.
    log.debug("%s %s: client disconnected", request.method, request.url.path)
    return Response(status_code=400)


class _RegistryApi:
    """The endpoint handlers, bound to one storage and one authorizer."""

    def __init__(self, storage: BlobStorage, authorizer: RegistryAuthorizer) -> None:
        self.storage = storage
        self.authorizer = authorizer
        # digest -> what that (immutable) manifest refers to, for referrers.
        self._summaries: dict[Digest, tuple[ManifestReferences, int]] = {}
        # (endpoint, method) -> (action to authorize, handler). HEAD shares GET's
        # handler, which checks request.method to leave the body out.
        self.routes: dict[tuple[Endpoint, str], tuple[Action, Handler]] = {
            (Endpoint.CATALOG, "GET"): ("catalog", self.list_repositories),
            (Endpoint.TAGS, "GET"): ("pull", self.list_tags),
            (Endpoint.REFERRERS, "GET"): ("pull", self.list_referrers),
            (Endpoint.MANIFEST, "GET"): ("pull", self.get_manifest),
            (Endpoint.MANIFEST, "HEAD"): ("pull", self.get_manifest),
            (Endpoint.MANIFEST, "PUT"): ("push", self.put_manifest),
            (Endpoint.MANIFEST, "DELETE"): ("delete", self.delete_manifest),
            (Endpoint.BLOB, "GET"): ("pull", self.get_blob),
            (Endpoint.BLOB, "HEAD"): ("pull", self.get_blob),
            (Endpoint.BLOB, "DELETE"): ("delete", self.delete_blob),
            (Endpoint.UPLOADS, "POST"): ("push", self.start_upload),
            (Endpoint.UPLOAD, "GET"): ("push", self.get_upload),
            (Endpoint.UPLOAD, "PATCH"): ("push", self.patch_upload),
            (Endpoint.UPLOAD, "PUT"): ("push", self.finish_upload),
            (Endpoint.UPLOAD, "DELETE"): ("push", self.cancel_upload),
        }

    async def check_api(self, request: Request) -> Response:
        """`GET /v2/`: 200 when the caller's credential is accepted."""
        await self.authorizer.authorize(request, None, "pull")
        return JSONResponse({}, headers=API_VERSION_HEADER)

    async def dispatch(self, request: Request) -> Response:
        """Route `/v2/<path>` to its handler, after validation and authorization."""
        path = request.path_params["path"]
        parsed = parse_registry_path(path)
        if parsed is None:
            raise EndpointUnknown(f"no registry endpoint at /v2/{path}")
        route = self.routes.get((parsed.endpoint, request.method))
        if route is None:
            raise Unsupported(
                f"{request.method} is not supported on the {parsed.endpoint.value} "
                "endpoint"
            )
        action, handler = route

        repository = None
        if parsed.endpoint is not Endpoint.CATALOG:
            repository = validate_repository(parsed.repository)
        await self.authorizer.authorize(request, repository, action)

        response = await handler(request, repository or "", parsed.argument)
        response.headers.update(API_VERSION_HEADER)
        return response

    # Manifests.

    async def get_manifest(
        self, request: Request, repository: str, reference: str
    ) -> Response:
        """GET/HEAD a manifest by tag or digest, exactly as it was pushed."""
        digest = await self._resolve(repository, reference)
        manifest = await self.storage.get_manifest(repository, digest)
        headers = {
            "Content-Type": manifest.media_type,
            "Content-Length": str(len(manifest.body)),
            "Docker-Content-Digest": str(digest),
            "ETag": f'"{digest}"',
        }
        if request.method == "HEAD":
            return Response(headers=headers)
        return Response(manifest.body, headers=headers)

    async def put_manifest(
        self, request: Request, repository: str, reference: str
    ) -> Response:
        """PUT a manifest under a tag or its digest, once all it references exists."""
        expected: Digest | None = None
        tag: str | None = None
        if is_digest_reference(reference):
            expected = Digest.parse(reference)
        else:
            tag = validate_tag(reference)

        body = await _read_manifest_body(request)
        digest = Digest.of(body)
        if expected is not None and expected != digest:
            raise DigestMismatch(
                f"manifest has digest {digest}, not {expected}",
                detail={"claimed": str(expected), "received": str(digest)},
            )
        references = inspect_manifest(body, request.headers.get("content-type"))

        # OCI distribution spec, "Pushing Manifests": everything a manifest
        # references must already be in the repository.
        missing = []
        for blob in references.blobs:
            try:
                size = await self.storage.stat_blob(repository, blob.digest)
            except BlobUnknown:
                missing.append(str(blob.digest))
                continue
            if size != blob.size:
                raise ManifestInvalid(
                    f"descriptor of {blob.digest} says {blob.size} bytes, the blob "
                    f"has {size}",
                    detail={"digest": str(blob.digest)},
                )
        for child in references.manifests:
            if not await self.storage.has_manifest(repository, child.digest):
                missing.append(str(child.digest))
        if missing:
            raise ManifestBlobUnknown(
                f"manifest references {len(missing)} unknown blob(s) or manifest(s) "
                f"in {repository}",
                detail={"digests": missing},
                resource_id=str(digest),
            )

        await self.storage.put_manifest(
            repository, digest, references.media_type, body, tag=tag
        )
        location = _url(request, f"/v2/{repository}/manifests/{digest}")
        headers = {"Location": location, "Docker-Content-Digest": str(digest)}
        if references.subject is not None:
            headers["OCI-Subject"] = str(references.subject.digest)
        return Response(status_code=201, headers=headers)

    async def delete_manifest(
        self, request: Request, repository: str, reference: str
    ) -> Response:
        """DELETE by digest removes the manifest and its tags; by tag, the tag.

        The manifest's bytes stay until the garbage collector finds nothing
        referencing them (garbage.py); only the repository's link and tags go.
        """
        if is_digest_reference(reference):
            await self.storage.delete_manifest(repository, Digest.parse(reference))
        else:
            await self.storage.delete_tag(repository, validate_tag(reference))
        return Response(status_code=202)

    async def _resolve(self, repository: str, reference: str) -> Digest:
        if is_digest_reference(reference):
            return Digest.parse(reference)
        return await self.storage.resolve_tag(repository, validate_tag(reference))

    # Blobs.

    async def get_blob(
        self, request: Request, repository: str, argument: str
    ) -> Response:
        """GET/HEAD a blob, streamed, whole or one `Range: bytes=a-b`."""
        digest = Digest.parse(argument)
        size = await self.storage.stat_blob(repository, digest)
        headers = {
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": str(digest),
            "Accept-Ranges": "bytes",
            "ETag": f'"{digest}"',
        }

        span = parse_blob_range(request.headers.get("range"), size)
        if span is None:
            status, first, length = 200, 0, size
        else:
            first, last = span
            status, length = 206, last - first + 1
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        headers["Content-Length"] = str(length)

        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        chunks = self.storage.read_blob(digest, offset=first, length=length)
        return _ClosingStreamingResponse(chunks, status_code=status, headers=headers)

    async def delete_blob(
        self, request: Request, repository: str, argument: str
    ) -> Response:
        """DELETE a blob from the repository (its bytes may live on elsewhere)."""
        await self.storage.unlink_blob(repository, Digest.parse(argument))
        return Response(status_code=202)

    # Uploads.

    async def start_upload(
        self, request: Request, repository: str, argument: str
    ) -> Response:
        """POST: mount a blob, take a whole blob at once, or open an upload session."""
        query = request.query_params
        if "mount" in query:
            digest = Digest.parse(query["mount"])
            if await self._mount(request, repository, digest, query.get("from")):
                return _blob_created(request, repository, digest)

        elif "digest" in query:
            digest = Digest.parse(query["digest"])
            status = await self.storage.start_upload(repository)
            try:
                async with aclosing(request.stream()) as body:
                    await self.storage.append_upload(repository, status.upload_id, body)
                await self.storage.commit_upload(repository, status.upload_id, digest)
            except BaseException:
                await self._discard_upload(repository, status.upload_id)
                raise
            return _blob_created(request, repository, digest)

        status = await self.storage.start_upload(repository)
        return _upload_response(request, status, 202)

    async def get_upload(
        self, request: Request, repository: str, upload_id: str
    ) -> Response:
        """GET an upload's progress: 204 with the Range received so far."""
        status = await self.storage.upload_status(repository, upload_id)
        return _upload_response(request, status, 204)

    async def patch_upload(
        self, request: Request, repository: str, upload_id: str
    ) -> Response:
        """PATCH one chunk onto an upload; a Content-Range must start at its end."""
        status = await self._append(request, repository, upload_id)
        return _upload_response(request, status, 202)

    async def finish_upload(
        self, request: Request, repository: str, upload_id: str
    ) -> Response:
        """PUT `?digest=`: take an optional last chunk, verify, store the blob."""
        claimed = request.query_params.get("digest")
        if claimed is None:
            raise DigestInvalid("closing an upload needs a ?digest= parameter")
        digest = Digest.parse(claimed)

        await self._append(request, repository, upload_id)
        await self.storage.commit_upload(repository, upload_id, digest)
        return _blob_created(request, repository, digest)

    async def cancel_upload(
        self, request: Request, repository: str, upload_id: str
    ) -> Response:
        """DELETE an upload session and what it received."""
        await self.storage.cancel_upload(repository, upload_id)
        return Response(status_code=204)

    async def _append(
        self, request: Request, repository: str, upload_id: str
    ) -> UploadStatus:
        start = length = None
        content_range = request.headers.get("content-range")
        if content_range is not None:
            first, last = parse_content_range(content_range)
            start, length = first, last - first + 1
        async with aclosing(request.stream()) as body:
            return await self.storage.append_upload(
                repository, upload_id, body, start=start, length=length
            )

    async def _mount(
        self, request: Request, repository: str, digest: Digest, source: str | None
    ) -> bool:
        """Link `digest` from `source` into `repository` if the caller may read it.

        Any reason not to mount (no source, an invalid or unreadable one, a blob
        it lacks) is not an error: the spec has the client upload instead.
        """
        if source is None:
            return False
        try:
            validate_repository(source)
            await self.authorizer.authorize(request, source, "pull")
            await self.storage.stat_blob(source, digest)
        except RegistryError as exc:
            log.debug("no mount of %s from %s: %s", digest, source, exc.message)
            return False
        await self.storage.link_blob(repository, digest)
        log.info("blob %s mounted from %s into %s", digest, source, repository)
        return True

    async def _discard_upload(self, repository: str, upload_id: str) -> None:
        # Shielded: this runs while a cancellation may be unwinding the request.
        with trio.CancelScope(shield=True):
            try:
                await self.storage.cancel_upload(repository, upload_id)
            except BlobUploadUnknown:
                pass  # already removed by a refused commit

    # Listings.

    async def list_referrers(
        self, request: Request, repository: str, argument: str
    ) -> Response:
        """GET the manifests whose subject is `argument`, as an OCI image index."""
        subject = Digest.parse(argument)
        wanted_type = request.query_params.get("artifactType")
        descriptors = []
        for digest in await self.storage.list_manifests(repository):
            summary = await self._summary(repository, digest)
            if summary is None or summary[0].subject is None:
                continue
            references, size = summary
            if references.subject.digest != subject:
                continue
            if wanted_type is not None and references.artifact_type != wanted_type:
                continue
            descriptor: dict[str, object] = {
                "mediaType": references.media_type,
                "digest": str(digest),
                "size": size,
            }
            if references.artifact_type is not None:
                descriptor["artifactType"] = references.artifact_type
            if references.annotations:
                descriptor["annotations"] = references.annotations
            descriptors.append(descriptor)

        headers = {"Content-Type": OCI_INDEX}
        if wanted_type is not None:
            headers["OCI-Filters-Applied"] = "artifactType"
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
        return JSONResponse(index, headers=headers, media_type=OCI_INDEX)

    async def _summary(
        self, repository: str, digest: Digest
    ) -> tuple[ManifestReferences, int] | None:
        """What manifest `digest` refers to, and its size; None if it is gone."""
        cached = self._summaries.get(digest)
        if cached is not None:
            return cached
        try:
            stored = await self.storage.get_manifest(repository, digest)
        except ManifestUnknown:
            return None
        summary = inspect_manifest(stored.body, stored.media_type), len(stored.body)
        if len(self._summaries) >= _SUMMARY_CACHE_ENTRIES:
            self._summaries.clear()
        self._summaries[digest] = summary
        return summary

    async def list_tags(
        self, request: Request, repository: str, argument: str
    ) -> Response:
        """GET the repository's tags, paginated by `n` and `last`."""
        tags = await self.storage.list_tags(repository)
        page, link = _paginate(request, tags, f"/v2/{repository}/tags/list")
        return JSONResponse({"name": repository, "tags": page}, headers=link)

    async def list_repositories(
        self, request: Request, repository: str, argument: str
    ) -> Response:
        """GET the catalog of repositories, paginated by `n` and `last`."""
        names = await self.storage.list_repositories()
        page, link = _paginate(request, names, "/v2/_catalog")
        return JSONResponse({"repositories": page}, headers=link)


async def _read_manifest_body(request: Request) -> bytes:
    """The request body, refused with 413 beyond MAX_MANIFEST_BYTES."""
    too_large = ManifestTooLarge(
        f"manifest exceeds the {MAX_MANIFEST_BYTES} byte limit",
        detail={"limit": MAX_MANIFEST_BYTES},
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_MANIFEST_BYTES:
        raise too_large

    body = bytearray()
    async with aclosing(request.stream()) as chunks:
        async for chunk in chunks:
            body += chunk
            if len(body) > MAX_MANIFEST_BYTES:
                raise too_large
    return bytes(body)


def _paginate(
    request: Request, items: list[str], path: str
) -> tuple[list[str], dict[str, str]]:
    """One page of sorted `items` and, if more follow, the Link header to them.

    OCI distribution spec, "Listing Tags": `n` caps the page, `last` resumes
    after that entry, and `Link: <url>; rel="next"` points at the next page.
    """
    query = request.query_params
    last = query.get("last")
    if last:
        items = [item for item in items if item > last]
    if "n" not in query:
        return items, {}
    if not query["n"].isdigit():
        raise PaginationInvalid(f"n must be a non-negative integer, not {query['n']!r}")

    count = int(query["n"])
    page = items[:count]
    if not page or len(items) <= count:
        return page, {}
    following = urlencode({"n": count, "last": page[-1]})
    return page, {"Link": f'<{_url(request, path)}?{following}>; rel="next"'}


class _ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that closes its body iterator however sending ends.

    Starlette abandons the iterator when the client goes away mid-blob; closing
    it here releases the blob's open file at once instead of at garbage
    collection, which may come after the event loop is gone.
    """

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()


def _url(request: Request, path: str) -> str:
    """An absolute path to `path` below wherever this app is mounted."""
    return request.scope.get("root_path", "") + path


def _upload_response(request: Request, status: UploadStatus, code: int) -> Response:
    location = _url(
        request, f"/v2/{status.repository}/blobs/uploads/{status.upload_id}"
    )
    # The spec's Range is inclusive and has no empty form: "0-0" before any byte.
    headers = {
        "Location": location,
        "Range": f"0-{max(status.offset - 1, 0)}",
        "Docker-Upload-UUID": status.upload_id,
    }
    if code != 204:
        headers["Content-Length"] = "0"
    return Response(status_code=code, headers=headers)


def _blob_created(request: Request, repository: str, digest: Digest) -> Response:
    location = _url(request, f"/v2/{repository}/blobs/{digest}")
    return Response(
        status_code=201,
        headers={"Location": location, "Docker-Content-Digest": str(digest)},
    )
