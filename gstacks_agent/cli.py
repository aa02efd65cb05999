"""`gstacks-agent`: run the host agent, or a whole single-host lab.

    gstacks-agent enroll       join a control plane's cluster with a provisioning token
    gstacks-agent run          the agent alone, for a host enrolled with a control plane
    gstacks-agent standalone   agent + embedded lite control plane in one process
    gstacks-agent doctor       what this host has and lacks, with install hints

Errors the agent raises on purpose end the command with one line on stderr and
status 1; Ctrl-C and SIGTERM stop the daemon cleanly with status 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from pathlib import Path

import click
import trio

from gstacks_agent import __version__, log_buffer
from gstacks_agent.capabilities import probe_capabilities
from gstacks_agent.config import AgentConfig, ConfigError, load_config
from gstacks_agent.errors import AgentError
from gstacks_agent.identity import HostIdentity, load_identity, save_identity
from gstacks_agent.state_lock import hold_state_dir

log = logging.getLogger("gstacks.agent.cli")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    # Per-request lines from the HTTP stack are noise in a host's journal.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("trio-websocket").setLevel(logging.WARNING)
    # The recent records, in memory, for the control plane's host logs.
    log_buffer.install(level.upper())


async def stop_on_sigterm(cancel_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s; stopping", signal.Signals(signum).name)
            cancel_scope.cancel()
            return


def _load(config_path: Path | None, state_dir: Path | None) -> AgentConfig:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    return config.with_overrides(state_dir=state_dir)


@click.group(
    help=__doc__.split("\n\n")[0],
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="gstacks-agent")
def main() -> None:
    pass


@main.command(help="Run the agent for an enrolled host until stopped.")
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="YAML config file."
)
@click.option(
    "--state-dir", type=click.Path(path_type=Path), help="Override state_dir."
)
def run(config_path: Path | None, state_dir: Path | None) -> None:
    config = _load(config_path, state_dir)
    setup_logging(config.log_level)
    try:
        identity = load_identity(config.identity_dir)
        with hold_state_dir(config.state_dir):
            trio.run(_run_agent, config, identity)
    except BaseException as exc:
        failure = _one_line(exc, "cannot run the agent")
        if failure is None:
            raise
        raise failure from exc


async def _run_agent(config: AgentConfig, identity: HostIdentity) -> None:
    from gstacks_agent.daemon import Agent

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_sigterm, nursery.cancel_scope)
        agent = Agent(config, identity)
        await nursery.start(agent.run)
        log.info("host %s: agent %s running", identity.host_id, __version__)


@main.command(help="Run a complete single-host lab: control plane, registry and agent.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="YAML config file (default /etc/gstacks/agent.yaml).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="Override state_dir (default /var/lib/gstacks).",
)
@click.option(
    "--bind",
    "bind_host",
    default="127.0.0.1",
    show_default=True,
    help="Address the API listens on.",
)
@click.option(
    "--port",
    default=7480,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0 picks a free port.",
)
@click.option("--log-level", help="Override log_level (default INFO).")
@click.option(
    "--access-log",
    type=click.Path(path_type=Path),
    help="Append one line per HTTP request to this file ('-' for stderr).",
)
def standalone(
    config_path: Path | None,
    state_dir: Path | None,
    bind_host: str,
    port: int,
    log_level: str | None,
    access_log: Path | None,
) -> None:
    config = _load(config_path, state_dir.resolve() if state_dir else None)
    config = config.with_overrides(log_level=log_level)
    setup_logging(config.log_level)
    try:
        with hold_state_dir(config.state_dir):
            trio.run(run_standalone, config, bind_host, port, access_log)
    except BaseException as exc:
        failure = _one_line(exc, f"cannot start the lab on {bind_host}:{port}")
        if failure is None:
            raise
        raise failure from exc


def _one_line(exc: BaseException, doing: str) -> click.ClickException | None:
    """Turn a failure to start into one readable line; let anything else through.

    Errors arrive wrapped in trio's exception groups; the first of our own errors or
    of the OS's (a port in use, a permission denied) inside one says what happened.
    """
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if isinstance(current, AgentError):
            return click.ClickException(current.message)
        if isinstance(current, OSError):
            return click.ClickException(f"{doing}: {current.strerror or current}")
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
    return None


async def run_standalone(
    config: AgentConfig,
    bind_host: str,
    port: int,
    access_log: Path | None = None,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve control plane and agent in one nursery; report the API address when ready."""
    from control_plane_lite.registry.storage_config import S3Settings
    from control_plane_lite.server import (
        ControlPlane,
        ControlPlaneConfig,
        serve_control_plane,
    )
    from gstacks_agent.daemon import Agent

    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The registry keeps its content in S3 when GSTACKS_REGISTRY_S3_* say so.
    registry_s3 = S3Settings.from_environment(os.environ)
    cp = ControlPlane(
        ControlPlaneConfig(
            config.state_dir, bind_host, port, access_log, registry_s3=registry_s3
        )
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_sigterm, nursery.cancel_scope)
            address = await nursery.start(serve_control_plane, cp)
            identity = _standalone_identity(cp, config, f"http://{address}")
            agent = Agent(config, identity)
            await nursery.start(agent.run)
            with trio.fail_after(30):
                await agent.connected.wait()
            log.info(
                "lab ready: API http://%s, admin key in %s, host %s",
                address,
                config.state_dir / "admin-api-key",
                identity.host_id,
            )
            task_status.started(address)
    finally:
        cp.close()


