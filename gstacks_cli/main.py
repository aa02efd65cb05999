"""The `gstacks` operator CLI: singular namespaces over the plural HTTP API.

`gstacks sandbox list` calls `GET /api/sandboxes`, `gstacks host get ID` calls
`GET /api/hosts/{hostId}`, and so on. Connection settings are resolved lazily (see
`config.py`), so `--help` works without any. The edge is `GstacksGroup`: any
`CliError` raised below it becomes one line `gstacks: <message>` and exit status 1,
and a usage error one line and exit status 2.
"""

from __future__ import annotations

import functools
import io
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click
import trio

from gstacks_cli import (
    apikey_commands,
    cluster_commands,
    host_commands,
    network_commands,
    output,
    terminal,
    token_commands,
)
from gstacks_cli.api_client import ApiClient, api_path
from gstacks_cli.config import CliConfig, load_config
from gstacks_cli.errors import ApiError, CliError
from gstacks_cli.output import Column
from gstacks_cli.volume_commands import volume

# One /wait request asks for at most this long, so progress shows between rounds.
WAIT_ROUND_S = 10
# Extra time the HTTP read gets over the server-side wait before we give up on it.
WAIT_SLACK_S = 15.0
DEFAULT_WAIT_TIMEOUT_S = 300.0

SANDBOX_COLUMNS = [
    output.field("id"),
    output.field("name"),
    output.field("status"),
    Column(
        "IMAGE",
        lambda s: output.format_scalar(s.get("image") or s.get("artifact_ref")),
    ),
    output.field("host_id", "HOST"),
    output.field("created_at", "CREATED"),
]
BLUEPRINT_COLUMNS = [
    output.field("id"),
    output.field("name"),
    output.field("status"),
    output.field("image"),
    output.field("created_at", "CREATED"),
]


def _overview(host: dict[str, Any], name: str) -> Any:
    return (host.get("overview") or {}).get(name)


HOST_COLUMNS = [
    output.field("id"),
    output.field("name"),
    output.field("status"),
    output.field("agent_version", "AGENT"),
    Column("CPUS", lambda h: output.format_scalar(_overview(h, "cpu_count"))),
    Column(
        "MEMORY",
        lambda h: output.format_bytes(_overview(h, "memory_total_bytes")),
    ),
    Column("SANDBOXES", lambda h: output.format_scalar(_overview(h, "sandbox_count"))),
    output.field("last_seen_at", "LAST SEEN"),
]


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one line that points at the command's help."""

    def show(self, file: Any = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx else ""
        click.echo(f"gstacks: {self.format_message()}{hint}", err=True)


class _ReportedError(click.ClickException):
    """A CliError on its way out through click: one line, exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"gstacks: {self.message}", err=True)


class GstacksGroup(click.Group):
    """The top-level group; the one place errors are turned into output."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            _reraise_on_one_line(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            _reraise_on_one_line(exc)
        except CliError as exc:
            raise _ReportedError(exc.message) from exc


def _reraise_on_one_line(exc: click.UsageError) -> NoReturn:
    # A bare group name shows the group's help, as click intends.
    if isinstance(exc, click.exceptions.NoArgsIsHelpError | _OneLineUsageError):
        raise exc
    raise _OneLineUsageError(exc.format_message(), exc.ctx) from exc


class KeyValue(click.ParamType):
    """A `KEY=VALUE` argument, converted to a (key, value) pair."""

    name = "K=V"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, text = str(value).partition("=")
        if not sep or not key:
            self.fail(f"expected KEY=VALUE, not {value!r}", param, ctx)
        return key, text


KEY_VALUE = KeyValue()


@dataclass
class Invocation:
    """What the global options chose; the config and client load on first use."""

    url_flag: str | None
    api_key_flag: str | None
    json_output: bool
    _config: CliConfig | None = field(default=None, repr=False)
    _client: ApiClient | None = field(default=None, repr=False)

    @property
    def config(self) -> CliConfig:
        """The resolved URL and API key (see config.py for the precedence)."""
        if self._config is None:
            self._config = load_config(url=self.url_flag, api_key=self.api_key_flag)
        return self._config

    @property
    def client(self) -> ApiClient:
        """The HTTP client for this invocation."""
        if self._client is None:
            self._client = ApiClient(self.config.url, self.config.api_key)
        return self._client

    def close(self) -> None:
        """Release the HTTP client, if one was made."""
        if self._client is not None:
            self._client.close()

    def show(self, record: dict[str, Any]) -> None:
        """Print one record as `key: value` lines, or as JSON."""
        if self.json_output:
            click.echo(output.format_json(record))
        else:
            click.echo(output.format_record(record))

    def show_list(self, items: list[dict[str, Any]], columns: Sequence[Column]) -> None:
        """Print records as a table, or as a list body in JSON."""
        if self.json_output:
            click.echo(output.format_json({"items": items, "next_cursor": None}))
        else:
            click.echo(output.format_table(items, columns))


pass_invocation = click.make_pass_decorator(Invocation)


@click.group(cls=GstacksGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    metavar="URL",
    help="Control plane URL [env GSTACKS_URL; default http://127.0.0.1:7480].",
)
@click.option("--api-key", metavar="KEY", help="API key [env GSTACKS_API_KEY].")
@click.option("--json", "json_output", is_flag=True, help="Print the raw JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Log each request to stderr.")
@click.version_option(package_name="gstacks-agent", prog_name="gstacks")
@click.pass_context
def cli(
    ctx: click.Context,
    url: str | None,
    api_key: str | None,
    json_output: bool,
    verbose: bool,
) -> None:
    """Operate a GlobalStacks control plane: hosts, sandboxes, blueprints.

    Without --url and --api-key, settings come from GSTACKS_URL and
    GSTACKS_API_KEY, then ~/.config/gstacks/config.yaml (keys url and
    api_key), then the standalone lab on this host.
    """
    if verbose:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("gstacks: %(name)s: %(message)s"))
        cli_logger = logging.getLogger("gstacks.cli")
        cli_logger.addHandler(handler)
        cli_logger.setLevel(logging.DEBUG)

    invocation = Invocation(url, api_key, json_output)
    ctx.obj = invocation
    ctx.call_on_close(invocation.close)


