"""The committed Python bindings must be what protoc makes of the committed .proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
GENERATED = REPO / "gstacks_proto" / "globalstacks" / "agent" / "v1"


def test_generated_bindings_are_current(tmp_path: Path):
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_proto.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = tmp_path / "globalstacks" / "agent" / "v1"
    for name in ("control_plane_pb2.py", "control_plane_pb2.pyi"):
        assert (fresh / name).read_text() == (GENERATED / name).read_text(), (
            f"{name} is stale: run `python scripts/gen_proto.py` and commit the result"
        )
