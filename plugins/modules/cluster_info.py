#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_info
short_description: List every EC2 resource of a build cluster
version_added: 1.0.0
description:
  - Finds the instances, volumes, security groups, subnets, route tables, internet gateways, VPCs and key
    pairs that carry the cluster's C(buildfarm:cluster) tag (optionally one run's C(buildfarm:run) tag).
  - Tag filters are applied by the EC2 API; results are paginated.
  - Use it to see what a cluster holds, and to prove that a teardown left nothing behind.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  run_id:
    description:
      - Only resources of this run (the C(buildfarm:run) tag).
    type: str
  instance_states:
    description:
      - Instance states to list. Terminated instances are not listed by default.
    type: list
    elements: str
    default: [pending, running, shutting-down, stopping, stopped]
    choices: [pending, running, shutting-down, stopping, stopped, terminated]
extends_documentation_fragment:
  - buildfarm.ec2.cluster
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: What does cluster demo still own?
  buildfarm.ec2.cluster_info:
    cluster: demo
    region: eu-west-1
  register: demo

- name: Fail when anything is left after teardown
  ansible.builtin.assert:
    that: demo.total == 0
    fail_msg: "left behind: {{ demo.resources }}"
"""

RETURN = r"""
resources:
  description: The cluster's resources by kind; each item has id, role, run, expires and tags plus kind details.
  returned: always
  type: dict
  contains:
    instances:
      description:
        - Instances with state, type, private_ip, public_ip, private_dns, public_dns, launch_time, spot,
          subnet_id, vpc_id and availability_zone.
      type: list
      elements: dict
    volumes:
      description: EBS volumes with state, size and attachments.
      type: list
      elements: dict
    security_groups:
      description: Security groups with name and vpc_id.
      type: list
      elements: dict
    subnets:
      description: Subnets with cidr and vpc_id.
      type: list
      elements: dict
    route_tables:
      description: Route tables with vpc_id.
      type: list
      elements: dict
    internet_gateways:
      description: Internet gateways with the VPCs they are attached to.
      type: list
      elements: dict
    vpcs:
      description: VPCs with cidr.
      type: list
      elements: dict
    key_pairs:
      description: Key pairs with name.
      type: list
      elements: dict
  sample:
    instances:
      - id: i-0123456789abcdef0
        role: builder
        run: "20261124-1"
        expires: "2026-11-24T22:00:00Z"
        state: running
        type: c6i.4xlarge
        private_ip: 10.0.0.11
        public_ip: null
        subnet_id: subnet-0123456789abcdef0
        vpc_id: vpc-0123456789abcdef0
        tags: {"buildfarm:cluster": demo, "buildfarm:role": builder}
    volumes: []
    security_groups: []
    subnets: []
    route_tables: []
    internet_gateways: []
    vpcs: []
    key_pairs: []
total:
  description: Number of resources found.
  returned: always
  type: int
  sample: 1
"""


from ansible_collections.buildfarm.ec2.plugins.module_utils import aws
from ansible_collections.buildfarm.ec2.plugins.module_utils import cluster as bf_cluster
from ansible_collections.buildfarm.ec2.plugins.module_utils import instances as bf_instances

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule


def main():
    argument_spec = dict(
        instance_states=dict(
            type="list",
            elements="str",
            default=list(bf_instances.EXISTING),
            choices=["pending", "running", "shutting-down", "stopping", "stopped", "terminated"],
        ),
    )
    module = aws.new_module(argument_spec)
    ec2 = aws.client(module, "ec2")
    try:
        resources = bf_cluster.describe(
            ec2, module.params["cluster"], module.params["run_id"], module.params["instance_states"]
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg="Failed to list the resources of cluster %s" % module.params["cluster"])
    module.exit_json(changed=False, resources=resources, total=bf_cluster.count(resources))


if __name__ == "__main__":
    main()
