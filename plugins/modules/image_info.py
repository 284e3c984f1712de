#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_info
short_description: Find the baked images of a recipe
version_added: 1.2.0
description:
  - Lists this account's images (C(Owners=self)) that carry C(buildfarm:recipe), optionally only those of one
    recipe hash (the C(buildfarm.ec2.image_recipe) filter) or one cluster, in the given states; newest first.
  - C(playbooks/build.yml) with C(image_id=auto) boots RV(latest) and the plain base image when there is none.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  cluster:
    description:
      - Only images of this cluster (C(buildfarm:cluster)).
    type: str
  run_id:
    description:
      - Not used; accepted as every module of the collection accepts it.
    type: str
  recipe:
    description:
      - Only images of this recipe hash (C(buildfarm:recipe)).
    type: str
  states:
    description:
      - Image states to list.
    type: list
    elements: str
    default: [available]
    choices: [pending, available, failed, invalid, deregistered, transient, error, disabled]
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Find the newest image of the recipe
  buildfarm.ec2.image_info:
    recipe: 0123456789abcdef
  register: baked

- name: Say which one it is
  ansible.builtin.debug:
    msg: "{{ baked.latest.id | default('none') }}"
"""

RETURN = r"""
images:
  description: The images found, newest first; each with id, name, state, created, recipe, cluster, snapshots, tags.
  returned: always
  type: list
  elements: dict
  sample:
    - id: ami-0123456789abcdef0
      name: buildfarm-bake-0123456789abcdef-20261202-1
      state: available
      created: "2026-12-02T08:00:00.000Z"
      recipe: 0123456789abcdef
      cluster: bake
      snapshots: [snap-0123456789abcdef0]
      tags: {"buildfarm:recipe": 0123456789abcdef}
latest:
  description: The newest image found, or an empty dict.
  returned: always
  type: dict
  sample: {"id": ami-0123456789abcdef0, "recipe": 0123456789abcdef}
"""

from ansible_collections.buildfarm.ec2.plugins.module_utils import aws
from ansible_collections.buildfarm.ec2.plugins.module_utils import images as bf_images

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule


def main():
    argument_spec = dict(
        recipe=dict(type="str"),
        states=dict(
            type="list",
            elements="str",
            default=["available"],
            choices=["pending", "available", "failed", "invalid", "deregistered", "transient", "error", "disabled"],
        ),
    )
    module = aws.new_module(argument_spec, cluster_required=False)
    ec2 = aws.client(module, "ec2")
    p = module.params
    try:
        found = bf_images.find(ec2, recipe_hash=p["recipe"], cluster=p["cluster"], states=p["states"])
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg="Failed to list the baked images")
    module.exit_json(changed=False, images=found, latest=found[0] if found else {})


if __name__ == "__main__":
    main()
