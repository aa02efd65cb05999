"""The host identity an agent proves to its control plane.

Kept under `<state_dir>/agent/`: `identity.json` names the host and the control plane
it belongs to; `credential` holds the secret, mode 0600, written atomically. Neither
file is ever sent anywhere but in the Authorization header of the agent channel.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from gstacks_agent.errors import FailedPrecondition


@dataclass(frozen=True)
class HostIdentity:
    host_id: str
    control_plane_url: str
    credential: str


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def save_identity(identity_dir: Path, identity: HostIdentity) -> None:
    meta = {
        "host_id": identity.host_id,
        "control_plane_url": identity.control_plane_url,
    }
    _write_private(identity_dir / "credential", identity.credential.encode() + b"\n")
    _write_private(
        identity_dir / "identity.json", json.dumps(meta, indent=2).encode() + b"\n"
    )


def load_identity(identity_dir: Path) -> HostIdentity:
    try:
        meta = json.loads((identity_dir / "identity.json").read_text())
        credential = (identity_dir / "credential").read_text().strip()
    except FileNotFoundError as exc:
        raise FailedPrecondition(
            f"this host has no identity: {exc.filename} is missing; enroll it with "
            "'gstacks-agent enroll --control-plane URL --token TOKEN', or start "
            "'gstacks-agent standalone' for a single-host lab"
        ) from exc
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(
            f"the host identity in {identity_dir} is unreadable: {exc}"
        ) from exc
    return HostIdentity(meta["host_id"], meta["control_plane_url"], credential)
