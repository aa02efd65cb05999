"""`gstacks network ...`: runtime networks (`/api/networks`) and sandbox membership."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gstacks_cli import output
from gstacks_cli.api_client import api_path
from gstacks_cli.errors import CliError
from gstacks_cli.output import Column
from gstacks_cli.token_commands import Duration

if TYPE_CHECKING:
    from gstacks_cli.main import Invocation

NETWORK_COLUMNS = [
    output.field("id"),
    output.field("name"),
    output.field("cidr", "RANGE"),
    output.field("domain"),
    output.field("member_count", "MEMBERS"),
    output.field("created_at", "CREATED"),
]


def _joined(values: list[Any] | None) -> str:
    return ",".join(str(v) for v in values or []) or "-"


ROUTE_COLUMNS = [
    output.field("name"),
    output.field("address"),
    Column("PORTS", lambda r: _joined(r.get("ports"))),
    output.field("sandbox_id", "SANDBOX"),
    output.field("host_id", "HOST"),
]
POLICY_COLUMNS = [
    Column("#", lambda r: str(r["_position"])),
    output.field("action"),
    output.field("from"),
    output.field("to"),
    Column("PORTS", lambda r: _joined(r.get("ports"))),
    Column("PROTOCOL", lambda r: r.get("protocol") or "any"),
    output.field("id"),
]


@click.group()
def network() -> None:
    """Runtime networks: sandboxes on any host reach each other by name."""


@network.command("create")
@click.argument("name")
@click.option("--cidr", metavar="CIDR", help="IPv4 range (default: a free /24).")
@click.option("--description", metavar="TEXT", help="What the network is for.")
@click.pass_obj
def network_create(
    invocation: Invocation, name: str, cidr: str | None, description: str | None
) -> None:
    """Create a network named NAME (a DNS label)."""
    body: dict[str, Any] = {"name": name}
    if cidr is not None:
        body["cidr"] = cidr
    if description is not None:
        body["description"] = description
    invocation.show(invocation.client.post(api_path("networks"), body))


@network.command("list")
@click.pass_obj
def network_list(invocation: Invocation) -> None:
    """List networks."""
    items = invocation.client.list_all(api_path("networks"))
    invocation.show_list(items, NETWORK_COLUMNS)


@network.command("get")
@click.argument("network_ref", metavar="NETWORK")
@click.pass_obj
def network_get(invocation: Invocation, network_ref: str) -> None:
    """Show one network (by id or name)."""
    invocation.show(invocation.client.get(api_path("networks", network_ref)))


@network.command("delete")
@click.argument("network_ref", metavar="NETWORK")
@click.pass_obj
def network_delete(invocation: Invocation, network_ref: str) -> None:
    """Delete a network that has no members."""
    invocation.client.delete(api_path("networks", network_ref))
    if not invocation.json_output:
        click.echo(f"deleted network {network_ref}")


@network.command("attach")
@click.argument("sandbox_id", metavar="SANDBOX")
@click.argument("network_ref", metavar="NETWORK")
@click.option(
    "--alias",
    "aliases",
    multiple=True,
    metavar="ALIAS",
    help="Publish ALIAS.<network>.gstacks (repeatable).",
)
@click.option(
    "--port",
    "ports",
    multiple=True,
    type=click.IntRange(1, 65535),
    help="A port the sandbox serves on (repeatable).",
)
@click.pass_obj
def network_attach(
    invocation: Invocation,
    sandbox_id: str,
    network_ref: str,
    aliases: tuple[str, ...],
    ports: tuple[int, ...],
) -> None:
    """Attach SANDBOX to NETWORK; again to change its aliases and ports."""
    body = {"aliases": list(aliases), "ports": list(ports)}
    path = api_path("sandboxes", sandbox_id, "networks", network_ref, "attach")
    invocation.show(invocation.client.post(path, body))


@network.command("detach")
@click.argument("sandbox_id", metavar="SANDBOX")
@click.argument("network_ref", metavar="NETWORK")
@click.pass_obj
def network_detach(invocation: Invocation, sandbox_id: str, network_ref: str) -> None:
    """Detach SANDBOX from NETWORK; its names stop resolving."""
    path = api_path("sandboxes", sandbox_id, "networks", network_ref, "detach")
    member = invocation.client.post(path)
    if invocation.json_output:
        invocation.show(member)
    else:
        click.echo(f"detached {sandbox_id} from {network_ref}")


@network.command("routes")
@click.argument("network_ref", metavar="NETWORK")
@click.pass_obj
def network_routes(invocation: Invocation, network_ref: str) -> None:
    """List the published names of NETWORK with addresses and ports."""
    page = invocation.client.get(api_path("networks", network_ref, "routes"))
    invocation.show_list(page["items"], ROUTE_COLUMNS)


@network.command("policy")
@click.argument("network_ref", metavar="NETWORK")
@click.option(
    "--add",
    "action",
    type=click.Choice(["allow", "deny"]),
    help="Append a rule with this action (first matching rule decides).",
)
@click.option(
    "--from", "source", default="*", show_default=True, help="Source selector."
)
@click.option("--to", "target", default="*", show_default=True, help="Target selector.")
@click.option(
    "--port",
    "ports",
    multiple=True,
    type=click.IntRange(1, 65535),
    help="Destination port of the rule (repeatable; none: every port).",
)
@click.option("--protocol", type=click.Choice(["tcp", "udp"]), help="Default: both.")
@click.option("--clear", is_flag=True, help="Remove every rule first.")
@click.pass_obj
def network_policy(
    invocation: Invocation,
    network_ref: str,
    action: str | None,
    source: str,
    target: str,
    ports: tuple[int, ...],
    protocol: str | None,
    clear: bool,
) -> None:
    """Show NETWORK's policy rules, or change them with --add / --clear.

    Selectors are '*', an alias, or a sandbox id. Within a network everything is
    allowed unless a rule denies it; nothing crosses between networks.
    """
    path = api_path("networks", network_ref, "policies")
    rules = invocation.client.get(path)["items"]
    if clear or action:
        wanted = [] if clear else [_rule_input(r) for r in rules]
        if action:
            rule: dict[str, Any] = {
                "action": action,
                "from": source,
                "to": target,
                "ports": list(ports),
            }
            if protocol:
                rule["protocol"] = protocol
            wanted.append(rule)
        rules = invocation.client.put(path, {"rules": wanted})["items"]
    numbered = [{**r, "_position": i + 1} for i, r in enumerate(rules)]
    if invocation.json_output:
        invocation.show_list(rules, POLICY_COLUMNS)
    else:
        invocation.show_list(numbered, POLICY_COLUMNS)


def _rule_input(rule: dict[str, Any]) -> dict[str, Any]:
    kept = {k: rule[k] for k in ("action", "from", "to", "ports", "description")}
    if rule.get("protocol"):
        kept["protocol"] = rule["protocol"]
    return kept


@network.command("join")
@click.argument("network_ref", metavar="NETWORK")
@click.option(
    "--ttl",
    "ttl_s",
    type=Duration(),
    default="1h",
    show_default=True,
    help="How long the credential works (10s .. 1d).",
)
@click.option(
    "--output",
    "-o",
    "output_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the WireGuard config here (mode 0600) instead of stdout.",
)
@click.pass_obj
def network_join(
    invocation: Invocation, network_ref: str, ttl_s: int, output_path: Path | None
) -> None:
    """Get a short-lived WireGuard config that reaches NETWORK from this machine.

    Bring it up with 'wg-quick up FILE'. Its private key is shown only this once.
    """
    # Open the file first: a credential whose private key cannot be saved is lost.
    out = None
    if output_path is not None and not invocation.json_output:
        try:
            fd = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise CliError(f"cannot write {output_path}: {exc.strerror}") from exc
        out = os.fdopen(fd, "w")
    try:
        credential = invocation.client.post(
            api_path("networks", network_ref, "mesh-join"), {"ttl_s": ttl_s}
        )
        if invocation.json_output:
            invocation.show(credential)
            return
        if out is None:
            click.echo(credential["config"], nl=False)
            return
        out.write(credential["config"])
    except BaseException:
        if out is not None:
            # Nothing was issued, or it cannot be saved: leave no empty file behind.
            output_path.unlink(missing_ok=True)
        raise
    finally:
        if out is not None:
            out.close()
    click.echo(
        f"wrote {output_path}: {credential['mesh_address']} until "
        f"{credential['expires_at']}"
    )


@network.command("diagnose")
@click.argument("network_ref", metavar="NETWORK")
@click.pass_obj
def network_diagnose(invocation: Invocation, network_ref: str) -> None:
    """Ask every host of NETWORK to check peers, members, names and policies."""
    report = invocation.client.post(api_path("networks", network_ref, "diagnostics"))
    if invocation.json_output:
        invocation.show(report)
        return
    state = "healthy" if report["healthy"] else "NOT healthy"
    down = ", ".join(report["down_hosts"]) or "none"
    click.echo(f"network {report['network_id']}: {state}; hosts down: {down}")
    for host in report["hosts"]:
        click.echo(f"host {host['host_id']}: {host['status']}")
        if host.get("error"):
            click.echo(f"  {host['error']}")
        for peer in host.get("peers", []):
            who = peer["host_id"] or f"join {peer['join_id']}"
            age = peer["handshake_age_s"]
            handshake = (
                f"handshake {age:.0f}s ago" if age is not None else "no handshake"
            )
            mark = "ok" if peer["reachable"] else "UNREACHABLE"
            click.echo(f"  peer {who}: {mark}, {handshake}")
        for member in host.get("members", []):
            mark = "ok" if member["reachable"] else "UNREACHABLE"
            click.echo(f"  member {member['sandbox_id']} {member['address']}: {mark}")
        for alias in host.get("aliases", []):
            mark = "ok" if alias["ok"] else f"WRONG ({alias['resolved_address']})"
            click.echo(f"  name {alias['name']}: {mark}")
        for verdict in host.get("policies", []):
            click.echo(
                f"  {verdict['from_sandbox_id']} -> {verdict['to_sandbox_id']}:"
                f"{verdict['port']}/{verdict['protocol']}: {verdict['verdict']}"
            )
