"""Pull side of the OCI distribution API (distribution-spec v1.1) over httpx.

Two requests are all a pull needs:

    GET /v2/<name>/manifests/<reference>   reference is a tag or a digest
    GET /v2/<name>/blobs/<digest>          may redirect to object storage

Every request carries `Authorization: Bearer <secret>` when the credentials callback
returns a secret for the repository (the control plane hands agents a pull credential
its registry accepts directly). A registry that wants the token flow of the Docker
registry auth spec answers 401 with `WWW-Authenticate: Bearer realm=...,service=...,
scope=...`; the client then GETs the realm with the secret as HTTP Basic password,
keeps the short-lived token it gets for that repository until just before it
expires, and repeats the request once with it. A second 401, or a 403, raises
`RegistryUnauthorized` naming the challenge, so the operator sees who refused. httpx
drops the Authorization header itself when a blob redirect leaves the registry's
origin.

Content is never trusted: a manifest fetched by digest must hash to it, one fetched by
tag must hash to the `Docker-Content-Digest` the registry claims (when it claims one),
and blobs go through `ContentStore.ingest`, which verifies while it writes.

Foreign errors are translated here, once: httpx transport failures, timeouts and 5xx
become `RegistryUnavailable`; 404 becomes `ManifestUnknown` or `BlobUnknown`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx

from gstacks_agent.errors import NotFound
from gstacks_agent.images import media_types
from gstacks_agent.images.content_store import ContentStore
from gstacks_agent.images.digests import Digest, is_digest
from gstacks_agent.images.errors import (
    BlobUnknown,
    DigestMismatch,
    InvalidManifest,
    ManifestUnknown,
    RegistryRejected,
    RegistryUnauthorized,
    RegistryUnavailable,
)

log = logging.getLogger("gstacks.agent.images")

Credentials = Callable[[str], Awaitable[str | None]]

# distribution-spec, "Pulling manifests": registries SHOULD accept manifests of up
# to 4 MiB, so anything larger is refused before it is read into memory.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

# The repository name and tag grammars of distribution-spec, "Pulling manifests".
_REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
)
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

# Token lifetime assumed when the realm names none (Docker registry token spec).
DEFAULT_TOKEN_TTL_S = 60
# A token this close to expiry is not used for a new request.
TOKEN_MARGIN_S = 10

# One `key="value"` (or bare `key=value`) parameter of a challenge (RFC 7235 2.1).
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]*))')


class RegistryClient:
    """Pulls manifests and blobs from one registry.

    `credentials(repository)` returns a bearer token for that repository, or None to
    send no Authorization header. `transport` is passed to httpx as is (tests use it
    to count requests).
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be http:// or https://, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            follow_redirects=True,
        )
        # repository -> (token from the realm, when it expires)
        self._tokens: dict[str, tuple[str, float]] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def get_manifest(
        self, repository: str, reference: str
    ) -> tuple[str, bytes, Digest]:
        """Fetch a manifest or index; return its media type, bytes and digest.

        `reference` is a tag or a `sha256:` digest. The content is verified against
        the digest asked for, or against the one the registry names for a tag.
        """
        _check_repository(repository)
        wanted = Digest(reference) if is_digest(reference) else None
        if wanted is None and not _TAG.fullmatch(reference):
            raise ValueError(f"reference must be a tag or a digest, not {reference!r}")

        url = f"/v2/{repository}/manifests/{reference}"
        accept = {"Accept": media_types.MANIFEST_ACCEPT}
        with _translate_transport_errors(self.base_url + url):
            async with self._get(repository, url, accept) as response:
                _check_status(response, ManifestUnknown, f"{repository}:{reference}")
                data = await _read_capped(response, MAX_MANIFEST_BYTES)

        digest = Digest.of_bytes(data)
        claimed = response.headers.get("Docker-Content-Digest")
        expected = wanted or (Digest(claimed) if claimed else None)
        if expected is not None and digest != expected:
            raise DigestMismatch(
                f"manifest {repository}@{expected} hashes to {digest}",
                resource_id=expected,
            )

        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        log.debug("fetched manifest %s@%s (%s)", repository, digest, media_type)
        return media_type, data, digest

    async def fetch_blob(
        self,
        repository: str,
        digest: Digest | str,
        store: ContentStore,
        progress: Callable[[int], None] | None = None,
        *,
        size: int | None = None,
    ) -> Path:
        """Stream a blob into `store` and return its path there.

        Nothing is requested when the store already has the blob. `progress` is
        called with the number of bytes of each chunk as it arrives; `size`, when
        known from a descriptor, is checked along with the digest.
        """
        _check_repository(repository)
        digest = Digest(digest)
        if store.has(digest):
            return store.path(digest)

        url = f"/v2/{repository}/blobs/{digest}"
        with _translate_transport_errors(self.base_url + url):
            async with self._get(repository, url) as response:
                _check_status(response, BlobUnknown, f"{repository}@{digest}")
                # aiter_raw: the digest covers the bytes as stored, so no
                # Content-Encoding may be undone on the way in.
                chunks = _reporting(response.aiter_raw(), progress)
                path = await store.ingest(digest, chunks, size)

        log.debug("fetched blob %s@%s", repository, digest)
        return path

    @asynccontextmanager
    async def _get(
        self, repository: str, url: str, extra: dict[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """A streaming GET, authenticated; one token-flow retry on a Bearer 401."""
        secret = await self._credentials(repository)
        token = self._token(repository)
        headers = {**(extra or {}), **_bearer(token or secret)}
        async with self._http.stream("GET", url, headers=headers) as response:
            challenge = _bearer_challenge(response)
            if challenge is None:
                yield response
                return
        token = await self._fetch_token(repository, challenge, secret)
        headers = {**(extra or {}), **_bearer(token)}
        async with self._http.stream("GET", url, headers=headers) as response:
            yield response

    def _token(self, repository: str) -> str | None:
        cached = self._tokens.get(repository)
        if cached is None or cached[1] - TOKEN_MARGIN_S <= time.monotonic():
            return None
        return cached[0]

    async def _fetch_token(
        self, repository: str, challenge: dict[str, str], secret: str | None
    ) -> str:
        """GET the challenge's realm for a token for `repository`, and keep it."""
        realm = challenge.get("realm", "")
        if not realm.startswith(("http://", "https://")):
            raise RegistryUnauthorized(
                f"{self.base_url} sent a Bearer challenge without a usable realm "
                f"({realm!r})",
                resource_id=repository,
            )
        params = {"scope": challenge.get("scope") or f"repository:{repository}:pull"}
        if "service" in challenge:
            params["service"] = challenge["service"]
        auth = httpx.BasicAuth("gstacks", secret) if secret else None
        response = await self._http.get(realm, params=params, auth=auth)
        if response.status_code != 200:
            raise RegistryUnauthorized(
                f"token realm {realm} answered {response.status_code}",
                resource_id=repository,
            )
        try:
            answer = response.json()
            token = answer.get("token") or answer.get("access_token")
            ttl_s = float(answer.get("expires_in") or DEFAULT_TOKEN_TTL_S)
        except (ValueError, AttributeError, TypeError) as exc:
            raise RegistryUnauthorized(
                f"token realm {realm} answered with no token", resource_id=repository
            ) from exc
        if not isinstance(token, str) or not token:
            raise RegistryUnauthorized(
                f"token realm {realm} answered with no token", resource_id=repository
            )
        self._tokens[repository] = (token, time.monotonic() + ttl_s)
        log.debug("registry token for %s from %s, %ss", repository, realm, ttl_s)
        return token


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _bearer_challenge(response: httpx.Response) -> dict[str, str] | None:
    """The parameters of a 401's Bearer challenge, or None for any other answer."""
    if response.status_code != 401:
        return None
    scheme, _, params = response.headers.get("WWW-Authenticate", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return {
        key.lower(): quoted if quoted else bare
        for key, quoted, bare in _CHALLENGE_PARAM.findall(params)
    }


def _check_repository(repository: str) -> None:
    if not _REPOSITORY.fullmatch(repository):
        raise ValueError(f"repository is not a valid name: {repository!r}")


@contextmanager
def _translate_transport_errors(url: str) -> Iterator[None]:
    try:
        yield
    except httpx.HTTPError as exc:
        raise RegistryUnavailable(
            f"GET {url} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _check_status(
    response: httpx.Response, not_found: type[NotFound], resource: str
) -> None:
    status = response.status_code
    if status == 200:
        return
    request = f"GET {response.request.url}"
    if status == 404:
        raise not_found(f"{resource} not found ({request})", resource_id=resource)
    if status in (401, 403):
        challenge = response.headers.get("WWW-Authenticate", "")
        raise RegistryUnauthorized(
            f"{request} answered {status} {challenge}".rstrip(), resource_id=resource
        )
    if status == 429 or status >= 500:
        raise RegistryUnavailable(f"{request} answered {status}", resource_id=resource)
    raise RegistryRejected(f"{request} answered {status}", resource_id=resource)


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    parts = []
    total = 0
    async for chunk in response.aiter_raw():
        total += len(chunk)
        if total > limit:
            raise InvalidManifest(
                f"GET {response.request.url}: manifest larger than {limit} bytes"
            )
        parts.append(chunk)
    return b"".join(parts)


async def _reporting(
    chunks: AsyncIterator[bytes], progress: Callable[[int], None] | None
) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if progress is not None:
            progress(len(chunk))
        yield chunk
