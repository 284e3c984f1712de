# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delete what a cluster owns, in dependency order, treating already-gone as success.

Order: instances (wait terminated), volumes, key pairs, security groups (cross references revoked first),
subnets, route tables (disassociated first), internet gateways (detached first), VPCs. The selection helpers
are pure; :func:`delete_resources` is shared with the network module's ``state=absent``.
"""

from __future__ import annotations

from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from ansible_collections.buildfarm.ec2.plugins.module_utils.aws import paginate

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

KINDS = [
    "instances",
    "volumes",
    "key_pairs",
    "security_groups",
    "subnets",
    "route_tables",
    "internet_gateways",
    "vpcs",
]
TAG_KEEP = bf_tags.PREFIX + "keep"

# A delete whose target is already gone has done its job.
GONE_CODES = {
    "InvalidInstanceID.NotFound",
    "InvalidVolume.NotFound",
    "InvalidKeyPair.NotFound",
    "InvalidGroup.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidAssociationID.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidVpcID.NotFound",
    "InvalidAttachment.NotFound",
    "Gateway.NotAttached",
    "InvalidPermission.NotFound",
}

# Deletes retry throttling and the dependencies AWS releases a little after an instance is gone (ENIs), but
# not NotFound: the shared RETRY treats NotFound as eventual consistency, which would make a gone resource slow.
DELETE_RETRY = AWSRetry.jittered_backoff(
    retries=10, delay=2, max_delay=30, catch_extra_error_codes=["DependencyViolation", "VolumeInUse"]
)


def is_gone(error):
    """True when a botocore ClientError says the resource no longer exists."""
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
    return code in GONE_CODES


def empty():
    return {kind: [] for kind in KINDS}


def is_kept(item):
    return str(item.get("tags", {}).get(TAG_KEEP, "")).lower() in ("true", "yes", "1")


def expired_clusters(resources, now=None):
    """Cluster names whose every ``buildfarm:expires`` tag has passed (a cluster without one never expires)."""
    latest = {}
    for items in resources.values():
        for item in items:
            cluster = item.get("tags", {}).get(bf_tags.TAG_CLUSTER)
            if not cluster:
                continue
            expired = bf_tags.is_expired(item.get("tags"), now=now)
            has_expiry = bf_tags.parse(item.get("tags"))["expires"] is not None
            state = latest.setdefault(cluster, {"any": False, "all": True})
            if has_expiry:
                state["any"] = True
                state["all"] = state["all"] and expired
    return sorted(name for name, state in latest.items() if state["any"] and state["all"])


def select(resources, clusters=None, delete_kept=False):
    """The resources to delete (only ``clusters`` when given) and the kept volumes left alone."""
    chosen, kept = empty(), []
    for kind in KINDS:
        for item in resources.get(kind, []):
            cluster = item.get("tags", {}).get(bf_tags.TAG_CLUSTER)
            if clusters is not None and cluster not in clusters:
                continue
            if kind == "volumes" and not delete_kept and is_kept(item):
                kept.append(item["id"])
                continue
            chosen[kind].append(item)
    return chosen, kept


def _call(method, **kwargs):
    """Run a deleting call; False when the target was already gone."""
    try:
        DELETE_RETRY(method)(**kwargs)
    except botocore.exceptions.ClientError as e:
        if is_gone(e):
            return False
        raise
    return True


def _terminate(ec2, instances, wait):
    ids = [i["id"] for i in instances if i.get("state") != "terminated"]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        try:
            DELETE_RETRY(ec2.terminate_instances)(InstanceIds=chunk)
        except botocore.exceptions.ClientError as e:
            if not is_gone(e):
                raise
            for instance_id in chunk:  # one of them is gone: terminate the rest one by one
                _call(ec2.terminate_instances, InstanceIds=[instance_id])
        if wait:
            wait_terminated(ec2, chunk)
    return ids


def wait_terminated(ec2, instance_ids, delay=5, max_attempts=120):
    """botocore's instance_terminated waiter over ``instance_ids`` (in chunks the API accepts)."""
    for start in range(0, len(instance_ids), 500):
        chunk = instance_ids[start : start + 500]
        ec2.get_waiter("instance_terminated").wait(
            Filters=[{"Name": "instance-id", "Values": chunk}],
            WaiterConfig={"Delay": delay, "MaxAttempts": max_attempts},
        )


