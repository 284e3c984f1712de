"""A network as a company has it, for the tests of the existing-subnet placement (nothing in it is tagged for a
cluster, so nothing of it may be touched by one)."""

from __future__ import annotations


def users_network(ec2, net):
    """VPC 10.<net>.0.0/16 with a public subnet (.0) routed to an internet gateway and holding a NAT gateway, a
    private subnet (.1) whose way out is the NAT gateway, and an isolated subnet (.2) with no way out."""
    vpc = ec2.create_vpc(CidrBlock="10.%d.0.0/16" % net)["Vpc"]["VpcId"]
    public, private, isolated = (
        ec2.create_subnet(VpcId=vpc, CidrBlock="10.%d.%d.0/24" % (net, n))["Subnet"]["SubnetId"] for n in range(3)
    )
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=public, AllocationId=eip)["NatGateway"]["NatGatewayId"]
    ec2.get_waiter("nat_gateway_available").wait(NatGatewayIds=[nat], WaiterConfig={"Delay": 2, "MaxAttempts": 60})
    tables = {}
    for name, subnet, route in (
        ("public", public, {"GatewayId": igw}),
        ("private", private, {"NatGatewayId": nat}),
        ("isolated", isolated, None),
    ):
        tables[name] = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        if route:
            ec2.create_route(RouteTableId=tables[name], DestinationCidrBlock="0.0.0.0/0", **route)
        ec2.associate_route_table(RouteTableId=tables[name], SubnetId=subnet)
    return dict(
        vpc=vpc, public=public, private=private, isolated=isolated, igw=igw, nat=nat, isolated_rt=tables["isolated"]
    )
