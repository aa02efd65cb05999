"""Errors the agent raises, named for their cause.

    AgentError                  base of everything the agent raises on purpose
    ├── InvalidArgument         the request itself is wrong; retrying will not help
    ├── NotFound                the named resource does not exist on this host
    ├── AlreadyExists           a different resource already holds that id or name
    ├── FailedPrecondition      the host is not in a state where this can be done
    ├── Unavailable             a dependency (registry, runtime, mount) failed; retry
    └── MissingCapability       a binary or kernel feature this needs is absent

Capability subpackages subclass these in their own `errors.py`. Each class carries
the wire code it maps to, so the channel translates any AgentError into an Error
envelope in one place.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base class. `wire_code` names the ErrorCode sent back to the control plane."""

    wire_code = "ERROR_CODE_INTERNAL"

    def __init__(self, message: str, *, resource_id: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.resource_id = resource_id


class InvalidArgument(AgentError):
    wire_code = "ERROR_CODE_INVALID_ARGUMENT"


class NotFound(AgentError):
    wire_code = "ERROR_CODE_NOT_FOUND"


class AlreadyExists(AgentError):
    wire_code = "ERROR_CODE_ALREADY_EXISTS"


class FailedPrecondition(AgentError):
    wire_code = "ERROR_CODE_FAILED_PRECONDITION"


class Unavailable(AgentError):
    wire_code = "ERROR_CODE_UNAVAILABLE"


class MissingCapability(FailedPrecondition):
    """A binary or kernel feature is absent; the message says how to install it."""
