"""Runtime networks end to end: namespace hosts, real WireGuard, DNS, nftables.

Host a is the standalone lab's own host, host b an agent in another namespace; both
reach each other only over the underlay bridge. Sandbox `web` on a serves HTTP on
8080 (busybox httpd); `client` on b talks to it with busybox nc by name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import WEB_COMMAND, MeshLab

pytestmark = pytest.mark.root

HERE = Path(__file__).resolve().parent
GREETING = "hello-from-web"
REQUEST = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {target} 8080"


def fetch(lab: MeshLab, sandbox: dict, target: str) -> str:
    """What `sandbox` gets from http://<target>:8080/ ('' if it cannot connect)."""
    done = lab.exec(sandbox, "sh", "-c", REQUEST.format(target=target))
    return done.stdout


@pytest.fixture(scope="module")
def shop(mesh_lab: MeshLab) -> Iterator[dict]:
    """Network `shop`: `web` on host a, `client` on host b, both attached."""
    lab = mesh_lab
    network = lab.network("shop")
    web = lab.sandbox("a", "web", WEB_COMMAND)
    client = lab.sandbox("b", "client")
    attached = lab.attach(web, network, aliases=["web"], ports=[8080])
    assert attached.status_code == 201, attached.text
    attached = lab.attach(client, network, aliases=["client"])
    assert attached.status_code == 201, attached.text
    yield {
        "network": network,
        "web": web,
        "client": client,
        "web_address": _address_of(lab, network, web),
    }


def _address_of(lab: MeshLab, network: dict, sandbox: dict) -> str:
    members = lab.ok("GET", f"/api/networks/{network['id']}/members")["items"]
    return next(m["address"] for m in members if m["sandbox_id"] == sandbox["id"])


def test_sandbox_on_b_reaches_web_on_a_by_name_through_wireguard(
    mesh_lab: MeshLab, shop: dict, tmp_path: Path
):
    lab = mesh_lab
    host_b = lab.hosts["b"]
    summary = tmp_path / "capture.json"
    capture = lab.net.spawn(
        host_b.namespace,
        [
            sys.executable,
            str(HERE / "capture.py"),
            "uplink0",
            "4",
            str(summary),
            GREETING,
        ],
        tmp_path / "capture.log",
    )
    for _ in range(100):
        if "capturing" in (tmp_path / "capture.log").read_text():
            break
        time.sleep(0.05)

    assert GREETING in fetch(lab, shop["client"], "web.shop.gstacks")
    assert GREETING in fetch(lab, shop["client"], "web")  # the search domain
    capture.wait(timeout=30)

    seen = json.loads(summary.read_text())
    flows = seen["flows"]
    # The underlay carries the request only inside WireGuard: UDP to and from its
    # port, never the HTTP port or the page itself in clear.
    assert any(re.fullmatch(r"udp:51820>51820", f) for f in flows), flows
    assert not [f for f in flows if f.endswith(">8080") or f.startswith("tcp:8080")]
    assert seen["needle_seen"] == 0

    routes = lab.ok("GET", f"/api/networks/{shop['network']['id']}/routes")["items"]
    web_route = next(r for r in routes if r["alias"] == "web")
    assert web_route["name"] == "web.shop.gstacks"
    assert web_route["ports"] == [8080]
    assert web_route["host_id"] == lab.hosts["a"].host_id


def test_sandbox_in_another_network_cannot_reach_web(mesh_lab: MeshLab, shop: dict):
    lab = mesh_lab
    other = lab.network("other")
    intruder = lab.sandbox("b", "intruder")
    try:
        attached = lab.attach(intruder, other, aliases=["intruder"])
        assert attached.status_code == 201, attached.text

        assert GREETING not in fetch(lab, intruder, shop["web_address"])
        looked_up = lab.exec(intruder, "nslookup", "web.shop.gstacks")
        assert shop["web_address"] not in looked_up.stdout
        # The shop's own client still gets through.
        assert GREETING in fetch(lab, shop["client"], "web")

        # Out of its last network, it no longer asks that network's resolver.
        assert "nameserver" in lab.exec(intruder, "cat", "/etc/resolv.conf").stdout
        lab.api(
            "POST", f"/api/sandboxes/{intruder['id']}/networks/{other['id']}/detach"
        )
        gone = lab.exec(intruder, "cat", "/etc/resolv.conf")
        assert "nameserver" not in gone.stdout
    finally:
        lab.api(
            "POST", f"/api/sandboxes/{intruder['id']}/networks/{other['id']}/detach"
        )
        lab.api("DELETE", f"/api/networks/{other['id']}")


