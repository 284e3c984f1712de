"""The local cloud's images: CreateImage commits the instance's container (pending, then available), RunInstances
with that ImageId boots it, DescribeImages filters through moto, DeregisterImage (+ DeleteSnapshot) removes it, and
an unknown ImageId fails as on EC2. Traffic goes only to loopback and to containers this endpoint made.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import free_port, local_client, local_cloud
from tests.integration.test_localcloud import _cli, _engine_answers, _instance, _ssh, _wait_ssh
from tests.integration.test_localcloud_network import _gateway, _group

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not _engine_answers(), reason="the container engine does not answer (make engine)"),
]
SUBNET_CIDR = "10.111.1.0/24"
BASE_AMI = "ami-12c6146b"
USER_DATA = '#!/bin/sh\necho "$(hostname)" > /var/tmp/user-data-ran\n'


def _docker_images(label):
    out = subprocess.run(
        ["docker", "image", "ls", "-q", "--filter", "label=" + label], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def _container_image(instance_id):
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{.Config.Image}}", "bf-lc-" + instance_id],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    base = tmp_path_factory.mktemp("localcloud-images")
    state_dir = base / "state"
    with local_cloud(state_dir, "--port", str(free_port())) as env:
        ns = type("Cloud", (), {})()
        ns.dir, ns.key_file = state_dir, base / "id_admin"
        ns.ec2 = ec2 = local_client(env, "ec2")
        vpc = ec2.create_vpc(CidrBlock="10.111.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=SUBNET_CIDR)["Subnet"]["SubnetId"]
        group = _group(ec2, vpc, "images", _gateway(SUBNET_CIDR) + "/32")  # SSH from the controller only
        pair = ec2.create_key_pair(KeyName="images")
        ns.key_file.write_text(pair["KeyMaterial"])
        ns.key_file.chmod(0o600)
        ns.launch = dict(
            InstanceType="t3.micro",
            SubnetId=subnet,
            SecurityGroupIds=[group],
            KeyName="images",
            UserData=USER_DATA,
            MinCount=1,
            MaxCount=1,
        )
        yield ns


def _run(cloud, image_id):
    inst = cloud.ec2.run_instances(ImageId=image_id, **cloud.launch)["Instances"][0]
    cloud.ec2.get_waiter("instance_running").wait(
        InstanceIds=[inst["InstanceId"]], WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    ip = _instance(cloud.ec2, inst["InstanceId"])["PrivateIpAddress"]
    _wait_ssh(cloud, ip)
    return inst["InstanceId"], ip


def _wait_file(cloud, ip, path, deadline=60):
    end = time.monotonic() + deadline
    while _ssh(cloud, ip, "test -s " + path, check=False).returncode:
        assert time.monotonic() < end, "%s did not appear on %s" % (path, ip)
        time.sleep(1)
    return _ssh(cloud, ip, "cat " + path).stdout.strip()


def test_an_unknown_image_id_fails_as_on_ec2(cloud):
    with pytest.raises(ClientError) as refused:
        cloud.ec2.run_instances(ImageId="ami-0123456789abcdef0", **cloud.launch)
    assert refused.value.response["Error"]["Code"] == "InvalidAMIID.NotFound"
    assert "ami-0123456789abcdef0" in refused.value.response["Error"]["Message"]


def test_create_image_boot_it_and_deregister(cloud):
    ec2 = cloud.ec2
    source, ip = _run(cloud, BASE_AMI)
    assert _wait_file(cloud, ip, "/var/tmp/user-data-ran") == "ip-" + ip.replace(".", "-")
    # a file of the source instance, and enough data that the commit takes a moment (the image is pending meanwhile)
    _ssh(
        cloud,
        ip,
        "echo baked | sudo tee /etc/baked-marker >/dev/null && sudo head -c 200M /dev/urandom | "
        "sudo tee /var/tmp/filler >/dev/null",
    )
    tags = [{"Key": "buildfarm:recipe", "Value": "test-recipe"}, {"Key": "buildfarm:cluster", "Value": "images"}]
    image_id = ec2.create_image(
        InstanceId=source,
        Name="images-test",
        NoReboot=True,
        TagSpecifications=[{"ResourceType": "image", "Tags": tags}, {"ResourceType": "snapshot", "Tags": tags}],
    )["ImageId"]
    assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"] == "pending"
    with pytest.raises(ClientError) as pending:
        ec2.run_instances(ImageId=image_id, **cloud.launch)
    assert pending.value.response["Error"]["Code"] == "InvalidAMIID.Unavailable"
    with pytest.raises(ClientError) as duplicate:
        ec2.create_image(InstanceId=source, Name="images-test", NoReboot=True)
    assert duplicate.value.response["Error"]["Code"] == "InvalidAMIName.Duplicate"
    ec2.get_waiter("image_available").wait(ImageIds=[image_id], WaiterConfig={"Delay": 1, "MaxAttempts": 300})
    found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:buildfarm:recipe", "Values": ["test-recipe"]}])
    assert [i["ImageId"] for i in found["Images"]] == [image_id]
    assert (
        ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:buildfarm:recipe", "Values": ["other"]}])["Images"]
        == []
    )
    snapshot = found["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    tagged = ec2.describe_snapshots(Filters=[{"Name": "tag:buildfarm:recipe", "Values": ["test-recipe"]}])
    assert [s["SnapshotId"] for s in tagged["Snapshots"]] == [snapshot]
    label = "buildfarm.localcloud.image=" + image_id
    assert len(_docker_images(label)) == 1
    state = json.loads((cloud.dir / "images.json").read_text())
    assert state == {image_id: "bf-lc-%s:image" % image_id}

    # an instance of the image boots the committed container: the source's file is there, its own user-data ran
    copy, copy_ip = _run(cloud, image_id)
    assert _container_image(copy) == "bf-lc-%s:image" % image_id
    assert _ssh(cloud, copy_ip, "cat /etc/baked-marker").stdout.strip() == "baked"
    assert _wait_file(cloud, copy_ip, "/var/tmp/user-data-ran") == "ip-" + copy_ip.replace(".", "-")
    assert _instance(ec2, copy)["ImageId"] == image_id

    # deregistered while an instance runs on it: no new launches, the snapshot may go, the docker image goes with
    # the last instance
    with pytest.raises(ClientError) as in_use:
        ec2.delete_snapshot(SnapshotId=snapshot)
    assert in_use.value.response["Error"]["Code"] == "InvalidSnapshot.InUse"
    ec2.deregister_image(ImageId=image_id)
    with pytest.raises(ClientError) as gone:
        ec2.run_instances(ImageId=image_id, **cloud.launch)
    assert gone.value.response["Error"]["Code"] == "InvalidAMIID.NotFound"
    ec2.delete_snapshot(SnapshotId=snapshot)
    assert len(_docker_images(label)) == 1
    ec2.terminate_instances(InstanceIds=[copy, source])
    ec2.get_waiter("instance_terminated").wait(
        InstanceIds=[copy, source], WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    end = time.monotonic() + 30
    while _docker_images(label):
        assert time.monotonic() < end, "the image of the deregistered %s is still there" % image_id
        time.sleep(1)
    assert json.loads((cloud.dir / "images.json").read_text()) == {}


def test_down_removes_the_images(cloud):
    source, _ip = _run(cloud, BASE_AMI)
    image_id = cloud.ec2.create_image(InstanceId=source, Name="left-for-down", NoReboot=False)["ImageId"]
    cloud.ec2.get_waiter("image_available").wait(ImageIds=[image_id], WaiterConfig={"Delay": 1, "MaxAttempts": 300})
    assert _instance(cloud.ec2, source)["State"]["Name"] == "running"  # imaged with a reboot, running again
    label = "buildfarm.localcloud.image=" + image_id
    assert len(_docker_images(label)) == 1
    down = _cli(cloud.dir, "down")
    assert down.returncode == 0, down.stderr
    assert _docker_images(label) == []
