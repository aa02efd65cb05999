"""Learning when a sandbox's init process exits, and with which status.

How it works: `runc run --detach` starts the container's init as a child of the
runc process and then exits, which orphans the init. The kernel hands an orphan
to the nearest ancestor marked as a child subreaper (prctl(2),
PR_SET_CHILD_SUBREAPER), else to pid 1. Marking the agent as a subreaper makes
every sandbox init our child, so we can reap it with waitpid(2) and read its
exit status, which nothing else on the host could tell us.

Waiting is done without a thread and without SIGCHLD: a pidfd (pidfd_open(2))
becomes readable when its process exits, which trio can wait on like a socket.
A pidfd also works for a process that is not our child, such as a sandbox that
was started by an earlier agent process; then the exit is seen but its status is
lost, and `wait_for_exit` returns None.

Only the pids we ask about are reaped, never "any child" (-1): trio reaps its
own subprocesses, and a blanket reaper would steal their statuses. Orphans we
never ask about (grandchildren some program left behind) stay zombies until the
agent exits.
"""

from __future__ import annotations

import ctypes
import os

import trio

# include/uapi/linux/prctl.h
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def become_child_subreaper() -> None:
    """Mark this process so that orphaned descendants become its children."""
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def open_pidfd(pid: int) -> int | None:
    """A pidfd for `pid`, or None when no such process exists any more."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


async def wait_for_exit(pid: int, pidfd: int) -> int | None:
    """Wait until `pid` exits; return its exit code, or None if not our child.

    A process killed by a signal reports 128 + the signal number, as shells do.
    The caller owns `pidfd` and closes it.
    """
    await trio.lowlevel.wait_readable(pidfd)
    try:
        # The pidfd is readable: the process is a zombie, so this cannot block.
        reaped, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222
    except ChildProcessError:
        # ECHILD: alive before this agent process started, so not our child.
        return None
    if reaped == 0:
        # It exited but is no child of ours yet: reparenting is still pending.
        return None
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
