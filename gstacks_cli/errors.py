"""Errors the `gstacks` CLI reports, named for their cause.

    CliError                        base; the CLI prints `gstacks: <message>`, exits 1
    ├── ConfigInvalid               a config source holds something unusable
    ├── ApiKeyMissing               no API key from any source, or one unreadable
    ├── ControlPlaneUnreachable     no HTTP answer: refused, unresolvable, too slow
    ├── ApiError                    the control plane answered with an error body
    └── TerminalStreamError         the terminal WebSocket ended without an exit status
        ├── TerminalBusy            another client is attached to the session
        └── TerminalDisconnected    the link dropped or the host is away: reattachable

These are client-side causes, so they do not derive from the agent's `AgentError`,
whose classes carry the wire code an agent sends back to a control plane. Foreign
errors (httpx, trio-websocket, yaml, OSError) are translated into these where they
enter the CLI's code, and `main` turns any `CliError` into one line on stderr.
"""

from __future__ import annotations

from typing import Any


class CliError(Exception):
    """Base class; `message` is the one readable sentence shown to the operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigInvalid(CliError):
    """A flag, environment variable or config file holds an unusable value."""


class ApiKeyMissing(CliError):
    """No source gave an API key, or the standalone key file cannot be read."""


class ControlPlaneUnreachable(CliError):
    """The control plane gave no HTTP answer at all."""


class ApiError(CliError):
    """The control plane answered with an error; `code` is its snake_case code."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details or {}


class TerminalStreamError(CliError):
    """The terminal stream closed, or sent a frame, outside the protocol."""


class TerminalBusy(TerminalStreamError):
    """The server refused the attach because another client holds the session."""


class TerminalDisconnected(TerminalStreamError):
    """The stream dropped, or the session's host is not connected; the session may
    still run, so a client may reattach to it."""
