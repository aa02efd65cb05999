"""The systemd units in systemd/: what they run, how they stop, what they document."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from gstacks_agent.cli import main as agent_cli
from gstacks_agent.config import AgentConfig

PROJECT = Path(__file__).resolve().parents[2]
UNITS = PROJECT / "systemd"
VENV_BIN = "/opt/gstacks/venv/bin/"
UNIT_NAMES = ("gstacks-agent.service", "gstacks-standalone.service")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each key with every value it was given.

    systemd.syntax(7): '#' and ';' start comment lines, a trailing backslash
    continues a line, and a key may repeat (Environment=, for one).
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    logical = re.sub(r"\\\n", " ", text)
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"setting outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service(name: str) -> dict[str, list[str]]:
    return parse_unit((UNITS / name).read_text())["Service"]


def exec_start(name: str) -> list[str]:
    (command,) = service(name)["ExecStart"]
    return shlex.split(command)


def env_file_names(name: str) -> set[str]:
    """Variable names an env file documents, commented out or set."""
    text = (UNITS / name).read_text()
    return set(re.findall(r"^#?(GSTACKS_[A-Z_]+)=", text, re.MULTILINE))


def test_console_script_is_the_agent_cli():
    scripts = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    assert scripts["gstacks-agent"] == "gstacks_agent.cli:main"


def test_agent_unit_runs_the_agent_from_the_venv():
    assert exec_start("gstacks-agent.service") == [f"{VENV_BIN}gstacks-agent", "run"]
    assert "run" in agent_cli.commands


def test_standalone_unit_runs_standalone_with_options_it_knows():
    argv = exec_start("gstacks-standalone.service")
    assert argv[:2] == [f"{VENV_BIN}gstacks-agent", "standalone"]
    known = {
        option
        for param in agent_cli.commands["standalone"].params
        for option in param.opts
    }
    given = {arg for arg in argv[2:] if arg.startswith("--")}
    assert given and given <= known


def test_standalone_unit_defaults_every_variable_its_command_uses():
    settings = service("gstacks-standalone.service")
    defaults = {item.partition("=")[0] for item in settings["Environment"]}
    (command,) = settings["ExecStart"]
    used = set(re.findall(r"\$\{(\w+)\}", command))
    assert used and used <= defaults
    assert env_file_names("gstacks-standalone.env") >= used


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_stopping_a_unit_signals_the_agent_alone_so_sandboxes_survive(name):
    settings = service(name)
    assert settings["KillMode"] == ["process"]
    assert settings["Type"] == ["simple"]
    assert settings["Restart"] == ["on-failure"]
    # systemd empties a RuntimeDirectory= on stop; runc keeps sandbox state in /run.
    assert "RuntimeDirectory" not in settings


def test_agent_unit_reads_the_optional_environment_file():
    settings = service("gstacks-agent.service")
    assert settings["EnvironmentFile"] == ["-/etc/default/gstacks-agent"]


def test_agent_env_file_documents_exactly_the_config_overrides():
    overrides = {f"GSTACKS_{field.name.upper()}" for field in fields(AgentConfig)}
    assert env_file_names("gstacks-agent.env") == overrides


def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify refuses an ExecStart binary that does not exist, and this checkout
    # is not installed under /opt: point the copies at this venv instead.
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "gstacks-agent").exists():
        pytest.skip(f"no gstacks-agent console script in {venv_bin}")
    copies = []
    for name in UNIT_NAMES:
        copy = tmp_path / name
        copy.write_text((UNITS / name).read_text().replace(VENV_BIN, f"{venv_bin}/"))
        copies.append(str(copy))

    result = subprocess.run(
        [analyze, "verify", *copies], capture_output=True, text=True, timeout=60
    )

    # A bad setting is only a warning ("...ignoring"), with status 0.
    complaints = [
        line
        for line in result.stderr.splitlines()
        if any(n in line for n in UNIT_NAMES)
    ]
    assert result.returncode == 0, result.stderr
    assert complaints == []
