"""Netlink operations on links, addresses and routes, here or in a sandbox's namespace.

How it works. Every function here is synchronous and short: the callers run them in
a worker thread (`trio.to_thread.run_sync`) so that a netlink round trip never blocks
the event loop. Work inside another network namespace (a sandbox's) runs in a thread
of its own that first joins that namespace with setns(2) and then opens its netlink
socket there; a thread's namespace is its own, so the rest of the process stays
where it was, and the thread ends with the work.

Netlink errors enter our code here once, as `InterfaceFailed` naming the link.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gstacks_agent.mesh.errors import InterfaceFailed

if TYPE_CHECKING:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError


# pyroute2 costs the agent about 20 MiB of memory; a host that never carries a
# network never pays it. These two load it on first use.
def _iproute() -> IPRoute:
    from pyroute2 import IPRoute

    return IPRoute()


def _netlink_error() -> type[NetlinkError]:
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


log = logging.getLogger("gstacks.agent.mesh")

CLONE_NEWNET = 0x40000000
# Routes we install carry this protocol number, so a sync removes only ours.
# (rtnetlink(7): values above RTPROT_STATIC are free for routing daemons.)
ROUTE_PROTOCOL = 0x67

_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _require(ipr: IPRoute, name: str) -> int:
    index = _index(ipr, name)
    if index is None:
        raise InterfaceFailed(f"link {name} does not exist", resource_id=name)
    return index


def _failed(what: str, name: str, exc: NetlinkError) -> InterfaceFailed:
    return InterfaceFailed(
        f"{what} {name}: {os.strerror(exc.code)} (errno {exc.code})", resource_id=name
    )


def link_names(prefix: str) -> list[str]:
    """Names of this namespace's links that start with `prefix`.

    if_nameindex(3) asks the kernel about the calling thread's network namespace
    (unlike /sys/class/net, which shows the namespace sysfs was mounted in), and
    costs no pyroute2, so asking whether there is anything to do stays cheap.
    """
    names = (name for _, name in socket.if_nameindex())
    return sorted(n for n in names if n.startswith(prefix))


def link_exists(name: str) -> bool:
    with _iproute() as ipr:
        return _index(ipr, name) is not None


def delete_link(name: str) -> bool:
    """Remove a link (a veth takes its peer with it); False if it was not there."""
    with _iproute() as ipr:
        index = _index(ipr, name)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except _netlink_error() as exc:
            if exc.code == errno.ENODEV:
                return False
            raise _failed("cannot delete link", name, exc) from exc
    return True


def ensure_address(name: str, cidr: str) -> None:
    """Give `name` the address `cidr` (and no other IPv4 one) and bring it up."""
    interface = ipaddress.ip_interface(cidr)
    with _iproute() as ipr:
        index = _require(ipr, name)
        try:
            present = {
                (a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in ipr.get_addr(index=index, family=2)
            }
            wanted = (str(interface.ip), interface.network.prefixlen)
            for address, prefixlen in present - {wanted}:
                ipr.addr("del", index=index, address=address, prefixlen=prefixlen)
            if wanted not in present:
                ipr.addr("add", index=index, address=wanted[0], prefixlen=wanted[1])
            ipr.link("set", index=index, state="up")
        except _netlink_error() as exc:
            raise _failed(f"cannot set address {cidr} on", name, exc) from exc


def ensure_bridge(name: str, gateway_cidr: str) -> None:
    """A bridge `name` holding the gateway address, up; made if missing."""
    with _iproute() as ipr:
        if _index(ipr, name) is None:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except _netlink_error() as exc:
                if exc.code != errno.EEXIST:
                    raise _failed("cannot create bridge", name, exc) from exc
    ensure_address(name, gateway_cidr)
    # The bridge routes between its ports (they are isolated from each other), and
    # an ICMP redirect would teach a sandbox to go around the host's policy.
    write_sysctl(f"net/ipv4/conf/{name}/send_redirects", "0")


def create_veth(host_end: str, peer_end: str, bridge: str) -> None:
    """A veth pair with `host_end` an isolated, up port of `bridge`."""
    with _iproute() as ipr:
        master = _require(ipr, bridge)
        try:
            # Not done yet: the veth keeps MTU 1500 under the mesh's 1420, so large
            # segments between hosts rely on path-MTU discovery.
            ipr.link("add", ifname=host_end, kind="veth", peer=peer_end)
            index = _require(ipr, host_end)
            ipr.link("set", index=index, master=master, state="up")
            # Isolated ports only talk to the bridge itself, never to each other:
            # sandbox-to-sandbox traffic is routed, so nftables sees all of it.
            ipr.link("set", index=index, kind="bridge_slave", isolated=1)
        except _netlink_error() as exc:
            raise _failed("cannot create veth", host_end, exc) from exc


def move_to_namespace(name: str, pid: int) -> None:
    """Move link `name` into the network namespace of process `pid`."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        with _iproute() as ipr:
            index = _require(ipr, name)
            try:
                ipr.link("set", index=index, net_ns_fd=fd)
            except _netlink_error() as exc:
                what = f"cannot move into pid {pid}'s namespace"
                raise _failed(what, name, exc) from exc
    finally:
        os.close(fd)


