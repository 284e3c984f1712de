# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network of a build cluster: VPC, subnet, optional internet gateway + route, cluster security group.

Two placements. Own network (the default): the cluster's own VPC, subnet, route table and internet gateway;
the controller is outside AWS and reaches the nodes by their public addresses. Existing subnet (``subnet_id``):
the controller runs inside AWS; only the cluster's security group is made, in the subnet's VPC, and nothing
the cluster did not create is ever changed or deleted.

Egress is EC2's: an instance reaches the internet (the package mirror) only with a public IPv4 and a
0.0.0.0/0 route to an attached internet gateway, or through a 0.0.0.0/0 route to an available NAT gateway.
:func:`egress` reads that from the subnet's route table (its own association, else the VPC's main table), so
a cluster that could not install a package is refused before any instance starts.

Everything is found by the cluster tag (never by name alone). ``validate`` is pure and runs before any call;
``ensure`` converges and ``remove`` deletes in dependency order through the sweep helpers.
"""

from __future__ import annotations

import ipaddress

from ansible_collections.buildfarm.ec2.plugins.module_utils import sweep as bf_sweep
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from ansible_collections.buildfarm.ec2.plugins.module_utils.aws import paginate
from ansible_collections.buildfarm.ec2.plugins.module_utils.cluster import describe

ROLE = "network"
# Ports the cluster uses between its own members (from the group itself only): distcc and its stats port, the
# status page, slurmctld/slurmd/slurmdbd, srun's ports (SrunPortRange in the slurm role's slurm.conf), NFS.
SRUN_PORTS = (60001, 60100)
CLUSTER_PORTS = [(3632, 3633), (80, 80), (6817, 6819), SRUN_PORTS, (2049, 2049)]
ANYWHERE = "0.0.0.0/0"
SSH_PORT = 22
AWS_RESERVED_ADDRESSES = 5
NETWORK_KINDS = ["security_groups", "subnets", "route_tables", "internet_gateways", "vpcs"]


def group_name(cluster):
    return "buildfarm-%s" % cluster


def usable_addresses(cidr):
    """Addresses an instance can get in a subnet: AWS keeps 5 of every subnet."""
    return max(0, ipaddress.ip_network(cidr).num_addresses - AWS_RESERVED_ADDRESSES)


def _network(value, name):
    try:
        net = ipaddress.ip_network(value, strict=True)
    except (TypeError, ValueError):
        return None, "%s %r is not a valid IPv4 CIDR block: write it like 10.0.0.0/16 (host bits zero)" % (name, value)
    if net.version != 4:
        return None, "%s %r is not IPv4: EC2 VPCs need an IPv4 CIDR block" % (name, value)
    return net, None


def validate(vpc_cidr, subnet_cidr, ssh_cidr, state, min_addresses=0, subnet_id=None, ssh_from_anywhere=False):
    """Error messages for bad network input (empty list when all is well); makes no API call."""
    errors = []
    if subnet_id is not None and not str(subnet_id).startswith("subnet-"):
        errors.append("subnet_id %r is not a subnet id: give one like subnet-0123456789abcdef0" % (subnet_id,))
    vpc, error = _network(vpc_cidr, "vpc_cidr")
    if error:
        errors.append(error)
    elif not 16 <= vpc.prefixlen <= 28:
        errors.append("vpc_cidr %s: AWS allows a VPC netmask between /16 and /28" % vpc_cidr)
    subnet, error = _network(subnet_cidr, "subnet_cidr")
    if error:
        errors.append(error)
    elif not 16 <= subnet.prefixlen <= 28:
        errors.append("subnet_cidr %s: AWS allows a subnet netmask between /16 and /28" % subnet_cidr)
    elif vpc is not None and not subnet.subnet_of(vpc):
        errors.append("subnet_cidr %s is outside vpc_cidr %s: pick a subnet inside the VPC" % (subnet_cidr, vpc_cidr))
    elif min_addresses and usable_addresses(subnet_cidr) < min_addresses:
        errors.append(
            "subnet_cidr %s has %d usable addresses (AWS keeps 5) but min_addresses is %d: use a larger subnet"
            % (subnet_cidr, usable_addresses(subnet_cidr), min_addresses)
        )
    if state == "present":
        if not ssh_cidr:
            errors.append(
                "ssh_cidr is required with state=present: give the CIDR that may reach SSH, e.g. 203.0.113.7/32"
            )
        else:
            net, error = _network(ssh_cidr, "ssh_cidr")
            if error:
                errors.append(error)
            elif net.prefixlen == 0 and not ssh_from_anywhere:
                errors.append(
                    "ssh_cidr %s opens SSH of every node to the whole internet: give the controller's address "
                    "(e.g. 203.0.113.7/32), or set ssh_from_anywhere=true if that is really meant" % ssh_cidr
                )
    return errors


def desired_permissions(group_id, ssh_cidr):
    """The ingress rules of the cluster group: SSH from ``ssh_cidr``, cluster ports from the group itself."""
    perms = [
        {
            "IpProtocol": "tcp",
            "FromPort": SSH_PORT,
            "ToPort": SSH_PORT,
            "IpRanges": [{"CidrIp": ssh_cidr, "Description": "SSH from ssh_cidr"}],
        }
    ]
    for low, high in CLUSTER_PORTS:
        perms.append(
            {
                "IpProtocol": "tcp",
                "FromPort": low,
                "ToPort": high,
                "UserIdGroupPairs": [{"GroupId": group_id, "Description": "cluster members only"}],
            }
        )
    return perms


def _rule_keys(permissions):
    """Flatten IpPermissions into comparable (protocol, from, to, source) tuples."""
    keys = set()
    for perm in permissions:
        base = (perm.get("IpProtocol"), perm.get("FromPort"), perm.get("ToPort"))
        for ip in perm.get("IpRanges", []):
            keys.add(base + ("cidr", ip["CidrIp"]))
        for ip in perm.get("Ipv6Ranges", []):
            keys.add(base + ("cidr6", ip["CidrIpv6"]))
        for pair in perm.get("UserIdGroupPairs", []):
            keys.add(base + ("group", pair["GroupId"]))
        for pl in perm.get("PrefixListIds", []):
            keys.add(base + ("prefix", pl["PrefixListId"]))
    return keys


def _key_to_permission(key):
    protocol, low, high, kind, source = key
    perm = {"IpProtocol": protocol}
    if low is not None:
        perm["FromPort"] = low
        perm["ToPort"] = high
    if kind == "cidr":
        perm["IpRanges"] = [{"CidrIp": source}]
    elif kind == "cidr6":
        perm["Ipv6Ranges"] = [{"CidrIpv6": source}]
    elif kind == "group":
        perm["UserIdGroupPairs"] = [{"GroupId": source}]
    else:
        perm["PrefixListIds"] = [{"PrefixListId": source}]
    return perm


def rule_changes(current, wanted):
    """(to_authorize, to_revoke) as IpPermissions lists, comparing the flattened rules."""
    have, want = _rule_keys(current), _rule_keys(wanted)
    add = [p for p in wanted if _rule_keys([p]) - have]
    revoke = [_key_to_permission(k) for k in sorted(have - want, key=str)]
    return add, revoke


def _one(items, what, cluster):
    if len(items) > 1:
        raise NetworkError(
            "cluster %s has %d %s (%s): remove the extra ones (buildfarm.ec2.sweep) and run again"
            % (cluster, len(items), what, ", ".join(i["id"] for i in items))
        )
    return items[0] if items else None


class NetworkError(Exception):
    """A state of the account that the module cannot converge on its own (message says what to do)."""


def existing_subnet(ec2, subnet_id):
    """The user's subnet ``subnet_id`` as {id, cidr, vpc_id, vpc_cidr, map_public_ip}, or a NetworkError."""
    subnets = paginate(ec2, "describe_subnets", "Subnets", Filters=[{"Name": "subnet-id", "Values": [subnet_id]}])
    if not subnets:
        raise NetworkError("subnet_id %s was not found in this region: give an existing subnet's id" % subnet_id)
    subnet = subnets[0]
    vpcs = paginate(ec2, "describe_vpcs", "Vpcs", Filters=[{"Name": "vpc-id", "Values": [subnet["VpcId"]]}])
    return {
        "id": subnet["SubnetId"],
        "cidr": subnet["CidrBlock"],
        "vpc_id": subnet["VpcId"],
        "vpc_cidr": vpcs[0]["CidrBlock"] if vpcs else None,
        "map_public_ip": bool(subnet.get("MapPublicIpOnLaunch")),
    }


