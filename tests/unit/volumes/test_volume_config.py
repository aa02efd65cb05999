"""The agent's `volumes` settings: YAML section, environment override, defaults."""

from __future__ import annotations

import pytest

from gstacks_agent.config import ConfigError, VolumesConfig, load_config


def test_default_is_embedded_sqlite_and_file_storage(tmp_path):
    file = tmp_path / "agent.yaml"
    file.write_text("log_level: INFO\n")
    config = load_config(file, environ={})
    assert config.volumes == VolumesConfig()
    assert config.volumes.meta_url is None and config.volumes.storage == "file"


def test_yaml_section_sets_shared_metadata_and_s3(tmp_path):
    file = tmp_path / "agent.yaml"
    file.write_text(
        "volumes:\n"
        "  meta_url: redis://meta:6379/1\n"
        "  storage: s3\n"
        "  bucket: https://bucket.s3.example/gstacks\n"
    )
    volumes = load_config(file, environ={}).volumes
    assert volumes.meta_url == "redis://meta:6379/1"
    assert (volumes.storage, volumes.bucket) == (
        "s3",
        "https://bucket.s3.example/gstacks",
    )


def test_environment_overrides_the_section_with_inline_yaml(tmp_path):
    file = tmp_path / "agent.yaml"
    file.write_text("volumes:\n  storage: s3\n")
    environ = {"GSTACKS_VOLUMES": "{meta_url: 'postgres://db/jfs', name: shared}"}
    volumes = load_config(file, environ=environ).volumes
    assert volumes.meta_url == "postgres://db/jfs" and volumes.name == "shared"
    assert volumes.storage == "file"


@pytest.mark.parametrize(
    "section",
    ["volumes: [a]\n", "volumes:\n  cache_size: 10\n", "volumes:\n  storage: 3\n"],
)
def test_malformed_volumes_section_is_refused(tmp_path, section):
    file = tmp_path / "agent.yaml"
    file.write_text(section)
    with pytest.raises(ConfigError):
        load_config(file, environ={})
