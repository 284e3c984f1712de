# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delete what a cluster owns, in dependency order, treating already-gone as success.

Order: instances (wait terminated), the instance profiles and roles (:func:`iam.delete`), volumes, key pairs,
security groups (cross references revoked first), subnets, route tables (disassociated first), internet gateways
(detached first), VPCs. The selection helpers
are pure; :func:`delete_resources` is shared with the network module's ``state=absent``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ansible_collections.buildfarm.ec2.plugins.module_utils import iam as bf_iam
from ansible_collections.buildfarm.ec2.plugins.module_utils import instances as bf_instances
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from ansible_collections.buildfarm.ec2.plugins.module_utils.aws import delete_call, paginate

KINDS = [
    "instances",
    "instance_profiles",
    "roles",
    "volumes",
    "key_pairs",
    "security_groups",
    "subnets",
    "route_tables",
    "internet_gateways",
    "vpcs",
]


# Instances that are gone or on their way: no longer a sign of a live cluster.
GONE_STATES = ("shutting-down", "terminated")


def empty():
    return {kind: [] for kind in KINDS}


def expired_clusters(resources, now=None):
    """Cluster names an expired-only sweep deletes: those whose every ``buildfarm:expires`` tag has passed (a
    cluster without one never expires that way), and those whose heartbeat lease lapsed: every
    ``buildfarm:lease`` tag has passed and no instance is left (all terminated or shutting down). Terminated
    instances (when ``resources`` lists them) count only as lease evidence."""
    now = now or datetime.now(timezone.utc)
    latest = {}
    for kind, items in resources.items():
        for item in items:
            cluster = item.get("tags", {}).get(bf_tags.TAG_CLUSTER)
            if not cluster:
                continue
            state = latest.setdefault(cluster, {"any": False, "all": True, "leases": [], "live": False})
            lease = bf_tags.parse_time(item["tags"].get(bf_tags.TAG_LEASE))
            if lease is not None:
                state["leases"].append(lease)
            if kind == "instances" and item.get("state") in GONE_STATES:
                continue
            state["live"] = state["live"] or kind == "instances"
            if bf_tags.parse(item.get("tags"))["expires"] is not None:
                state["any"] = True
                state["all"] = state["all"] and bf_tags.is_expired(item.get("tags"), now=now)
    return sorted(
        name
        for name, state in latest.items()
        if (state["any"] and state["all"]) or (state["leases"] and max(state["leases"]) <= now and not state["live"])
    )


def select(resources, clusters=None, delete_kept=False):
    """The resources to delete (only ``clusters`` when given) and the kept volumes left alone."""
    chosen, kept = empty(), []
    for kind in KINDS:
        for item in resources.get(kind, []):
            cluster = item.get("tags", {}).get(bf_tags.TAG_CLUSTER)
            if clusters is not None and cluster not in clusters:
                continue
            if kind == "volumes" and not delete_kept and bf_tags.is_kept(item.get("tags")):
                kept.append(item["id"])
                continue
            chosen[kind].append(item)
    return chosen, kept


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
                delete_call(ec2.detach_volume, VolumeId=volume_id, InstanceId=attachment["InstanceId"], Force=True)
        if volume.get("Attachments") and wait:
            ec2.get_waiter("volume_available").wait(VolumeIds=[volume_id], WaiterConfig={"Delay": 5, "MaxAttempts": 60})
        if volume["State"] != "deleting" and delete_call(ec2.delete_volume, VolumeId=volume_id):
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
                delete_call(method, GroupId=group["GroupId"], IpPermissions=refs)


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
        delete_call(ec2.disassociate_route_table, AssociationId=association["RouteTableAssociationId"])
    return delete_call(ec2.delete_route_table, RouteTableId=table_id)


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
        delete_call(ec2.detach_internet_gateway, InternetGatewayId=gateway["id"], VpcId=attachment["VpcId"])
    return delete_call(ec2.delete_internet_gateway, InternetGatewayId=gateway["id"])


def delete_resources(ec2, resources, check_mode, wait=True, iam=None):
    """Delete ``resources`` (a :func:`cluster.describe`-shaped dict, with :func:`iam.describe`'s kinds when ``iam``,
    the IAM client, is given) in dependency order.

    Returns the ids deleted by kind; in check mode the ids that would be deleted, and nothing is called.
    """
    deleted = empty()
    if check_mode:
        for kind in KINDS:
            deleted[kind] = [item["id"] for item in resources.get(kind, [])]
        return deleted
    if resources.get("instances"):
        live = [i["id"] for i in resources["instances"] if i.get("state") != "terminated"]
        deleted["instances"] = bf_instances.terminate(ec2, live, wait)
    if iam is not None and (resources.get("instance_profiles") or resources.get("roles")):
        deleted["instance_profiles"], deleted["roles"] = bf_iam.delete(
            iam,
            [p["id"] for p in resources.get("instance_profiles", [])],
            [r["id"] for r in resources.get("roles", [])],
        )
    deleted["volumes"] = _delete_volumes(ec2, resources.get("volumes", []), wait)
    for pair in resources.get("key_pairs", []):
        if delete_call(ec2.delete_key_pair, KeyName=pair["name"]):
            deleted["key_pairs"].append(pair["id"])
    if resources.get("security_groups"):
        _revoke_cross_references(ec2, resources["security_groups"])
    for group in resources.get("security_groups", []):
        if delete_call(ec2.delete_security_group, GroupId=group["id"]):
            deleted["security_groups"].append(group["id"])
    for subnet in resources.get("subnets", []):
        if delete_call(ec2.delete_subnet, SubnetId=subnet["id"]):
            deleted["subnets"].append(subnet["id"])
    for table in resources.get("route_tables", []):
        if _delete_route_table(ec2, table["id"]):
            deleted["route_tables"].append(table["id"])
    for gateway in resources.get("internet_gateways", []):
        if _delete_gateway(ec2, gateway):
            deleted["internet_gateways"].append(gateway["id"])
    for vpc in resources.get("vpcs", []):
        if delete_call(ec2.delete_vpc, VpcId=vpc["id"]):
            deleted["vpcs"].append(vpc["id"])
    return deleted


def delete_images(ec2, images):
    """Deregister baked images (:func:`images.summary` dicts), then delete their snapshots (EC2 refuses to delete
    the snapshot of a registered image). Returns the ids deregistered and the snapshot ids deleted."""
    deregistered, snapshots = [], []
    for image in images:
        if delete_call(ec2.deregister_image, ImageId=image["id"]):
            deregistered.append(image["id"])
        for snapshot_id in image.get("snapshots", []):
            if delete_call(ec2.delete_snapshot, SnapshotId=snapshot_id):
                snapshots.append(snapshot_id)
    return deregistered, snapshots


def count(deleted):
    return sum(len(ids) for ids in deleted.values())