def subnet_route_table(ec2, subnet_id, vpc_id):
    """The route table EC2 applies to ``subnet_id``: its explicit association, else the VPC's main table."""
    tables = paginate(
        ec2, "describe_route_tables", "RouteTables", Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}]
    )
    if not tables:
        tables = paginate(
            ec2,
            "describe_route_tables",
            "RouteTables",
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main", "Values": ["true"]}],
        )
    return tables[0] if tables else None


def egress(ec2, table, vpc_id):
    """How instances behind route table ``table`` reach the internet: (kind, detail).

    kind is ``internet_gateway`` (only with a public IPv4 on the instance), ``nat_gateway``, or ``none`` with
    the reason in detail."""
    route = _default_route(table)
    table_id = (table or {}).get("RouteTableId", "(none)")
    if route is None:
        return "none", "route table %s has no 0.0.0.0/0 route (to an internet gateway or a NAT gateway)" % table_id
    if route.get("State", "active") != "active":
        return "none", "the 0.0.0.0/0 route of route table %s is %s" % (table_id, route.get("State"))
    if route.get("NatGatewayId"):
        nat_id = route["NatGatewayId"]
        nats = paginate(ec2, "describe_nat_gateways", "NatGateways", NatGatewayIds=[nat_id])
        state = nats[0].get("State") if nats else "missing"
        if state != "available":
            return "none", "route table %s sends 0.0.0.0/0 to NAT gateway %s, which is %s" % (table_id, nat_id, state)
        return "nat_gateway", nat_id
    gateway_id = route.get("GatewayId") or ""
    if gateway_id.startswith("igw-"):
        gateways = paginate(
            ec2,
            "describe_internet_gateways",
            "InternetGateways",
            Filters=[{"Name": "internet-gateway-id", "Values": [gateway_id]}],
        )
        attached = [a for g in gateways for a in g.get("Attachments", []) if a.get("VpcId") == vpc_id]
        if not attached or attached[0].get("State", "available") not in ("available", "attached"):
            return "none", "route table %s sends 0.0.0.0/0 to internet gateway %s, which is not attached to %s" % (
                table_id,
                gateway_id,
                vpc_id,
            )
        return "internet_gateway", gateway_id
    target = gateway_id or route.get("TransitGatewayId") or route.get("NetworkInterfaceId") or "another target"
    return "none", "route table %s sends 0.0.0.0/0 to %s, which this collection cannot check" % (table_id, target)


