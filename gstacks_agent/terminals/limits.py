"""Bounds on terminal sessions, one set per agent, from its configuration."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TerminalLimits:
    # Output kept per session for a reattach, and the most a slow client can hold up.
    scrollback_bytes: int = 4 * 1024 * 1024
    # How long a session without a client waits for one to reattach.
    grace_s: float = 120.0
    # A session that sees no input or output this long is ended.
    idle_timeout_s: float = 3600.0
