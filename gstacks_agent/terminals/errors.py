"""Errors of terminal sessions, named for their cause.

AgentError
├── InvalidArgument
│   └── InvalidTerminalSize     cols or rows outside 1..1000
└── FailedPrecondition
    └── TerminalClosed          the session was closed or its PTY hung up
"""

from __future__ import annotations

from gstacks_agent.errors import FailedPrecondition, InvalidArgument


class InvalidTerminalSize(InvalidArgument):
    """A window size outside 1..1000 columns or rows."""


class TerminalClosed(FailedPrecondition):
    """The session was closed, or every process on its PTY has gone."""
