"""`gstacks cluster ...`: infrastructure clusters (`/api/clusters`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from gstacks_cli import output
from gstacks_cli.api_client import api_path

if TYPE_CHECKING:
    from gstacks_cli.main import Invocation

CLUSTER_COLUMNS = [
    output.field("id"),
    output.field("name"),
    output.field("kind"),
    output.field("host_count", "HOSTS"),
    output.field("created_at", "CREATED"),
]


@click.group()
def cluster() -> None:
    """Clusters: BYO hosts or GlobalStacks-managed capacity."""


@cluster.command("create")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["byo", "managed"]),
    default="byo",
    show_default=True,
    help="byo: your own hosts, enrolled with tokens; managed: GlobalStacks capacity.",
)
@click.option("--description", metavar="TEXT", help="What the cluster is for.")
@click.pass_obj
def cluster_create(
    invocation: Invocation, name: str, kind: str, description: str | None
) -> None:
    """Create a cluster named NAME (a DNS label)."""
    body: dict[str, Any] = {"name": name, "kind": kind}
    if description is not None:
        body["description"] = description
    invocation.show(invocation.client.post(api_path("clusters"), body))


@cluster.command("list")
@click.pass_obj
def cluster_list(invocation: Invocation) -> None:
    """List clusters with their host counts."""
    items = invocation.client.list_all(api_path("clusters"))
    invocation.show_list(items, CLUSTER_COLUMNS)


@cluster.command("get")
@click.argument("cluster_id", metavar="ID")
@click.pass_obj
def cluster_get(invocation: Invocation, cluster_id: str) -> None:
    """Show one cluster."""
    invocation.show(invocation.client.get(api_path("clusters", cluster_id)))


@cluster.command("delete")
@click.argument("cluster_id", metavar="ID")
@click.pass_obj
def cluster_delete(invocation: Invocation, cluster_id: str) -> None:
    """Delete a cluster no host is enrolled in, with its provisioning tokens."""
    invocation.client.delete(api_path("clusters", cluster_id))
    if not invocation.json_output:
        click.echo(f"deleted cluster {cluster_id}")
