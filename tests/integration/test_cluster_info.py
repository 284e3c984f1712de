"""buildfarm.ec2.cluster_info through ansible-playbook against the moto server."""

from __future__ import annotations

from ansible_collections.buildfarm.ec2.plugins.module_utils import tags
from tests.conftest import AWS_PLAY

PLAY = AWS_PLAY + """
    - name: List
      buildfarm.ec2.cluster_info:
        cluster: "{{ cluster }}"
        run_id: "{{ run_id | default(omit) }}"
"""


def _make_cluster(ec2, cluster, run_id):
    t = tags.cluster_tags(cluster, role="network", run_id=run_id)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=tags.tag_specifications("vpc", t))["Vpc"]
    subnet = ec2.create_subnet(
        VpcId=vpc["VpcId"], CidrBlock="10.0.0.0/24", TagSpecifications=tags.tag_specifications("subnet", t)
    )["Subnet"]
    group = ec2.create_security_group(
        GroupName=cluster + "-sg",
        Description="test",
        VpcId=vpc["VpcId"],
        TagSpecifications=tags.tag_specifications("security-group", t),
    )
    instance = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=2,
        MaxCount=2,
        InstanceType="t3.micro",
        SubnetId=subnet["SubnetId"],
        TagSpecifications=tags.tag_specifications(
            "instance", tags.cluster_tags(cluster, role="builder", run_id=run_id)
        ),
    )["Instances"]
    return vpc["VpcId"], subnet["SubnetId"], group["GroupId"], [i["InstanceId"] for i in instance]


def test_lists_only_the_cluster_and_run(aws, run_play):
    ec2 = aws.client("ec2")
    vpc_id, subnet_id, group_id, instance_ids = _make_cluster(ec2, "demo", "r1")
    _make_cluster(ec2, "other", "r1")

    result = run_play(PLAY, extra_vars={"cluster": "demo"}).task("List")
    resources = result["resources"]
    assert result["changed"] is False
    assert {i["id"] for i in resources["instances"]} == set(instance_ids)
    assert {i["role"] for i in resources["instances"]} == {"builder"}
    assert [v["id"] for v in resources["vpcs"]] == [vpc_id]
    assert [s["id"] for s in resources["subnets"]] == [subnet_id]
    assert [g["id"] for g in resources["security_groups"]] == [group_id]
    assert result["total"] == 5

    assert run_play(PLAY, extra_vars={"cluster": "demo", "run_id": "r2"}).task("List")["total"] == 0


def test_terminated_instances_are_not_listed(aws, run_play):
    ec2 = aws.client("ec2")
    instance_ids = _make_cluster(ec2, "demo", "r1")[3]
    ec2.terminate_instances(InstanceIds=instance_ids)
    resources = run_play(PLAY, extra_vars={"cluster": "demo"}).task("List")["resources"]
    assert resources["instances"] == []


def test_bad_cluster_name_fails_before_any_call(aws, run_play):
    result = run_play(PLAY, extra_vars={"cluster": "Bad_Name"}, expect_rc=2).task("List")
    assert result["failed"] is True
    assert "cluster name 'Bad_Name' is invalid" in result["msg"]


def test_unreachable_endpoint_fails_cleanly(aws, run_play):
    from tests.conftest import free_port  # noqa: PLC0415

    result = run_play(
        PLAY, extra_vars={"cluster": "demo"}, env={"AWS_ENDPOINT_URL": "http://127.0.0.1:%d" % free_port()}, expect_rc=2
    ).task("List")
    assert result["failed"] is True
    assert "Failed to list the resources of cluster demo" in result["msg"]
    assert "Traceback" not in result.get("module_stderr", "")
