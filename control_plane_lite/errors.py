"""Errors the control plane's services raise, named for their cause.

    ApiError                    base; carries an HTTP status and a stable snake_case code
    ├── InvalidRequest          400 invalid_argument: the request is malformed or contradicts itself
    ├── Unauthenticated         401 unauthenticated: no credential, or one we do not accept
    ├── PermissionDenied        403 permission_denied: a valid credential without this right
    ├── NotFound                404 not_found: no such resource for this tenant
    ├── Conflict                409 conflict: the resource's state or a name clash forbids it
    ├── PayloadTooLarge         413 payload_too_large: the request body is over the limit
    ├── HostUnavailable         503 unavailable: the host that must act is not connected
    ├── AgentFailed             502 agent_error: the agent tried and reported a failure
    └── Timeout                 504 timeout: waited as long as the caller allowed

The ASGI app renders any ApiError as `{"error": {"code", "message", "details"}}` in
one place; services never build responses.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(ApiError):
    status = 400
    code = "invalid_argument"


class Unauthenticated(ApiError):
    status = 401
    code = "unauthenticated"


class PermissionDenied(ApiError):
    status = 403
    code = "permission_denied"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class AgentFailed(ApiError):
    status = 502
    code = "agent_error"


class HostUnavailable(ApiError):
    status = 503
    code = "unavailable"


class Timeout(ApiError):
    status = 504
    code = "timeout"