def _delete_volumes(ec2, volumes, wait):
    deleted = []
    if not volumes:
        return deleted
    ids = [v["id"] for v in volumes]
    current = paginate(ec2, "describe_volumes", "Volumes", Filters=[{"Name": "volume-id", "Values": ids}])
    for volume in current:
        volume_id = volume["VolumeId"]
        for attachment in volume.get("Attachments", []):
            if attachment.get("State") in ("attached", "attaching"):
                _call(ec2.detach_volume, VolumeId=volume_id, InstanceId=attachment["InstanceId"], Force=True)
        if volume.get("Attachments") and wait:
            ec2.get_waiter("volume_available").wait(VolumeIds=[volume_id], WaiterConfig={"Delay": 5, "MaxAttempts": 60})
        if volume["State"] != "deleting" and _call(ec2.delete_volume, VolumeId=volume_id):
            deleted.append(volume_id)
    return deleted


def _revoke_cross_references(ec2, groups):
    ids = {g["id"] for g in groups}
    current = paginate(
        ec2, "describe_security_groups", "SecurityGroups", Filters=[{"Name": "group-id", "Values": sorted(ids)}]
    )
    for group in current:
        for direction, method in (
            ("IpPermissions", ec2.revoke_security_group_ingress),
            ("IpPermissionsEgress", ec2.revoke_security_group_egress),
        ):
            refs = []
            for perm in group.get(direction, []):
                pairs = [p for p in perm.get("UserIdGroupPairs", []) if p.get("GroupId") in ids]
                if pairs:
                    ref = {k: v for k, v in perm.items() if k in ("IpProtocol", "FromPort", "ToPort")}
                    ref["UserIdGroupPairs"] = [{"GroupId": p["GroupId"]} for p in pairs]
                    refs.append(ref)
            if refs:
                _call(method, GroupId=group["GroupId"], IpPermissions=refs)


def _delete_route_table(ec2, table_id):
    tables = paginate(
        ec2, "describe_route_tables", "RouteTables", Filters=[{"Name": "route-table-id", "Values": [table_id]}]
    )
    if not tables:
        return False
    associations = tables[0].get("Associations", [])
    if any(a.get("Main") for a in associations):
        return False  # the VPC's main table goes with the VPC
    for association in associations:
        _call(ec2.disassociate_route_table, AssociationId=association["RouteTableAssociationId"])
    return _call(ec2.delete_route_table, RouteTableId=table_id)


def _delete_gateway(ec2, gateway):
    gateways = paginate(
        ec2,
        "describe_internet_gateways",
        "InternetGateways",
        Filters=[{"Name": "internet-gateway-id", "Values": [gateway["id"]]}],
    )
    if not gateways:
        return False
    for attachment in gateways[0].get("Attachments", []):
        _call(ec2.detach_internet_gateway, InternetGatewayId=gateway["id"], VpcId=attachment["VpcId"])
    return _call(ec2.delete_internet_gateway, InternetGatewayId=gateway["id"])


def delete_resources(ec2, resources, check_mode, wait=True):
    """Delete ``resources`` (a :func:`cluster.describe`-shaped dict) in dependency order.

    Returns the ids deleted by kind; in check mode the ids that would be deleted, and nothing is called.
    """
    deleted = empty()
    if check_mode:
        for kind in KINDS:
            deleted[kind] = [item["id"] for item in resources.get(kind, [])]
        return deleted
    if resources.get("instances"):
        deleted["instances"] = _terminate(ec2, resources["instances"], wait)
    deleted["volumes"] = _delete_volumes(ec2, resources.get("volumes", []), wait)
    for pair in resources.get("key_pairs", []):
        if _call(ec2.delete_key_pair, KeyName=pair["name"]):
            deleted["key_pairs"].append(pair["id"])
    if resources.get("security_groups"):
        _revoke_cross_references(ec2, resources["security_groups"])
    for group in resources.get("security_groups", []):
        if _call(ec2.delete_security_group, GroupId=group["id"]):
            deleted["security_groups"].append(group["id"])
    for subnet in resources.get("subnets", []):
        if _call(ec2.delete_subnet, SubnetId=subnet["id"]):
            deleted["subnets"].append(subnet["id"])
    for table in resources.get("route_tables", []):
        if _delete_route_table(ec2, table["id"]):
            deleted["route_tables"].append(table["id"])
    for gateway in resources.get("internet_gateways", []):
        if _delete_gateway(ec2, gateway):
            deleted["internet_gateways"].append(gateway["id"])
    for vpc in resources.get("vpcs", []):
        if _call(ec2.delete_vpc, VpcId=vpc["id"]):
            deleted["vpcs"].append(vpc["id"])
    return deleted


def count(deleted):
    return sum(len(ids) for ids in deleted.values())
