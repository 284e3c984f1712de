# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""EBS volumes of a build cluster, found by cluster tag and name: create, attach, detach, delete, hand off.

A hand-off moves a volume from one instance to another: detach, wait until available (waiter), attach, wait
until in use (waiter) and then until the attachment to the new instance itself says ``attached`` (polled: no
waiter looks at one attachment).
"""

from __future__ import annotations

import re
import time

from ansible_collections.buildfarm.ec2.plugins.module_utils import instances as bf_instances
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from ansible_collections.buildfarm.ec2.plugins.module_utils.aws import paginate

DEVICE_RE = re.compile(r"^/dev/(?:sd|xvd)[b-z]$")
VOLUME_STATES = ["creating", "available", "in-use"]
VOLUME_TYPES = ["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"]


class VolumeError(Exception):
    """A state the module will not resolve on its own (the message says what to do)."""


def serial(volume_id):
    """The serial an NVMe instance shows for the volume: the id without its dash (vol-0abc -> vol0abc)."""
    return volume_id.replace("-", "", 1) if volume_id else None


def nvme_path(volume_id):
    """The stable path of the volume on a Nitro (NVMe) instance, whatever device name the kernel picked."""
    return "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_%s" % serial(volume_id) if volume_id else None


def validate(params):
    """Error messages for bad volume input (empty when fine); pure."""
    errors = []
    if bf_tags.validate_volume_name(params.get("name")):
        errors.append(bf_tags.validate_volume_name(params.get("name")))
    if params.get("size") is not None and not 1 <= params["size"] <= 16384:
        errors.append("size must be 1-16384 GiB, got %d" % params["size"])
    if not DEVICE_RE.match(params.get("device_name") or ""):
        errors.append(
            "device_name %r is invalid: use /dev/sdb../dev/sdz or /dev/xvdb../dev/xvdz (e.g. /dev/sdf)"
            % (params.get("device_name"),)
        )
    if params.get("wait_timeout") is not None and params["wait_timeout"] <= 0:
        errors.append("wait_timeout must be a positive number of seconds")
    return errors


def find(ec2, cluster, name):
    """The cluster's volume called ``name`` (raw boto3 dict) or None."""
    volumes = paginate(
        ec2,
        "describe_volumes",
        "Volumes",
        Filters=bf_tags.filters(
            cluster=cluster,
            extra=[{"Name": "tag:Name", "Values": [name]}, {"Name": "status", "Values": VOLUME_STATES}],
        ),
    )
    if len(volumes) > 1:
        raise VolumeError(
            "cluster %s has %d volumes called %s (%s): delete the extra ones"
            % (cluster, len(volumes), name, ", ".join(v["VolumeId"] for v in volumes))
        )
    return volumes[0] if volumes else None


def get(ec2, volume_id):
    volumes = paginate(ec2, "describe_volumes", "Volumes", Filters=[{"Name": "volume-id", "Values": [volume_id]}])
    return volumes[0] if volumes else None


def instance(ec2, instance_id):
    """The live instance ``instance_id`` (raw) or a VolumeError that says so."""
    found = bf_instances.describe(ec2, instance_ids=[instance_id], states=bf_instances.ATTACHABLE)
    if not found:
        raise VolumeError("instance_id %s does not exist or is terminated: give a live instance" % instance_id)
    return found[0]


def attachment(volume):
    """The volume's current attachment (instance_id, device, state) or None."""
    for item in (volume or {}).get("Attachments", []):
        if item.get("State") in ("attaching", "attached", "busy"):
            return {"instance_id": item["InstanceId"], "device": item["Device"], "state": item["State"]}
    return None


def create(ec2, params, availability_zone, tags):
    volume = ec2.create_volume(
        aws_retry=True,
        AvailabilityZone=availability_zone,
        Size=params["size"],
        VolumeType=params["volume_type"],
        Encrypted=True,
        TagSpecifications=bf_tags.tag_specifications("volume", tags),
    )
    ec2.get_waiter("volume_available").wait(VolumeIds=[volume["VolumeId"]], WaiterConfig=_waiter(params))
    return get(ec2, volume["VolumeId"])


def _waiter(params):
    return {"Delay": 3, "MaxAttempts": max(1, params["wait_timeout"] // 3)}


def detach(ec2, volume, params):
    current = attachment(volume)
    if current is None:
        return volume
    ec2.detach_volume(
        aws_retry=True,
        VolumeId=volume["VolumeId"],
        InstanceId=current["instance_id"],
        Device=current["device"],
        Force=params["force_detach"],
    )
    ec2.get_waiter("volume_available").wait(VolumeIds=[volume["VolumeId"]], WaiterConfig=_waiter(params))
    return get(ec2, volume["VolumeId"])


def attach(ec2, volume, instance_id, params, sleep=time.sleep):
    ec2.attach_volume(aws_retry=True, VolumeId=volume["VolumeId"], InstanceId=instance_id, Device=params["device_name"])
    ec2.get_waiter("volume_in_use").wait(VolumeIds=[volume["VolumeId"]], WaiterConfig=_waiter(params))
    deadline = time.monotonic() + params["wait_timeout"]
    while True:
        current = get(ec2, volume["VolumeId"])
        state = attachment(current)
        if state and state["instance_id"] == instance_id and state["state"] == "attached":
            return current
        if time.monotonic() > deadline:
            raise VolumeError(
                "volume %s did not reach attachment state 'attached' on %s within %ds (now %s)"
                % (volume["VolumeId"], instance_id, params["wait_timeout"], state)
            )
        sleep(2)


def delete(ec2, volume, params):
    ec2.delete_volume(aws_retry=True, VolumeId=volume["VolumeId"])
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[volume["VolumeId"]], WaiterConfig=_waiter(params))


def keep_changes(volume, keep):
    """The tag call needed so the volume's keep tag matches ``keep``: ('set'|'unset'|None)."""
    current = bf_tags.is_kept(volume.get("Tags"))
    if keep and not current:
        return "set"
    if not keep and current:
        return "unset"
    return None


def result(volume, wanted_device=None):
    """The module's return values for ``volume`` (None: it does not exist)."""
    if volume is None:
        return dict(
            volume_id=None,
            serial=None,
            nvme_path=None,
            device=wanted_device,
            state="absent",
            instance_id=None,
            attachment_state=None,
            size=None,
            availability_zone=None,
        )
    current = attachment(volume)
    return dict(
        volume_id=volume["VolumeId"],
        serial=serial(volume["VolumeId"]),
        nvme_path=nvme_path(volume["VolumeId"]),
        device=current["device"] if current else wanted_device,
        state=volume["State"],
        instance_id=current["instance_id"] if current else None,
        attachment_state=current["state"] if current else None,
        size=volume.get("Size"),
        availability_zone=volume.get("AvailabilityZone"),
    )