def _find(ec2, cluster, subnet=None):
    found = describe(ec2, cluster)
    if subnet is not None:
        groups = [g for g in found["security_groups"] if g["vpc_id"] == subnet["vpc_id"]]
        return {
            "vpc": {"id": subnet["vpc_id"], "cidr": subnet["vpc_cidr"]},
            "subnet": {"id": subnet["id"], "cidr": subnet["cidr"]},
            "group": _one(groups, "security groups", cluster),
            "route_table": None,
            "internet_gateway": None,
        }
    vpc = _one(found["vpcs"], "VPCs", cluster)
    subnets = [s for s in found["subnets"] if vpc and s["vpc_id"] == vpc["id"]]
    groups = [g for g in found["security_groups"] if vpc and g["vpc_id"] == vpc["id"]]
    tables = [t for t in found["route_tables"] if vpc and t["vpc_id"] == vpc["id"]]
    gateways = [g for g in found["internet_gateways"] if not g["vpc_ids"] or (vpc and vpc["id"] in g["vpc_ids"])]
    return {
        "vpc": vpc,
        "subnet": _one(subnets, "subnets", cluster),
        "group": _one(groups, "security groups", cluster),
        "route_table": _one(tables, "route tables", cluster),
        "internet_gateway": _one(gateways, "internet gateways", cluster),
    }


def _result(found, vpc_cidr, subnet_cidr, way_out=("none", "")):
    def rid(key):
        return found[key]["id"] if found.get(key) else None

    return {
        "egress": way_out[0],
        "egress_detail": way_out[1],
        "public_ip": way_out[0] == "internet_gateway",
        "vpc_id": rid("vpc"),
        "subnet_id": rid("subnet"),
        "security_group_id": rid("group"),
        "internet_gateway_id": rid("internet_gateway"),
        "route_table_id": rid("route_table"),
        "vpc_cidr": found["vpc"]["cidr"] if found.get("vpc") else vpc_cidr,
        "subnet_cidr": found["subnet"]["cidr"] if found.get("subnet") else subnet_cidr,
    }


def _no_egress(subnet_id, detail):
    return NetworkError(
        "the nodes in subnet %s would have no way to the internet (packages could not be installed): %s. Add a "
        "0.0.0.0/0 route to a NAT gateway (or to an attached internet gateway, with public IPs), or set "
        "require_egress=false when the nodes need none" % (subnet_id, detail)
    )


