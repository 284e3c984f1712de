#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: instance_profile
short_description: The instance profile of a build cluster, allowed to write only under the run's S3 prefix
version_added: 1.0.0
description:
  - Makes the IAM role C(buildfarm-<cluster>) (path C(/buildfarm/), trusted by C(ec2.amazonaws.com)), its one
    inline policy C(buildfarm-artifacts) and the instance profile of the same name holding the role, all tagged
    with the cluster's tags.
  - The policy allows C(s3:GetObject) and C(s3:PutObject) on C(bucket/prefix*) and C(s3:ListBucket) on the bucket
    only for keys below O(prefix) (condition C(s3:prefix)); nothing else. The build host pushes its outputs with
    these credentials (from the instance metadata service), so the outputs never pass through the controller.
  - A later run of a kept cluster updates the policy to its own prefix; an unchanged policy is not rewritten.
  - A role or profile of that name that is not tagged for the cluster is refused.
  - IAM is eventually consistent; EC2 may refuse a new profile for a few seconds (C(InvalidParameterValue)), and
    M(buildfarm.ec2.fleet) retries that.
  - O(state=absent) deletes the profile and the role as the sweep does (role out of the profile, inline policies,
    role, profile); already gone is no change.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  state:
    description:
      - V(present) makes the role, policy and profile; V(absent) deletes them.
    type: str
    choices: [present, absent]
    default: present
  bucket:
    description:
      - The S3 bucket the instances write to. Required with O(state=present).
    type: str
  prefix:
    description:
      - The key prefix the instances may read and write (the run's, C(buildfarm.ec2.s3_prefix)). Required with
        O(state=present).
    type: str
  cache_prefix:
    description:
      - The compile cache's key prefix in O(bucket) (M(buildfarm.ec2.compile_cache)); the instances may read
        objects under it, and write them with O(cache_access=readwrite). None - no access to a cache.
    type: str
  cache_access:
    description:
      - What the instances may do with the compile cache under O(cache_prefix). V(read) for runs whose code is not
        trusted to fill a cache that later runs use.
    type: str
    choices: [read, readwrite]
    default: readwrite
extends_documentation_fragment:
  - buildfarm.ec2.cluster
  - buildfarm.ec2.lifetime
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: The cluster's instance profile for the run's outputs
  buildfarm.ec2.instance_profile:
    cluster: demo
    run_id: "20261124-1"
    bucket: demo-artifacts
    prefix: demo/20261124-1/
  register: profile

- name: Launch with it
  buildfarm.ec2.fleet:
    cluster: demo
    run_id: "20261124-1"
    image_id: ami-0123456789abcdef0
    subnet_id: subnet-0123456789abcdef0
    instance_profile: "{{ profile.name }}"
    roles:
      - name: host
        count: 1

- name: Delete it
  buildfarm.ec2.instance_profile:
    cluster: demo
    state: absent
"""

RETURN = r"""
name:
  description: Name of the instance profile and of its role.
  returned: always
  type: str
  sample: buildfarm-demo
arn:
  description: ARN of the instance profile (null in check mode before it exists, and after O(state=absent)).
  returned: always
  type: str
  sample: arn:aws:iam::123456789012:instance-profile/buildfarm/buildfarm-demo
role_arn:
  description: ARN of the role (null in check mode before it exists, and after O(state=absent)).
  returned: always
  type: str
  sample: arn:aws:iam::123456789012:role/buildfarm/buildfarm-demo
actions:
  description: What was (in check mode, would be) done.
  returned: always
  type: list
  elements: str
  sample: [create role, put policy, create instance profile, add role to instance profile]
policy:
  description: The role's inline policy document.
  returned: with O(state=present)
  type: dict
"""

from ansible_collections.buildfarm.ec2.plugins.module_utils import aws
from ansible_collections.buildfarm.ec2.plugins.module_utils import iam as bf_iam
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule


def absent(iam, cluster, check_mode):
    name = bf_iam.profile_name(cluster)
    found = bf_iam.describe(iam, cluster)
    profiles = [p["id"] for p in found["instance_profiles"] if p["id"] == name]
    roles = [r["id"] for r in found["roles"] if r["id"] == name]
    actions = ["delete instance profile"] * bool(profiles) + ["delete role"] * bool(roles)
    if actions and not check_mode:
        bf_iam.delete(iam, profiles, roles)
    return dict(changed=bool(actions), name=name, arn=None, role_arn=None, actions=actions)


def main():
    argument_spec = dict(
        state=dict(type="str", default="present", choices=["present", "absent"]),
        bucket=dict(type="str"),
        prefix=dict(type="str"),
        cache_prefix=dict(type="str"),
        cache_access=dict(type="str", choices=["read", "readwrite"], default="readwrite"),
    )
    module = aws.new_module(argument_spec, lifetime=True, required_if=[("state", "present", ("bucket", "prefix"))])
    params = module.params
    iam = aws.client(module, "iam")
    try:
        if params["state"] == "absent":
            result = absent(iam, params["cluster"], module.check_mode)
        else:
            tags = bf_tags.cluster_tags(
                params["cluster"],
                role="instance_profile",
                run_id=params["run_id"],
                expires=bf_tags.expires_at(params["lifetime"]),
            )
            result = bf_iam.ensure(
                iam,
                params["cluster"],
                tags,
                params["bucket"],
                params["prefix"],
                module.check_mode,
                cache_prefix=params["cache_prefix"],
                cache_write=params["cache_access"] == "readwrite",
            )
    except bf_iam.ProfileError as e:
        module.fail_json(msg=str(e))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg="Failed to converge the instance profile of cluster %s" % params["cluster"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
