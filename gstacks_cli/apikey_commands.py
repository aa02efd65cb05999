"""`gstacks apikey ...`: CLI API keys (`/api/api-keys`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from gstacks_cli import output
from gstacks_cli.api_client import api_path

if TYPE_CHECKING:
    from gstacks_cli.main import Invocation

API_KEY_COLUMNS = [
    output.field("id"),
    output.field("name"),
    output.field("user_name", "USER"),
    output.field("created_at", "CREATED"),
    output.field("revoked_at", "REVOKED"),
]


@click.group()
def apikey() -> None:
    """API keys for the CLI and integrations."""


@apikey.command("create")
@click.argument("name")
@click.option(
    "--tenant",
    "tenant_id",
    metavar="TENANT",
    help="Another tenant's key (standalone admin only), e.g. tnt_lab2.",
)
@click.pass_obj
def apikey_create(invocation: Invocation, name: str, tenant_id: str | None) -> None:
    """Create a key named NAME; its secret is shown only this once."""
    body: dict[str, Any] = {"name": name}
    if tenant_id:
        body["tenant_id"] = tenant_id
    invocation.show(invocation.client.post(api_path("api-keys"), body))
    if not invocation.json_output:
        click.echo("the key is shown only this once; keep it secret", err=True)


@apikey.command("list")
@click.pass_obj
def apikey_list(invocation: Invocation) -> None:
    """List this tenant's keys (never their secrets)."""
    items = invocation.client.list_all(api_path("api-keys"))
    invocation.show_list(items, API_KEY_COLUMNS)


@apikey.command("revoke")
@click.argument("key_id", metavar="ID")
@click.pass_obj
def apikey_revoke(invocation: Invocation, key_id: str) -> None:
    """Revoke a key; requests and open streams using it stop at once."""
    invocation.show(invocation.client.delete(api_path("api-keys", key_id)))