def _standalone_identity(cp: object, config: AgentConfig, url: str) -> HostIdentity:
    """The local host's identity in the embedded control plane, made on first start."""
    from control_plane_lite.auth import DEFAULT_TENANT, hash_secret
    from control_plane_lite.server import ControlPlane

    assert isinstance(cp, ControlPlane)
    try:
        identity = load_identity(config.identity_dir)
    except AgentError:
        identity = None
    if identity is not None:
        row = cp.store.get("hosts", identity.host_id)
        if row is not None and row["credential_hash"] == hash_secret(
            identity.credential
        ):
            if identity.control_plane_url != url:
                identity = HostIdentity(identity.host_id, url, identity.credential)
                save_identity(config.identity_dir, identity)
            return identity
    row, credential = cp.hosts.register(
        DEFAULT_TENANT,
        cp.default_cluster_id,
        socket.gethostname(),
        socket.gethostname(),
    )
    identity = HostIdentity(row["id"], url, credential)
    save_identity(config.identity_dir, identity)
    log.info("host %s: registered this host with the embedded control plane", row["id"])
    return identity


@main.command(help="Join a control plane's cluster with a provisioning token.")
@click.option(
    "--control-plane",
    "control_plane_url",
    required=True,
    metavar="URL",
    help="The control plane's URL, e.g. http://198.18.0.1:7480.",
)
@click.option(
    "--token",
    required=True,
    metavar="TOKEN",
    envvar="GSTACKS_PROVISIONING_TOKEN",
    help="Provisioning token (gpt_...) [env GSTACKS_PROVISIONING_TOKEN].",
)
@click.option(
    "--cluster", "cluster_id", metavar="ID", help="Refuse a token for another cluster."
)
@click.option(
    "--name", metavar="NAME", help="Host name in the API (default: hostname)."
)
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="YAML config file."
)
@click.option(
    "--state-dir", type=click.Path(path_type=Path), help="Override state_dir."
)
@click.option(
    "--force", is_flag=True, help="Replace an identity this host already has."
)
def enroll(
    control_plane_url: str,
    token: str,
    cluster_id: str | None,
    name: str | None,
    config_path: Path | None,
    state_dir: Path | None,
    force: bool,
) -> None:
    from gstacks_agent.enrollment import enroll as enroll_host

    config = _load(config_path, state_dir.resolve() if state_dir else None)
    setup_logging(config.log_level)
    if not force:
        try:
            existing = load_identity(config.identity_dir)
        except AgentError:
            existing = None
        if existing is not None:
            raise click.ClickException(
                f"this host is already enrolled as {existing.host_id} with "
                f"{existing.control_plane_url}; pass --force to replace that identity"
            )
    try:
        identity = enroll_host(
            control_plane_url,
            token,
            name=name or socket.gethostname(),
            hostname=socket.gethostname(),
            cluster_id=cluster_id,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    except AgentError as exc:
        raise click.ClickException(exc.message) from exc
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    save_identity(config.identity_dir, identity)
    click.echo(
        f"enrolled as host {identity.host_id}; identity written to "
        f"{config.identity_dir} (start the agent with 'gstacks-agent run')"
    )


@main.command(
    help="Check this host for what the agent needs; exit 1 if anything is missing."
)
def doctor() -> None:
    missing = 0
    for capability in probe_capabilities():
        mark = "ok " if capability.present else "MISSING"
        click.echo(f"{mark:8} {capability.name:22} {capability.detail}")
        if not capability.present:
            click.echo(f"{'':8} {'':22} install: {capability.install_hint}")
            missing += 1
    if missing:
        raise click.ClickException(f"{missing} capability(ies) missing")


if __name__ == "__main__":
    main()
