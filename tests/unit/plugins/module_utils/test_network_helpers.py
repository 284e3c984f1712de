"""Pure helpers of the network module: input validation and security group rule comparison."""

from __future__ import annotations

import pytest

from ansible_collections.buildfarm.ec2.plugins.module_utils import network


def test_defaults_are_valid():
    assert network.validate("10.0.0.0/16", "10.0.0.0/24", "203.0.113.7/32", "present") == []
    assert network.validate("10.0.0.0/16", "10.0.0.0/24", None, "absent") == []


@pytest.mark.parametrize(
    "args, message",
    [
        (("10.0.0.1/16", "10.0.0.0/24", "1.2.3.4/32"), "vpc_cidr '10.0.0.1/16' is not a valid IPv4 CIDR block"),
        (("fd00::/56", "10.0.0.0/24", "1.2.3.4/32"), "is not IPv4"),
        (("10.0.0.0/29", "10.0.0.0/29", "1.2.3.4/32"), "between /16 and /28"),
        (("10.0.0.0/16", "10.1.0.0/24", "1.2.3.4/32"), "subnet_cidr 10.1.0.0/24 is outside vpc_cidr 10.0.0.0/16"),
        (("10.0.0.0/16", "10.0.0.0/24", None), "ssh_cidr is required with state=present"),
        (("10.0.0.0/16", "10.0.0.0/24", "1.2.3.4"), None),
        (("10.0.0.0/16", "10.0.0.0/24", "1.2.3.4/8"), "ssh_cidr '1.2.3.4/8' is not a valid"),
    ],
)
def test_bad_input_names_the_parameter(args, message):
    errors = network.validate(*args, state="present")
    if message is None:
        assert errors == []  # a bare address is a /32
    else:
        assert any(message in e for e in errors), errors


def test_subnet_size_counts_the_five_addresses_aws_keeps():
    assert network.usable_addresses("10.0.0.0/28") == 11
    assert network.usable_addresses("10.0.0.0/24") == 251
    errors = network.validate("10.0.0.0/16", "10.0.0.0/28", "1.2.3.4/32", "present", min_addresses=12)
    assert errors == [
        "subnet_cidr 10.0.0.0/28 has 11 usable addresses (AWS keeps 5) but min_addresses is 12: use a larger subnet"
    ]


def test_wanted_rules_open_ssh_to_the_cidr_and_cluster_ports_to_the_group_only():
    perms = network.desired_permissions("sg-1", "198.51.100.0/24")
    ssh = [p for p in perms if p["FromPort"] == 22]
    assert ssh[0]["IpRanges"][0]["CidrIp"] == "198.51.100.0/24"
    others = [p for p in perms if p["FromPort"] != 22]
    assert {(p["FromPort"], p["ToPort"]) for p in others} == {
        (3632, 3633),
        (80, 80),
        (6817, 6819),
        (60001, 60100),
        (2049, 2049),
    }
    assert all(p["UserIdGroupPairs"] == [{"GroupId": "sg-1", "Description": "cluster members only"}] for p in others)
    assert all("IpRanges" not in p for p in others)


def test_rule_changes_adds_missing_and_revokes_foreign_rules():
    wanted = network.desired_permissions("sg-1", "198.51.100.0/24")
    current = [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": "sg-1"}]},
    ]
    add, revoke = network.rule_changes(current, wanted)
    assert revoke == [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    assert len(add) == len(wanted) - 1
    assert network.rule_changes(wanted, wanted) == ([], [])
