"""Shared test configuration.

Tests marked `root` use real kernel parts (mount, namespaces, runc); they are skipped
only when the suite does not run as root, which CI always does.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
