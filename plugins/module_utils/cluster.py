# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find every EC2 resource of a cluster by its tags (the base of cluster_info and the sweep)."""

from __future__ import annotations

from ansible_collections.buildfarm.ec2.plugins.module_utils import instances as bf_instances
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from ansible_collections.buildfarm.ec2.plugins.module_utils.aws import paginate


def _summary(item, id_key, **extra):
    fields = bf_tags.parse(item.get("Tags"))
    result = {
        "id": item[id_key],
        "role": fields["role"],
        "run": fields["run"],
        "expires": bf_tags.format_time(fields["expires"]) if fields["expires"] else None,
        "tags": bf_tags.to_dict(item.get("Tags")),
    }
    result.update(extra)
    return result


def describe(ec2, cluster, run_id=None, states=None):
    """A dict of lists: instances, volumes, security_groups, subnets, route_tables, internet_gateways, vpcs,
    key_pairs, each item with id, role, run, expires and tags (tag filters are applied server side); instances
    in ``states`` (default: every state but terminated) as :func:`instances.summary` gives them."""
    tag_filters = bf_tags.filters(cluster=cluster, run_id=run_id)
    instances = [bf_instances.summary(i) for i in bf_instances.describe(ec2, cluster, run_id=run_id, states=states)]
    volumes = [
        _summary(
            v,
            "VolumeId",
            state=v["State"],
            size=v.get("Size"),
            attachments=[{"instance_id": a["InstanceId"], "device": a["Device"]} for a in v.get("Attachments", [])],
        )
        for v in paginate(ec2, "describe_volumes", "Volumes", Filters=tag_filters)
    ]
    groups = [
        _summary(g, "GroupId", name=g.get("GroupName"), vpc_id=g.get("VpcId"))
        for g in paginate(ec2, "describe_security_groups", "SecurityGroups", Filters=tag_filters)
    ]
    subnets = [
        _summary(s, "SubnetId", cidr=s.get("CidrBlock"), vpc_id=s.get("VpcId"))
        for s in paginate(ec2, "describe_subnets", "Subnets", Filters=tag_filters)
    ]
    route_tables = [
        _summary(t, "RouteTableId", vpc_id=t.get("VpcId"))
        for t in paginate(ec2, "describe_route_tables", "RouteTables", Filters=tag_filters)
    ]
    gateways = [
        _summary(g, "InternetGatewayId", vpc_ids=[a["VpcId"] for a in g.get("Attachments", [])])
        for g in paginate(ec2, "describe_internet_gateways", "InternetGateways", Filters=tag_filters)
    ]
    vpcs = [
        _summary(v, "VpcId", cidr=v.get("CidrBlock"))
        for v in paginate(ec2, "describe_vpcs", "Vpcs", Filters=tag_filters)
    ]
    key_pairs = [
        _summary(k, "KeyPairId", name=k.get("KeyName"))
        for k in ec2.describe_key_pairs(aws_retry=True, Filters=tag_filters).get("KeyPairs", [])
    ]
    return {
        "instances": instances,
        "volumes": volumes,
        "security_groups": groups,
        "subnets": subnets,
        "route_tables": route_tables,
        "internet_gateways": gateways,
        "vpcs": vpcs,
        "key_pairs": key_pairs,
    }


def count(resources):
    """The number of resources in a :func:`describe` result."""
    return sum(len(items) for items in resources.values())
