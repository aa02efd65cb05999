"""`gstacks volume ...`: volumes and their attachments (`/api/volumes`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from gstacks_cli import output
from gstacks_cli.api_client import api_path

if TYPE_CHECKING:
    from gstacks_cli.main import Invocation

VOLUME_COLUMNS = [
    output.field("id"),
    output.field("name"),
    output.Column("SIZE", lambda v: output.format_bytes(v.get("size_bytes"))),
    output.field("status"),
    output.field("attachment_count", "ATTACHMENTS"),
    output.field("created_at", "CREATED"),
]
ATTACHMENT_COLUMNS = [
    output.field("id"),
    output.field("target"),
    output.Column(
        "ON", lambda a: output.format_scalar(a.get("sandbox_id") or a.get("host_id"))
    ),
    output.Column(
        "PATH",
        lambda a: output.format_scalar(a.get("mount_path") or a.get("host_path")),
    ),
    output.Column("MODE", lambda a: "ro" if a.get("read_only") else "rw"),
    output.Column("IMPLICIT", lambda a: "yes" if a.get("implicit") else ""),
    output.field("status"),
]

_SIZE_RE = re.compile(r"^(?P<number>\d+)\s*(?P<unit>[KMGTP]?)(i?B?)?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def parse_size(text: str) -> int:
    """Bytes from `512M`, `10G`, `1Ti` or a plain number of bytes (units are 1024s)."""
    match = _SIZE_RE.match(text.strip())
    if match is None:
        raise click.BadParameter(f"size must look like 512M, 10G or 1T, not {text!r}")
    return int(match["number"]) * _UNITS[match["unit"].upper()]


def parse_label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"label must be KEY=VALUE, not {text!r}")
    return key, value


@click.group()
def volume() -> None:
    """Volumes: storage that outlives sandboxes, attached to hosts or sandboxes."""


@volume.command("create")
@click.argument("name")
@click.option("--size", required=True, metavar="SIZE", help="512M, 10G, 1T, ...")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE")
@click.pass_obj
def volume_create(
    invocation: Invocation, name: str, size: str, labels: tuple[str, ...]
) -> None:
    """Create a detached volume named NAME (a DNS label)."""
    body: dict[str, Any] = {"name": name, "size_bytes": parse_size(size)}
    if labels:
        body["labels"] = dict(parse_label(label) for label in labels)
    invocation.show(invocation.client.post(api_path("volumes"), body))


@volume.command("list")
@click.pass_obj
def volume_list(invocation: Invocation) -> None:
    """List volumes."""
    invocation.show_list(
        invocation.client.list_all(api_path("volumes")), VOLUME_COLUMNS
    )


@volume.command("get")
@click.argument("volume_id", metavar="ID")
@click.pass_obj
def volume_get(invocation: Invocation, volume_id: str) -> None:
    """Show one volume."""
    invocation.show(invocation.client.get(api_path("volumes", volume_id)))


@volume.command("delete")
@click.argument("volume_id", metavar="ID")
@click.pass_obj
def volume_delete(invocation: Invocation, volume_id: str) -> None:
    """Delete a volume and its data; refused while it has attachments."""
    invocation.client.delete(api_path("volumes", volume_id))
    if not invocation.json_output:
        click.echo(f"deleted volume {volume_id}")


@volume.command("attach")
@click.argument("volume_id", metavar="ID")
@click.option("--sandbox", "sandbox_id", metavar="SANDBOX", help="Mount in a sandbox.")
@click.option("--path", "mount_path", metavar="PATH", help="Where, in the sandbox.")
@click.option("--host", "host_id", metavar="HOST", help="Show it on a host instead.")
@click.option("--read-only", is_flag=True, help="Refuse writes through it.")
@click.pass_obj
def volume_attach(
    invocation: Invocation,
    volume_id: str,
    sandbox_id: str | None,
    mount_path: str | None,
    host_id: str | None,
    read_only: bool,
) -> None:
    """Attach volume ID to a sandbox (--sandbox, --path) or a host (--host)."""
    if (sandbox_id is None) == (host_id is None):
        raise click.UsageError("give exactly one of --sandbox or --host")
    if sandbox_id is not None and mount_path is None:
        raise click.UsageError("--sandbox needs --path")
    if host_id is not None and mount_path is not None:
        raise click.UsageError(
            "--path is for sandboxes; a host shows it at its host path"
        )
    body: dict[str, Any] = {"read_only": read_only}
    if sandbox_id is not None:
        body.update(sandbox_id=sandbox_id, mount_path=mount_path)
    else:
        body["host_id"] = host_id
    path = api_path("volumes", volume_id, "attachments")
    invocation.show(invocation.client.post(path, body))


@volume.command("detach")
@click.argument("volume_id", metavar="ID")
@click.argument("attachment_id", metavar="ATTACHMENT")
@click.pass_obj
def volume_detach(invocation: Invocation, volume_id: str, attachment_id: str) -> None:
    """Remove one attachment of volume ID (live, for a running sandbox)."""
    invocation.client.delete(
        api_path("volumes", volume_id, "attachments", attachment_id)
    )
    if not invocation.json_output:
        click.echo(f"detached {attachment_id} from volume {volume_id}")


@volume.command("attachments")
@click.argument("volume_id", metavar="ID")
@click.pass_obj
def volume_attachments(invocation: Invocation, volume_id: str) -> None:
    """List the attachments of volume ID."""
    items = invocation.client.list_all(api_path("volumes", volume_id, "attachments"))
    invocation.show_list(items, ATTACHMENT_COLUMNS)
