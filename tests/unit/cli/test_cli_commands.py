"""Commands send the contract's requests, refuse bad arguments, and show results."""

from __future__ import annotations

import json

import click
import pytest

from gstacks_cli.main import cli

SANDBOX = {
    "id": "sbx_0a1b",
    "name": "web",
    "status": "running",
    "image": "docker.io/library/busybox:1.36",
    "image_digest": "sha256:" + "ab" * 32,
    "artifact_ref": None,
    "source_blueprint_id": None,
    "host_id": "host_01",
    "command": ["sleep", "infinity"],
    "env": {"MODE": "test"},
    "exit_code": None,
    "message": None,
    "created_at": "2026-12-04T15:00:00Z",
    "updated_at": "2026-12-04T15:00:02Z",
}
CREATING = {**SANDBOX, "status": "creating"}
BLUEPRINT = {
    "id": "bp_07",
    "name": "py",
    "description": None,
    "image": "python:3.12",
    "status": "inactive",
    "metadata": {},
    "created_at": "2026-12-04T15:00:00Z",
}


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


# -- argument errors ---------------------------------------------------------------


def test_image_and_blueprint_together_is_a_one_line_usage_error(gstacks, control_plane):
    result = gstacks("sandbox", "create", "--image", "busybox", "--blueprint", "py")

    assert result.exit_code == 2
    assert result.stderr == (
        "gstacks: pass either --image or --blueprint, not both "
        "(see 'gstacks sandbox create --help')\n"
    )
    assert control_plane.requests == []


def test_neither_image_nor_blueprint_is_a_usage_error(gstacks, control_plane):
    result = gstacks("sandbox", "create", "--name", "web")

    assert result.exit_code == 2
    assert result.stderr.startswith("gstacks: pass --image REF or --blueprint")
    assert control_plane.requests == []


def test_env_without_equals_sign_is_a_usage_error(gstacks):
    result = gstacks("sandbox", "create", "--image", "busybox", "--env", "MODE")

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "expected KEY=VALUE, not 'MODE'" in result.stderr


def test_missing_argument_is_one_line_with_exit_2(run_cli):
    result = run_cli("sandbox", "get")

    assert result.exit_code == 2
    assert result.stderr == (
        "gstacks: Missing argument 'ID'. (see 'gstacks sandbox get --help')\n"
    )


def test_exec_without_a_command_is_a_usage_error(run_cli):
    result = run_cli("sandbox", "exec", "sbx_01")

    assert result.exit_code == 2
    assert "Missing argument 'COMMAND...'" in result.stderr


def _all_commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _all_commands(command, (*path, name))


@pytest.mark.parametrize("path", [path for path, _ in _all_commands(cli)], ids=" ".join)
def test_every_command_has_help_text(run_cli, path):
    command = cli
    for name in path:
        command = command.commands[name]

    result = run_cli(*path, "--help")

    assert result.exit_code == 0
    assert command.help and command.help.strip()
    assert f"Usage: gstacks {' '.join(path)}" in result.stdout


# -- sandbox -----------------------------------------------------------------------


