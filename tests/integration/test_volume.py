"""buildfarm.ec2.volume (including the hand-off) through ansible-playbook against the moto server."""

from __future__ import annotations

import pytest

from tests.conftest import AWS_PLAY

PLAY = AWS_PLAY + """
    - name: Volume
      buildfarm.ec2.volume:
        cluster: demo
        run_id: r1
        name: "{{ volume_name | default('workspace') }}"
        state: "{{ state }}"
        size: "{{ size | default(omit) }}"
        instance_id: "{{ instance_id | default(omit) }}"
        from_instance_id: "{{ from_instance_id | default(omit) }}"
        availability_zone: "{{ zone | default(omit) }}"
        device_name: "{{ device | default(omit) }}"
        keep: "{{ keep | default(false) }}"
"""


@pytest.fixture
def instances(aws):
    """Two instances in one subnet (zone) and one in another zone: host, builder, elsewhere."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ids = {}
    for name, cidr, zone in (("a", "10.0.0.0/24", "eu-west-1a"), ("b", "10.0.1.0/24", "eu-west-1b")):
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
        count = 2 if name == "a" else 1
        launched = ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=count, MaxCount=count, InstanceType="t3.micro", SubnetId=subnet
        )["Instances"]
        ids[name] = [i["InstanceId"] for i in launched]
    return {"host": ids["a"][0], "builder": ids["a"][1], "elsewhere": ids["b"][0]}


def _volumes(ec2):
    filters = [{"Name": "tag:buildfarm:cluster", "Values": ["demo"]}, {"Name": "tag:Name", "Values": ["workspace"]}]
    return ec2.describe_volumes(Filters=filters)["Volumes"]


def _attached_to(ec2, volume_id):
    volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    return [(a["InstanceId"], a["State"]) for a in volume["Attachments"]]


def test_lifecycle_with_hand_off(aws, run_play, instances):
    ec2 = aws.client("ec2")
    host, builder = instances["host"], instances["builder"]
    attach_host = {"state": "attached", "size": 8, "instance_id": host}

    check = run_play(PLAY, extra_vars=attach_host, check=True).task("Volume")
    assert check["changed"] is True and check["volume_id"] is None
    assert check["instance_id"] == host and check["attachment_state"] == "attached"
    assert _volumes(ec2) == []

    made = run_play(PLAY, extra_vars=attach_host).task("Volume")
    assert made["changed"] is True
    volume_id = made["volume_id"]
    assert [v["VolumeId"] for v in _volumes(ec2)] == [volume_id]
    assert _attached_to(ec2, volume_id) == [(host, "attached")]
    assert made["serial"] == volume_id.replace("-", "") and made["device"] == "/dev/sdf"
    assert made["nvme_path"].endswith("Amazon_Elastic_Block_Store_" + made["serial"])
    volume = _volumes(ec2)[0]
    assert volume["Size"] == 8 and volume["Encrypted"] is True
    tags = {t["Key"]: t["Value"] for t in volume["Tags"]}
    assert tags["buildfarm:run"] == "r1" and "buildfarm:keep" not in tags

    assert run_play(PLAY, extra_vars=attach_host).task("Volume")["changed"] is False

    refused = run_play(PLAY, extra_vars={"state": "attached", "instance_id": builder}, expect_rc=2).task("Volume")
    assert f"is attached to {host}, not {builder}: use state=handed_off" in refused["msg"]
    assert _attached_to(ec2, volume_id) == [(host, "attached")]

    hand_off = {"state": "handed_off", "instance_id": builder, "from_instance_id": host, "device": "/dev/sdg"}
    check_move = run_play(PLAY, extra_vars=hand_off, check=True).task("Volume")
    assert check_move["changed"] is True and check_move["instance_id"] == builder
    assert _attached_to(ec2, volume_id) == [(host, "attached")]

    moved = run_play(PLAY, extra_vars=hand_off).task("Volume")
    assert moved["changed"] is True
    assert moved["actions"] == [f"detach from {host}", f"attach to {builder} as /dev/sdg"]
    assert moved["volume_id"] == volume_id and moved["serial"] == volume_id.replace("-", "")
    assert moved["attachment_state"] == "attached" and moved["device"] == "/dev/sdg"
    assert _attached_to(ec2, volume_id) == [(builder, "attached")]
    assert run_play(PLAY, extra_vars=hand_off).task("Volume")["changed"] is False

    # and back to the host (from_instance_id names the builder now)
    back = run_play(PLAY, extra_vars={"state": "handed_off", "instance_id": host}).task("Volume")
    assert back["changed"] is True and _attached_to(ec2, volume_id) == [(host, "attached")]

    # a hand-off from an instance it is not on is refused
    wrong = run_play(
        PLAY,
        extra_vars={"state": "handed_off", "instance_id": builder, "from_instance_id": instances["elsewhere"]},
        expect_rc=2,
    ).task("Volume")
    assert "neither from_instance_id" in wrong["msg"]

    detached = run_play(PLAY, extra_vars={"state": "detached"}).task("Volume")
    assert detached["changed"] is True and detached["state"] == "available"
    assert _attached_to(ec2, volume_id) == []
    assert run_play(PLAY, extra_vars={"state": "detached"}).task("Volume")["changed"] is False

    kept = run_play(PLAY, extra_vars={"state": "present", "keep": True}).task("Volume")
    assert kept["changed"] is True
    assert {"Key": "buildfarm:keep", "Value": "true"} in _volumes(ec2)[0]["Tags"]

    run_play(PLAY, extra_vars={"state": "attached", "instance_id": host})
    check_gone = run_play(PLAY, extra_vars={"state": "absent"}, check=True).task("Volume")
    assert check_gone["changed"] is True and check_gone["state"] == "absent"
    assert len(_volumes(ec2)) == 1
    gone = run_play(PLAY, extra_vars={"state": "absent"}).task("Volume")
    assert gone["changed"] is True and gone["actions"] == [f"detach from {host}", f"delete {volume_id}"]
    assert _volumes(ec2) == []
    assert run_play(PLAY, extra_vars={"state": "absent"}).task("Volume")["changed"] is False


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"state": "present", "zone": "eu-west-1a"}, "size is required to create volume workspace"),
        ({"state": "present", "size": 8}, "availability_zone or instance_id is required"),
        ({"state": "present", "size": 0, "zone": "eu-west-1a"}, "size must be 1-16384 GiB"),
        ({"state": "attached", "size": 8, "instance_id": "HOST", "device": "/dev/nvme1"}, "device_name '/dev/nvme1'"),
        ({"state": "attached", "size": 8}, "state is attached but all of the following are missing: instance_id"),
        ({"state": "attached", "size": 8, "instance_id": "i-0123456789abcdef0"}, "does not exist or is terminated"),
        ({"state": "attached", "size": 8, "instance_id": "HOST", "zone": "eu-west-1b"}, "differs from the zone"),
        ({"state": "handed_off", "instance_id": "HOST"}, "volume workspace does not exist in cluster demo"),
        (
            {"state": "present", "size": 8, "zone": "eu-west-1a", "volume_name": "bad name"},
            "name 'bad name' is invalid",
        ),
        ({"state": "moved"}, "value of state must be one of"),
    ],
)
def test_bad_input_is_refused_before_any_volume_exists(aws, run_play, instances, extra, message):
    if extra.get("instance_id") == "HOST":
        extra = dict(extra, instance_id=instances["host"])
    result = run_play(PLAY, extra_vars=extra, expect_rc=2).task("Volume")
    assert result["failed"] is True
    assert message in result["msg"]
    assert (
        aws.client("ec2").describe_volumes(Filters=[{"Name": "tag-key", "Values": ["buildfarm:cluster"]}])["Volumes"]
        == []
    )


def test_volume_in_another_zone_is_not_handed_off(aws, run_play, instances):
    ec2 = aws.client("ec2")
    made = run_play(PLAY, extra_vars={"state": "attached", "size": 4, "instance_id": instances["host"]}).task("Volume")
    refused = run_play(
        PLAY, extra_vars={"state": "handed_off", "instance_id": instances["elsewhere"]}, expect_rc=2
    ).task("Volume")
    assert "attaches only in its own zone" in refused["msg"]
    assert _attached_to(ec2, made["volume_id"]) == [(instances["host"], "attached")]
