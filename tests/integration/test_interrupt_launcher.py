"""bin/buildfarm-build against the moto server: the first SIGINT or SIGTERM while build.yml runs ends with the
cluster swept, a summary that says INTERRUPTED and exit status 128 + the signal (issue #20).

The image does not exist, so the run can never launch an instance (no address moto invents is ever contacted);
the cluster's leftovers are a VPC and a security group tagged for it beforehand, as an interrupted earlier
launch would leave them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import pytest

from tests.conftest import COLLECTIONS, ROOT, child_env


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_tears_the_cluster_down_and_says_interrupted(aws, tmp_path, signum, status):
    ec2 = aws.client("ec2")
    tags = [{"Key": "buildfarm:cluster", "Value": "it-int"}, {"Key": "buildfarm:run", "Value": "earlier"}]
    vpc = ec2.create_vpc(CidrBlock="10.66.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}])
    ec2.create_security_group(
        GroupName="it-int",
        Description="left by an interrupted launch",
        VpcId=vpc["Vpc"]["VpcId"],
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
    )
    params = tmp_path / "params.json"
    params.write_text(
        json.dumps(
            {
                "cluster": "it-int",
                "region": aws.region,
                "image_id": "ami-00000000000000001",
                "builders": 1,
                "bucket": "it-int",
                "build_script_content": "exit 0",
                "ssh_cidr": "127.0.0.1/32",
                "work_dir": str(tmp_path / "runs"),
            }
        )
    )
    env = child_env(
        aws,
        dict(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_FORCE_COLOR="0"),
        None,
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bin" / "buildfarm-build"), "-e", "@%s" % params],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    timer = threading.Timer(600, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if "PLAY [Validate and provision]" in line:
                proc.send_signal(signum)
        proc.wait(timeout=300)
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines)
    name = signal.Signals(signum).name
    assert proc.returncode == status, out[-6000:]
    assert "buildfarm-build: %s received, tearing the cluster down" % name in out
    assert "buildfarm it-int run " in out and ": INTERRUPTED - interrupted by %s" % name in out, out[-4000:]
    assert '"cluster: swept"' in out
    tag = [{"Name": "tag:buildfarm:cluster", "Values": ["it-int"]}]
    assert ec2.describe_vpcs(Filters=tag)["Vpcs"] == []
    assert ec2.describe_security_groups(Filters=tag)["SecurityGroups"] == []
