"""buildfarm.ec2.network through ansible-playbook against the moto server."""

from __future__ import annotations

import pytest

from tests.conftest import AWS_PLAY
from tests.networks import users_network

PLAY = AWS_PLAY + """
    - name: Network
      buildfarm.ec2.network:
        cluster: "{{ cluster | default('demo') }}"
        run_id: r1
        state: "{{ state | default('present') }}"
        ssh_cidr: "{{ ssh_cidr | default(omit) }}"
        vpc_cidr: "{{ vpc_cidr | default(omit) }}"
        subnet_cidr: "{{ subnet_cidr | default(omit) }}"
        min_addresses: "{{ min_addresses | default(omit) }}"
        internet_gateway: "{{ igw | default(true) }}"
        subnet_id: "{{ subnet_id | default(omit) }}"
        require_egress: "{{ require_egress | default(false) }}"
        ssh_from_anywhere: "{{ ssh_from_anywhere | default(false) }}"
"""


def _tagged(ec2, cluster="demo"):
    f = [{"Name": "tag:buildfarm:cluster", "Values": [cluster]}]
    return {
        "vpcs": [v["VpcId"] for v in ec2.describe_vpcs(Filters=f)["Vpcs"]],
        "subnets": [s["SubnetId"] for s in ec2.describe_subnets(Filters=f)["Subnets"]],
        "groups": [g["GroupId"] for g in ec2.describe_security_groups(Filters=f)["SecurityGroups"]],
        "tables": [t["RouteTableId"] for t in ec2.describe_route_tables(Filters=f)["RouteTables"]],
        "gateways": [g["InternetGatewayId"] for g in ec2.describe_internet_gateways(Filters=f)["InternetGateways"]],
    }


def test_check_apply_reapply_absent(aws, run_play):
    ec2 = aws.client("ec2")
    ssh = {"ssh_cidr": "203.0.113.7/32"}

    check = run_play(PLAY, extra_vars=ssh, check=True).task("Network")
    assert check["changed"] is True
    assert "create VPC 10.0.0.0/16" in check["actions"]
    assert all(not ids for ids in _tagged(ec2).values())

    made = run_play(PLAY, extra_vars=ssh).task("Network")
    assert made["changed"] is True
    found = _tagged(ec2)
    assert found["vpcs"] == [made["vpc_id"]]
    assert found["subnets"] == [made["subnet_id"]]
    assert found["groups"] == [made["security_group_id"]]
    assert found["tables"] == [made["route_table_id"]]
    assert found["gateways"] == [made["internet_gateway_id"]]

    vpc = ec2.describe_vpcs(VpcIds=[made["vpc_id"]])["Vpcs"][0]
    tags = {t["Key"]: t["Value"] for t in vpc["Tags"]}
    assert tags["buildfarm:run"] == "r1" and tags["buildfarm:role"] == "network" and "buildfarm:expires" in tags
    assert ec2.describe_subnets(SubnetIds=[made["subnet_id"]])["Subnets"][0]["CidrBlock"] == "10.0.0.0/24"

    group = ec2.describe_security_groups(GroupIds=[made["security_group_id"]])["SecurityGroups"][0]
    rules = {}
    for perm in group["IpPermissions"]:
        sources = [r["CidrIp"] for r in perm.get("IpRanges", [])] + [
            p["GroupId"] for p in perm.get("UserIdGroupPairs", [])
        ]
        rules[(perm["FromPort"], perm["ToPort"])] = sources
    assert rules == {
        (22, 22): ["203.0.113.7/32"],
        (3632, 3633): [made["security_group_id"]],
        (80, 80): [made["security_group_id"]],
        (6817, 6819): [made["security_group_id"]],
        (60001, 60100): [made["security_group_id"]],
        (2049, 2049): [made["security_group_id"]],
    }
    assert made["egress"] == "internet_gateway" and made["egress_detail"] == made["internet_gateway_id"]
    assert made["public_ip"] is True
    table = ec2.describe_route_tables(RouteTableIds=[made["route_table_id"]])["RouteTables"][0]
    assert [a["SubnetId"] for a in table["Associations"] if not a.get("Main")] == [made["subnet_id"]]
    assert {r.get("GatewayId") for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"} == {
        made["internet_gateway_id"]
    }

    again = run_play(PLAY, extra_vars=ssh).task("Network")
    assert again["changed"] is False, again["actions"]
    assert again["vpc_id"] == made["vpc_id"] and again["security_group_id"] == made["security_group_id"]

    # A changed SSH source replaces the rule; nothing else changes.
    moved = run_play(PLAY, extra_vars={"ssh_cidr": "198.51.100.0/24"}).task("Network")
    assert moved["changed"] is True
    group = ec2.describe_security_groups(GroupIds=[made["security_group_id"]])["SecurityGroups"][0]
    ssh_sources = [r["CidrIp"] for p in group["IpPermissions"] if p["FromPort"] == 22 for r in p["IpRanges"]]
    assert ssh_sources == ["198.51.100.0/24"]

    # Dropping the gateway removes it and its route.
    no_igw = run_play(PLAY, extra_vars={"ssh_cidr": "198.51.100.0/24", "igw": False}).task("Network")
    assert no_igw["changed"] is True and no_igw["internet_gateway_id"] is None
    assert no_igw["egress"] == "none" and no_igw["public_ip"] is False
    assert "has no 0.0.0.0/0 route" in no_igw["egress_detail"]
    assert _tagged(ec2)["gateways"] == []

    check_absent = run_play(PLAY, extra_vars={"state": "absent"}, check=True).task("Network")
    assert check_absent["changed"] is True
    assert check_absent["deleted"]["vpcs"] == [made["vpc_id"]]
    assert _tagged(ec2)["vpcs"] == [made["vpc_id"]]

    gone = run_play(PLAY, extra_vars={"state": "absent"}).task("Network")
    assert gone["changed"] is True
    assert all(not ids for ids in _tagged(ec2).values())
    assert ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [made["vpc_id"]]}])["Vpcs"] == []

    assert run_play(PLAY, extra_vars={"state": "absent"}).task("Network")["changed"] is False