def ensure(ec2, params, check_mode):
    """Converge the network; returns (changed, actions, result ids)."""
    cluster = params["cluster"]
    tags = bf_tags.cluster_tags(
        cluster, role=ROLE, run_id=params.get("run_id"), expires=bf_tags.expires_at(params["lifetime"])
    )
    if params.get("subnet_id"):
        return _ensure_in_subnet(ec2, params, tags, check_mode)
    found = _find(ec2, cluster)
    actions = []
    if found["vpc"] and found["vpc"]["cidr"] != params["vpc_cidr"]:
        raise NetworkError(
            "the VPC %s of cluster %s has CIDR %s, not vpc_cidr %s: a VPC CIDR cannot change; use vpc_cidr=%s or "
            "remove the network first (state=absent)"
            % (found["vpc"]["id"], cluster, found["vpc"]["cidr"], params["vpc_cidr"], found["vpc"]["cidr"])
        )
    if found["subnet"] and found["subnet"]["cidr"] != params["subnet_cidr"]:
        raise NetworkError(
            "the subnet %s of cluster %s has CIDR %s, not subnet_cidr %s: a subnet CIDR cannot change; use "
            "subnet_cidr=%s or remove the network first"
            % (found["subnet"]["id"], cluster, found["subnet"]["cidr"], params["subnet_cidr"], found["subnet"]["cidr"])
        )

    def act(what):
        actions.append(what)
        return not check_mode

    if not found["vpc"] and act("create VPC %s" % params["vpc_cidr"]):
        vpc = ec2.create_vpc(
            aws_retry=True, CidrBlock=params["vpc_cidr"], TagSpecifications=bf_tags.tag_specifications("vpc", tags)
        )["Vpc"]
        found["vpc"] = {"id": vpc["VpcId"], "cidr": vpc["CidrBlock"]}
        ec2.get_waiter("vpc_available").wait(VpcIds=[vpc["VpcId"]])
        ec2.modify_vpc_attribute(aws_retry=True, VpcId=vpc["VpcId"], EnableDnsHostnames={"Value": True})
    vpc_id = found["vpc"]["id"] if found["vpc"] else None

    if not found["subnet"] and act("create subnet %s" % params["subnet_cidr"]):
        kwargs = dict(
            VpcId=vpc_id,
            CidrBlock=params["subnet_cidr"],
            TagSpecifications=bf_tags.tag_specifications("subnet", tags),
        )
        if params.get("availability_zone"):
            kwargs["AvailabilityZone"] = params["availability_zone"]
        subnet = ec2.create_subnet(aws_retry=True, **kwargs)["Subnet"]
        found["subnet"] = {"id": subnet["SubnetId"], "cidr": subnet["CidrBlock"]}
    subnet_id = found["subnet"]["id"] if found["subnet"] else None

    _ensure_group(ec2, params, found, vpc_id, tags, act, check_mode)

    if not found["route_table"] and act("create route table"):
        table = ec2.create_route_table(
            aws_retry=True, VpcId=vpc_id, TagSpecifications=bf_tags.tag_specifications("route-table", tags)
        )["RouteTable"]
        found["route_table"] = {"id": table["RouteTableId"]}
    table = _route_table(ec2, found["route_table"]["id"]) if found["route_table"] else None
    if subnet_id and table is not None:
        associated = [a for a in table.get("Associations", []) if a.get("SubnetId") == subnet_id]
        if not associated and act("associate route table with subnet"):
            ec2.associate_route_table(aws_retry=True, RouteTableId=table["RouteTableId"], SubnetId=subnet_id)

    if params["internet_gateway"]:
        _ensure_gateway(ec2, found, table, tags, act)
    else:
        _remove_gateway(ec2, found, table, act)
    if table is not None and not check_mode:
        way_out = egress(ec2, _route_table(ec2, table["RouteTableId"]), vpc_id)
    elif params["internet_gateway"]:
        way_out = ("internet_gateway", found["internet_gateway"]["id"] if found["internet_gateway"] else "(new)")
    else:
        way_out = ("none", "internet_gateway=false: the cluster's route table has no 0.0.0.0/0 route")
    return bool(actions), actions, _result(found, params["vpc_cidr"], params["subnet_cidr"], way_out)


def _ensure_in_subnet(ec2, params, tags, check_mode):
    """An existing subnet: check its way out first (nothing is made when there is none), then only the
    cluster's security group in its VPC."""
    subnet = existing_subnet(ec2, params["subnet_id"])
    table = subnet_route_table(ec2, subnet["id"], subnet["vpc_id"])
    way_out = egress(ec2, table, subnet["vpc_id"])
    if way_out[0] == "none" and params.get("require_egress"):
        raise _no_egress(subnet["id"], way_out[1])
    found = _find(ec2, params["cluster"], subnet)
    if table is not None:
        found["route_table"] = {"id": table["RouteTableId"]}
    actions = []

    def act(what):
        actions.append(what)
        return not check_mode

    _ensure_group(ec2, params, found, subnet["vpc_id"], tags, act, check_mode)
    return bool(actions), actions, _result(found, subnet["vpc_cidr"], subnet["cidr"], way_out)


