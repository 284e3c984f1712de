#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image
short_description: Make a baked image of a configured node, or remove a cluster's superseded images
version_added: 1.2.0
description:
  - O(state=present) creates an AMI of O(instance_id) (CreateImage), tagged, with its snapshot, in the call with the
    cluster's tags (C(buildfarm:cluster), C(buildfarm:role=image), C(buildfarm:run); no C(buildfarm:expires), as an
    image outlives its run), C(buildfarm:recipe) (O(recipe)) and C(buildfarm:base-image) (O(base_image_id)), and
    waits until it is C(available). Its name is C(buildfarm-<cluster>-<recipe>-<run_id>); an image of that name
    is not made twice.
  - O(state=absent) keeps the newest O(keep) images of the cluster and deregisters the rest, then deletes their
    snapshots (EC2 refuses to delete the snapshot of a registered image). Images without C(buildfarm:recipe) are
    never touched.
  - M(buildfarm.ec2.image_info) finds the images of a recipe; C(playbooks/bake.yml) uses both.
  - Check mode says what would be created or removed and calls nothing that changes.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  run_id:
    description:
      - The run that makes the image (C(buildfarm:run), part of the name). Required with O(state=present).
    type: str
  state:
    description:
      - V(present) makes the image, V(absent) removes the superseded ones.
    type: str
    choices: [present, absent]
    default: present
  instance_id:
    description:
      - The configured (and cleaned) instance to image. Required with O(state=present).
    type: str
  recipe:
    description:
      - The recipe hash (the C(buildfarm.ec2.image_recipe) filter). Required with O(state=present).
    type: str
  base_image_id:
    description:
      - The AMI the node was launched from. Required with O(state=present).
    type: str
  no_reboot:
    description:
      - Image the running instance without EC2's shutdown and reboot (the node was cleaned and synced first).
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait until the new image is available.
    type: int
    default: 1800
  keep:
    description:
      - With O(state=absent), how many of the cluster's newest images stay.
    type: int
    default: 0
extends_documentation_fragment:
  - buildfarm.ec2.cluster
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Image the configured node
  buildfarm.ec2.image:
    cluster: bake
    run_id: "20261202-1"
    instance_id: i-0123456789abcdef0
    recipe: 0123456789abcdef
    base_image_id: ami-0123456789abcdef0
  register: baked

- name: Keep the newest two images of cluster bake
  buildfarm.ec2.image:
    cluster: bake
    state: absent
    keep: 2
"""

RETURN = r"""
image:
  description: The image made (or found by its name) with O(state=present).
  returned: state=present
  type: dict
  sample:
    id: ami-0123456789abcdef0
    name: buildfarm-bake-0123456789abcdef-20261202-1
    state: available
    created: "2026-12-02T08:00:00.000Z"
    recipe: 0123456789abcdef
    cluster: bake
    snapshots: [snap-0123456789abcdef0]
    tags: {"buildfarm:cluster": bake, "buildfarm:recipe": 0123456789abcdef}
deregistered:
  description: The images removed with O(state=absent) (would be, in check mode).
  returned: state=absent
  type: list
  elements: str
  sample: [ami-0123456789abcdef1]
snapshots:
  description: Their snapshots deleted.
  returned: state=absent
  type: list
  elements: str
  sample: [snap-0123456789abcdef1]
kept:
  description: The images that stay.
  returned: state=absent
  type: list
  elements: str
  sample: [ami-0123456789abcdef0]
"""

from ansible_collections.buildfarm.ec2.plugins.module_utils import aws
from ansible_collections.buildfarm.ec2.plugins.module_utils import images as bf_images
from ansible_collections.buildfarm.ec2.plugins.module_utils import sweep as bf_sweep

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule


def present(module, ec2):
    p = module.params
    name = bf_images.image_name(p["cluster"], p["recipe"], p["run_id"])
    found = bf_images.find(ec2, cluster=p["cluster"], name=name, states=None)
    if found:
        image = found[0]
        changed = False
    elif module.check_mode:
        module.exit_json(changed=True, image={"id": None, "name": name, "recipe": p["recipe"]})
    else:
        tags = bf_images.image_tags(p["cluster"], p["run_id"], p["recipe"], p["base_image_id"])
        image = {"id": bf_images.create(ec2, p["instance_id"], name, tags, p["no_reboot"])}
        changed = True
    bf_images.wait_available(ec2, image["id"], p["wait_timeout"])
    return changed, bf_images.find(ec2, cluster=p["cluster"], name=name, states=None)[0]


def main():
    argument_spec = dict(
        state=dict(type="str", choices=["present", "absent"], default="present"),
        instance_id=dict(type="str"),
        recipe=dict(type="str"),
        base_image_id=dict(type="str"),
        no_reboot=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=1800),
        keep=dict(type="int", default=0),
    )
    module = aws.new_module(
        argument_spec,
        required_if=[("state", "present", ["run_id", "instance_id", "recipe", "base_image_id"])],
    )
    ec2 = aws.client(module, "ec2")
    try:
        if module.params["state"] == "present":
            changed, image = present(module, ec2)
            module.exit_json(changed=changed, image=image)
        images = bf_images.find(ec2, cluster=module.params["cluster"], states=None)
        drop = bf_images.superseded(images, module.params["keep"])
        kept = [i["id"] for i in images if i not in drop]
        if module.check_mode:
            snapshots = [s for i in drop for s in i["snapshots"]]
            module.exit_json(changed=bool(drop), deregistered=[i["id"] for i in drop], snapshots=snapshots, kept=kept)
        deregistered, snapshots = bf_sweep.delete_images(ec2, drop)
        changed = bool(deregistered or snapshots)
        module.exit_json(changed=changed, deregistered=deregistered, snapshots=snapshots, kept=kept)
    except bf_images.ImageError as e:
        module.fail_json(msg=str(e))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg="Failed to manage the images of cluster %s" % module.params["cluster"])


if __name__ == "__main__":
    main()
