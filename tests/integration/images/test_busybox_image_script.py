"""scripts/build_busybox_image.py writes a layout that skopeo reads as a real image."""

from __future__ import annotations

import json

import pytest

# skopeo runs in its own mount namespace (see conftest), which needs root.
pytestmark = pytest.mark.root


def test_busybox_layout_is_an_image_skopeo_can_read(busybox_layout, skopeo):
    layout, digest = busybox_layout

    inspected = json.loads(skopeo("inspect", f"oci:{layout}:latest"))
    config = json.loads(skopeo("inspect", "--config", f"oci:{layout}:latest"))

    assert inspected["Digest"] == digest
    assert (inspected["Os"], inspected["Architecture"]) == ("linux", "amd64")
    assert len(inspected["Layers"]) == 1
    assert config["config"]["Cmd"][:2] == ["/bin/sh", "-c"]
    assert "trap 'exit 0' TERM" in config["config"]["Cmd"][2]
    assert config["config"]["WorkingDir"] == "/"
    assert any(v.startswith("PATH=") for v in config["config"]["Env"])


def test_building_twice_gives_the_same_digest(tmp_path, build_busybox):
    first = build_busybox(tmp_path / "one")
    second = build_busybox(tmp_path / "two", tag="other")
    assert first == second
