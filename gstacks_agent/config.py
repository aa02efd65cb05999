"""The agent's configuration: one YAML file, then environment overrides, loaded once.

    state_dir: /var/lib/gstacks          # everything the agent keeps
    control_plane_url: https://cp.example   # optional; default: the URL enrolled with
    runc_root: /run/gstacks/runc         # runc's state; only our containers live here
    log_level: INFO
    volumes:                             # the shared JuiceFS filesystem of volumes
      meta_url: redis://meta.example:6379/1  # default: SQLite under state_dir/juicefs
      storage: s3                        # default: file (local, under the state dir)
      bucket: https://bucket.s3.example/gstacks
      access_key: ...                    # or ACCESS_KEY / SECRET_KEY in the environment
      secret_key: ...
      name: gstacks                      # the filesystem's name when it is formatted
    mesh:                                # WireGuard mesh and runtime networks
      listen_port: 51820                 # see gstacks_agent/mesh/settings.py
    terminals:                           # terminal sessions on this host
      grace_s: 120                       # how long a detached session waits for its client
      idle_timeout_s: 3600               # a session with no input or output ends
      scrollback_bytes: 4194304          # output kept for a reattach

Each key may be overridden by `GSTACKS_<KEY>` in the environment (for example
`GSTACKS_STATE_DIR`), which is how systemd environment files tune one host; the
`volumes`, `mesh` and `terminals` sections as a whole, by an inline YAML mapping in
`GSTACKS_VOLUMES`, `GSTACKS_MESH` or `GSTACKS_TERMINALS`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from gstacks_agent.mesh.settings import MeshSettings, MeshSettingsError
from gstacks_agent.terminals.limits import TerminalLimits

DEFAULT_CONFIG_FILE = Path("/etc/gstacks/agent.yaml")


class ConfigError(ValueError):
    """The configuration file or an override is malformed."""


@dataclass(frozen=True)
class VolumesConfig:
    """Where the host's shared volume filesystem keeps its metadata and data.

    Hosts given the same `meta_url` and storage share one filesystem, hence one
    set of volumes. None of this reaches the public API.
    """

    # None: SQLite at <state_dir>/juicefs/meta.db, for this host alone.
    meta_url: str | None = None
    storage: str = "file"
    # None with file storage: <state_dir>/juicefs/data/.
    bucket: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    name: str = "gstacks"

    @classmethod
    def from_mapping(cls, values: object) -> VolumesConfig:
        if not isinstance(values, dict):
            raise ConfigError("volumes must be a mapping of settings")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown volumes settings: {', '.join(unknown)}")
        for key, value in values.items():
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"volumes.{key} must be a string, not {value!r}")
        return cls(**values)


def terminal_limits_from_mapping(values: object) -> TerminalLimits:
    """The `terminals` section: positive numbers only."""
    if not isinstance(values, dict):
        raise ConfigError("terminals must be a mapping of settings")
    known = {f.name for f in fields(TerminalLimits)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown terminals settings: {', '.join(unknown)}")
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(
                f"terminals.{key} must be a positive number, not {value!r}"
            )
    if "scrollback_bytes" in values:
        values = {**values, "scrollback_bytes": int(values["scrollback_bytes"])}
    return TerminalLimits(**values)


@dataclass(frozen=True)
class AgentConfig:
    state_dir: Path = Path("/var/lib/gstacks")
    # None: connect to the URL recorded in the host identity when it enrolled.
    control_plane_url: str | None = None
    runc_root: Path = Path("/run/gstacks/runc")
    log_level: str = "INFO"
    volumes: VolumesConfig = VolumesConfig()
    mesh: MeshSettings = MeshSettings()
    terminals: TerminalLimits = TerminalLimits()

    @property
    def identity_dir(self) -> Path:
        return self.state_dir / "agent"

    def with_overrides(self, **changes: Any) -> AgentConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def load_config(
    path: Path | None = None, environ: dict[str, str] | None = None
) -> AgentConfig:
    """Read `path` (missing is fine for the default path) and apply `GSTACKS_*`."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    file = path or DEFAULT_CONFIG_FILE
    if file.exists():
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: must hold a mapping of settings")
        values.update(loaded)
    elif path is not None:
        raise ConfigError(f"{file}: no such file")

    known = {f.name: f for f in fields(AgentConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{file}: unknown settings: {', '.join(unknown)}")
    for name in known:
        env_value = environ.get(f"GSTACKS_{name.upper()}")
        if env_value and name in ("volumes", "mesh", "terminals"):
            # A section: the variable holds an inline YAML mapping.
            try:
                values[name] = yaml.safe_load(env_value)
            except yaml.YAMLError as exc:
                raise ConfigError(
                    f"GSTACKS_{name.upper()}: not valid YAML: {exc}"
                ) from exc
        elif env_value:
            values[name] = env_value

    for name in ("state_dir", "runc_root"):
        if name in values:
            values[name] = Path(values[name])
            if not values[name].is_absolute():
                raise ConfigError(
                    f"{name} must be an absolute path, not {str(values[name])!r}"
                )
    if "volumes" in values:
        values["volumes"] = VolumesConfig.from_mapping(values["volumes"])
    if "terminals" in values:
        values["terminals"] = terminal_limits_from_mapping(values["terminals"])
    if "mesh" in values:
        try:
            values["mesh"] = MeshSettings.from_mapping(values["mesh"])
        except MeshSettingsError as exc:
            raise ConfigError(str(exc)) from exc
    url = values.get("control_plane_url")
    if url is not None and not str(url).startswith(("http://", "https://")):
        raise ConfigError(
            f"control_plane_url must start with http:// or https://, not {url!r}"
        )
    return AgentConfig(**values)
