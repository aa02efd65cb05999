"""The command line of an interactive shell on the host itself."""

from __future__ import annotations

import os

LOGIN_SHELL = "/bin/bash"
FALLBACK_SHELL = "/bin/sh"


def host_shell_argv() -> list[str]:
    """`bash -l` when the host has bash, else plain `sh`."""
    if os.access(LOGIN_SHELL, os.X_OK):
        return [LOGIN_SHELL, "-l"]
    return [FALLBACK_SHELL]


def host_shell_env(term: str = "xterm-256color") -> dict[str, str]:
    """A clean environment for a host shell: the agent's own stays private."""
    return {
        "TERM": term,
        "HOME": "/root" if os.geteuid() == 0 else os.environ.get("HOME", "/"),
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }


def host_shell_cwd(home: str) -> str:
    """Where a host shell starts: `home` if it exists, else the root."""
    return home if os.path.isdir(home) else "/"