def test_other_cluster_is_untouched(aws, run_play):
    ec2 = aws.client("ec2")
    run_play(PLAY, extra_vars={"cluster": "other", "ssh_cidr": "10.1.2.3/32"})
    run_play(PLAY, extra_vars={"ssh_cidr": "10.1.2.3/32"})
    run_play(PLAY, extra_vars={"state": "absent"})
    assert _tagged(ec2)["vpcs"] == []
    assert len(_tagged(ec2, "other")["vpcs"]) == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        ({}, "ssh_cidr is required with state=present"),
        ({"ssh_cidr": "not-a-cidr"}, "ssh_cidr 'not-a-cidr' is not a valid IPv4 CIDR block"),
        ({"ssh_cidr": "1.2.3.4/32", "vpc_cidr": "10.0.0.0/33"}, "vpc_cidr '10.0.0.0/33' is not a valid"),
        ({"ssh_cidr": "1.2.3.4/32", "vpc_cidr": "10.0.0.0/8"}, "between /16 and /28"),
        ({"ssh_cidr": "1.2.3.4/32", "subnet_cidr": "10.9.0.0/24"}, "subnet_cidr 10.9.0.0/24 is outside vpc_cidr"),
        ({"ssh_cidr": "1.2.3.4/32", "subnet_cidr": "10.0.0.0/28", "min_addresses": 20}, "11 usable addresses"),
        ({"ssh_cidr": "1.2.3.4/32", "state": "gone"}, "value of state must be one of"),
        ({"ssh_cidr": "0.0.0.0/0"}, "ssh_cidr 0.0.0.0/0 opens SSH of every node to the whole internet"),
        ({"ssh_cidr": "1.2.3.4/32", "igw": False, "require_egress": True}, "require_egress=true but internet_gateway"),
        ({"ssh_cidr": "1.2.3.4/32", "subnet_id": "vpc-123"}, "subnet_id 'vpc-123' is not a subnet id"),
    ],
)
def test_bad_input_is_refused_before_any_call(aws, run_play, extra, message):
    result = run_play(PLAY, extra_vars=extra, expect_rc=2).task("Network")
    assert result["failed"] is True
    assert message in result["msg"]
    assert all(not ids for ids in _tagged(aws.client("ec2")).values())


