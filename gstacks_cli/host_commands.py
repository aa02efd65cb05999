"""`gstacks host delete` and `gstacks host logs`, added to the `host` group."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from gstacks_cli import output
from gstacks_cli.api_client import api_path
from gstacks_cli.durations import since_parameter

if TYPE_CHECKING:
    from gstacks_cli.main import Invocation


def format_log_line(line: dict[str, Any]) -> str:
    """`<time> <LEVEL> <logger>: <message>`, like the agent's own log."""
    return (
        f"{line.get('time', output.MISSING)} {line.get('level', ''):<7} "
        f"{line.get('logger', '')}: {line.get('message', '')}"
    )


@click.command("delete")
@click.argument("host_id", metavar="ID")
@click.option(
    "--force",
    is_flag=True,
    help="Also when sandboxes still run there: they are deleted or marked failed.",
)
@click.pass_obj
def host_delete(invocation: Invocation, host_id: str, force: bool) -> None:
    """Remove a host: revoke its credential and close its channel now."""
    path = api_path("hosts", host_id)
    if force:
        path += "?force=true"
    invocation.client.delete(path)
    if not invocation.json_output:
        click.echo(f"deleted host {host_id}")


@click.command("logs")
@click.argument("host_id", metavar="ID")
@click.option(
    "--since",
    metavar="WHEN",
    help="Only lines since then: 10m, 2h (ago), RFC 3339, or unix ms.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=200,
    show_default=True,
    help="At most this many of the newest lines.",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.pass_obj
def host_logs(
    invocation: Invocation, host_id: str, since: str | None, limit: int, follow: bool
) -> None:
    """Show the host agent's recent log lines."""
    params: dict[str, Any] = {"limit": limit}
    if since:
        params["since"] = since_parameter(since)
    path = api_path("hosts", host_id, "logs")

    if not follow:
        answer = invocation.client.get(path, params=params)
        if invocation.json_output:
            invocation.show(answer)
        else:
            for line in answer["items"]:
                click.echo(format_log_line(line))
        return

    params["follow"] = "true"
    try:
        for line in invocation.client.stream_json_lines(path, params=params):
            click.echo(
                json.dumps(line) if invocation.json_output else format_log_line(line)
            )
    except KeyboardInterrupt:
        # ^C is how a follow ends; the control plane sees the socket close.
        return