def test_create_without_wait_posts_the_contract_body(gstacks, control_plane):
    control_plane.answer("POST", "/api/sandboxes", 201, CREATING)

    result = gstacks(
        "sandbox", "create", "--image", "busybox", "--name", "web",
        "--env", "MODE=test", "--env", "EMPTY=", "--no-wait",
        "--", "sleep", "--forever",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    (request,) = control_plane.requests
    assert request.body == {
        "image": "busybox",
        "name": "web",
        "env": {"MODE": "test", "EMPTY": ""},
        "command": ["sleep", "--forever"],
    }
    assert "status: creating" in result.stdout.splitlines()


def test_create_from_blueprint_sends_only_the_blueprint(gstacks, control_plane):
    control_plane.answer("POST", "/api/sandboxes", 201, CREATING)

    result = gstacks("sandbox", "create", "--blueprint", "py", "--no-wait")

    assert result.exit_code == 0, result.output
    assert control_plane.requests[0].body == {"blueprint": "py"}


def test_create_waits_through_a_timed_out_round(gstacks, control_plane):
    control_plane.answer("POST", "/api/sandboxes", 201, CREATING)
    wait = "/api/sandboxes/sbx_0a1b/wait"
    control_plane.answer("GET", wait, 504, _error("timeout", "still creating"))
    control_plane.answer("GET", wait, 200, SANDBOX)

    result = gstacks("sandbox", "create", "--image", "busybox")

    assert result.exit_code == 0, result.output
    waits = control_plane.requests_to("GET", wait)
    assert len(waits) == 2
    assert waits[0].query["status"] == "running"
    assert "status: running" in result.stdout.splitlines()
    progress = result.stderr.splitlines()
    assert progress[0] == "created sandbox sbx_0a1b, waiting for it to run"
    assert progress[1].startswith("  still waiting for sbx_0a1b")
    assert progress[2].startswith("sandbox sbx_0a1b is running")


def test_create_reports_a_failed_sandbox(gstacks, control_plane):
    control_plane.answer("POST", "/api/sandboxes", 201, CREATING)
    control_plane.answer(
        "GET",
        "/api/sandboxes/sbx_0a1b/wait",
        409,
        _error("failed_precondition", "sandbox sbx_0a1b failed: image not found"),
    )

    result = gstacks("sandbox", "create", "--image", "nope")

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "gstacks: sandbox sbx_0a1b failed: image not found"
    )


def test_sandbox_list_is_a_table_across_pages(gstacks, control_plane):
    second = {**SANDBOX, "id": "sbx_ff", "name": "db", "host_id": None}
    control_plane.answer(
        "GET", "/api/sandboxes", 200, {"items": [SANDBOX], "next_cursor": "c1"}
    )
    control_plane.answer(
        "GET", "/api/sandboxes", 200, {"items": [second], "next_cursor": None}
    )

    result = gstacks("sandbox", "list")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "ID        NAME  STATUS   IMAGE                           HOST     CREATED",
        "sbx_0a1b  web   running  docker.io/library/busybox:1.36  host_01  "
        "2026-12-04T15:00:00Z",
        "sbx_ff    db    running  docker.io/library/busybox:1.36  -        "
        "2026-12-04T15:00:00Z",
    ]
    queries = [r.query for r in control_plane.requests]
    assert queries == [{"limit": "100"}, {"limit": "100", "cursor": "c1"}]


def test_json_flag_prints_the_raw_record(gstacks, control_plane):
    control_plane.answer("GET", "/api/sandboxes/sbx_0a1b", 200, SANDBOX)

    result = gstacks("--json", "sandbox", "get", "sbx_0a1b")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == SANDBOX


def test_sandbox_get_prints_key_value_lines(gstacks, control_plane):
    control_plane.answer("GET", "/api/sandboxes/sbx_0a1b", 200, SANDBOX)

    result = gstacks("sandbox", "get", "sbx_0a1b")

    lines = result.stdout.splitlines()
    assert lines[:3] == ["id: sbx_0a1b", "name: web", "status: running"]
    assert "command: sleep, infinity" in lines
    assert "env:" in lines and "  MODE: test" in lines
    assert "exit_code: -" in lines


def test_sandbox_delete_shows_the_deleted_record(gstacks, control_plane):
    deleted = {**SANDBOX, "status": "deleted"}
    control_plane.answer("DELETE", "/api/sandboxes/sbx_0a1b", 200, deleted)

    result = gstacks("sandbox", "delete", "sbx_0a1b")

    assert result.exit_code == 0, result.output
    assert "status: deleted" in result.stdout.splitlines()


# -- blueprint, host, registry, auth ---------------------------------------------------