# -- auth ----------------------------------------------------------------------------


@cli.group()
def auth() -> None:
    """Check the credential the CLI uses."""


@auth.command("status")
@pass_invocation
def auth_status(invocation: Invocation) -> None:
    """Show who the API key belongs to, and where URL and key came from."""
    session = invocation.client.get(api_path("auth", "session"))
    if invocation.json_output:
        invocation.show(session)
        return
    config = invocation.config
    invocation.show(
        {
            "url": f"{config.url} (from {config.url_source})",
            "api_key": f"from {config.api_key_source}",
            **session,
        }
    )


# -- host ----------------------------------------------------------------------------


@cli.group()
def host() -> None:
    """Hosts connected to the control plane."""


@host.command("list")
@pass_invocation
def host_list(invocation: Invocation) -> None:
    """List hosts with their status and size."""
    invocation.show_list(invocation.client.list_all(api_path("hosts")), HOST_COLUMNS)


@host.command("get")
@click.argument("host_id", metavar="ID")
@pass_invocation
def host_get(invocation: Invocation, host_id: str) -> None:
    """Show one host, its overview and the images it caches."""
    invocation.show(invocation.client.get(api_path("hosts", host_id)))


@host.command("shell")
@click.argument("host_id", metavar="HOST_ID")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def host_shell(ctx: click.Context, host_id: str, command: tuple[str, ...]) -> None:
    """Open an interactive shell on a host (its login shell, or -- CMD).

    Like `sandbox shell`: raw mode while attached, reattaches by itself after a
    dropped connection, and exits with the remote exit code.
    """
    ctx.exit(_shell(ctx.find_object(Invocation), "hosts", host_id, command))


# -- sandbox -------------------------------------------------------------------------


@cli.group()
def sandbox() -> None:
    """Sandboxes: create, inspect, run commands in, delete."""


@sandbox.command("create")
@click.option("--image", metavar="REF", help="OCI image reference to run.")
@click.option(
    "--blueprint", metavar="NAME_OR_ID", help="Active blueprint to run, by id or name."
)
@click.option("--name", metavar="NAME", help="Sandbox name.")
@click.option(
    "--env", multiple=True, type=KEY_VALUE, help="Environment variable (repeatable)."
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until the sandbox runs, showing progress on stderr.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1),
    default=DEFAULT_WAIT_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="How long --wait waits.",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_invocation
