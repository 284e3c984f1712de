# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The instances of a cluster, written once: which states count for what, listing, termination and waiting.

Used by fleet, sweep, volumes and cluster_info. EC2 takes at most 1000 ids per call and its waiters filter on
one ``instance-id`` filter; :data:`CHUNK` keeps every id list well inside both.
"""

from __future__ import annotations

from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from ansible_collections.buildfarm.ec2.plugins.module_utils.aws import DELETE_RETRY, delete_call, is_gone, paginate

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

# Every state but ``terminated``: what still exists, may still bill, and what a sweep must terminate.
EXISTING = ["pending", "running", "shutting-down", "stopping", "stopped"]
# Every state, terminated included (EC2 lists terminated instances for about an hour).
EVERY = EXISTING + ["terminated"]
# What serves the cluster: the fleet counts these against a role's wanted count (a stopping or shutting-down
# instance is on its way out; the cluster's instances terminate when they stop).
SERVING = ["pending", "running"]
# What a volume can be attached to (EC2 attaches to running and stopped instances; pending and stopping ones
# get there).
ATTACHABLE = ["pending", "running", "stopping", "stopped"]

CHUNK = 500


def chunks(ids, size=CHUNK):
    """``ids`` in lists of at most ``size`` (the API's limit per call)."""
    ids = list(ids)
    return [ids[start : start + size] for start in range(0, len(ids), size)]


def summary(instance):
    """The collection's view of one ``DescribeInstances`` instance (the fleet and cluster_info return these)."""
    fields = bf_tags.parse(instance.get("Tags"))
    launch = instance.get("LaunchTime")
    return {
        "id": instance["InstanceId"],
        "role": fields["role"],
        "run": fields["run"],
        "expires": bf_tags.format_time(fields["expires"]) if fields["expires"] else None,
        "tags": bf_tags.to_dict(instance.get("Tags")),
        "state": instance["State"]["Name"],
        "type": instance.get("InstanceType"),
        "private_ip": instance.get("PrivateIpAddress"),
        "public_ip": instance.get("PublicIpAddress"),
        "private_dns": instance.get("PrivateDnsName") or None,
        "public_dns": instance.get("PublicDnsName") or None,
        "launch_time": launch.isoformat() if hasattr(launch, "isoformat") else launch,
        "spot": instance.get("InstanceLifecycle") == "spot",
        "subnet_id": instance.get("SubnetId"),
        "vpc_id": instance.get("VpcId"),
        "availability_zone": instance.get("Placement", {}).get("AvailabilityZone"),
    }


def describe(ec2, cluster=None, roles=None, run_id=None, states=None, instance_ids=None):
    """Instances of ``cluster`` (every cluster's when None; optionally some roles, a run, some ids) in ``states``
    (default :data:`EXISTING`) as raw boto3 dicts; every filter is applied server side. Ids alone select those
    instances whatever their tags."""
    extra = [{"Name": "instance-state-name", "Values": list(states or EXISTING)}]
    if instance_ids:
        extra.append({"Name": "instance-id", "Values": list(instance_ids)})
    if instance_ids and cluster is None and roles is None and run_id is None:
        tag_filters = extra  # by id (e.g. a volume's target): any instance, not necessarily a cluster's
    else:
        tag_filters = bf_tags.filters(cluster=cluster, role=roles, run_id=run_id, extra=extra)
    reservations = paginate(ec2, "describe_instances", "Reservations", Filters=tag_filters)
    return [i for r in reservations for i in r["Instances"]]


def find(ec2, cluster=None, roles=None, run_id=None, states=None, instance_ids=None):
    """:func:`describe` as summaries, sorted by role, launch time and id."""
    found = [summary(i) for i in describe(ec2, cluster, roles, run_id, states, instance_ids)]
    return sorted(found, key=lambda i: (i["role"] or "", i["launch_time"] or "", i["id"]))


def by_role(instances):
    """Summaries grouped by their role tag."""
    grouped = {}
    for instance in instances:
        grouped.setdefault(instance["role"], []).append(instance)
    return grouped


def terminate(ec2, instance_ids, wait):
    """Terminate ``instance_ids`` (already-gone ones are success) and, with ``wait``, wait until they are
    terminated. Returns the ids asked to terminate."""
    ids = list(instance_ids)
    for chunk in chunks(ids):
        try:
            DELETE_RETRY(ec2.terminate_instances)(InstanceIds=chunk)
        except botocore.exceptions.ClientError as e:
            if not is_gone(e):
                raise
            for instance_id in chunk:  # one of them is gone: terminate the rest one by one
                delete_call(ec2.terminate_instances, InstanceIds=[instance_id])
    if wait and ids:
        wait_for(ec2, "instance_terminated", ids)
    return ids


# Seconds between a waiter's DescribeInstances calls: an instance is pending or shutting down for some 5-30 s, and
# every second waited past the change is a second of the run; one call per 2 s is far below EC2's request limits.
WAIT_DELAY = 2


def wait_for(ec2, waiter, instance_ids, delay=WAIT_DELAY, max_attempts=300):
    """botocore's instance waiter ``waiter`` (instance_running, instance_terminated, ...) over ``instance_ids``."""
    for chunk in chunks(instance_ids):
        ec2.get_waiter(waiter).wait(
            Filters=[{"Name": "instance-id", "Values": chunk}],
            WaiterConfig={"Delay": delay, "MaxAttempts": max_attempts},
        )