def test_deny_policy_blocks_the_port_until_it_is_removed(mesh_lab: MeshLab, shop: dict):
    lab = mesh_lab
    network = shop["network"]
    path = f"/api/networks/{network['id']}/policies"
    try:
        rules = lab.ok(
            "PUT",
            path,
            json={
                "rules": [
                    {
                        "action": "deny",
                        "from": "*",
                        "to": "web",
                        "ports": [8080],
                        "protocol": "tcp",
                    }
                ]
            },
        )["items"]
        assert rules[0]["action"] == "deny"
        assert GREETING not in fetch(lab, shop["client"], "web")

        report = lab.ok("POST", f"/api/networks/{network['id']}/diagnostics")
        host_a = next(
            h for h in report["hosts"] if h["host_id"] == lab.hosts["a"].host_id
        )
        verdict = next(p for p in host_a["policies"] if p["port"] == 8080)
        assert verdict["verdict"] == "deny" and verdict["rule_id"] == rules[0]["id"]
    finally:
        lab.ok("PUT", path, json={"rules": []})
    assert GREETING in fetch(lab, shop["client"], "web")


def _bring_up_join_client(lab: MeshLab, credential: dict, tmp_path: Path) -> str:
    """A fresh namespace with wireguard-go configured from the credential alone."""
    namespace = lab.net.namespace("join")
    interface = f"gsj{lab.net.tag}"
    config = credential["config"]
    address = re.search(r"^Address = (\S+)$", config, re.M)[1]
    allowed = [
        cidr.strip()
        for line in re.findall(r"^AllowedIPs = (.+)$", config, re.M)
        for cidr in line.split(",")
    ]
    # wg(8) reads the config without wg-quick's Address line.
    setconf = tmp_path / "join.conf"
    setconf.write_text(
        "\n".join(
            line for line in config.splitlines() if not line.startswith("Address")
        )
        + "\n"
    )
    lab.net.spawn(
        namespace, ["wireguard-go", "-f", interface], tmp_path / "join-wg.log"
    )
    socket = Path(f"/var/run/wireguard/{interface}.sock")
    for _ in range(200):
        if socket.exists():
            break
        time.sleep(0.02)
    lab.net.exec(namespace, "wg", "setconf", interface, str(setconf))
    lab.net.exec(namespace, "ip", "addr", "add", address, "dev", interface)
    lab.net.exec(namespace, "ip", "link", "set", interface, "up")
    for cidr in allowed:
        lab.net.exec(namespace, "ip", "route", "add", cidr, "dev", interface)
    return namespace


def test_mesh_join_reaches_the_network_until_it_expires(
    mesh_lab: MeshLab, shop: dict, tmp_path: Path
):
    lab = mesh_lab
    network = shop["network"]
    credential = lab.ok(
        "POST", f"/api/networks/{network['id']}/mesh-join", json={"ttl_s": 10}
    )
    assert "PrivateKey = " in credential["config"]
    assert credential["mesh_address"].startswith("100.")
    namespace = _bring_up_join_client(lab, credential, tmp_path)
    request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {shop['web_address']} 8080"

    reached = lab.net.exec(namespace, "sh", "-c", request, check=False)
    assert GREETING in reached.stdout, reached.stderr

    expires = time.time() + 11
    while time.time() < expires + 2:
        time.sleep(0.5)
    refused = lab.net.exec(namespace, "sh", "-c", request, check=False)
    assert GREETING not in refused.stdout
    host_a = lab.hosts["a"]
    peers = lab.net.exec(host_a.namespace, "wg", "show", "all", "peers").stdout
    assert credential["public_key"] not in peers


def test_host_that_returns_gets_its_peers_back(mesh_lab: MeshLab, shop: dict):
    lab = mesh_lab
    network = shop["network"]
    host_b = lab.hosts["b"]
    lab.stop_agent("b")
    try:
        report = lab.ok("POST", f"/api/networks/{network['id']}/diagnostics")
        assert report["healthy"] is False
        assert report["down_hosts"] == [host_b.host_id]
        from_b = next(h for h in report["hosts"] if h["host_id"] == host_b.host_id)
        assert from_b["status"] == "unreachable" and host_b.host_id in from_b["error"]
        from_a = next(
            h for h in report["hosts"] if h["host_id"] == lab.hosts["a"].host_id
        )
        peer_b = next(p for p in from_a["peers"] if p["host_id"] == host_b.host_id)
        assert peer_b["reachable"] is False
    finally:
        lab.start_agent("b")

    deadline = time.time() + 30
    while GREETING not in fetch(lab, shop["client"], "web.shop.gstacks"):
        assert time.time() < deadline, "host b did not get its peers back"
        time.sleep(0.5)
    report = lab.ok("POST", f"/api/networks/{network['id']}/diagnostics")
    assert report["down_hosts"] == [], report
    assert report["healthy"] is True, report