RT_SCOPE_LINK = 253  # rtnetlink(7)


def sync_routes(device: str, cidrs: Iterable[str]) -> None:
    """Make our routes through `device` exactly `cidrs` (scope link, main table)."""
    wanted = {str(ipaddress.ip_network(c, strict=False)) for c in cidrs}
    with _iproute() as ipr:
        index = _require(ipr, device)
        present = set()
        for route in ipr.get_routes(family=2, oif=index, proto=ROUTE_PROTOCOL):
            dst = route.get_attr("RTA_DST") or "0.0.0.0"
            present.add(f"{dst}/{route['dst_len']}")
        try:
            for cidr in sorted(present - wanted):
                # The scope must match the route's, or the kernel finds none (ESRCH).
                ipr.route(
                    "del",
                    dst=cidr,
                    oif=index,
                    scope=RT_SCOPE_LINK,
                    proto=ROUTE_PROTOCOL,
                )
            for cidr in sorted(wanted):
                ipr.route(
                    "replace",
                    dst=cidr,
                    oif=index,
                    scope=RT_SCOPE_LINK,
                    proto=ROUTE_PROTOCOL,
                )
        except _netlink_error() as exc:
            raise _failed("cannot set routes through", device, exc) from exc


def write_sysctl(key: str, value: str) -> None:
    """Set /proc/sys/<key> in the calling thread's network namespace."""
    Path("/proc/sys", key).write_text(value)


def in_namespace_of(pid: int, work: Callable[[], T]) -> T:
    """Run `work` in a thread that joined process `pid`'s network namespace."""
    outcome: dict[str, Any] = {}

    def enter_and_run() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise InterfaceFailed(
                        f"cannot join pid {pid}'s network namespace: "
                        f"{os.strerror(code)}"
                    )
            finally:
                os.close(fd)
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=enter_and_run, name=f"netns-{pid}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def configure_sandbox_link(
    temp_name: str,
    *,
    address: str,
    gateway: str,
    network_cidr: str,
) -> str:
    """Inside a sandbox's namespace: name, address and route the link we moved in.

    The sandbox gets a /32 and reaches everything through the gateway, including
    members on the same host, so the host routes (and filters) all its traffic.
    Returns the name the link got inside the sandbox (`eth0`, `eth1`, ...).
    """
    with _iproute() as ipr:
        names = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        inner = next(f"eth{n}" for n in range(64) if f"eth{n}" not in names)
        index = _require(ipr, temp_name)
        loopback = _require(ipr, "lo")
        try:
            ipr.link("set", index=loopback, state="up")
            ipr.link("set", index=index, ifname=inner)
            ipr.addr("add", index=index, address=address, prefixlen=32)
            ipr.link("set", index=index, state="up")
            ipr.route("add", dst=f"{gateway}/32", oif=index, scope=253)
            ipr.route("add", dst=network_cidr, gateway=gateway, oif=index)
            # Not done yet: one default route per sandbox. It goes through the
            # first network attached; mesh-join clients of a later network are
            # reached only while that first attachment lasts.
            has_default = any(
                r["dst_len"] == 0 for r in ipr.get_routes(family=2, table=254)
            )
            if not has_default:
                ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=index)
        except _netlink_error() as exc:
            raise _failed("cannot configure sandbox link", inner, exc) from exc
    # A redirect from the gateway must not teach the sandbox a path around it.
    write_sysctl("net/ipv4/conf/all/accept_redirects", "0")
    write_sysctl(f"net/ipv4/conf/{inner}/accept_redirects", "0")
    return inner
