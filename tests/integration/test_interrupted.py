"""playbooks/interrupted.yml against the moto server: what an interrupted build.yml run leaves is torn down as the
run's own teardown would (everything, or with keep_host only the builders)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.buildfarm.ec2.plugins.module_utils import tags

PLAYBOOK = Path(__file__).resolve().parents[2] / "playbooks" / "interrupted.yml"


def _cluster(ec2, cidr):
    vpc = ec2.create_vpc(
        CidrBlock=cidr + "/16", TagSpecifications=tags.tag_specifications("vpc", tags.cluster_tags("intr"))
    )["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(
        VpcId=vpc,
        CidrBlock=cidr + "/24",
        TagSpecifications=tags.tag_specifications("subnet", tags.cluster_tags("intr")),
    )["Subnet"]["SubnetId"]
    ids = {}
    for role, count in (("host", 1), ("builder", 2)):
        ids[role] = [
            i["InstanceId"]
            for i in ec2.run_instances(
                ImageId="ami-12c6146b",
                MinCount=count,
                MaxCount=count,
                InstanceType="t3.micro",
                SubnetId=subnet,
                TagSpecifications=tags.tag_specifications("instance", tags.cluster_tags("intr", role=role)),
            )["Instances"]
        ]
    zone = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailabilityZone"]
    volume = ec2.create_volume(
        AvailabilityZone=zone,
        Size=1,
        TagSpecifications=tags.tag_specifications("volume", dict(tags.cluster_tags("intr"), Name="workspace")),
    )["VolumeId"]
    return ids, vpc, volume


def _live(ec2):
    return sorted(
        i["InstanceId"]
        for r in ec2.describe_instances(
            Filters=[
                {"Name": "tag:buildfarm:cluster", "Values": ["intr"]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )["Reservations"]
        for i in r["Instances"]
    )


@pytest.mark.parametrize("keep_host", [True, False])
def test_an_interrupted_run_is_torn_down_as_its_own_teardown_would(aws, run_play, tmp_path, keep_host):
    ec2 = aws.client("ec2")
    ids, vpc, volume = _cluster(ec2, "10.7.0.0" if keep_host else "10.8.0.0")
    params = {
        "cluster": "intr",
        "region": aws.region,
        "run_id": "r1",
        "work_dir": str(tmp_path),
        "keep_host": keep_host,
    }
    result = run_play(PLAYBOOK, extra_vars=params)  # it fails only when the teardown failed
    summary = "\n".join(result.task("Print the summary")["msg"])
    assert "INTERRUPTED - interrupted by interrupt" in summary, summary
    if keep_host:
        assert _live(ec2) == ids["host"]
        assert "cluster: host kept (keep_host), builders terminated" in summary, summary
        assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"] and ec2.describe_volumes(VolumeIds=[volume])["Volumes"]
    else:
        assert _live(ec2) == []
        assert "cluster: swept" in summary, summary
        assert ec2.describe_vpcs(Filters=[{"Name": "tag:buildfarm:cluster", "Values": ["intr"]}])["Vpcs"] == []