def sandbox_create(
    invocation: Invocation,
    image: str | None,
    blueprint: str | None,
    name: str | None,
    env: tuple[tuple[str, str], ...],
    wait: bool,
    timeout_s: float,
    command: tuple[str, ...],
) -> None:
    """Create a sandbox from --image or --blueprint, optionally running -- CMD."""
    if image and blueprint:
        raise click.UsageError("pass either --image or --blueprint, not both")
    if not image and not blueprint:
        raise click.UsageError("pass --image REF or --blueprint NAME_OR_ID")

    body: dict[str, Any] = {"image": image} if image else {"blueprint": blueprint}
    if name:
        body["name"] = name
    if env:
        body["env"] = dict(env)
    if command:
        body["command"] = list(command)
    record = invocation.client.post(api_path("sandboxes"), body)

    if wait:
        record = _wait_until_running(invocation.client, record["id"], timeout_s)
    invocation.show(record)


def _wait_until_running(
    client: ApiClient, sandbox_id: str, timeout_s: float
) -> dict[str, Any]:
    click.echo(f"created sandbox {sandbox_id}, waiting for it to run", err=True)
    started = time.monotonic()
    path = api_path("sandboxes", sandbox_id, "wait")

    while (remaining := started + timeout_s - time.monotonic()) > 0:
        round_s = max(1, min(WAIT_ROUND_S, int(remaining)))
        try:
            record = client.get(
                path,
                params={"status": "running", "timeout_s": round_s},
                timeout_s=round_s + WAIT_SLACK_S,
            )
        except ApiError as exc:
            # The server's wait ended without news; anything else is the answer.
            if exc.code != "timeout":
                raise
            elapsed = time.monotonic() - started
            click.echo(f"  still waiting for {sandbox_id} ({elapsed:.0f} s)", err=True)
            continue
        elapsed = time.monotonic() - started
        click.echo(f"sandbox {sandbox_id} is running ({elapsed:.1f} s)", err=True)
        return record

    status = client.get(api_path("sandboxes", sandbox_id))["status"]
    raise CliError(
        f"sandbox {sandbox_id} is still {status} after {timeout_s:g} s; "
        f"see 'gstacks sandbox get {sandbox_id}'"
    )


@sandbox.command("list")
@pass_invocation
def sandbox_list(invocation: Invocation) -> None:
    """List sandboxes."""
    items = invocation.client.list_all(api_path("sandboxes"))
    invocation.show_list(items, SANDBOX_COLUMNS)


@sandbox.command("get")
@click.argument("sandbox_id", metavar="ID")
@pass_invocation
def sandbox_get(invocation: Invocation, sandbox_id: str) -> None:
    """Show one sandbox."""
    invocation.show(invocation.client.get(api_path("sandboxes", sandbox_id)))


@sandbox.command("delete")
@click.argument("sandbox_id", metavar="ID")
@pass_invocation
def sandbox_delete(invocation: Invocation, sandbox_id: str) -> None:
    """Delete a sandbox and show its final record."""
    invocation.show(invocation.client.delete(api_path("sandboxes", sandbox_id)))


@sandbox.command("exec")
@click.option(
    "-t", "--tty", is_flag=True, help="Run on a terminal (as a shell would see it)."
)
@click.option(
    "-i",
    "--interactive",
    is_flag=True,
    help="Send this process's stdin to the command.",
)
@click.argument("sandbox_id", metavar="ID")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def sandbox_exec(
    ctx: click.Context,
    tty: bool,
    interactive: bool,
    sandbox_id: str,
    command: tuple[str, ...],
) -> None:
    """Run -- CMD... in a sandbox; exit with its exit code.

    By default the command runs without a terminal: its output reaches stdout byte
    for byte (stderr too, each in its own order, though their relative order is not
    kept), and its stdin is empty unless -i sends ours. With -t it runs on a
    terminal sized like the local one (or 80x24). A dropped connection is
    reattached for up to two minutes without losing output.
    """
    invocation = ctx.find_object(Invocation)
    cols, rows = terminal.local_window_size()
    session = invocation.client.post(
        api_path("sandboxes", sandbox_id, "terminal-sessions"),
        {"command": list(command), "cols": cols, "rows": rows, "tty": tty},
    )
    stdin_fd = sys.stdin.fileno() if interactive else None
    code = _attach(
        invocation, "sandboxes", sandbox_id, session["id"], stdin_fd, tty=tty
    )
    ctx.exit(code)


