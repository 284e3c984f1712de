#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: volume
short_description: Create, attach, detach, hand off and delete an EBS volume of a build cluster
version_added: 1.0.0
description:
  - Manages one EBS volume, found by the cluster tag and its C(Name) tag (O(name)); never by name alone.
  - V(handed_off) moves the volume to O(instance_id) from wherever it is attached (for example a workspace volume
    going from a small always-on instance to a big build instance and back). It detaches, waits until the volume
    is C(available), attaches, waits until it is C(in-use) and then until the attachment to the new instance
    itself is C(attached).
  - Nitro instances show EBS volumes as NVMe devices whose names do not follow O(device_name); find the volume
    on the instance by RV(serial), or the path RV(nvme_path).
  - New volumes are encrypted and carry the cluster tags; O(keep=true) adds C(buildfarm:keep=true) so that
    C(buildfarm.ec2.sweep) leaves the volume alone unless told otherwise.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  name:
    description:
      - Name of the volume inside the cluster (its C(Name) tag). 1-63 letters, digits, C(.), C(_) or C(-).
    type: str
    required: true
  state:
    description:
      - V(present) the volume exists (attachment left as it is).
      - V(attached) the volume is attached to O(instance_id); a volume attached to another instance is an error.
      - V(handed_off) the volume is attached to O(instance_id), moved from its current instance if needed.
      - V(detached) the volume exists and is attached to nothing.
      - V(absent) the volume is detached and deleted.
    type: str
    choices: [present, attached, handed_off, detached, absent]
    default: present
  size:
    description:
      - Size in GiB of a new volume (1-16384). Required when the volume must be created.
    type: int
  volume_type:
    description:
      - EBS type of a new volume.
    type: str
    choices: [gp3, gp2, io1, io2, st1, sc1, standard]
    default: gp3
  availability_zone:
    description:
      - Availability zone of a new volume. Defaults to the zone of O(instance_id).
    type: str
  instance_id:
    description:
      - Instance to attach to. Required with O(state=attached) and O(state=handed_off).
    type: str
  from_instance_id:
    description:
      - With O(state=handed_off), the instance the volume is expected on; a volume attached to a third instance is
        then refused instead of moved.
    type: str
  device_name:
    description:
      - Device name for the attachment (C(/dev/sdb) to C(/dev/sdz) or C(/dev/xvdb) to C(/dev/xvdz)).
    type: str
    default: /dev/sdf
  force_detach:
    description:
      - Force the detach (as after an instance failure). Data not yet written may be lost.
    type: bool
    default: false
  keep:
    description:
      - Tag the volume C(buildfarm:keep=true) so that C(buildfarm.ec2.sweep) does not delete it.
    type: bool
    default: false
  role:
    description:
      - Value of the C(buildfarm:role) tag of a new volume.
    type: str
    default: volume
  wait_timeout:
    description:
      - Seconds each wait (available, in use, attached, deleted) may take.
    type: int
    default: 300
extends_documentation_fragment:
  - buildfarm.ec2.cluster
  - buildfarm.ec2.lifetime
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Workspace volume on the always-on host
  buildfarm.ec2.volume:
    cluster: demo
    region: eu-west-1
    name: workspace
    size: 100
    state: attached
    instance_id: "{{ host_id }}"
  register: workspace

- name: Hand the workspace to the build instance
  buildfarm.ec2.volume:
    cluster: demo
    region: eu-west-1
    name: workspace
    state: handed_off
    from_instance_id: "{{ host_id }}"
    instance_id: "{{ builder_id }}"
  register: moved

- name: Find it on the (NVMe) build instance
  ansible.builtin.debug:
    msg: "the workspace is {{ moved.nvme_path }}"

- name: Delete it
  buildfarm.ec2.volume:
    cluster: demo
    region: eu-west-1
    name: workspace
    state: absent
"""

RETURN = r"""
volume_id:
  description: Id of the volume (null when it does not exist, or in check mode before it is created).
  returned: always
  type: str
  sample: vol-0123456789abcdef0