def test_bad_input_is_refused_and_nothing_is_half_applied(
    mesh_lab: MeshLab, shop: dict
):
    lab = mesh_lab
    network = shop["network"]
    spare = lab.sandbox("b", "spare")
    members_before = lab.ok("GET", f"/api/networks/{network['id']}/members")["items"]
    veths_before = lab.links("b", "gsv")
    try:
        duplicate = lab.attach(spare, network, aliases=["web"])
        assert duplicate.status_code == 409, duplicate.text
        assert "web" in duplicate.json()["error"]["message"]

        not_a_label = lab.attach(spare, network, aliases=["Not_A_Label"])
        assert not_a_label.status_code == 400, not_a_label.text

        unknown = lab.api(
            "POST",
            f"/api/sandboxes/sbx_0000000000000000/networks/{network['id']}/attach",
            json={"aliases": ["ghost"]},
        )
        assert unknown.status_code == 404, unknown.text
        unknown_network = lab.attach(spare, {"id": "net_0000000000000000"})
        assert unknown_network.status_code == 404, unknown_network.text

        overlapping = lab.api(
            "POST", "/api/networks", json={"name": "overlap", "cidr": network["cidr"]}
        )
        assert overlapping.status_code == 409, overlapping.text
        inside = network["cidr"].replace("/24", "/25")
        overlapping = lab.api(
            "POST", "/api/networks", json={"name": "overlap", "cidr": inside}
        )
        assert overlapping.status_code == 409, overlapping.text
        mesh_range = lab.api(
            "POST", "/api/networks", json={"name": "meshy", "cidr": "100.64.9.0/24"}
        )
        assert mesh_range.status_code == 409, mesh_range.text

        busy = lab.api("DELETE", f"/api/networks/{network['id']}")
        assert busy.status_code == 409, busy.text
    finally:
        after = lab.ok("GET", f"/api/networks/{network['id']}/members")["items"]
        assert after == members_before
        assert lab.links("b", "gsv") == veths_before
        names = [n["name"] for n in lab.ok("GET", "/api/networks")["items"]]
        assert "overlap" not in names and "meshy" not in names


def test_cli_drives_networks_end_to_end(mesh_lab: MeshLab, shop: dict, tmp_path: Path):
    lab = mesh_lab
    env = {**os.environ, "GSTACKS_URL": lab.url, "GSTACKS_API_KEY": lab.key}

    def gstacks(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(Path(sys.executable).parent / "gstacks"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    created = gstacks("network", "create", "cli-net", "--cidr", "10.99.7.0/24")
    assert created.returncode == 0, created.stderr
    assert "cli-net" in gstacks("network", "list").stdout
    clash = gstacks("network", "create", "cli-clash", "--cidr", "10.99.7.128/25")
    assert clash.returncode == 1 and clash.stderr.startswith("gstacks: ")
    assert len(clash.stderr.strip().splitlines()) == 1

    routes = gstacks("network", "routes", "shop")
    assert "web.shop.gstacks" in routes.stdout and "8080" in routes.stdout

    added = gstacks(
        "network", "policy", "shop", "--add", "deny", "--to", "web", "--port", "8080"
    )
    assert added.returncode == 0 and "deny" in added.stdout, added.stderr
    assert GREETING not in fetch(lab, shop["client"], "web")
    cleared = gstacks("network", "policy", "shop", "--clear")
    assert cleared.returncode == 0 and "deny" not in cleared.stdout
    assert GREETING in fetch(lab, shop["client"], "web")

    config = tmp_path / "join.conf"
    joined = gstacks("network", "join", "shop", "--ttl", "30s", "-o", str(config))
    assert joined.returncode == 0, joined.stderr
    assert config.stat().st_mode & 0o777 == 0o600
    assert "[Peer]" in config.read_text()

    diagnosed = gstacks("network", "diagnose", "shop")
    assert diagnosed.returncode == 0 and "healthy" in diagnosed.stdout

    deleted = gstacks("network", "delete", "cli-net")
    assert deleted.returncode == 0, deleted.stderr
    busy = gstacks("network", "delete", "shop")
    assert busy.returncode == 1 and "members" in busy.stderr
