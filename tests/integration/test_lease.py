"""The controller's half of the heartbeat lease (issue #20) against the moto server: buildfarm.ec2.lease renews the
cluster's instances at once and starts a detached renewer that keeps renewing while its owner lives, stops when
the owner is killed (without renewing again) or when told to; the expired-only sweep deletes a cluster whose lease
lapsed only once its instances are gone. The instances exist in moto only: nothing connects to their addresses.
The nodes' half (powering off) is tests/integration/test_lease_nodes.py, on the local cloud."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from datetime import datetime, timedelta, timezone

from ansible_collections.buildfarm.ec2.plugins.module_utils import lease as bf_lease
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from tests.conftest import AWS_PLAY


def _lease(ec2, instance_id):
    tags = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0].get("Tags", [])
    return bf_tags.to_dict(tags).get(bf_tags.TAG_LEASE)


def _launch(ec2, cluster):
    tags = bf_tags.cluster_tags(cluster, role="builder", run_id="r1", expires=bf_tags.expires_at(240))
    return ec2.run_instances(
        ImageId="ami-12c6146b",
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=bf_tags.tag_specifications("instance", tags),
    )["Instances"][0]["InstanceId"]


def _eventually(check, timeout=15):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within %d s" % timeout
        time.sleep(0.2)


def test_the_renewer_renews_while_its_owner_lives_and_stops_when_it_is_killed(aws, run_play, tmp_path):
    ec2 = aws.client("ec2")
    warm = _launch(ec2, "lease-warm")
    other = _launch(ec2, "lease-other")
    owner = subprocess.Popen(["sleep", "600"])  # stands in for ansible-playbook
    state_file = tmp_path / "lease.json"
    try:
        play = (
            AWS_PLAY
            + """
    - name: Start
      buildfarm.ec2.lease:
        cluster: lease-warm
        heartbeat_timeout: 1
        interval: 1
        owner_pid: %d
        region: "{{ lookup('env', 'AWS_REGION') }}"
        endpoint_url: "{{ lookup('env', 'AWS_ENDPOINT_URL') }}"
        state_file: %s
"""
            % (
                owner.pid,
                state_file,
            )
        )
        started = run_play(play).task("Start")
        assert started["changed"] and started["instances"] == [warm] and started["owner"] == owner.pid
        first = bf_tags.parse_time(started["lease"])
        assert timedelta(seconds=50) < first - datetime.now(timezone.utc) <= timedelta(seconds=61)
        assert _lease(ec2, warm) == started["lease"] and _lease(ec2, other) is None  # only its cluster
        state = json.loads(state_file.read_text())
        assert bf_lease.alive(state["pid"], state["start"])
        # a second start while it runs starts nothing
        assert run_play(play).task("Start")["changed"] is False
        # it keeps renewing (interval 1 s, second precision)
        _eventually(lambda: bf_tags.parse_time(_lease(ec2, warm)) > first)

        owner.kill()
        owner.wait()
        _eventually(lambda: not bf_lease.alive(state["pid"], state["start"]), timeout=10)
        last = _lease(ec2, warm)
        time.sleep(2.5)
        assert _lease(ec2, warm) == last  # no renewal after the owner's end
        log = (tmp_path / "lease.log").read_text()
        assert "renewed until" in log and "is gone: no more renewals" in log, log
    finally:
        if owner.poll() is None:
            owner.kill()


def test_stopped_ends_the_renewer(aws, run_play, tmp_path):
    state_file = tmp_path / "lease.json"
    play = AWS_PLAY + """
    - name: Start
      buildfarm.ec2.lease:
        cluster: lease-idle
        heartbeat_timeout: 1
        region: "{{ lookup('env', 'AWS_REGION') }}"
        endpoint_url: "{{ lookup('env', 'AWS_ENDPOINT_URL') }}"
        state_file: %s
    - name: Remember it
      ansible.builtin.slurp:
        src: %s
      register: state
    - name: Stop
      buildfarm.ec2.lease:
        cluster: lease-idle
        state: stopped
        state_file: %s
    - name: Stop again
      buildfarm.ec2.lease:
        cluster: lease-idle
        state: stopped
        state_file: %s
""" % ((state_file,) * 4)
    result = run_play(play)
    assert result.task("Start")["instances"] == []  # no instance yet: nothing renewed, the renewer runs anyway
    assert result.task("Stop")["changed"] is True
    assert result.task("Stop again")["changed"] is False
    state = json.loads(base64.b64decode(result.task("Remember it")["content"]))
    assert not bf_lease.alive(state["pid"], state["start"]) and not state_file.exists()


def test_the_expired_only_sweep_takes_a_lapsed_cluster_once_its_instances_are_gone(aws, run_play):
    ec2 = aws.client("ec2")
    past = bf_tags.format_time(datetime.now(timezone.utc) - timedelta(minutes=1))
    tags = bf_tags.cluster_tags("lease-cold", run_id="r1", expires=bf_tags.expires_at(240))
    vpc = ec2.create_vpc(CidrBlock="10.105.0.0/16", TagSpecifications=bf_tags.tag_specifications("vpc", tags))
    instance = _launch(ec2, "lease-cold")
    live = _launch(ec2, "lease-live")  # renewed: its lease runs
    ec2.create_tags(Resources=[instance], Tags=[{"Key": bf_tags.TAG_LEASE, "Value": past}])
    ec2.create_tags(Resources=[live], Tags=[{"Key": bf_tags.TAG_LEASE, "Value": bf_lease.lease_until(10)}])
    sweep = AWS_PLAY + """
    - name: Sweep
      buildfarm.ec2.sweep:
        expired_only: true
"""
    # the lease lapsed but the instance still runs (say it could not read its lease): not swept
    assert run_play(sweep).task("Sweep")["count"] == 0
    ec2.terminate_instances(InstanceIds=[instance, live])
    swept = run_play(sweep).task("Sweep")
    # lapsed and nothing left: the VPC goes although its buildfarm:expires is hours away; lease-live is left
    assert swept["clusters"] == ["lease-cold"] and swept["deleted"]["vpcs"] == [vpc["Vpc"]["VpcId"]]
    assert run_play(sweep).task("Sweep")["count"] == 0
