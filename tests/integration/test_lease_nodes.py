"""The nodes' half of the heartbeat lease (issue #20) on the local cloud, with real containers: a node whose lease
nobody renews powers itself off and ends `terminated`; one whose lease buildfarm.ec2.lease renews under a real
ansible-playbook stays past the timeout, and lapses once that ansible-playbook is SIGKILLed; a node that cannot
read its tags does not power off at the first failed read but one heartbeat_timeout after its last known lease.
Then `sweep.yml -e expired_only=true` removes the rest (VPCs and subnets whose buildfarm:expires is hours away).
The local cloud refuses tag keys instance metadata cannot serve, as EC2. Traffic goes only to loopback (the API).

heartbeat_timeout is 1 minute: the nodes check every 10 s, the renewer renews every 15 s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper
from botocore.exceptions import ClientError
from test_fleet_launch import IMAGE, _containers

from ansible_collections.buildfarm.ec2.plugins.module_utils import fleet
from ansible_collections.buildfarm.ec2.plugins.module_utils import lease as bf_lease
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from ansible_collections.buildfarm.ec2.plugins.module_utils.aws import RETRY
from tests import processes
from tests.conftest import COLLECTIONS, free_port, local_client, local_cloud

pytestmark = pytest.mark.engine
CLUSTERS = {"lease-cold": 105, "lease-warm": 106, "lease-blind": 107}  # cluster -> its VPC 10.N.0.0/16


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("localcloud-lease") / "state"
    with local_cloud(state_dir, "--port", str(free_port())) as env:
        yield env, RetryingBotoClientWrapper(local_client(env, "ec2"), RETRY)


def _child_env(env):
    return dict(
        os.environ,
        **env,
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_FORCE_COLOR="0",
    )


def _launch(ec2, cluster):
    """One node of ``cluster`` in its own VPC and subnet (tagged, expiring in 4 hours) with a 1-minute lease."""
    tags = bf_tags.cluster_tags(cluster, run_id="r1", expires=bf_tags.expires_at(240))
    octet = CLUSTERS[cluster]
    vpc = ec2.create_vpc(
        aws_retry=True, CidrBlock="10.%d.0.0/16" % octet, TagSpecifications=bf_tags.tag_specifications("vpc", tags)
    )["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(
        aws_retry=True,
        VpcId=vpc,
        CidrBlock="10.%d.1.0/24" % octet,
        TagSpecifications=bf_tags.tag_specifications("subnet", tags),
    )["Subnet"]["SubnetId"]
    launch = dict(
        image_id=IMAGE,
        subnet_id=subnet,
        security_group_ids=[],
        public_ip=False,
        key_name=None,
        user_data=fleet.build_user_data("", 30, heartbeat_timeout=1),
        lease=bf_lease.lease_until(1),
        root_device="/dev/xvda",
        tags={"builder": bf_tags.cluster_tags(cluster, role="builder", run_id="r1", expires=bf_tags.expires_at(30))},
        first={"builder": 0},
    )
    return fleet.run_instances(ec2, {"name": "builder", "type": "t3.micro"}, 1, launch)[0][0], time.monotonic()


def _instances(ec2, ids):
    found = ec2.describe_instances(aws_retry=True, InstanceIds=list(ids))["Reservations"]
    return {i["InstanceId"]: i for r in found for i in r["Instances"]}


def test_the_lease_powers_nodes_off_unless_renewed_and_the_sweep_takes_the_rest(cloud, tmp_path):
    env, ec2 = cloud
    cold, cold_at = _launch(ec2, "lease-cold")
    blind, blind_at = _launch(ec2, "lease-blind")
    ec2.modify_instance_metadata_options(aws_retry=True, InstanceId=blind, InstanceMetadataTags="disabled")
    warm, warm_at = _launch(ec2, "lease-warm")
    ids = {"cold": cold, "blind": blind, "warm": warm}
    first_lease = bf_tags.to_dict(_instances(ec2, [warm])[warm]["Tags"])[bf_tags.TAG_LEASE]

    # The local cloud refuses what EC2 refuses once tags are in the metadata: keys IMDS cannot serve.
    with pytest.raises(ClientError) as bad_tag:
        ec2.create_tags(Resources=[cold], Tags=[{"Key": "team/owner", "Value": "x"}])
    assert bad_tag.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "'team/owner' is not a valid tag key" in str(bad_tag.value)
    ec2.create_tags(aws_retry=True, Resources=[blind], Tags=[{"Key": "team/owner", "Value": "x"}])  # tags not in IMDS
    with pytest.raises(ClientError) as bad_enable:
        ec2.modify_instance_metadata_options(InstanceId=blind, InstanceMetadataTags="enabled")
    assert bad_enable.value.response["Error"]["Code"] == "InvalidParameterValue"
    subnet = _instances(ec2, [cold])[cold]["SubnetId"]
    with pytest.raises(ClientError) as bad_launch:
        ec2.run_instances(
            ImageId=IMAGE,
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet,
            MetadataOptions={"HttpTokens": "required", "InstanceMetadataTags": "enabled"},
            TagSpecifications=bf_tags.tag_specifications("instance", {"Patch Group": "a", "Name": "refused"}),
        )
    assert bad_launch.value.response["Error"]["Code"] == "InvalidParameterValue"
    refused = ec2.describe_instances(aws_retry=True, Filters=[{"Name": "tag:Name", "Values": ["refused"]}])
    assert refused["Reservations"] == []

    # A real ansible-playbook keeps the warm cluster's lease, in its own process group. Its workers are not in it
    # (each calls setsid()): the one waiting is listed before the kill and ended after it (tests/processes.py).
    state_file = tmp_path / "lease.json"
    play = tmp_path / "keep.yml"
    play.write_text("""- hosts: localhost
  gather_facts: false
  tasks:
    - name: Keep the lease
      buildfarm.ec2.lease:
        cluster: lease-warm
        heartbeat_timeout: 1
        region: "{{ lookup('env', 'AWS_REGION') }}"
        endpoint_url: "{{ lookup('env', 'AWS_ENDPOINT_URL') }}"
        state_file: %s
    - name: Live on
      ansible.builtin.wait_for:
        timeout: 900
