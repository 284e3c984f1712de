#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sweep
short_description: Delete everything a build cluster owns, or every expired cluster
version_added: 1.0.0
description:
  - Finds resources by the C(buildfarm:cluster) tag (optionally only one run's C(buildfarm:run) tag) and deletes
    them in dependency order; instances (waiting until terminated), the cluster's IAM instance profiles and roles
    (path C(/buildfarm/); role out of the profile, inline policies, role, profile), volumes, key pairs, security
    groups (rules that reference each other revoked first), subnets, route tables (disassociated first), internet
    gateways (detached first), VPCs.
  - Resources that are already gone count as deleted, so a half-made or half-deleted cluster is removed, and a
    second run reports no change.
  - With O(expired_only=true) it deletes only clusters whose every C(buildfarm:expires) tag has passed, or whose
    heartbeat lease lapsed (every C(buildfarm:lease) tag has passed and all their instances are terminated, see
    M(buildfarm.ec2.lease)); O(cluster) is then optional and every expired cluster in the region is swept.
  - Volumes tagged C(buildfarm:keep=true) are left alone unless O(delete_kept=true).
  - Check mode lists what would be deleted and deletes nothing.
  - Resources without the cluster tag are never touched.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  cluster:
    description:
      - Name of the cluster to delete. Required unless O(expired_only=true).
    type: str
  run_id:
    description:
      - Only resources of this run (the C(buildfarm:run) tag).
    type: str
  expired_only:
    description:
      - Only delete clusters whose C(buildfarm:expires) tags have all passed (a cluster without any never expires
        that way), or whose C(buildfarm:lease) tags have all passed while none of their instances is left.
    type: bool
    default: false
  delete_kept:
    description:
      - Also delete volumes tagged C(buildfarm:keep=true).
    type: bool
    default: false
  wait:
    description:
      - Wait until instances are terminated (botocore waiter) before deleting what depends on them.
      - Without waiting, security groups, subnets and VPCs that instances still use cannot be deleted yet.
    type: bool
    default: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Delete cluster demo
  buildfarm.ec2.sweep:
    cluster: demo
    region: eu-west-1
  register: swept

- name: What would go (nothing is deleted)
  buildfarm.ec2.sweep:
    cluster: demo
    region: eu-west-1
  check_mode: true

- name: Delete every expired cluster in the region (for a scheduled job)
  buildfarm.ec2.sweep:
    expired_only: true
    region: eu-west-1
"""

RETURN = r"""
deleted:
  description: Ids deleted (in check mode, that would be deleted) by kind.
  returned: always
  type: dict
  contains:
    instances:
      description: Instance ids.
      type: list
      elements: str
    instance_profiles:
      description: Names of IAM instance profiles.
      type: list
      elements: str
    roles:
      description: Names of IAM roles.
      type: list
      elements: str
    volumes:
      description: Volume ids (root volumes that go with their instances are not listed after a real run).
      type: list
      elements: str
    key_pairs:
      description: Key pair ids.
      type: list
      elements: str
    security_groups:
      description: Security group ids.
      type: list
      elements: str
    subnets:
      description: Subnet ids.
      type: list
      elements: str
    route_tables:
      description: Route table ids.
      type: list
      elements: str
    internet_gateways:
      description: Internet gateway ids.
      type: list
      elements: str
    vpcs:
      description: VPC ids.
      type: list
      elements: str
  sample: {"instances": ["i-0123456789abcdef0"], "instance_profiles": ["buildfarm-demo"], "roles": ["buildfarm-demo"],
           "volumes": [], "key_pairs": [], "security_groups": [],
           "subnets": [], "route_tables": [], "internet_gateways": [], "vpcs": ["vpc-0123456789abcdef0"]}
count:
  description: Number of resources deleted (would be, in check mode).
  returned: always
  type: int
  sample: 2
clusters:
  description: Names of the clusters swept.
  returned: always
  type: list
  elements: str
  sample: [demo]
kept:
  description: Ids of volumes left alone because they are tagged C(buildfarm:keep=true).
  returned: always
  type: list
  elements: str
"""

from ansible_collections.buildfarm.ec2.plugins.module_utils import aws
from ansible_collections.buildfarm.ec2.plugins.module_utils import cluster as bf_cluster
from ansible_collections.buildfarm.ec2.plugins.module_utils import iam as bf_iam
from ansible_collections.buildfarm.ec2.plugins.module_utils import instances as bf_instances
from ansible_collections.buildfarm.ec2.plugins.module_utils import sweep as bf_sweep
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule


def main():
    argument_spec = dict(
        expired_only=dict(type="bool", default=False),
        delete_kept=dict(type="bool", default=False),
        wait=dict(type="bool", default=True),
    )
    # The cluster is optional here: without it, expired_only sweeps every expired cluster.
    module = aws.new_module(argument_spec, cluster_required=False)
    params = module.params
    if params["cluster"] is None and not params["expired_only"]:
        module.fail_json(msg="cluster is required unless expired_only=true: name the cluster to delete")

    ec2 = aws.client(module, "ec2")
    iam = aws.client(module, "iam")
    try:
        clusters = None
        if params["expired_only"]:
            # terminated instances too: their buildfarm:lease tags say whether the cluster's lease lapsed
            seen = bf_cluster.describe(ec2, params["cluster"], params["run_id"], states=bf_instances.EVERY)
            clusters = bf_sweep.expired_clusters(seen)
        found = bf_cluster.describe(ec2, params["cluster"], params["run_id"])
        found.update(bf_iam.describe(iam, params["cluster"], params["run_id"]))
        chosen, kept = bf_sweep.select(found, clusters, params["delete_kept"])
        swept = sorted({item["tags"].get(bf_tags.TAG_CLUSTER) for items in chosen.values() for item in items} - {None})
        deleted = bf_sweep.delete_resources(ec2, chosen, module.check_mode, params["wait"], iam=iam)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg="Failed to sweep %s" % (params["cluster"] or "the expired clusters"))
    total = bf_sweep.count(deleted)
    module.exit_json(changed=total > 0, deleted=deleted, count=total, clusters=swept, kept=kept)


if __name__ == "__main__":
    main()
