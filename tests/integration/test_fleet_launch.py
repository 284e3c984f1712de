"""The fleet's launches on the local cloud, with real containers (issue #20): a RunInstances retried with the run's
ClientToken does not launch twice, and the max-lifetime timer of the user-data powers every node off, which ends
the instance `terminated` with its container gone. Traffic goes only to loopback (the API)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper
from botocore.exceptions import ClientError

from ansible_collections.buildfarm.ec2.plugins.module_utils import fleet
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from ansible_collections.buildfarm.ec2.plugins.module_utils.aws import RETRY
from tests.conftest import free_port, local_client, local_cloud

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "ami-12c6146b"

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def ec2(tmp_path_factory):
    """An EC2 client (calls take aws_retry, as in the modules) of a local cloud of this module; always down."""
    state_dir = tmp_path_factory.mktemp("localcloud") / "state"
    with local_cloud(state_dir, "--port", str(free_port())) as exports:
        yield RetryingBotoClientWrapper(local_client(exports, "ec2"), RETRY)


def _launch(ec2, run_id, lifetime):
    vpc = ec2.create_vpc(CidrBlock="10.78.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.78.1.0/24")["Subnet"]["SubnetId"]
    return dict(
        image_id=IMAGE,
        subnet_id=subnet,
        security_group_ids=[],
        public_ip=False,
        key_name=None,
        user_data=fleet.build_user_data("", lifetime),
        root_device="/dev/xvda",
        tags={"builder": bf_tags.cluster_tags("it-launch", role="builder", run_id=run_id)},
        first={"builder": 0},
    )


def _containers(ids):
    names = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return [n for n in names if any(n.endswith(i) for i in ids)]


def test_a_retried_launch_returns_the_first_and_the_lifetime_timer_terminates_every_node(ec2):
    role = {"name": "builder", "type": "c6i.large"}
    launch = _launch(ec2, "run-1", lifetime=1)
    token = fleet.client_token(launch, role, "on-demand")
    assert 0 < len(token) <= 64
    assert token == fleet.client_token(dict(launch), role, "on-demand")
    assert token != fleet.client_token(dict(launch, first={"builder": 2}), role, "on-demand")
    other_run = {"builder": bf_tags.cluster_tags("it-launch", role="builder", run_id="run-2")}
    assert token != fleet.client_token(dict(launch, tags=other_run), role, "on-demand")

    ids = fleet.run_instances(ec2, role, 2, launch)[0]
    again = fleet.run_instances(ec2, role, 2, launch)[0]  # the retry of a call whose answer was lost
    assert again == ids and len(ids) == 2
    live = [
        i
        for r in ec2.describe_instances(Filters=[{"Name": "tag:buildfarm:cluster", "Values": ["it-launch"]}])[
            "Reservations"
        ]
        for i in r["Instances"]
    ]
    assert sorted(i["InstanceId"] for i in live) == sorted(ids)
    # The local cloud makes the containers after answering (pending, as EC2): one per instance, none for the retry.
    deadline = time.monotonic() + 180
    while len(_containers(ids)) < 2 and time.monotonic() < deadline:
        time.sleep(2)
    assert len(_containers(ids)) == 2
    # The same token with other parameters is EC2's IdempotentParameterMismatch, not a second launch.
    with pytest.raises(ClientError) as mismatch:
        fleet.run_instances(ec2, role, 3, launch)
    assert mismatch.value.response["Error"]["Code"] == "IdempotentParameterMismatch"

    # lifetime=1: the nodes power themselves off a minute after boot; shutdown behaviour terminate.
    deadline = time.monotonic() + 300
    while True:
        states = {
            i["InstanceId"]: (i["State"]["Name"], i.get("StateReason", {}).get("Code"))
            for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
            for i in r["Instances"]
        }
        if all(state == "terminated" for state, _code in states.values()):
            break
        assert time.monotonic() < deadline, "not terminated 300 s after the launch answered: %s" % states
        time.sleep(3)
    assert {code for _state, code in states.values()} == {"Client.InstanceInitiatedShutdown"}
    assert _containers(ids) == []
