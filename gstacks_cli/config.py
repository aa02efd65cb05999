"""Where the CLI finds the control plane's URL and its API key.

Each of the two values is taken from the first source that has it, in this order:

1. the `--url` / `--api-key` flags;
2. the `GSTACKS_URL` / `GSTACKS_API_KEY` environment variables (empty means unset);
3. `url` / `api_key` in `$XDG_CONFIG_HOME/gstacks/config.yaml`, by default
   `~/.config/gstacks/config.yaml`;
4. a standalone lab on this host: the admin key `gstacks-agent standalone` writes
   to `/var/lib/gstacks/admin-api-key` (mode 0600, so usually root only), and the
   URL that lab listens on, `http://127.0.0.1:7480`.

The two values are resolved independently: a URL from the environment combines
with a key from the config file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from gstacks_cli.errors import ApiKeyMissing, ConfigInvalid

DEFAULT_URL = "http://127.0.0.1:7480"
STANDALONE_API_KEY_FILE = Path("/var/lib/gstacks/admin-api-key")
URL_ENV = "GSTACKS_URL"
API_KEY_ENV = "GSTACKS_API_KEY"


@dataclass(frozen=True)
class CliConfig:
    """The resolved connection settings, and where each one came from."""

    url: str
    api_key: str
    url_source: str
    api_key_source: str


def config_file_path(environ: Mapping[str, str]) -> Path:
    """The per-user config file, following the XDG base directory convention."""
    config_home = environ.get("XDG_CONFIG_HOME")
    if config_home:
        return Path(config_home) / "gstacks" / "config.yaml"
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".config" / "gstacks" / "config.yaml"


def load_config(
    *,
    url: str | None = None,
    api_key: str | None = None,
    environ: Mapping[str, str] | None = None,
    standalone_key_file: Path = STANDALONE_API_KEY_FILE,
) -> CliConfig:
    """Resolve URL and API key from flags, environment, config file and lab.

    `url` and `api_key` are the flag values (None when not given). Raises
    ConfigInvalid for a malformed source and ApiKeyMissing when no source has a key.
    """
    environ = os.environ if environ is None else environ
    file_path = config_file_path(environ)
    file_values = _read_config_file(file_path)

    url_candidates = [
        (url, "--url"),
        (environ.get(URL_ENV), URL_ENV),
        (file_values.get("url"), str(file_path)),
        (DEFAULT_URL, "default"),
    ]
    resolved_url, url_source = next((v, s) for v, s in url_candidates if v)

    key_candidates = [
        (api_key, "--api-key"),
        (environ.get(API_KEY_ENV), API_KEY_ENV),
        (file_values.get("api_key"), str(file_path)),
    ]
    found = [(v, s) for v, s in key_candidates if v]
    if found:
        resolved_key, key_source = found[0]
    else:
        resolved_key = _read_standalone_key(standalone_key_file, file_path)
        key_source = str(standalone_key_file)

    return CliConfig(
        url=_normalise_url(resolved_url, url_source),
        api_key=resolved_key.strip(),
        url_source=url_source,
        api_key_source=key_source,
    )


def _read_config_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigInvalid(f"cannot read {path}: {exc.strerror}") from exc

    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigInvalid(f"{path} is not valid YAML: {exc}") from exc
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigInvalid(f"{path} must hold a mapping with url and api_key")

    for key in ("url", "api_key"):
        value = values.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigInvalid(f"{key} in {path} must be a string, not {value!r}")
    return {k: v for k, v in values.items() if k in ("url", "api_key") and v}


def _read_standalone_key(path: Path, config_file: Path) -> str:
    hint = f"pass --api-key, set {API_KEY_ENV}, or put api_key in {config_file}"
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        raise ApiKeyMissing(f"no API key: {hint}") from None
    except PermissionError:
        raise ApiKeyMissing(
            f"no API key: {path} is not readable by this user; {hint}"
        ) from None
    except OSError as exc:
        raise ApiKeyMissing(f"cannot read {path}: {exc.strerror}; {hint}") from exc
    if not key:
        raise ApiKeyMissing(f"no API key: {path} is empty; {hint}")
    return key


def _normalise_url(url: str, source: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigInvalid(
            f"the control plane URL from {source} must look like "
            f"http://host:port, not {url!r}"
        )
    return url
