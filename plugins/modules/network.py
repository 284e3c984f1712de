#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: network
short_description: The VPC, subnet, internet gateway, route table and security group of a build cluster
version_added: 1.0.0
description:
  - Own network (the default, for a controller outside AWS) creates (or finds, by the cluster tag) one VPC, one
    subnet, a route table associated with the subnet, an optional internet gateway with a default route (for
    package downloads), and the cluster security group. Instances then need a public IPv4 to use the gateway
    (RV(public_ip); C(buildfarm.ec2.fleet) with O(buildfarm.ec2.fleet#module:public_ip=true)), and the
    controller reaches them by those addresses.
  - Existing subnet (O(subnet_id), for a controller inside AWS) creates only the cluster security group, in the
    subnet's VPC, and never changes or deletes the subnet, its VPC or its routes.
  - RV(egress) says how instances in the subnet reach the internet, read from the subnet's route table (its
    own association, else the VPC's main table) as EC2 applies it - through an attached internet gateway (only
    with a public IPv4) or an available NAT gateway. With O(require_egress=true) a subnet without either is
    refused before anything is created.
  - The security group allows SSH (22/tcp) only from O(ssh_cidr). The cluster ports (distcc 3632-3633, HTTP 80,
    Slurm 6817-6819, srun 60001-60100, NFS 2049) are open only to members of the group itself. Rules that
    differ are revoked.
  - O(state=absent) deletes the cluster's network resources in dependency order (security group, subnet, route
    table, internet gateway, VPC), treating resources that are already gone as deleted. Instances must be gone
    first (C(buildfarm.ec2.fleet) with O(buildfarm.ec2.fleet#module:state=absent), or C(buildfarm.ec2.sweep)).
  - Input is validated before any API call.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  state:
    description:
      - V(present) creates or converges the network, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  vpc_cidr:
    description:
      - IPv4 CIDR block of the VPC, netmask /16 to /28. A VPC's CIDR cannot change once made.
    type: str
    default: 10.0.0.0/16
  subnet_cidr:
    description:
      - IPv4 CIDR block of the subnet, inside O(vpc_cidr). AWS keeps 5 addresses of every subnet.
    type: str
    default: 10.0.0.0/24
  min_addresses:
    description:
      - Refuse a O(subnet_cidr) with fewer usable addresses than this (for example the number of instances the
        cluster will run).
    type: int
    default: 0
  availability_zone:
    description:
      - Availability zone of the subnet. AWS picks one when omitted.
    type: str
  internet_gateway:
    description:
      - Attach an internet gateway and route 0.0.0.0/0 to it. V(false) removes a gateway made before.
    type: bool
    default: true
  ssh_cidr:
    description:
      - The only source allowed to reach SSH (22/tcp), for example the controller's address as V(203.0.113.7/32).
      - Required with O(state=present). There is deliberately no default; V(0.0.0.0/0) is refused unless
        O(ssh_from_anywhere=true).
    type: str
  ssh_from_anywhere:
    description:
      - Accept O(ssh_cidr=0.0.0.0/0) (SSH of every node open to the whole internet, with a warning).
    type: bool
    default: false
  subnet_id:
    description:
      - An existing subnet to place the cluster in. Only the cluster's security group is created (in the
        subnet's VPC); O(vpc_cidr), O(subnet_cidr), O(availability_zone) and O(internet_gateway) are ignored.
    type: str
  require_egress:
    description:
      - Fail, before anything is created, when instances in the subnet would have no way to the internet (no
        0.0.0.0/0 route to an available NAT gateway or an attached internet gateway); the message names the
        route table and what its route lacks.
    type: bool
    default: false
extends_documentation_fragment:
  - buildfarm.ec2.cluster
  - buildfarm.ec2.lifetime
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Network of cluster demo, SSH from the controller only
  buildfarm.ec2.network:
    cluster: demo
    run_id: "20261124-1"
    region: eu-west-1
    ssh_cidr: 203.0.113.7/32
  register: net

- name: Private network without internet access
  buildfarm.ec2.network:
    cluster: demo
    region: eu-west-1
    vpc_cidr: 10.20.0.0/16
    subnet_cidr: 10.20.1.0/24
    internet_gateway: false
    ssh_cidr: 10.0.0.0/8

- name: Cluster in an existing private subnet (controller inside AWS), which must reach the internet
  buildfarm.ec2.network:
    cluster: demo
    region: eu-west-1
    subnet_id: subnet-0123456789abcdef0
    require_egress: true
    ssh_cidr: 10.20.0.0/16

- name: Remove the network
  buildfarm.ec2.network:
    cluster: demo
    region: eu-west-1
    state: absent
"""

RETURN = r"""
vpc_id:
  description: Id of the VPC (null in check mode before it exists, and after O(state=absent)).
  returned: always
  type: str
  sample: vpc-0123456789abcdef0
subnet_id:
  description: Id of the subnet.
  returned: always
  type: str
  sample: subnet-0123456789abcdef0
security_group_id:
  description: Id of the cluster security group.
  returned: always
  type: str
  sample: sg-0123456789abcdef0
internet_gateway_id:
  description: Id of the internet gateway, null when O(internet_gateway=false).
  returned: always
  type: str
  sample: igw-0123456789abcdef0
route_table_id:
  description: Id of the route table associated with the subnet.
  returned: always
  type: str
  sample: rtb-0123456789abcdef0
vpc_cidr:
  description: CIDR block of the VPC.
  returned: always
  type: str
  sample: 10.0.0.0/16
subnet_cidr:
  description: CIDR block of the subnet.
  returned: always
  type: str
  sample: 10.0.0.0/24
egress:
  description:
    - How instances in the subnet reach the internet - V(internet_gateway) (with a public IPv4 only),
      V(nat_gateway), or V(none).
  returned: when O(state=present)
  type: str
  sample: internet_gateway
egress_detail:
  description: The gateway id, or why there is no way out.
  returned: when O(state=present)
  type: str
  sample: igw-0123456789abcdef0
public_ip:
  description: Whether instances need a public IPv4 to reach the internet (RV(egress=internet_gateway)).
  returned: when O(state=present)
  type: bool
  sample: true
actions:
  description: What was changed (or, in check mode, would be).
  returned: always
  type: list
  elements: str
  sample: ["create VPC 10.0.0.0/16", "create subnet 10.0.0.0/24"]
deleted:
  description: Ids deleted by kind (O(state=absent) only).
  returned: when O(state=absent)
  type: dict
  sample: {"vpcs": ["vpc-0123456789abcdef0"], "subnets": ["subnet-0123456789abcdef0"]}
"""

from ansible_collections.buildfarm.ec2.plugins.module_utils import aws
from ansible_collections.buildfarm.ec2.plugins.module_utils import network as bf_network

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule


def main():
    argument_spec = dict(
        state=dict(type="str", default="present", choices=["present", "absent"]),
        vpc_cidr=dict(type="str", default="10.0.0.0/16"),
        subnet_cidr=dict(type="str", default="10.0.0.0/24"),
        min_addresses=dict(type="int", default=0),
        availability_zone=dict(type="str"),
        internet_gateway=dict(type="bool", default=True),
        ssh_cidr=dict(type="str"),
        ssh_from_anywhere=dict(type="bool", default=False),
        subnet_id=dict(type="str"),
        require_egress=dict(type="bool", default=False),
    )
    module = aws.new_module(argument_spec, lifetime=True)
    params = module.params
    errors = bf_network.validate(
        params["vpc_cidr"],
        params["subnet_cidr"],
        params["ssh_cidr"],
        params["state"],
        params["min_addresses"],
        params["subnet_id"],
        params["ssh_from_anywhere"],
    )
    if params["state"] == "present" and params["require_egress"]:
        if not params["subnet_id"] and not params["internet_gateway"]:
            errors.append(
                "require_egress=true but internet_gateway=false: the cluster's own subnet would have no 0.0.0.0/0 "
                "route, so its nodes could not install packages; set internet_gateway=true or give a subnet_id "
                "with a NAT gateway route"
            )
    if errors:
        module.fail_json(msg="; ".join(errors))
    if params["state"] == "present" and params["ssh_cidr"] == bf_network.ANYWHERE:
        module.warn("ssh_cidr 0.0.0.0/0 opens SSH of every cluster instance to the whole internet")

    ec2 = aws.client(module, "ec2")
    try:
        if params["state"] == "absent":
            changed, deleted = bf_network.remove(ec2, params["cluster"], module.check_mode)
            actions = ["delete %s %s" % (kind, ", ".join(ids)) for kind, ids in deleted.items() if ids]
            result = dict.fromkeys(
                ["vpc_id", "subnet_id", "security_group_id", "internet_gateway_id", "route_table_id"]
            )
            result.update(vpc_cidr=None, subnet_cidr=None, deleted=deleted)
        else:
            changed, actions, result = bf_network.ensure(ec2, params, module.check_mode)
    except bf_network.NetworkError as e:
        module.fail_json(msg=str(e))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg="Failed to converge the network of cluster %s" % params["cluster"])
    module.exit_json(changed=changed, actions=actions, **result)


if __name__ == "__main__":
    main()