@sandbox.command("shell")
@click.argument("sandbox_id", metavar="ID")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def sandbox_shell(
    ctx: click.Context, sandbox_id: str, command: tuple[str, ...]
) -> None:
    """Open an interactive terminal in a sandbox (/bin/sh, or -- CMD).

    The local terminal is in raw mode while attached, so keys such as ^C reach
    the sandbox. A dropped connection is reattached for up to two minutes, with
    a notice on stderr. The CLI exits with the remote exit code.
    """
    ctx.exit(_shell(ctx.find_object(Invocation), "sandboxes", sandbox_id, command))


def _shell(
    invocation: Invocation, owner: str, owner_id: str, command: tuple[str, ...]
) -> int:
    """Open an interactive session on `owner/owner_id`; its exit code."""
    what = "sandbox" if owner == "sandboxes" else "host"
    try:
        stdin_fd = sys.stdin.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation) as exc:
        raise CliError(f"{what} shell needs stdin to be a terminal or a pipe") from exc

    cols, rows = terminal.local_window_size()
    body: dict[str, Any] = {"cols": cols, "rows": rows}
    if command:
        body["command"] = list(command)
    session = invocation.client.post(
        api_path(owner, owner_id, "terminal-sessions"), body
    )
    return _attach(invocation, owner, owner_id, session["id"], stdin_fd)


def _attach(
    invocation: Invocation,
    owner: str,
    owner_id: str,
    session_id: str,
    stdin_fd: int | None,
    *,
    tty: bool = True,
) -> int:
    """Attach to a session, reattaching after a dropped link; its exit code."""
    url = terminal.stream_url(invocation.config.url, owner, owner_id, session_id)
    return trio.run(
        functools.partial(
            terminal.attach,
            url,
            invocation.config.api_key,
            output=sys.stdout.buffer,
            stdin_fd=stdin_fd,
            reattach_within_s=terminal.REATTACH_WITHIN_S,
            tty=tty,
        )
    )


# -- blueprint -----------------------------------------------------------------------


@cli.group()
def blueprint() -> None:
    """Blueprints: named images that sandboxes are created from."""


@blueprint.command("create")
@click.option("--name", required=True, metavar="NAME", help="Unique blueprint name.")
@click.option("--image", required=True, metavar="REF", help="OCI image reference.")
@click.option("--description", metavar="TEXT", help="What the blueprint is for.")
@click.option(
    "--metadata", multiple=True, type=KEY_VALUE, help="Metadata entry (repeatable)."
)
@pass_invocation
def blueprint_create(
    invocation: Invocation,
    name: str,
    image: str,
    description: str | None,
    metadata: tuple[tuple[str, str], ...],
) -> None:
    """Create an image-backed blueprint (inactive until activated)."""
    body: dict[str, Any] = {"name": name, "image": image}
    if description is not None:
        body["description"] = description
    if metadata:
        body["metadata"] = dict(metadata)
    invocation.show(invocation.client.post(api_path("blueprints"), body))


@blueprint.command("list")
@pass_invocation
def blueprint_list(invocation: Invocation) -> None:
    """List blueprints."""
    items = invocation.client.list_all(api_path("blueprints"))
    invocation.show_list(items, BLUEPRINT_COLUMNS)


@blueprint.command("get")
@click.argument("blueprint_id", metavar="ID")
@pass_invocation
def blueprint_get(invocation: Invocation, blueprint_id: str) -> None:
    """Show one blueprint."""
    invocation.show(invocation.client.get(api_path("blueprints", blueprint_id)))


