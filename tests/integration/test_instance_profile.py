"""buildfarm.ec2.instance_profile, the fleet's instance_profile and the sweep of profiles and roles, through
ansible-playbook against the moto server."""

from __future__ import annotations

import json

from tests.conftest import AWS_PLAY, enforced_auth, iam_user, shipped_policy_actions

PROFILE = AWS_PLAY + """
    - name: Profile
      buildfarm.ec2.instance_profile:
        cluster: "{{ cluster }}"
        run_id: "{{ run_id | default('r1') }}"
        bucket: outputs
        prefix: "{{ prefix | default('demo/r1/') }}"
        state: "{{ state | default('present') }}"
      register: profile
"""

FLEET = PROFILE + """
    - name: Network
      buildfarm.ec2.network:
        cluster: "{{ cluster }}"
        run_id: r1
        ssh_cidr: 203.0.113.7/32
      register: net

    - name: Fleet
      buildfarm.ec2.fleet:
        cluster: "{{ cluster }}"
        run_id: r1
        image_id: ami-12c6146b
        subnet_id: "{{ net.subnet_id }}"
        security_group_ids: ["{{ net.security_group_id }}"]
        instance_profile: "{{ profile.name }}"
        roles:
          - {name: host, count: 1, type: t3.small}
          - {name: builder, count: 2, type: c6i.large}
      register: fleet
      no_log: true
"""

SWEEP = AWS_PLAY + """
    - name: Sweep
      buildfarm.ec2.sweep:
        cluster: "{{ cluster }}"
"""


def _iam_left(iam, cluster):
    """Names of the roles and instance profiles tagged for ``cluster``."""
    left = []
    for profile in iam.list_instance_profiles()["InstanceProfiles"]:
        tags = iam.get_instance_profile(InstanceProfileName=profile["InstanceProfileName"])["InstanceProfile"]["Tags"]
        if {"Key": "buildfarm:cluster", "Value": cluster} in tags:
            left.append(("profile", profile["InstanceProfileName"]))
    for role in iam.list_roles()["Roles"]:
        if {"Key": "buildfarm:cluster", "Value": cluster} in iam.list_role_tags(RoleName=role["RoleName"])["Tags"]:
            left.append(("role", role["RoleName"]))
    return sorted(left)


