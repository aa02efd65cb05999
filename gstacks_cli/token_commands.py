"""`gstacks token ...`: provisioning tokens that enroll hosts into a BYO cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from gstacks_cli import output
from gstacks_cli.api_client import api_path
from gstacks_cli.durations import parse_duration_s

if TYPE_CHECKING:
    from gstacks_cli.main import Invocation

TOKEN_COLUMNS = [
    output.field("id"),
    output.field("cluster_id", "CLUSTER"),
    output.field("status"),
    output.Column("USES", lambda t: f"{t.get('uses')}/{t.get('max_uses')}"),
    output.field("expires_at", "EXPIRES"),
    output.field("description"),
]


class Duration(click.ParamType):
    """A duration such as 90s, 15m, 2h or 7d, converted to whole seconds."""

    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration_s(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.group()
def token() -> None:
    """Provisioning tokens: how a new host joins a BYO cluster."""


@token.command("create")
@click.option(
    "--cluster", "cluster_id", required=True, metavar="ID", help="BYO cluster."
)
@click.option(
    "--ttl",
    "ttl_s",
    type=Duration(),
    default="1h",
    show_default=True,
    help="How long the token can be used (90s, 15m, 2h, 7d).",
)
@click.option(
    "--max-uses",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="How many hosts may enroll with it.",
)
@click.option("--description", metavar="TEXT", help="What the token is for.")
@click.pass_obj
def token_create(
    invocation: Invocation,
    cluster_id: str,
    ttl_s: int,
    max_uses: int,
    description: str | None,
) -> None:
    """Create a token; its secret is shown only this once.

    On the new host: gstacks-agent enroll --control-plane URL --token TOKEN
    """
    body: dict[str, Any] = {
        "cluster_id": cluster_id,
        "ttl_s": ttl_s,
        "max_uses": max_uses,
    }
    if description is not None:
        body["description"] = description
    record = invocation.client.post(api_path("provisioning-tokens"), body)
    invocation.show(record)
    if not invocation.json_output:
        click.echo("the token is shown only this once; keep it secret", err=True)


@token.command("list")
@click.option("--cluster", "cluster_id", metavar="ID", help="Only this cluster's.")
@click.pass_obj
def token_list(invocation: Invocation, cluster_id: str | None) -> None:
    """List tokens (never their secrets) with uses and expiry."""
    filters = {"cluster_id": cluster_id} if cluster_id else None
    items = invocation.client.list_all(api_path("provisioning-tokens"), params=filters)
    invocation.show_list(items, TOKEN_COLUMNS)


@token.command("get")
@click.argument("token_id", metavar="ID")
@click.pass_obj
def token_get(invocation: Invocation, token_id: str) -> None:
    """Show one token (never its secret)."""
    invocation.show(invocation.client.get(api_path("provisioning-tokens", token_id)))


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@click.pass_obj
def token_revoke(invocation: Invocation, token_id: str) -> None:
    """Refuse every later enrollment with the token."""
    path = api_path("provisioning-tokens", token_id)
    invocation.show(invocation.client.delete(path))