""" % state_file)
    controller = subprocess.Popen(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play)],
        env=_child_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    gone, killed_at, renewer, workers = {}, None, None, {}
    try:
        deadline = time.monotonic() + 330
        while len(gone) < 3:
            assert time.monotonic() < deadline, "not every node terminated: %s" % gone
            now = time.monotonic()
            seen = _instances(ec2, ids.values())
            for name, inst in ((n, seen[i]) for n, i in ids.items()):
                if name not in gone and inst["State"]["Name"] == "terminated":
                    gone[name] = (now, inst.get("StateReason", {}).get("Code"))
            # Past its first lease by 30 s and renewed, the warm node still runs: then its controller is killed.
            if killed_at is None and now - warm_at > 90:
                assert "warm" not in gone, "the renewed node powered off: %s" % gone
                lease = bf_tags.to_dict(_instances(ec2, [warm])[warm]["Tags"])[bf_tags.TAG_LEASE]
                assert lease > first_lease
                renewer = json.loads(state_file.read_text())
                assert renewer["owner"] == controller.pid and bf_lease.alive(renewer["pid"], renewer["start"])
                workers = processes.descendants(controller.pid)
                os.killpg(controller.pid, signal.SIGKILL)
                controller.wait()
                killed_at = time.monotonic()
            if renewer is not None and bf_lease.alive(renewer["pid"], renewer["start"]):
                assert time.monotonic() - killed_at < 5, "the renewer outlived its owner"
            time.sleep(2)
    finally:
        if controller.poll() is None:
            workers = processes.descendants(controller.pid)
            os.killpg(controller.pid, signal.SIGKILL)
            controller.wait()
        processes.kill(workers)
        if renewer is None and state_file.exists():
            bf_lease.stop(str(state_file))
    assert {reason for _at, reason in gone.values()} == {"Client.InstanceInitiatedShutdown"}
    # unrenewed: off at the first check after its lease (60 s) ended, boot and polling included
    assert 60 < gone["cold"][0] - cold_at < 110, gone
    # unreadable: not at its first failed read, but one heartbeat_timeout after its last known lease
    assert gone["blind"][0] - blind_at > 118, gone
    # renewed until its owner died: off within the last lease (at most 60 s) and a check after the kill
    assert killed_at is not None and 40 < gone["warm"][0] - killed_at < 100, (gone, killed_at)
    assert _containers(list(ids.values())) == []

    sweep = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "buildfarm.ec2.sweep",
            "-e",
            "expired_only=true",
            "-e",
            "region=%s" % env["AWS_REGION"],
            "-e",
            "endpoint_url=%s" % env["AWS_ENDPOINT_URL"],
        ],
        env=_child_env(env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-2000:]
    for name in CLUSTERS:
        tag = [{"Name": "tag:buildfarm:cluster", "Values": [name]}]
        assert ec2.describe_vpcs(aws_retry=True, Filters=tag)["Vpcs"] == [], name
        assert ec2.describe_subnets(aws_retry=True, Filters=tag)["Subnets"] == [], name
