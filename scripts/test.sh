#!/usr/bin/env bash
# Set up the host (see setup.sh) and run the project's checks and test suite.
# Integration tests need root: they use runc, overlayfs, mounts and namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# pytest exits 5 when it collected no test: that is a failure here too.
exec .venv/bin/python -m pytest "$@"
