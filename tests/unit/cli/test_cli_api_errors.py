"""Error answers, and no answer at all, become one line and exit status 1."""

from __future__ import annotations

import json
import socket

import pytest

from gstacks_cli.api_client import api_path, error_from_body


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message, "details": {}}}


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, "invalid_argument", "name must be at most 128 characters"),
        (401, "unauthenticated", "the API key is not valid"),
        (404, "not_found", "sandbox sbx_00ff does not exist"),
        (409, "conflict", "blueprint bp_01 is used by sandbox sbx_02"),
        (503, "unavailable", "no connected host can run sandboxes"),
    ],
)
def test_error_body_is_printed_as_one_line(
    gstacks, control_plane, status, code, message
):
    control_plane.answer(
        "GET", "/api/sandboxes/sbx_00ff", status, _error(code, message)
    )

    result = gstacks("sandbox", "get", "sbx_00ff")

    assert result.exit_code == 1
    assert result.stderr == f"gstacks: {message}\n"
    assert result.stdout == ""


def test_error_answer_without_error_body_names_the_status(gstacks, control_plane):
    control_plane.answer(
        "GET",
        "/api/hosts",
        502,
        raw=b"<html>bad gateway</html>",
        content_type="text/html",
    )

    result = gstacks("host", "list")

    assert result.exit_code == 1
    assert result.stderr == (
        "gstacks: the control plane answered GET /api/hosts with HTTP 502 "
        "(Bad Gateway) and no error body\n"
    )


def test_closed_port_gives_cannot_reach(run_cli):
    # Bind and close a loopback port so that nothing listens on it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    result = run_cli("--url", url, "--api-key", "k", "sandbox", "list")

    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"gstacks: cannot reach the control plane at {url}: "
    )
    assert "Connection refused" in result.stderr
    assert result.stderr.count("\n") == 1


def test_every_request_carries_the_bearer_key(gstacks, control_plane):
    control_plane.answer("GET", "/api/registry", 200, {"url": "http://r"})

    gstacks("registry", "info")

    (request,) = control_plane.requests_to("GET", "/api/registry")
    assert request.headers["authorization"] == f"Bearer {control_plane.api_key}"


def test_id_with_a_slash_stays_inside_its_path_segment(gstacks, control_plane):
    result = gstacks("sandbox", "get", "../hosts")

    assert result.exit_code == 1
    assert [r.path for r in control_plane.requests] == ["/api/sandboxes/..%2Fhosts"]


def test_api_path_encodes_each_segment():
    assert api_path("sandboxes", "sbx_1", "wait") == "/api/sandboxes/sbx_1/wait"
    assert api_path("blueprints", "a b?c") == "/api/blueprints/a%20b%3Fc"


def test_error_body_keeps_code_status_and_details():
    error = {"code": "invalid_argument", "message": "bad", "details": {"f": 1}}
    body = json.dumps({"error": error}).encode()

    error = error_from_body(422, body, request="POST /api/sandboxes")

    assert (error.message, error.code, error.status) == ("bad", "invalid_argument", 422)
    assert error.details == {"f": 1}


def test_error_body_of_the_wrong_shape_falls_back_to_the_status():
    error = error_from_body(500, b'{"detail": "oops"}', request="GET /api/hosts")

    assert error.code == "internal_server_error"
    assert "HTTP 500 (Internal Server Error)" in error.message