@blueprint.command("activate")
@click.argument("blueprint_id", metavar="ID")
@pass_invocation
def blueprint_activate(invocation: Invocation, blueprint_id: str) -> None:
    """Make a blueprint usable for sandbox creation."""
    path = api_path("blueprints", blueprint_id, "activate")
    invocation.show(invocation.client.post(path))


@blueprint.command("deactivate")
@click.argument("blueprint_id", metavar="ID")
@pass_invocation
def blueprint_deactivate(invocation: Invocation, blueprint_id: str) -> None:
    """Keep a blueprint but stop new sandboxes from using it."""
    path = api_path("blueprints", blueprint_id, "deactivate")
    invocation.show(invocation.client.post(path))


@blueprint.command("delete")
@click.argument("blueprint_id", metavar="ID")
@pass_invocation
def blueprint_delete(invocation: Invocation, blueprint_id: str) -> None:
    """Delete a blueprint no live sandbox uses."""
    invocation.client.delete(api_path("blueprints", blueprint_id))
    if not invocation.json_output:
        click.echo(f"deleted blueprint {blueprint_id}")


# -- registry ------------------------------------------------------------------------


@cli.group()
def registry() -> None:
    """The control plane's internal blueprint registry."""


@registry.command("info")
@pass_invocation
def registry_info(invocation: Invocation) -> None:
    """Show the registry's URL, storage and credential defaults."""
    invocation.show(invocation.client.get(api_path("registry")))


@registry.command("credential")
@click.option("--repository", required=True, metavar="REPO", help="Repository name.")
@click.option(
    "--action",
    type=click.Choice(["pull", "push"]),
    default="pull",
    show_default=True,
    help="What the credential allows.",
)
@pass_invocation
def registry_credential(invocation: Invocation, repository: str, action: str) -> None:
    """Issue a short-lived credential for one repository (for skopeo or docker)."""
    body = {"repository": repository, "action": action}
    invocation.show(invocation.client.post(api_path("registry", "credentials"), body))


@registry.command("repositories")
@pass_invocation
def registry_repositories(invocation: Invocation) -> None:
    """List the registry's repositories and their tags."""
    items = invocation.client.list_all(api_path("registry", "repositories"))
    columns = [
        output.field("name", "REPOSITORY"),
        Column("TAGS", lambda r: ", ".join(r["tags"]) or output.MISSING),
    ]
    invocation.show_list(items, columns)


@registry.command("artifacts")
@pass_invocation
def registry_artifacts(invocation: Invocation) -> None:
    """List published blueprint artifacts (kept after their blueprint is deleted)."""
    items = invocation.client.list_all(api_path("registry", "artifacts"))
    columns = [
        output.field("repository"),
        output.field("digest"),
        Column("SIZE", lambda a: output.format_bytes(a["size"])),
        output.field("blueprint_id", "BLUEPRINT"),
    ]
    invocation.show_list(items, columns)


@registry.command("gc")
@click.option(
    "--min-age",
    "min_age_s",
    type=click.FloatRange(min=0),
    default=3600,
    show_default=True,
    help="Keep blobs written or linked less than this many seconds ago.",
)
@click.option(
    "--dry-run", is_flag=True, help="Report what would be freed, free nothing."
)
@pass_invocation
def registry_gc(invocation: Invocation, min_age_s: float, dry_run: bool) -> None:
    """Delete blobs no manifest references; report the blobs and bytes freed."""
    body = {"min_age_s": min_age_s, "dry_run": dry_run}
    report = invocation.client.post(api_path("registry", "gc"), body)
    if invocation.json_output:
        invocation.show(report)
        return
    verb = "would free" if report["dry_run"] else "freed"
    click.echo(
        f"{verb} {report['blobs_deleted']} blobs, "
        f"{output.format_bytes(report['bytes_freed'])} "
        f"({report['bytes_freed']} bytes); {report['blobs_kept']} blobs kept"
    )


# -- groups and commands kept in their own modules ----------------------------------

cli.add_command(cluster_commands.cluster)
cli.add_command(token_commands.token)
cli.add_command(apikey_commands.apikey)
cli.add_command(network_commands.network)
host.add_command(host_commands.host_delete)
host.add_command(host_commands.host_logs)

cli.add_command(volume)


def main() -> None:
    """Console-script entry point of `gstacks`."""
    cli(prog_name="gstacks")