def test_ssh_from_anywhere_only_when_asked(aws, run_play):
    made = run_play(PLAY, extra_vars={"ssh_cidr": "0.0.0.0/0", "ssh_from_anywhere": True}).task("Network")
    assert made["changed"] is True
    group = aws.client("ec2").describe_security_groups(GroupIds=[made["security_group_id"]])["SecurityGroups"][0]
    assert [r["CidrIp"] for p in group["IpPermissions"] if p["FromPort"] == 22 for r in p["IpRanges"]] == ["0.0.0.0/0"]
    run_play(PLAY, extra_vars={"state": "absent"})


def test_an_existing_subnet_gets_only_the_cluster_group(aws, run_play):
    ec2 = aws.client("ec2")
    net = users_network(ec2, 50)
    extra = {"ssh_cidr": "10.50.0.0/16", "subnet_id": net["private"], "require_egress": True}
    check = run_play(PLAY, extra_vars=extra, check=True).task("Network")
    assert check["changed"] is True and check["actions"][0] == "create security group buildfarm-demo"
    assert _tagged(ec2)["groups"] == []

    made = run_play(PLAY, extra_vars=extra).task("Network")
    assert made["changed"] is True
    assert (made["vpc_id"], made["subnet_id"], made["subnet_cidr"]) == (net["vpc"], net["private"], "10.50.1.0/24")
    assert (made["egress"], made["egress_detail"], made["public_ip"]) == ("nat_gateway", net["nat"], False)
    assert made["internet_gateway_id"] is None
    tagged = _tagged(ec2)
    assert tagged == {"vpcs": [], "subnets": [], "groups": [made["security_group_id"]], "tables": [], "gateways": []}
    group = ec2.describe_security_groups(GroupIds=[made["security_group_id"]])["SecurityGroups"][0]
    assert group["VpcId"] == net["vpc"]

    again = run_play(PLAY, extra_vars=extra).task("Network")
    assert again["changed"] is False and again["security_group_id"] == made["security_group_id"]

    # A subnet whose route goes to the internet gateway needs public addresses on the instances.
    public = run_play(PLAY, extra_vars=dict(extra, subnet_id=net["public"])).task("Network")
    assert (public["egress"], public["public_ip"]) == ("internet_gateway", True)

    gone = run_play(PLAY, extra_vars={"state": "absent"}).task("Network")
    assert gone["deleted"]["security_groups"] == [made["security_group_id"]]
    assert ec2.describe_subnets(SubnetIds=[net["private"], net["public"]])["Subnets"]
    assert ec2.describe_vpcs(VpcIds=[net["vpc"]])["Vpcs"]
    assert ec2.describe_nat_gateways(NatGatewayIds=[net["nat"]])["NatGateways"][0]["State"] == "available"


def test_a_subnet_without_a_way_out_is_refused_before_anything_is_made(aws, run_play):
    ec2 = aws.client("ec2")
    net = users_network(ec2, 50)
    extra = {"ssh_cidr": "10.50.0.0/16", "subnet_id": net["isolated"], "require_egress": True}
    refused = run_play(PLAY, extra_vars=extra, expect_rc=2).task("Network")
    assert refused["failed"] is True
    assert "subnet %s would have no way to the internet" % net["isolated"] in refused["msg"]
    assert "route table %s has no 0.0.0.0/0 route" % net["isolated_rt"] in refused["msg"]
    assert _tagged(ec2)["groups"] == []

    # The NAT gateway gone: its route is a blackhole, and the private subnet is refused too.
    ec2.delete_nat_gateway(NatGatewayId=net["nat"])
    extra["subnet_id"] = net["private"]
    refused = run_play(PLAY, extra_vars=extra, expect_rc=2).task("Network")
    assert "NAT gateway %s" % net["nat"] in refused["msg"], refused["msg"]
    assert _tagged(ec2)["groups"] == []
