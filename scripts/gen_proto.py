"""Generate the Python bindings of the agent-control contract.

The generated modules are committed so that the package installs without protoc.
`python scripts/gen_proto.py` rewrites them; a unit test runs the same generator
into a temporary directory and fails when the committed files differ, so a change to
the .proto cannot land without its bindings.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
PROTO_FILE = "globalstacks/agent/v1/control_plane.proto"
OUTPUT_ROOT = REPO_ROOT / "gstacks_proto"


def generate(out_dir: Path) -> None:
    """Run protoc (from grpcio-tools) for the contract into `out_dir`."""
    from grpc_tools import protoc  # only a development dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        str(PROTO_ROOT / PROTO_FILE),
    ]
    status = protoc.main(argv)
    if status != 0:
        raise RuntimeError(f"protoc exited with status {status}")


def main() -> int:
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT_ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
