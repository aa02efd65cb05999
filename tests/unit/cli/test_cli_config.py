"""URL and API key come from flags, then env, then the config file, then the lab."""

from __future__ import annotations

import pytest

from gstacks_cli.config import DEFAULT_URL, load_config
from gstacks_cli.errors import ApiKeyMissing, ConfigInvalid


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def lab_key(tmp_path):
    path = tmp_path / "admin-api-key"
    path.write_text("lab-key\n")
    return path


def _write_config(home, text: str) -> None:
    path = home / ".config" / "gstacks" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _load(home, lab_key, *, env=None, **flags):
    environ = {"HOME": str(home), **(env or {})}
    return load_config(environ=environ, standalone_key_file=lab_key, **flags)


FILE = "url: http://file:1\napi_key: file-key\n"
ENV = {"GSTACKS_URL": "http://env:2", "GSTACKS_API_KEY": "env-key"}


def test_flags_beat_env_and_file(home, lab_key):
    _write_config(home, FILE)

    config = _load(home, lab_key, env=ENV, url="http://flag:3", api_key="flag-key")

    assert (config.url, config.api_key) == ("http://flag:3", "flag-key")
    assert (config.url_source, config.api_key_source) == ("--url", "--api-key")


def test_env_beats_file(home, lab_key):
    _write_config(home, FILE)

    config = _load(home, lab_key, env=ENV)

    assert (config.url, config.api_key) == ("http://env:2", "env-key")
    assert config.api_key_source == "GSTACKS_API_KEY"


def test_file_beats_the_standalone_lab(home, lab_key):
    _write_config(home, FILE)

    config = _load(home, lab_key)

    assert (config.url, config.api_key) == ("http://file:1", "file-key")
    assert config.url_source == str(home / ".config" / "gstacks" / "config.yaml")


def test_standalone_lab_is_the_last_resort(home, lab_key):
    config = _load(home, lab_key)

    assert (config.url, config.api_key) == (DEFAULT_URL, "lab-key")
    assert (config.url_source, config.api_key_source) == ("default", str(lab_key))


def test_url_and_key_resolve_independently(home, lab_key):
    _write_config(home, "api_key: file-key\n")

    config = _load(home, lab_key, env={"GSTACKS_URL": "http://env:2/"})

    assert (config.url, config.api_key) == ("http://env:2", "file-key")


def test_empty_environment_variables_count_as_unset(home, lab_key):
    config = _load(home, lab_key, env={"GSTACKS_URL": "", "GSTACKS_API_KEY": ""})

    assert (config.url, config.api_key) == (DEFAULT_URL, "lab-key")


def test_xdg_config_home_moves_the_config_file(home, lab_key, tmp_path):
    xdg = tmp_path / "xdg"
    (xdg / "gstacks").mkdir(parents=True)
    (xdg / "gstacks" / "config.yaml").write_text("api_key: xdg-key\n")

    config = _load(home, lab_key, env={"XDG_CONFIG_HOME": str(xdg)})

    assert config.api_key == "xdg-key"


def test_no_key_anywhere_names_the_ways_to_give_one(home, tmp_path):
    with pytest.raises(ApiKeyMissing) as raised:
        _load(home, tmp_path / "absent")

    message = raised.value.message
    assert message.startswith("no API key: pass --api-key, set GSTACKS_API_KEY")
    assert str(home / ".config" / "gstacks" / "config.yaml") in message


def test_empty_standalone_key_file_is_no_key(home, tmp_path):
    empty = tmp_path / "admin-api-key"
    empty.write_text("\n")

    with pytest.raises(ApiKeyMissing, match="is empty"):
        _load(home, empty)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("url: [unclosed\n", "is not valid YAML"),
        ("- a list\n", "must hold a mapping"),
        ("api_key: 1234\n", "api_key in .* must be a string, not 1234"),
    ],
)
def test_malformed_config_file_is_refused(home, lab_key, text, complaint):
    _write_config(home, text)

    with pytest.raises(ConfigInvalid, match=complaint):
        _load(home, lab_key)


def test_url_without_scheme_is_refused(home, lab_key):
    with pytest.raises(ConfigInvalid, match="must look like http://host:port"):
        _load(home, lab_key, url="127.0.0.1:7480")


def test_cli_flag_beats_env_on_the_wire(gstacks, control_plane):
    control_plane.answer("GET", "/api/registry", 200, {"url": "http://r"})

    result = gstacks("--api-key", "flag-key", "registry", "info")

    assert result.exit_code == 0, result.output
    (request,) = control_plane.requests
    assert request.headers["authorization"] == "Bearer flag-key"


def test_cli_reads_the_config_file_under_home(run_cli, control_plane):
    control_plane.answer("GET", "/api/registry", 200, {"url": "http://r"})
    _write_config(run_cli.home, f"url: {control_plane.url}\napi_key: file-key\n")

    result = run_cli("registry", "info")

    assert result.exit_code == 0, result.output
    (request,) = control_plane.requests
    assert request.headers["authorization"] == "Bearer file-key"


def test_cli_reports_a_broken_config_file_in_one_line(run_cli):
    _write_config(run_cli.home, "- a list\n")

    result = run_cli("host", "list")

    assert result.exit_code == 1
    assert result.stderr.startswith("gstacks: ")
    assert result.stderr.endswith("must hold a mapping with url and api_key\n")