serial:
  description: The volume id without its dash, the serial number by which an NVMe instance shows the volume.
  returned: always
  type: str
  sample: vol0123456789abcdef0
nvme_path:
  description: The stable device path of the volume on a Nitro (NVMe) instance.
  returned: always
  type: str
  sample: /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0
device:
  description: Device name of the attachment (the requested O(device_name) when not attached).
  returned: always
  type: str
  sample: /dev/sdf
state:
  description: Volume state (C(available), C(in-use), or C(absent) when it does not exist).
  returned: always
  type: str
  sample: in-use
instance_id:
  description: Instance the volume is attached to, or null.
  returned: always
  type: str
  sample: i-0123456789abcdef0
attachment_state:
  description: State of the attachment (C(attached) after an attach or hand-off), or null.
  returned: always
  type: str
  sample: attached
size:
  description: Size in GiB.
  returned: always
  type: int
  sample: 100
availability_zone:
  description: Availability zone of the volume.
  returned: always
  type: str
  sample: eu-west-1a
actions:
  description: What was done (would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: ["detach from i-0123456789abcdef0", "attach to i-0fedcba9876543210 as /dev/sdf"]
"""

from ansible_collections.buildfarm.ec2.plugins.module_utils import aws
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from ansible_collections.buildfarm.ec2.plugins.module_utils import volumes as bf_volumes

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule


def _plan(params, volume, target):
    """The actions needed (list of (verb, argument)); raises VolumeError for states it will not resolve."""
    state = params["state"]
    name = params["name"]
    instance_id = params["instance_id"]
    actions = []
    if state == "absent":
        if volume is not None:
            current = bf_volumes.attachment(volume)
            if current:
                actions.append(("detach", current["instance_id"]))
            actions.append(("delete", volume["VolumeId"]))
        return actions
    target_zone = target["Placement"]["AvailabilityZone"] if target else None
    if volume is None:
        if state in ("handed_off", "detached"):
            raise bf_volumes.VolumeError(
                "volume %s does not exist in cluster %s: create it first (state=present or state=attached)"
                % (name, params["cluster"])
            )
        if params["size"] is None:
            raise bf_volumes.VolumeError("size is required to create volume %s: give its size in GiB" % name)
        zone = params["availability_zone"] or target_zone
        if not zone:
            raise bf_volumes.VolumeError("availability_zone or instance_id is required to create volume %s" % name)
        if target_zone and zone != target_zone:
            raise bf_volumes.VolumeError(
                "availability_zone %s differs from the zone %s of instance %s: a volume attaches only in its zone"
                % (zone, target_zone, instance_id)
            )
        actions.append(("create", zone))
        current = None
    else:
        if target_zone and target_zone != volume["AvailabilityZone"]:
            raise bf_volumes.VolumeError(
                "volume %s (%s) is in %s but instance %s is in %s: a volume attaches only in its own zone"
                % (name, volume["VolumeId"], volume["AvailabilityZone"], instance_id, target_zone)
            )
        change = bf_volumes.keep_changes(volume, params["keep"])
        if change:
            actions.append(("keep", change))
        current = bf_volumes.attachment(volume)
    if state == "attached":
        if current and current["instance_id"] != instance_id:
            raise bf_volumes.VolumeError(
                "volume %s is attached to %s, not %s: use state=handed_off to move it"
                % (name, current["instance_id"], instance_id)
            )
        if not current:
            actions.append(("attach", instance_id))
    elif state == "handed_off":
        if (
            current
            and params["from_instance_id"]
            and current["instance_id"]
            not in (
                params["from_instance_id"],
                instance_id,
            )
        ):
            raise bf_volumes.VolumeError(
                "volume %s is attached to %s, neither from_instance_id %s nor instance_id %s: not moving it"
                % (name, current["instance_id"], params["from_instance_id"], instance_id)
            )
        if current and current["instance_id"] != instance_id:
            actions.append(("detach", current["instance_id"]))
            current = None
        if not current:
            actions.append(("attach", instance_id))
    elif state == "detached" and current:
        actions.append(("detach", current["instance_id"]))
    return actions


def _describe(verb, argument, params):
    if verb == "attach":
        return "attach to %s as %s" % (argument, params["device_name"])
    if verb == "keep":
        return "%s tag %s" % (argument, bf_tags.TAG_KEEP)
    if verb == "create":
        return "create %d GiB %s volume in %s" % (params["size"], params["volume_type"], argument)
    return "%s %s" % ("detach from" if verb == "detach" else verb, argument)


def _apply(ec2, params, volume, actions):
    for verb, argument in actions:
        if verb == "create":
            tags = bf_tags.cluster_tags(
                params["cluster"],
                role=params["role"],
                run_id=params["run_id"],
                expires=bf_tags.expires_at(params["lifetime"]),
                extra={"Name": params["name"]},
            )
            if params["keep"]:
                tags[bf_tags.TAG_KEEP] = "true"
            volume = bf_volumes.create(ec2, params, argument, tags)
        elif verb == "keep":
            if argument == "set":
                ec2.create_tags(
                    aws_retry=True, Resources=[volume["VolumeId"]], Tags=[{"Key": bf_tags.TAG_KEEP, "Value": "true"}]
                )
            else:
                ec2.delete_tags(aws_retry=True, Resources=[volume["VolumeId"]], Tags=[{"Key": bf_tags.TAG_KEEP}])
        elif verb == "detach":
            volume = bf_volumes.detach(ec2, volume, params)
        elif verb == "attach":
            volume = bf_volumes.attach(ec2, volume, argument, params)
        elif verb == "delete":
            bf_volumes.delete(ec2, volume, params)
            volume = None
    return volume


def _predict(params, volume, actions):
    """The return values after ``actions`` without making them (check mode)."""
    predicted = bf_volumes.result(volume, params["device_name"])
    for verb, argument in actions:
        if verb == "create":
            predicted.update(state="available", size=params["size"], availability_zone=argument)
        elif verb == "detach":
            predicted.update(state="available", instance_id=None, attachment_state=None, device=params["device_name"])
        elif verb == "attach":
            predicted.update(
                state="in-use", instance_id=argument, attachment_state="attached", device=params["device_name"]
            )
        elif verb == "delete":
            predicted = bf_volumes.result(None, params["device_name"])
    return predicted


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "attached", "handed_off", "detached", "absent"]),
        size=dict(type="int"),
        volume_type=dict(type="str", default="gp3", choices=bf_volumes.VOLUME_TYPES),
        availability_zone=dict(type="str"),
        instance_id=dict(type="str"),
        from_instance_id=dict(type="str"),
        device_name=dict(type="str", default="/dev/sdf"),
        force_detach=dict(type="bool", default=False),
        keep=dict(type="bool", default=False),
        role=dict(type="str", default="volume"),
        wait_timeout=dict(type="int", default=300),
    )
    module = aws.new_module(
        argument_spec,
        lifetime=True,
        required_if=[
            ("state", "attached", ["instance_id"]),
            ("state", "handed_off", ["instance_id"]),
        ],
    )
    params = module.params
    errors = bf_volumes.validate(params)
    if bf_tags.validate_role_name(params["role"]):
        errors.append(bf_tags.validate_role_name(params["role"]))
    if errors:
        module.fail_json(msg="; ".join(errors))

    ec2 = aws.client(module, "ec2")
    try:
        volume = bf_volumes.find(ec2, params["cluster"], params["name"])
        target = bf_volumes.instance(ec2, params["instance_id"]) if params["instance_id"] else None
        actions = _plan(params, volume, target)
        if module.check_mode:
            result = _predict(params, volume, actions)
        else:
            volume = _apply(ec2, params, volume, actions)
            result = bf_volumes.result(volume, params["device_name"])
    except bf_volumes.VolumeError as e:
        module.fail_json(msg=str(e))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg="Failed to manage volume %s of cluster %s" % (params["name"], params["cluster"]))
    module.exit_json(changed=bool(actions), actions=[_describe(v, a, params) for v, a in actions], **result)


if __name__ == "__main__":
    main()
