"""Resource ids: a kind prefix and 16 random hex digits, e.g. `sbx_3f09c2a1d4e5b677`."""

from __future__ import annotations

import re
import secrets

PREFIXES = {
    "host": "host",
    "sandbox": "sbx",
    "blueprint": "bp",
    "api_key": "key",
    "registry_credential": "rc",
    "terminal_session": "ts",
    "volume": "vol",
    "attachment": "att",
    "cluster": "cl",
    "provisioning_token": "pt",
    "user": "usr",
    "network": "net",
    "network_member": "nm",
    "network_policy": "np",
    "mesh_join": "mj",
}

_ID_RE = re.compile(r"^[a-z]+_[0-9a-f]{16}$")


def new_id(kind: str) -> str:
    return f"{PREFIXES[kind]}_{secrets.token_hex(8)}"


def looks_like_id(kind: str, value: str) -> bool:
    return bool(_ID_RE.match(value)) and value.startswith(PREFIXES[kind] + "_")
