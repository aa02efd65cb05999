"""Sandbox ids and the records the manager keeps on disk."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from gstacks_agent.errors import InvalidArgument
from gstacks_agent.sandboxes.manager import (
    SandboxInfo,
    check_sandbox_id,
    default_hostname,
)
from gstacks_agent.sandboxes.runtime_spec import check_hostname


@pytest.mark.parametrize(
    "sandbox_id", ["a", "0", "web-1", "a" * 63, "x-", "sbx_3f09c2a1d4e5b677"]
)
def test_valid_sandbox_ids_are_accepted(sandbox_id):
    assert check_sandbox_id(sandbox_id) == sandbox_id


@pytest.mark.parametrize(
    "sandbox_id", ["", "-a", "_a", "Web", "a.b", "a" * 64, "../etc", "a/b"]
)
def test_invalid_sandbox_ids_are_refused(sandbox_id):
    with pytest.raises(InvalidArgument, match="sandbox id must match"):
        check_sandbox_id(sandbox_id)


def test_record_round_trips_through_json():
    info = SandboxInfo("web-1", "stopped", "sha256:ab", 42, 7, "web-1", "done")
    assert SandboxInfo.from_json(asdict(info)) == info


def test_record_with_unknown_state_is_refused():
    data = asdict(SandboxInfo("web-1", "running", "sha256:ab"))
    data["state"] = "paused"
    with pytest.raises(ValueError, match="unknown sandbox state"):
        SandboxInfo.from_json(data)


@pytest.mark.parametrize(
    "sandbox_id, hostname",
    [("web-1", "web-1"), ("sbx_3f09c2a1d4e5b677", "sbx-3f09c2a1d4e5b677"), ("x-", "x")],
)
def test_default_hostname_is_the_id_made_a_dns_label(sandbox_id, hostname):
    assert check_hostname(default_hostname(sandbox_id)) == hostname
