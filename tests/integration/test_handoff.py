"""playbooks/handoff.yml against the moto server: the workspace goes host -> builder -> host."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.buildfarm.ec2.plugins.module_utils import tags

PLAYBOOK = Path(__file__).resolve().parents[2] / "playbooks" / "handoff.yml"


def _instance(ec2, subnet_id, role):
    return ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        SubnetId=subnet_id,
        TagSpecifications=tags.tag_specifications("instance", tags.cluster_tags("hand", role=role)),
    )["Instances"][0]["InstanceId"]


def _attached_to(ec2, name):
    (volume,) = ec2.describe_volumes(
        Filters=[{"Name": "tag:buildfarm:cluster", "Values": ["hand"]}, {"Name": "tag:Name", "Values": [name]}]
    )["Volumes"]
    return [a["InstanceId"] for a in volume["Attachments"] if a["State"] == "attached"]


def test_workspace_goes_to_the_builder_and_back(aws, run_play):
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.5.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.5.0.0/24")["Subnet"]["SubnetId"]
    host = _instance(ec2, subnet, "host")
    _instance(ec2, subnet, "builder")

    result = run_play(PLAYBOOK, extra_vars={"cluster": "hand", "region": aws.region}, inventory="localhost,")
    moved = result.task("Hand the workspace to the target")
    back = result.task("Hand the workspace back to the host")
    assert moved["changed"] and moved["instance_id"] != host
    assert back["changed"] and back["instance_id"] == host
    assert _attached_to(ec2, "workspace") == [host]


def test_missing_builder_is_refused(aws, run_play):
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.6.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.6.0.0/24")["Subnet"]["SubnetId"]
    _instance(ec2, subnet, "host")
    result = run_play(PLAYBOOK, extra_vars={"cluster": "hand", "region": aws.region}, expect_rc=2)
    assert "needs a running host and a running builder instance" in result.task("Check both instances exist")["msg"]
    assert ec2.describe_volumes(Filters=[{"Name": "tag:buildfarm:cluster", "Values": ["hand"]}])["Volumes"] == []


def test_a_workspace_left_on_the_builder_is_moved_back_from_there(aws, run_play):
    """An earlier hand-off whose controller died left the workspace on the builder: the next one takes it from there
    (it does not refuse because the volume is not on the host) and hands it back to the host."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.0.0/24")["Subnet"]["SubnetId"]
    host = _instance(ec2, subnet, "host")
    builder = _instance(ec2, subnet, "builder")
    zone = ec2.describe_instances(InstanceIds=[builder])["Reservations"][0]["Instances"][0]["Placement"]
    left = ec2.create_volume(
        AvailabilityZone=zone["AvailabilityZone"],
        Size=1,
        TagSpecifications=tags.tag_specifications("volume", dict(tags.cluster_tags("hand"), Name="workspace")),
    )["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[left])
    ec2.attach_volume(VolumeId=left, InstanceId=builder, Device="/dev/sdf")
    ec2.get_waiter("volume_in_use").wait(VolumeIds=[left])
    assert _attached_to(ec2, "workspace") == [builder]

    result = run_play(PLAYBOOK, extra_vars={"cluster": "hand", "region": aws.region}, inventory="localhost,")
    assert result.task("Create the workspace when missing")["volume_id"] == left  # the same volume, not a new one
    assert result.task("Hand the workspace to the target")["instance_id"] == builder
    back = result.task("Hand the workspace back to the host")
    assert back["changed"] and back["instance_id"] == host
    assert _attached_to(ec2, "workspace") == [host]
