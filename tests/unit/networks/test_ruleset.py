"""The nftables ruleset text and the same decisions evaluated in Python."""

from __future__ import annotations

from gstacks_agent.networks.ruleset import build_ruleset, evaluate
from gstacks_proto import pb


def _spec(*rules: pb.NetworkPolicyRule) -> pb.NetworkSpec:
    return pb.NetworkSpec(
        network_id="net_00112233445566aa",
        name="shop",
        cidr="10.88.0.0/24",
        gateway="10.88.0.1",
        policies=list(rules),
        trusted_addresses=["100.64.0.1", "100.64.0.9"],
    )


DENY_WEB = pb.NetworkPolicyRule(
    rule_id="np_1",
    action="deny",
    to_addresses=["10.88.0.2/32"],
    ports=[8080],
    protocol="tcp",
)


def test_empty_state_only_removes_the_table():
    script = build_ruleset(())
    assert script.splitlines() == ["table inet gstacks {}", "delete table inet gstacks"]


def test_ruleset_isolates_the_range_and_orders_policies_before_the_default():
    script = build_ruleset([_spec(DENY_WEB)])
    lines = [line.strip() for line in script.splitlines()]
    inside = "{ 10.88.0.0/24, 100.64.0.1, 100.64.0.9 }"
    isolation = lines.index(
        f"ip daddr 10.88.0.0/24 ip saddr != {inside} reject with icmpx admin-prohibited"
    )
    rule = next(i for i, line in enumerate(lines) if 'comment "np_1"' in line)
    default = lines.index("ip daddr 10.88.0.0/24 accept")
    assert isolation < rule < default
    assert "tcp dport { 8080 }" in lines[rule]
    assert 'iifname "gsn001122334455" reject with icmpx admin-prohibited' in lines


def test_evaluate_mirrors_the_rules():
    spec = _spec(DENY_WEB)
    assert evaluate(spec, "10.88.0.3", "10.88.0.2", 8080, "tcp").verdict == "deny"
    assert evaluate(spec, "10.88.0.3", "10.88.0.2", 8080, "tcp").rule_id == "np_1"
    assert evaluate(spec, "10.88.0.3", "10.88.0.2", 22, "tcp").verdict == "allow"
    assert evaluate(spec, "10.88.0.3", "10.88.0.2", 8080, "udp").verdict == "allow"
    assert evaluate(spec, "100.64.0.9", "10.88.0.4", 22, "tcp").verdict == "allow"
    outsider = evaluate(spec, "10.88.1.5", "10.88.0.4", 22, "tcp")
    assert (outsider.verdict, outsider.rule_id) == ("deny", "isolation")


def test_first_matching_rule_wins():
    allow_db = pb.NetworkPolicyRule(
        rule_id="np_0", action="allow", from_addresses=["10.88.0.3/32"], ports=[8080]
    )
    spec = _spec(allow_db, DENY_WEB)
    assert evaluate(spec, "10.88.0.3", "10.88.0.2", 8080, "tcp").verdict == "allow"
    assert evaluate(spec, "10.88.0.4", "10.88.0.2", 8080, "tcp").verdict == "deny"
