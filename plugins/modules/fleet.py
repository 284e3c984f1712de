#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet
short_description: The EC2 instances of a build cluster, per role
version_added: 1.0.0
description:
  - Scales every role in O(roles) to its C(count) of live (pending or running) instances, found by the cluster
    and role tags. Missing instances are launched with one RunInstances call per role
    (MinCount = MaxCount = the number missing); surplus instances are terminated, newest first.
  - Every instance requires IMDSv2 (C(HttpTokens=required)), has shutdown behaviour C(terminate) and powers
    itself off after O(lifetime) minutes (a systemd timer set by the user-data), so an instance cannot
    outlive a lost controller by more than that.
  - With O(heartbeat_timeout), new instances also carry a heartbeat lease, the C(buildfarm:lease) tag (the UTC time
    until which the controller vouches, now + O(heartbeat_timeout) at launch); their tags are in the instance
    metadata (C(InstanceMetadataTags=enabled)) and a watch in the user-data powers each node off once its lease is
    past. Something must renew it while the run goes on (M(buildfarm.ec2.lease)).
  - Spot roles fall back to on-demand when EC2 refuses spot capacity or price (for example
    C(InsufficientInstanceCapacity), C(SpotMaxPriceTooLow), C(MaxSpotInstanceCountExceeded)); each refusal is
    reported in RV(fallbacks) and as a warning.
  - A spot role with several instance types (O(roles[].type) V(c6i.4xlarge,c5.4xlarge,m6i.4xlarge)) spreads its
    count over them - each type is asked for its share first, then the types that did not refuse cover what is
    missing, in order - so one reclaimed spot pool takes only its share and one type's shortage does not stop
    the launch; what no type could launch as spot goes on-demand on the first type (or, with
    O(roles[].spot_fallback=false), fails the module after terminating the spot instances of that launch).
  - Without O(key_name) a key pair C(buildfarm-<cluster>) is created for the cluster, tagged with it; its
    private key is returned once, in RV(private_key), when it is created. Use C(no_log) on the task.
  - Instances of roles not listed in O(roles) are left alone. Changing O(user_data), O(image_id) or a role's
    type does not replace running instances.
  - O(state=absent) terminates the cluster's instances (only the roles named in O(roles) when given) and, when
    no O(roles) are given, deletes the key pair the module created.
  - Input is validated before any resource is created; the subnet must have a free address for every new instance.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  state:
    description:
      - V(present) scales the roles to their counts, V(absent) terminates instances.
    type: str
    choices: [present, absent]
    default: present
  run_id:
    description:
      - Id of the run, stored in the C(buildfarm:run) tag of the instances this run launches.
    type: str
  roles:
    description:
      - The roles of the cluster and how many instances each should have. Required with O(state=present).
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - Role name, stored in the C(buildfarm:role) tag (1-32 lowercase letters, digits and C(_)). Unique.
        type: str
        required: true
      count:
        description:
          - Number of instances the role should have; V(0) terminates all of them.
        type: int
        required: true
      type:
        description:
          - EC2 instance type, or several comma-separated in order of preference (used by spot roles, see above;
            on-demand roles launch on the first).
        type: str
        default: t3.small
      spot:
        description:
          - Launch spot instances (one-time, terminated on interruption), falling back to on-demand.
        type: bool
        default: false
      spot_fallback:
        description:
          - With O(roles[].spot), launch on-demand instances when EC2 refuses the spot launch for capacity or price
            (the codes are listed above). When V(false), such a refusal fails the module with a message naming the
            instance type and the error, and nothing of the role is launched.
        type: bool
        default: true
      volume_size:
        description:
          - Size of the root volume in GiB (gp3, encrypted, deleted with the instance). The AMI's size when omitted.
        type: int
      heartbeat_timeout:
        description:
          - The role's own O(heartbeat_timeout) (minutes, V(0) for no lease), for example a kept host without a
            lease beside builders that power off when the controller is gone. O(heartbeat_timeout) when omitted.
        type: int
  image_id:
    description:
      - AMI id for new instances. Required when instances must be launched.
    type: str
  instance_profile:
    description:
      - Name of the IAM instance profile of new instances (C(IamInstanceProfile)), for example the one
        M(buildfarm.ec2.instance_profile) makes. Software on them gets the role's temporary credentials from the
        instance metadata service. Without it, new instances have no profile.
      - A profile made a moment before may be refused by EC2 for some seconds (IAM is eventually consistent), so the
        launch is retried while EC2 says the profile is invalid, for about a minute.
    type: str
  key_name:
    description:
      - Name of an existing EC2 key pair. When omitted the module creates C(buildfarm-<cluster>) once.
    type: str
  user_data:
    description:
      - A short bootstrap shell script, run once at first boot after the power-off timer is set; its output goes
        to C(/var/log/buildfarm-user-data.log) on the instance.
      - Never put secrets in user-data; it is readable on the instance and kept by EC2. Text that looks like a
        secret (AWS keys, private keys, tokens, literal passwords) is refused.
      - The complete user-data must stay under 16 KiB. cloud-config is not supported.
    type: str
    default: ''
  subnet_id:
    description:
      - Subnet for new instances (RV(buildfarm.ec2.network#module:subnet_id)). Required when instances must be launched.
    type: str
  security_group_ids:
    description:
      - Security groups of new instances (RV(buildfarm.ec2.network#module:security_group_id)).
    type: list
    elements: str
    default: []
  public_ip:
    description:
      - Give every new instance a public IPv4 address (C(AssociatePublicIpAddress) on its network interface).
        Instances reach the internet through an internet gateway only with one, and a controller outside AWS
        reaches them only by it (RV(buildfarm.ec2.network#module:public_ip) says when the subnet needs it).
      - Public IPv4 addresses are billed per address-hour while the instance runs.
    type: bool
    default: false
  lifetime:
    description:
      - Minutes after boot at which an instance powers itself off and is terminated; also the
        C(buildfarm:expires) tag of new instances.
      - The same option as the other modules' O(buildfarm.ec2.network#module:lifetime); O(max_lifetime) is the
        name it had before and still works.
    type: int
    default: 240
    aliases: [expires, max_lifetime]
  heartbeat_timeout:
    description:
      - Minutes of the heartbeat lease of new instances (see above); V(0) launches them without a lease.
      - A node that cannot read its lease keeps the last one it read and powers off only when that one is
        O(heartbeat_timeout) more in the past.
    type: int
    default: 0
  wait:
    description:
      - Wait with the botocore waiters until new instances are running and terminated ones are terminated.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds each wait may take.
    type: int
    default: 600
  wait_for_ssh:
    description:
      - After the instances run, wait until TCP port 22 of every new instance's private IP accepts connections.
      - The controller must be able to reach the private addresses. Never enable it where no machine is behind
        the addresses (for example against an API emulator).
    type: bool
    default: false
  ssh_timeout:
    description:
      - Seconds to wait for SSH on each new instance.
    type: int
    default: 300
extends_documentation_fragment:
  - buildfarm.ec2.cluster
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: One host and eight spot builders
  buildfarm.ec2.fleet:
    cluster: demo
    run_id: "20261124-1"
    region: eu-west-1
    image_id: ami-0123456789abcdef0
    subnet_id: "{{ net.subnet_id }}"
    security_group_ids: ["{{ net.security_group_id }}"]
    lifetime: 120
    heartbeat_timeout: 10  # renewed by buildfarm.ec2.lease
    user_data: |
      #!/bin/sh
      apt-get update
    roles:
      - name: host
        count: 1
        type: t3.small
        volume_size: 30
      - name: builder
        count: 8
        type: c6i.4xlarge
        spot: true
  register: fleet
  no_log: true  # the created private key is in the result

- name: Scale the builders down to two
  buildfarm.ec2.fleet:
    cluster: demo
    region: eu-west-1
    image_id: ami-0123456789abcdef0
    subnet_id: "{{ net.subnet_id }}"
    roles:
      - name: builder
        count: 2
        type: c6i.4xlarge

- name: Terminate every instance of the cluster
  buildfarm.ec2.fleet:
    cluster: demo
    region: eu-west-1
    state: absent
"""

RETURN = r"""
instances:
  description: The live instances of the listed roles (all roles with O(state=absent)) after the change.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Instance id.
      type: str
    role:
      description: Role (the C(buildfarm:role) tag).
      type: str
    private_ip:
      description: Private IPv4 address.
      type: str
    public_ip:
      description: Public IPv4 address, if any.
      type: str
    private_dns:
      description: Private DNS name.
      type: str
    public_dns:
      description: Public DNS name, if any.
      type: str
    state:
      description: Instance state.
      type: str
    type:
      description: Instance type.
      type: str
    launch_time:
      description: Launch time (ISO 8601).
      type: str
    spot:
      description: Whether it is a spot instance.
      type: bool
    subnet_id:
      description: Subnet.
      type: str
    availability_zone:
      description: Availability zone.
      type: str
  sample:
    - id: i-0123456789abcdef0
      role: builder
      private_ip: 10.0.0.11
      public_ip: null
      private_dns: ip-10-0-0-11.eu-west-1.compute.internal
      public_dns: null
      state: running
      type: c6i.4xlarge
      launch_time: "2026-11-24T20:00:00+00:00"
      spot: true
      subnet_id: subnet-0123456789abcdef0
      availability_zone: eu-west-1a
launched:
  description: Ids of the instances launched by this run.
  returned: always
  type: list
  elements: str
terminated:
  description: Ids of the instances terminated by this run (would be, in check mode).
  returned: always
  type: list
  elements: str
plan:
  description: Per role, how many instances to launch and which to terminate.
  returned: always
  type: dict
  sample: {"builder": {"launch": 3, "terminate": []}}
fallbacks:
  description:
    - The spot launches EC2 refused - role, instance type and reason; their share went to the role's other types
      or on-demand (the instances' RV(instances[].spot) says which).
  returned: always
  type: list
  elements: dict
  sample: [{"role": "builder", "type": "c6i.4xlarge", "reason": "InsufficientInstanceCapacity: ..."}]
key_name:
  description: The key pair of the instances (given, created, or found), null when none is used.
  returned: always
  type: str
  sample: buildfarm-demo
private_key:
  description: The private key of the key pair created by this run. Returned only once, when it is created.
  returned: when the key pair was created
  type: str
"""

from ansible_collections.buildfarm.ec2.plugins.module_utils import aws
from ansible_collections.buildfarm.ec2.plugins.module_utils import fleet as bf_fleet
from ansible_collections.buildfarm.ec2.plugins.module_utils import instances as bf_instances
from ansible_collections.buildfarm.ec2.plugins.module_utils import lease as bf_lease
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule


def _validate(params):
    errors = []
    if params["state"] == "present":
        if not params["roles"]:
            errors.append("roles is required with state=present: list the roles with name, count and type")
        errors.extend(bf_fleet.validate_roles(params["roles"]))
        minutes = {params["heartbeat_timeout"]} | {
            bf_fleet.role_heartbeat(r, params["heartbeat_timeout"]) for r in params["roles"] or []
        }
        for heartbeat in sorted(minutes):
            errors.extend(bf_fleet.validate_user_data(params["user_data"], params["lifetime"], heartbeat))
        if min(minutes) < 0:
            errors.append("heartbeat_timeout must be 0 (no lease) or minutes, got %d" % min(minutes))
        for name in ("wait_timeout", "ssh_timeout"):
            if params[name] <= 0:
                errors.append("%s must be a positive number of seconds, got %d" % (name, params[name]))
    else:
        errors.extend(e for e in bf_fleet.validate_roles(params["roles"]) if "count" not in e)
    return errors


def _present(module, ec2):
    params = module.params
    cluster = params["cluster"]
    roles = params["roles"]
    names = [r["name"] for r in roles]
    existing = bf_instances.find(ec2, cluster, roles=names, states=bf_instances.SERVING)
    plan = bf_fleet.plan(roles, bf_instances.by_role(existing))
    to_launch = sum(p["launch"] for p in plan.values())
    to_terminate = [i for p in plan.values() for i in p["terminate"]]
    result = dict(launched=[], terminated=to_terminate, plan=plan, fallbacks=[], key_name=params["key_name"])

    if to_launch:
        # In check mode the subnet may come from a network task that did not run for real.
        needed = ("image_id",) if module.check_mode else ("image_id", "subnet_id")
        missing = [name for name in needed if not params[name]]
        if missing:
            module.fail_json(msg="%s required: %d instances must be launched" % (" and ".join(missing), to_launch))
        free = bf_fleet.free_addresses(ec2, params["subnet_id"]) if params["subnet_id"] else to_launch
        if to_launch > free:
            module.fail_json(
                msg="subnet %s has %d free addresses but %d instances must be launched: use a larger subnet_cidr in "
                "buildfarm.ec2.network or lower the role counts" % (params["subnet_id"], free, to_launch)
            )
    key_created = None
    if params["key_name"]:
        if to_launch and bf_fleet.find_key_pair(ec2, params["key_name"]) is None:
            module.fail_json(msg="key_name %s does not exist: create it, or omit key_name" % params["key_name"])
    else:
        pair = bf_fleet.find_key_pair(ec2, bf_fleet.key_pair_name(cluster))
        if pair is not None and not bf_tags.matches(pair.get("Tags"), cluster=cluster):
            module.fail_json(
                msg="key pair %s exists but is not tagged for cluster %s: give key_name, or delete that key pair"
                % (pair["KeyName"], cluster)
            )
        if pair is not None:
            result["key_name"] = pair["KeyName"]
        elif to_launch:
            result["key_name"] = bf_fleet.key_pair_name(cluster)
            key_created = True
    root_device = None
    if to_launch:
        root_device = bf_fleet.root_device_name(ec2, params["image_id"])

    changed = bool(to_launch or to_terminate)
    if module.check_mode or not changed:
        result.update(changed=changed, instances=existing)
        return result

    expires = bf_tags.expires_at(params["lifetime"])
    if key_created:
        key_tags = bf_tags.cluster_tags(cluster, role="fleet", run_id=params["run_id"], expires=expires)
        result["key_name"], result["private_key"] = bf_fleet.create_key_pair(ec2, cluster, key_tags)
    try:
        _apply(module, ec2, result, plan, to_terminate, root_device, expires)
    except Exception:
        if key_created and result.get("private_key"):
            # Nobody would ever see this private key: do not leave an unusable key pair behind.
            ec2.delete_key_pair(aws_retry=True, KeyName=result["key_name"])
        raise
    result["changed"] = True
    return result


def _apply(module, ec2, result, plan, to_terminate, root_device, expires):
    params = module.params
    cluster = params["cluster"]
    names = [r["name"] for r in params["roles"]]
    if to_terminate:
        bf_instances.terminate(ec2, to_terminate, params["wait"])
    launch = dict(
        image_id=params["image_id"],
        subnet_id=params["subnet_id"],
        security_group_ids=params["security_group_ids"],
        public_ip=params["public_ip"],
        key_name=result["key_name"],
        instance_profile=params["instance_profile"],
        root_device=root_device,
        tags={
            name: bf_tags.cluster_tags(cluster, role=name, run_id=params["run_id"], expires=expires) for name in names
        },
        # how many of each role were live before this launch: part of the launch's idempotency token
        first={r["name"]: r["count"] - plan[r["name"]]["launch"] for r in params["roles"]},
    )
    for role in params["roles"]:
        count = plan[role["name"]]["launch"]
        if not count:
            continue
        heartbeat = bf_fleet.role_heartbeat(role, params["heartbeat_timeout"])
        role_launch = dict(
            launch,
            user_data=bf_fleet.build_user_data(params["user_data"], params["lifetime"], heartbeat),
            lease=bf_lease.lease_until(heartbeat) if heartbeat else None,
        )
        ids, fallbacks = bf_fleet.run_instances(ec2, role, count, role_launch)
        result["launched"].extend(ids)
        for fallback in fallbacks:
            result["fallbacks"].append(dict(fallback, role=role["name"]))
            module.warn(
                "role %s: EC2 refused the spot launch of %s (%s); its share went to the role's other types or "
                "on-demand (see the instances' lifecycle)" % (role["name"], fallback["type"], fallback["reason"])
            )
    if params["wait"] and result["launched"]:
        bf_instances.wait_for(
            ec2,
            "instance_running",
            result["launched"],
            max_attempts=max(1, params["wait_timeout"] // bf_instances.WAIT_DELAY),
        )
    result["instances"] = bf_instances.find(ec2, cluster, roles=names, states=bf_instances.SERVING)
    if params["wait_for_ssh"]:
        new = [i for i in result["instances"] if i["id"] in result["launched"]]
        late = [i["id"] for i in new if not bf_fleet.wait_for_port(i["private_ip"], 22, params["ssh_timeout"])]
        if late:
            module.fail_json(
                msg="SSH did not answer within %ds on %s" % (params["ssh_timeout"], ", ".join(late)), **result
            )


def _absent(module, ec2):
    params = module.params
    cluster = params["cluster"]
    names = [r["name"] for r in params["roles"]] if params["roles"] else None
    existing = bf_instances.find(ec2, cluster, roles=names, states=bf_instances.SERVING)
    ids = [i["id"] for i in existing]
    pair = None
    if not names and not params["key_name"]:
        pair = bf_fleet.find_key_pair(ec2, bf_fleet.key_pair_name(cluster))
        if pair is not None and not bf_tags.matches(pair.get("Tags"), cluster=cluster):
            pair = None
    result = dict(
        changed=bool(ids or pair),
        launched=[],
        terminated=ids,
        plan={},
        fallbacks=[],
        key_name=pair["KeyName"] if pair else None,
        instances=existing if module.check_mode else [],
    )
    if module.check_mode:
        return result
    if ids:
        bf_instances.terminate(ec2, ids, params["wait"])
    if pair is not None:
        ec2.delete_key_pair(aws_retry=True, KeyName=pair["KeyName"])
    return result


def main():
    argument_spec = dict(
        state=dict(type="str", default="present", choices=["present", "absent"]),
        roles=dict(
            type="list",
            elements="dict",
            options=dict(
                name=dict(type="str", required=True),
                count=dict(type="int", required=True),
                type=dict(type="str", default="t3.small"),
                spot=dict(type="bool", default=False),
                spot_fallback=dict(type="bool", default=True),
                volume_size=dict(type="int"),
                heartbeat_timeout=dict(type="int"),
            ),
        ),
        image_id=dict(type="str"),
        key_name=dict(type="str", no_log=False),
        instance_profile=dict(type="str"),
        user_data=dict(type="str", default=""),
        subnet_id=dict(type="str"),
        security_group_ids=dict(type="list", elements="str", default=[]),
        public_ip=dict(type="bool", default=False),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=600),
        wait_for_ssh=dict(type="bool", default=False),
        ssh_timeout=dict(type="int", default=300),
        heartbeat_timeout=dict(type="int", default=0),
    )
    module = aws.new_module(argument_spec, lifetime=True)
    errors = _validate(module.params)
    if errors:
        module.fail_json(msg="; ".join(errors))
    ec2 = aws.client(module, "ec2")
    try:
        if module.params["state"] == "present":
            result = _present(module, ec2)
        else:
            result = _absent(module, ec2)
    except bf_fleet.FleetError as e:
        module.fail_json(msg=str(e))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg="Failed to converge the fleet of cluster %s" % module.params["cluster"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
