"""A synchronous client of the control plane's HTTP API.

Every answer either decodes as JSON or becomes one `CliError`: the control plane's
error body `{"error": {"code", "message", "details"}}` turns into an `ApiError`
carrying its sentence, a missing answer (refused, unresolvable, too slow) into
`ControlPlaneUnreachable`. httpx exceptions never leave this module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from gstacks_cli.errors import ApiError, CliError, ControlPlaneUnreachable

logger = logging.getLogger("gstacks.cli.api")

DEFAULT_TIMEOUT_S = 30.0
USER_AGENT = "gstacks-cli/0.1.0"


def api_path(*segments: str) -> str:
    """The path `/api/<segments...>`, each segment percent-encoded.

    Ids come from the command line, so a stray `/` or `?` in one must not reach
    another route.
    """
    return "/api/" + "/".join(quote(segment, safe="") for segment in segments)


def error_from_body(status: int, body: bytes, *, request: str) -> ApiError:
    """Translate an error answer into an ApiError with the server's sentence.

    `request` names what was asked ("GET /api/hosts") for the case where the body
    is not the contract's error shape, for example a proxy's HTML page.
    """
    try:
        error = json.loads(body)["error"]
        code, message = error["code"], error["message"]
        details = error.get("details") or {}
    except (ValueError, TypeError, KeyError):
        return ApiError(
            f"the control plane answered {request} with HTTP {status} "
            f"({_reason(status)}) and no error body",
            status=status,
            code=_reason(status).lower().replace(" ", "_"),
        )
    if not isinstance(message, str) or not message:
        message = f"{request} failed with {code}"
    return ApiError(message, status=status, code=str(code), details=details)


class ApiClient:
    """One HTTP connection pool to the control plane, authenticated by an API key.

    Methods return the decoded JSON body, or None for an empty answer (204).
    """

    def __init__(
        self, base_url: str, api_key: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=timeout_s,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def get(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """GET `path` and return its JSON body."""
        return self._request("GET", path, params=params, timeout_s=timeout_s)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """POST `body` as JSON to `path` and return the answer's JSON body."""
        return self._request("POST", path, body=body)

    def put(self, path: str, body: Mapping[str, Any]) -> Any:
        """PUT `body` as JSON to `path` and return the answer's JSON body."""
        return self._request("PUT", path, body=body)

    def delete(self, path: str) -> Any:
        """DELETE `path`; returns the JSON body, or None when there is none."""
        return self._request("DELETE", path)

    def list_all(
        self,
        path: str,
        *,
        page_size: int = 100,
        params: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Every item of a collection, following `next_cursor` page by page.

        `params` are extra query parameters (filters) sent with every page.
        """
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {**(params or {}), "limit": page_size}
        while True:
            page = self.get(path, params=query)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items
            query["cursor"] = cursor

    def stream_json_lines(
        self, path: str, *, params: Mapping[str, Any] | None = None
    ) -> Iterator[Any]:
        """GET `path` as JSON lines (`application/x-ndjson`), each as it arrives.

        The stream may stay quiet for long, so only connecting has a deadline.
        """
        request = f"GET {path}"
        timeout = httpx.Timeout(DEFAULT_TIMEOUT_S, read=None)
        try:
            with self._http.stream(
                "GET", path, params=params, timeout=timeout
            ) as response:
                logger.debug("%s -> %d (streaming)", request, response.status_code)
                if response.is_error:
                    response.read()
                    raise error_from_body(
                        response.status_code, response.content, request=request
                    )
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.TimeoutException as exc:
            raise ControlPlaneUnreachable(
                f"the control plane at {self.base_url} did not answer {request} "
                f"in time ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise ControlPlaneUnreachable(
                f"the stream of {request} from {self.base_url} broke: {exc}"
            ) from exc
        except ValueError as exc:
            raise CliError(
                f"the control plane sent a line that is not JSON on {request}"
            ) from exc

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        request = f"{method} {path}"
        extra: dict[str, Any] = {}
        if timeout_s is not None:
            extra["timeout"] = timeout_s
        try:
            response = self._http.request(
                method, path, json=body, params=params, **extra
            )
        except httpx.TimeoutException as exc:
            raise ControlPlaneUnreachable(
                f"the control plane at {self.base_url} did not answer {request} "
                f"in time ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise ControlPlaneUnreachable(
                f"cannot reach the control plane at {self.base_url}: {exc}"
            ) from exc
        logger.debug("%s -> %d", request, response.status_code)

        if response.is_error:
            raise error_from_body(
                response.status_code, response.content, request=request
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise CliError(
                f"the control plane answered {request} with a body that is not JSON"
            ) from exc


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unknown status"
