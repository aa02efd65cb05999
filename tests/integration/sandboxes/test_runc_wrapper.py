"""The runc wrapper against the real binary, on a root of its own."""

from __future__ import annotations

import pytest

from gstacks_agent.errors import MissingCapability
from gstacks_agent.sandboxes.errors import RuntimeFailed
from gstacks_agent.sandboxes.runc import Runc

pytestmark = pytest.mark.root


def test_missing_binary_names_the_package_to_install(tmp_path):
    with pytest.raises(MissingCapability, match="apt-get install runc"):
        Runc.locate(root=tmp_path, name="no-such-runc-binary")


async def test_unknown_container_has_no_state(runc):
    assert await runc.state("unknown") is None
    assert await runc.delete("unknown", force=True) is False


async def test_empty_root_lists_nothing(tmp_path):
    runc = Runc.locate(root=tmp_path / "never-created")
    assert await runc.list() == []


async def test_kill_of_unknown_container_fails_with_runc_stderr(runc):
    with pytest.raises(RuntimeFailed, match="runc kill exited with status"):
        await runc.kill("unknown", "SIGTERM")


async def test_running_sandbox_is_listed_under_our_root_only(manager, runc, image):
    await manager.create("listed", image)
    [entry] = await runc.list()
    assert entry["id"] == "listed"
    assert entry["status"] == "running"
    other = Runc(runc.binary, runc.root.parent / "other-root")
    assert await other.list() == []


def test_exec_argv_allocates_a_terminal_and_sets_term(runc):
    argv = runc.exec_argv("box", ["sh", "-l"], {"LANG": "C.UTF-8"})
    assert argv[:3] == [str(runc.binary), "--root", str(runc.root)]
    assert argv[3:6] == ["exec", "-t", "--cwd"]
    assert argv[-3:] == ["box", "sh", "-l"]
    assert "TERM=xterm-256color" in argv and "LANG=C.UTF-8" in argv
