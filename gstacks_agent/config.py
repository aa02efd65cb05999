"""The agent's configuration: one YAML file, then environment overrides, loaded once.

    state_dir: /var/lib/gstacks          # everything the agent keeps
    control_plane_url: https://cp.example   # optional; default: the URL enrolled with
    runc_root: /run/gstacks/runc         # runc's state; only our containers live here
    log_level: INFO

Each key may be overridden by `GSTACKS_<KEY>` in the environment (for example
`GSTACKS_STATE_DIR`), which is how systemd environment files tune one host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG_FILE = Path("/etc/gstacks/agent.yaml")


class ConfigError(ValueError):
    """The configuration file or an override is malformed."""


@dataclass(frozen=True)
class AgentConfig:
    state_dir: Path = Path("/var/lib/gstacks")
    # None: connect to the URL recorded in the host identity when it enrolled.
    control_plane_url: str | None = None
    runc_root: Path = Path("/run/gstacks/runc")
    log_level: str = "INFO"

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
        if env_value:
            values[name] = env_value

    for name in ("state_dir", "runc_root"):
        if name in values:
            values[name] = Path(values[name])
            if not values[name].is_absolute():
                raise ConfigError(
                    f"{name} must be an absolute path, not {str(values[name])!r}"
                )
    url = values.get("control_plane_url")
    if url is not None and not str(url).startswith(("http://", "https://")):
        raise ConfigError(
            f"control_plane_url must start with http:// or https://, not {url!r}"
        )
    return AgentConfig(**values)
