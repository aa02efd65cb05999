"""`gstacks cluster`, `token`, `apikey`, `host delete` and `host logs` send the
contract's requests and show the answers."""

from __future__ import annotations

import json

TOKEN = {
    "id": "pt_01",
    "cluster_id": "cl_01",
    "description": "",
    "status": "active",
    "max_uses": 3,
    "uses": 0,
    "expires_at": "2026-12-04T17:00:00Z",
    "created_at": "2026-12-04T15:00:00Z",
    "created_by": "admin",
    "last_used_at": None,
    "revoked_at": None,
}
LINES = [
    {
        "time": "2026-12-04T15:00:00.250Z",
        "time_unix_ms": 1796396400250,
        "level": "INFO",
        "logger": "gstacks.agent.daemon",
        "message": "connected",
    },
    {
        "time": "2026-12-04T15:00:01.000Z",
        "time_unix_ms": 1796396401000,
        "level": "WARNING",
        "logger": "gstacks.agent.images",
        "message": "slow pull",
    },
]


def test_cluster_create_sends_name_kind_and_description(gstacks, control_plane):
    cluster = {"id": "cl_01", "name": "edge", "kind": "managed", "host_count": 0}
    control_plane.answer("POST", "/api/clusters", 201, cluster)

    result = gstacks("cluster", "create", "edge", "--kind", "managed")

    assert result.exit_code == 0, result.output
    (request,) = control_plane.requests_to("POST", "/api/clusters")
    assert request.body == {"name": "edge", "kind": "managed"}
    assert "kind: managed" in result.stdout


def test_cluster_delete_refused_while_hosts_are_enrolled_is_one_line(
    gstacks, control_plane
):
    message = "cluster cl_01 still has 1 enrolled host(s); delete them first"
    error = {"error": {"code": "conflict", "message": message}}
    control_plane.answer("DELETE", "/api/clusters/cl_01", 409, error)

    result = gstacks("cluster", "delete", "cl_01")

    assert result.exit_code == 1
    assert result.stderr == f"gstacks: {message}\n"


def test_token_create_converts_the_ttl_and_warns_the_secret_is_shown_once(
    gstacks, control_plane
):
    control_plane.answer(
        "POST", "/api/provisioning-tokens", 201, {**TOKEN, "token": "gpt_secret"}
    )

    result = gstacks(
        "token", "create", "--cluster", "cl_01", "--ttl", "2h", "--max-uses", "3"
    )

    assert result.exit_code == 0, result.output
    (request,) = control_plane.requests_to("POST", "/api/provisioning-tokens")
    assert request.body == {"cluster_id": "cl_01", "ttl_s": 7200, "max_uses": 3}
    assert "token: gpt_secret" in result.stdout
    assert "shown only this once" in result.stderr


def test_token_create_refuses_a_bad_ttl_before_sending(gstacks, control_plane):
    result = gstacks("token", "create", "--cluster", "cl_01", "--ttl", "soon")

    assert result.exit_code == 2
    assert "expected a duration" in result.stderr
    assert control_plane.requests == []


def test_token_list_filters_by_cluster_and_shows_uses(gstacks, control_plane):
    body = {"items": [TOKEN], "next_cursor": None}
    control_plane.answer("GET", "/api/provisioning-tokens", 200, body)

    result = gstacks("token", "list", "--cluster", "cl_01")

    assert result.exit_code == 0, result.output
    (request,) = control_plane.requests_to("GET", "/api/provisioning-tokens")
    assert request.query["cluster_id"] == "cl_01"
    assert "0/3" in result.stdout


def test_apikey_create_for_another_tenant(gstacks, control_plane):
    key = {"id": "key_01", "name": "b", "tenant_id": "tnt_b", "key": "gsk_x"}
    control_plane.answer("POST", "/api/api-keys", 201, key)

    result = gstacks("apikey", "create", "b", "--tenant", "tnt_b")

    assert result.exit_code == 0, result.output
    (request,) = control_plane.requests_to("POST", "/api/api-keys")
    assert request.body == {"name": "b", "tenant_id": "tnt_b"}


def test_apikey_revoke_calls_delete(gstacks, control_plane):
    revoked = {"id": "key_01", "revoked_at": "2026-12-04T15:00:00Z"}
    control_plane.answer("DELETE", "/api/api-keys/key_01", 200, revoked)

    result = gstacks("apikey", "revoke", "key_01")

    assert result.exit_code == 0, result.output
    assert "revoked_at: 2026-12-04T15:00:00Z" in result.stdout


def test_host_delete_with_force(gstacks, control_plane):
    control_plane.answer("DELETE", "/api/hosts/host_01", 204)

    result = gstacks("host", "delete", "host_01", "--force")

    assert result.exit_code == 0, result.output
    (request,) = control_plane.requests_to("DELETE", "/api/hosts/host_01")
    assert request.query == {"force": "true"}
    assert result.stdout == "deleted host host_01\n"


def test_host_logs_prints_one_line_per_record(gstacks, control_plane):
    control_plane.answer("GET", "/api/hosts/host_01/logs", 200, {"items": LINES})

    result = gstacks("host", "logs", "host_01", "--limit", "2", "--since", "1000")

    assert result.exit_code == 0, result.output
    (request,) = control_plane.requests_to("GET", "/api/hosts/host_01/logs")
    assert request.query == {"limit": "2", "since": "1000"}
    assert result.stdout.splitlines() == [
        "2026-12-04T15:00:00.250Z INFO    gstacks.agent.daemon: connected",
        "2026-12-04T15:00:01.000Z WARNING gstacks.agent.images: slow pull",
    ]


def test_host_logs_follow_reads_json_lines_until_the_stream_ends(
    gstacks, control_plane
):
    ndjson = "".join(json.dumps(line) + "\n" for line in LINES).encode()
    control_plane.answer(
        "GET",
        "/api/hosts/host_01/logs",
        200,
        raw=ndjson,
        content_type="application/x-ndjson",
    )

    result = gstacks("host", "logs", "host_01", "--follow")

    assert result.exit_code == 0, result.output
    (request,) = control_plane.requests_to("GET", "/api/hosts/host_01/logs")
    assert request.query["follow"] == "true"
    assert len(result.stdout.splitlines()) == 2
    assert result.stdout.splitlines()[1].endswith("slow pull")


def test_host_logs_of_an_unknown_host_is_one_line(gstacks, control_plane):
    error = {"error": {"code": "not_found", "message": "host host_09 does not exist"}}
    control_plane.answer("GET", "/api/hosts/host_09/logs", 404, error)

    result = gstacks("host", "logs", "host_09", "--follow")

    assert result.exit_code == 1
    assert result.stderr == "gstacks: host host_09 does not exist\n"


def test_every_new_command_has_help(run_cli):
    for args in [
        ("cluster", "--help"),
        ("token", "create", "--help"),
        ("apikey", "--help"),
        ("host", "logs", "--help"),
        ("host", "delete", "--help"),
    ]:
        result = run_cli(*args)
        assert result.exit_code == 0, args
        assert "Usage:" in result.stdout