def test_profile_lifecycle_check_apply_unchanged_update_absent(aws, run_play):
    iam = aws.client("iam")
    check = run_play(PROFILE, extra_vars={"cluster": "demo"}, check=True).task("Profile")
    assert check["changed"] is True and check["arn"] is None
    assert "create role" in check["actions"] and "create instance profile" in check["actions"]
    assert _iam_left(iam, "demo") == []

    made = run_play(PROFILE, extra_vars={"cluster": "demo"}).task("Profile")
    assert made["changed"] is True and made["name"] == "buildfarm-demo"
    assert made["arn"].endswith(":instance-profile/buildfarm/buildfarm-demo")
    assert _iam_left(iam, "demo") == [("profile", "buildfarm-demo"), ("role", "buildfarm-demo")]
    role = iam.get_role(RoleName="buildfarm-demo")["Role"]
    assert role["Path"] == "/buildfarm/"
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName="buildfarm-demo")["Tags"]}
    assert tags["buildfarm:run"] == "r1" and tags["buildfarm:expires"]
    policy = iam.get_role_policy(RoleName="buildfarm-demo", PolicyName="buildfarm-artifacts")["PolicyDocument"]
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["ReadWriteTheRunPrefix"]["Resource"] == ["arn:aws:s3:::outputs/demo/r1/*"]
    assert sorted(statements["ReadWriteTheRunPrefix"]["Action"]) == ["s3:GetObject", "s3:PutObject"]
    assert statements["ListTheRunPrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["demo/r1/*"]}}
    profile = iam.get_instance_profile(InstanceProfileName="buildfarm-demo")["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == ["buildfarm-demo"]

    again = run_play(PROFILE, extra_vars={"cluster": "demo"}).task("Profile")
    assert again["changed"] is False and again["actions"] == [] and again["arn"] == made["arn"]

    # a kept cluster's next run: only the policy follows the new prefix
    moved = run_play(PROFILE, extra_vars={"cluster": "demo", "prefix": "demo/r2/", "run_id": "r2"}).task("Profile")
    assert moved["changed"] is True and moved["actions"] == ["put policy"]
    policy = iam.get_role_policy(RoleName="buildfarm-demo", PolicyName="buildfarm-artifacts")["PolicyDocument"]
    assert policy["Statement"][1]["Resource"] == ["arn:aws:s3:::outputs/demo/r2/*"]

    gone = run_play(PROFILE, extra_vars={"cluster": "demo", "state": "absent"}).task("Profile")
    assert gone["changed"] is True and _iam_left(iam, "demo") == []
    assert run_play(PROFILE, extra_vars={"cluster": "demo", "state": "absent"}).task("Profile")["changed"] is False


def test_a_role_of_that_name_not_tagged_for_the_cluster_is_refused(aws, run_play):
    iam = aws.client("iam")
    iam.create_role(RoleName="buildfarm-demo", AssumeRolePolicyDocument="{}")
    failed = run_play(PROFILE, extra_vars={"cluster": "demo"}, expect_rc=2).task("Profile")
    assert "IAM role buildfarm-demo exists but is not tagged for cluster demo" in failed["msg"]
    assert iam.list_role_policies(RoleName="buildfarm-demo")["PolicyNames"] == []


def test_fleet_launches_with_the_profile_and_the_sweep_removes_it(aws, run_play):
    ec2, iam = aws.client("ec2"), aws.client("iam")
    run_play(FLEET, extra_vars={"cluster": "demo"})
    run_play(PROFILE, extra_vars={"cluster": "other"})
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:buildfarm:cluster", "Values": ["demo"]}])
    instances = [i for r in reservations["Reservations"] for i in r["Instances"]]
    assert len(instances) == 3
    arn = iam.get_instance_profile(InstanceProfileName="buildfarm-demo")["InstanceProfile"]["Arn"]
    associations = ec2.describe_iam_instance_profile_associations()["IamInstanceProfileAssociations"]
    with_profile = {a["InstanceId"] for a in associations if a["IamInstanceProfile"]["Arn"] == arn}
    # plain moto associates the first instance of each RunInstances call (one per role); the local cloud, as EC2,
    # every instance (tests/integration/test_localcloud_imds.py)
    roles = {i["InstanceId"]: {t["Key"]: t["Value"] for t in i["Tags"]}["buildfarm:role"] for i in instances}
    assert with_profile <= set(roles) and sorted(roles[i] for i in with_profile) == ["builder", "host"]

    check = run_play(SWEEP, extra_vars={"cluster": "demo"}, check=True).task("Sweep")
    assert check["deleted"]["instance_profiles"] == check["deleted"]["roles"] == ["buildfarm-demo"]
    assert len(_iam_left(iam, "demo")) == 2
    swept = run_play(SWEEP, extra_vars={"cluster": "demo"}).task("Sweep")
    assert swept["deleted"]["instance_profiles"] == swept["deleted"]["roles"] == ["buildfarm-demo"]
    assert _iam_left(iam, "demo") == []
    assert _iam_left(iam, "other") == [("profile", "buildfarm-other"), ("role", "buildfarm-other")]
    assert run_play(SWEEP, extra_vars={"cluster": "demo"}).task("Sweep")["changed"] is False


def test_sweep_removes_a_half_deleted_profile(aws, run_play):
    """The role already out of the profile and its policy gone: the rest still goes; NotFound is success."""
    iam = aws.client("iam")
    run_play(PROFILE, extra_vars={"cluster": "demo"})
    iam.remove_role_from_instance_profile(InstanceProfileName="buildfarm-demo", RoleName="buildfarm-demo")
    iam.delete_role_policy(RoleName="buildfarm-demo", PolicyName="buildfarm-artifacts")
    swept = run_play(SWEEP, extra_vars={"cluster": "demo"}).task("Sweep")
    assert swept["count"] == 2 and _iam_left(iam, "demo") == []


def test_shipped_iam_policy_is_enough_for_the_profile_and_its_sweep(aws, run_play):
    """With docs/iam-policy.json's actions on a server that checks IAM, the profile, the fleet using it and the
    sweep all work; without iam:DeleteRole the sweep fails and names it."""
    iam = aws.client("iam")
    shipped = iam_user(aws, "provisioner", shipped_policy_actions())
    no_delete = iam_user(aws, "no-delete-role", shipped_policy_actions() - {"iam:DeleteRole"})
    with enforced_auth(aws.endpoint):
        run_play(FLEET, extra_vars={"cluster": "demo"}, env=shipped)
        refused = run_play(SWEEP, extra_vars={"cluster": "demo"}, env=no_delete, expect_rc=2).task("Sweep")
    assert "DeleteRole" in refused["msg"]
    assert ("role", "buildfarm-demo") in _iam_left(iam, "demo")
    with enforced_auth(aws.endpoint):
        swept = run_play(SWEEP, extra_vars={"cluster": "demo"}, env=shipped).task("Sweep")
    assert swept["deleted"]["roles"] == ["buildfarm-demo"] and _iam_left(iam, "demo") == []