def test_blueprint_create_posts_name_image_description_metadata(gstacks, control_plane):
    control_plane.answer("POST", "/api/blueprints", 201, BLUEPRINT)

    result = gstacks(
        "blueprint", "create", "--name", "py", "--image", "python:3.12",
        "--description", "Python", "--metadata", "team=core",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert control_plane.requests[0].body == {
        "name": "py",
        "image": "python:3.12",
        "description": "Python",
        "metadata": {"team": "core"},
    }


@pytest.mark.parametrize("verb", ["activate", "deactivate"])
def test_blueprint_state_changes_post_to_their_route(gstacks, control_plane, verb):
    control_plane.answer("POST", f"/api/blueprints/bp_07/{verb}", 200, BLUEPRINT)

    result = gstacks("blueprint", verb, "bp_07")

    assert result.exit_code == 0, result.output
    assert [r.path for r in control_plane.requests] == [f"/api/blueprints/bp_07/{verb}"]


def test_blueprint_delete_of_a_used_blueprint_fails(gstacks, control_plane):
    message = "blueprint bp_07 is used by live sandbox sbx_0a1b"
    control_plane.answer(
        "DELETE", "/api/blueprints/bp_07", 409, _error("conflict", message)
    )

    result = gstacks("blueprint", "delete", "bp_07")

    assert (result.exit_code, result.stderr) == (1, f"gstacks: {message}\n")


def test_blueprint_delete_confirms(gstacks, control_plane):
    control_plane.answer("DELETE", "/api/blueprints/bp_07", 204)

    result = gstacks("blueprint", "delete", "bp_07")

    assert (result.exit_code, result.stdout) == (0, "deleted blueprint bp_07\n")


def test_host_list_shows_overview_columns(gstacks, control_plane):
    host = {
        "id": "host_01",
        "name": "lab",
        "status": "connected",
        "agent_version": "0.1.0",
        "last_seen_at": "2026-12-04T15:00:00Z",
        "overview": {
            "cpu_count": 4,
            "memory_total_bytes": 8 * 2**30,
            "sandbox_count": 2,
        },
    }
    offline = {**host, "id": "host_02", "status": "disconnected", "overview": None}
    body = {"items": [host, offline], "next_cursor": None}
    control_plane.answer("GET", "/api/hosts", 200, body)

    result = gstacks("host", "list")

    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "ID", "NAME", "STATUS", "AGENT", "CPUS", "MEMORY", "SANDBOXES", "LAST", "SEEN",
    ]  # fmt: skip
    assert lines[1].split()[4:7] == ["4", "8.0", "GiB"]
    assert lines[2].split()[4:7] == ["-", "-", "-"]


def test_registry_credential_defaults_to_pull(gstacks, control_plane):
    control_plane.answer("POST", "/api/registry/credentials", 201, {"username": "u"})

    result = gstacks("registry", "credential", "--repository", "blueprints/py")

    assert result.exit_code == 0, result.output
    assert control_plane.requests[0].body == {
        "repository": "blueprints/py",
        "action": "pull",
    }


def test_registry_credential_refuses_an_unknown_action(gstacks, control_plane):
    result = gstacks("registry", "credential", "--repository", "r", "--action", "rm")

    assert result.exit_code == 2
    assert control_plane.requests == []


def test_auth_status_says_where_the_settings_came_from(gstacks, control_plane):
    session = {
        "authenticated": True,
        "user": {"id": "usr_admin", "name": "admin"},
        "tenant_id": "tnt_default",
        "auth_method": "api_key",
        "expires_at": None,
    }
    control_plane.answer("GET", "/api/auth/session", 200, session)

    result = gstacks("auth", "status")

    lines = result.stdout.splitlines()
    assert lines[0] == f"url: {control_plane.url} (from GSTACKS_URL)"
    assert lines[1] == "api_key: from GSTACKS_API_KEY"
    assert "  name: admin" in lines
