"""Terminals: interactive processes on PTYs, on the host or inside sandboxes."""

from gstacks_agent.terminals.host_shell import host_shell_argv, host_shell_env
from gstacks_agent.terminals.pty_session import PtySession

__all__ = ["PtySession", "host_shell_argv", "host_shell_env"]