def _ensure_group(ec2, params, found, vpc_id, tags, act, check_mode):
    cluster = params["cluster"]
    if not found["group"] and act("create security group %s" % group_name(cluster)):
        group = ec2.create_security_group(
            aws_retry=True,
            GroupName=group_name(cluster),
            Description="buildfarm.ec2 cluster %s" % cluster,
            VpcId=vpc_id,
            TagSpecifications=bf_tags.tag_specifications("security-group", tags),
        )
        found["group"] = {"id": group["GroupId"]}
    if found["group"]:
        _ensure_rules(ec2, found["group"]["id"], params["ssh_cidr"], act)
    elif check_mode:
        actions_count = len(desired_permissions("sg-new", params["ssh_cidr"]))
        act("authorize %d ingress rules" % actions_count)


def _route_table(ec2, table_id):
    tables = paginate(ec2, "describe_route_tables", "RouteTables", RouteTableIds=[table_id])
    return tables[0] if tables else None


def _default_route(table):
    for route in (table or {}).get("Routes", []):
        if route.get("DestinationCidrBlock") == "0.0.0.0/0":
            return route
    return None


def _ensure_gateway(ec2, found, table, tags, act):
    vpc_id = found["vpc"]["id"] if found["vpc"] else None
    gateway = found["internet_gateway"]
    if not gateway and act("create internet gateway"):
        created = ec2.create_internet_gateway(
            aws_retry=True, TagSpecifications=bf_tags.tag_specifications("internet-gateway", tags)
        )["InternetGateway"]
        gateway = found["internet_gateway"] = {"id": created["InternetGatewayId"], "vpc_ids": []}
    if gateway and vpc_id not in gateway["vpc_ids"] and act("attach internet gateway"):
        ec2.attach_internet_gateway(aws_retry=True, InternetGatewayId=gateway["id"], VpcId=vpc_id)
        gateway["vpc_ids"] = [vpc_id]
    route = _default_route(table)
    gateway_id = gateway["id"] if gateway else None
    if route is None or route.get("GatewayId") != gateway_id:
        if act("route 0.0.0.0/0 to the internet gateway") and table is not None:
            if route is None:
                ec2.create_route(
                    aws_retry=True,
                    RouteTableId=table["RouteTableId"],
                    DestinationCidrBlock="0.0.0.0/0",
                    GatewayId=gateway_id,
                )
            else:
                ec2.replace_route(
                    aws_retry=True,
                    RouteTableId=table["RouteTableId"],
                    DestinationCidrBlock="0.0.0.0/0",
                    GatewayId=gateway_id,
                )


def _remove_gateway(ec2, found, table, act):
    if _default_route(table) is not None and act("delete the 0.0.0.0/0 route"):
        ec2.delete_route(aws_retry=True, RouteTableId=table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0")
    gateway = found["internet_gateway"]
    if gateway and act("delete internet gateway %s" % gateway["id"]):
        bf_sweep.delete_resources(ec2, {"internet_gateways": [gateway]}, check_mode=False)
        found["internet_gateway"] = None


def _ensure_rules(ec2, group_id, ssh_cidr, act):
    groups = paginate(ec2, "describe_security_groups", "SecurityGroups", GroupIds=[group_id])
    current = groups[0].get("IpPermissions", []) if groups else []
    add, revoke = rule_changes(current, desired_permissions(group_id, ssh_cidr))
    if revoke and act("revoke %d ingress rules" % len(revoke)):
        ec2.revoke_security_group_ingress(aws_retry=True, GroupId=group_id, IpPermissions=revoke)
    if add and act("authorize %d ingress rules" % len(add)):
        ec2.authorize_security_group_ingress(aws_retry=True, GroupId=group_id, IpPermissions=add)


def remove(ec2, cluster, check_mode):
    """Delete the cluster's network resources in dependency order; returns (changed, deleted by kind)."""
    found = describe(ec2, cluster)
    wanted = {kind: found[kind] for kind in NETWORK_KINDS}
    deleted = bf_sweep.delete_resources(ec2, wanted, check_mode)
    return any(deleted.values()), deleted
