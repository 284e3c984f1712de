"""buildfarm.ec2.fleet through ansible-playbook against the moto server (wait_for_ssh stays off: no machine is
behind moto's addresses)."""

from __future__ import annotations

import base64
import json
import urllib.parse
import urllib.request
from collections import Counter

import pytest

from tests.conftest import AWS_PLAY

PLAY = AWS_PLAY + """
    - name: Network
      buildfarm.ec2.network:
        cluster: demo
        ssh_cidr: 203.0.113.7/32
        subnet_cidr: "{{ subnet_cidr | default('10.0.0.0/24') }}"
      register: net

    - name: Fleet
      buildfarm.ec2.fleet:
        cluster: demo
        run_id: r1
        state: "{{ state | default('present') }}"
        image_id: "{{ image_id | default('ami-12c6146b') }}"
        subnet_id: "{{ net.subnet_id }}"
        security_group_ids: ["{{ net.security_group_id }}"]
        public_ip: "{{ public_ip | default(false) }}"
        max_lifetime: "{{ max_lifetime | default(90) }}"
        user_data: "{{ user_data | default('echo hello from buildfarm') }}"
        heartbeat_timeout: "{{ heartbeat_timeout | default(0) }}"
        roles: "{{ fleet_roles }}"
      when: fleet_roles | length > 0 or (state | default('present')) == 'absent'
"""

ROLES = [
    {"name": "host", "count": 1, "type": "t3.small", "volume_size": 30},
    {"name": "builder", "count": 2, "type": "c6i.large", "spot": True},
]


def _live(ec2, role=None):
    filters = [
        {"Name": "tag:buildfarm:cluster", "Values": ["demo"]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]},
    ]
    if role:
        filters.append({"Name": "tag:buildfarm:role", "Values": [role]})
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


def _key_pairs(ec2):
    return ec2.describe_key_pairs(Filters=[{"Name": "tag:buildfarm:cluster", "Values": ["demo"]}])["KeyPairs"]


def test_check_apply_reapply_scale_absent(aws, run_play):
    ec2 = aws.client("ec2")
    check = run_play(PLAY, extra_vars={"fleet_roles": ROLES}, check=True).task("Fleet")
    assert check["changed"] is True
    assert check["plan"] == {"host": {"launch": 1, "terminate": []}, "builder": {"launch": 2, "terminate": []}}
    assert _live(ec2) == [] and _key_pairs(ec2) == []

    made = run_play(PLAY, extra_vars={"fleet_roles": ROLES}).task("Fleet")
    assert made["changed"] is True
    assert made["key_name"] == "buildfarm-demo"
    assert "PRIVATE KEY" in made["private_key"]
    assert [k["KeyName"] for k in _key_pairs(ec2)] == ["buildfarm-demo"]
    live = _live(ec2)
    assert sorted(i["InstanceId"] for i in live) == sorted(made["launched"])
    assert sorted(i["id"] for i in made["instances"]) == sorted(made["launched"])
    assert {i["role"] for i in made["instances"]} == {"host", "builder"}
    for item in made["instances"]:
        assert item["state"] == "running" and item["private_ip"].startswith("10.0.0.")
        assert item["private_dns"] and item["launch_time"]
    for instance in live:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["buildfarm:run"] == "r1" and "buildfarm:expires" in tags
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["KeyName"] == "buildfarm-demo"
        behaviour = ec2.describe_instance_attribute(
            InstanceId=instance["InstanceId"], Attribute="instanceInitiatedShutdownBehavior"
        )
        assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
        user_data = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
        script = base64.b64decode(user_data["UserData"]["Value"]).decode()
        assert "systemd-run --on-active=90m" in script and "echo hello from buildfarm" in script
    builders = _live(ec2, "builder")
    assert len(builders) == 2 and all(i.get("InstanceLifecycle") == "spot" for i in builders)
    host = _live(ec2, "host")[0]
    assert host["InstanceType"] == "t3.small"
    root = host["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    assert ec2.describe_volumes(VolumeIds=[root])["Volumes"][0]["Size"] == 30

    again = run_play(PLAY, extra_vars={"fleet_roles": ROLES}).task("Fleet")
    assert again["changed"] is False
    assert "private_key" not in again and again["key_name"] == "buildfarm-demo"
    assert len(_live(ec2)) == 3

    def scale(n):
        roles = [dict(ROLES[1], count=n)]
        return run_play(PLAY, extra_vars={"fleet_roles": roles}).task("Fleet")

    up = scale(5)
    assert up["changed"] is True and len(up["launched"]) == 3
    assert len(_live(ec2, "builder")) == 5 and len(_live(ec2, "host")) == 1
    newest = sorted(up["launched"])
    down = scale(1)
    assert down["changed"] is True and len(down["terminated"]) == 4
    assert len(_live(ec2, "builder")) == 1
    assert {i["InstanceId"] for i in _live(ec2, "builder")}.isdisjoint(newest)  # the newest went first
    assert scale(1)["changed"] is False

    check_absent = run_play(PLAY, extra_vars={"fleet_roles": [], "state": "absent"}, check=True).task("Fleet")
    assert check_absent["changed"] is True and len(check_absent["terminated"]) == 2
    assert len(_live(ec2)) == 2

    gone = run_play(PLAY, extra_vars={"fleet_roles": [], "state": "absent"}).task("Fleet")
    assert gone["changed"] is True
    assert _live(ec2) == [] and _key_pairs(ec2) == []
    assert run_play(PLAY, extra_vars={"fleet_roles": [], "state": "absent"}).task("Fleet")["changed"] is False


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"fleet_roles": [ROLES[0], ROLES[0]]}, "role name 'host' appears twice"),
        ({"fleet_roles": [dict(ROLES[0], count=-1)]}, "count must be 0 or more"),
        ({"fleet_roles": [dict(ROLES[0], name="Bad Name")]}, "role name 'Bad Name' is invalid"),
        ({"fleet_roles": ROLES, "max_lifetime": 0}, "max_lifetime must be a positive number"),
        ({"fleet_roles": [dict(ROLES[0], volume_size=0)]}, "volume_size must be 1-16384"),
        ({"fleet_roles": ROLES, "user_data": "export AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP"}, "an AWS access key id"),
        ({"fleet_roles": ROLES, "user_data": "DB_PASSWORD=hunter22"}, "a literal password or secret"),
        ({"fleet_roles": ROLES, "user_data": "#cloud-config\npackages: [nginx]"}, "cloud-config is not supported"),
        ({"fleet_roles": ROLES, "user_data": "x" * 17000}, "over the EC2 limit"),
        ({"fleet_roles": [dict(ROLES[1], count=12)], "subnet_cidr": "10.0.0.0/28"}, "has 11 free addresses but 12"),
        ({"fleet_roles": ROLES, "image_id": "ami-00000000"}, "image_id ami-00000000 was not found"),
        ({"fleet_roles": ROLES, "state": "stopped"}, "value of state must be one of"),
    ],
)
def test_bad_input_is_refused_before_instances_exist(aws, run_play, extra, message):
    result = run_play(PLAY, extra_vars=extra, expect_rc=2).task("Fleet")
    assert result["failed"] is True
    assert message in result["msg"]
    ec2 = aws.client("ec2")
    assert _live(ec2) == [] and _key_pairs(ec2) == []


def test_imds_token_fetch_in_user_data_is_not_a_secret(aws, run_play):
    script = (
        'TOKEN=$(curl -sX PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 60")'
    )
    made = run_play(PLAY, extra_vars={"fleet_roles": [dict(ROLES[1], count=1)], "user_data": script}).task("Fleet")
    assert len(made["launched"]) == 1


def _recording(endpoint, action):
    request = urllib.request.Request(endpoint + "/moto-api/recorder/" + action, data=b"", method="POST")
    if action == "download-recording":
        request = urllib.request.Request(endpoint + "/moto-api/recorder/" + action)
    with urllib.request.urlopen(request, timeout=30) as response:  # loopback only
        return response.read().decode()


def _ec2_actions(endpoint):
    actions = Counter()
    for line in _recording(endpoint, "download-recording").splitlines():
        entry = json.loads(line)
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode()
        action = urllib.parse.parse_qs(body).get("Action", [None])[0]
        if action:
            actions[action] += 1
    return actions


def _count_launch(aws, run_play, n):
    run_play(PLAY, extra_vars={"fleet_roles": []})  # the network exists before recording starts
    _recording(aws.endpoint, "reset-recording")
    _recording(aws.endpoint, "start-recording")
    try:
        made = run_play(PLAY, extra_vars={"fleet_roles": [{"name": "builder", "count": n, "type": "c6i.large"}]})
    finally:
        _recording(aws.endpoint, "stop-recording")
    assert len(made.task("Fleet")["instances"]) == n
    return _ec2_actions(aws.endpoint)


def test_api_calls_do_not_grow_with_the_instance_count(aws, run_play):
    one = _count_launch(aws, run_play, 1)
    aws_reset = urllib.request.Request(aws.endpoint + "/moto-api/reset", data=b"", method="POST")
    urllib.request.urlopen(aws_reset, timeout=30).read()
    two_hundred = _count_launch(aws, run_play, 200)
    assert one["RunInstances"] == 1
    assert one == two_hundred


def test_public_ip_is_asked_for_on_the_network_interface(aws, run_play):
    ec2 = aws.client("ec2")
    private = run_play(PLAY, extra_vars={"fleet_roles": [dict(ROLES[0], count=1)]})
    assert private.task("Network")["public_ip"] is True  # its own subnet routes to the internet gateway
    assert [i["public_ip"] for i in private.task("Fleet")["instances"]] == [None]
    assert all("PublicIpAddress" not in i for i in _live(ec2))
    public = run_play(
        PLAY, extra_vars={"fleet_roles": [dict(ROLES[0], count=1), dict(ROLES[1], count=2)], "public_ip": True}
    )
    builders = [i for i in public.task("Fleet")["instances"] if i["role"] == "builder"]
    assert len(builders) == 2 and all(i["public_ip"] for i in builders)
    group = public.task("Network")["security_group_id"]
    for instance in _live(ec2, "builder"):
        interface = instance["NetworkInterfaces"][0]
        assert instance["PublicIpAddress"] and [g["GroupId"] for g in interface["Groups"]] == [group]
        assert instance["SubnetId"] == public.task("Network")["subnet_id"]


def test_a_role_can_have_its_own_heartbeat_lease(aws, run_play):
    # build.yml keep_host: the kept host without a lease, the builders with the run's
    ec2 = aws.client("ec2")
    roles = [dict(ROLES[0], heartbeat_timeout=0), dict(ROLES[1], count=1)]
    run_play(PLAY, extra_vars={"fleet_roles": roles, "heartbeat_timeout": 10})
    for role, leased in (("host", False), ("builder", True)):
        (instance,) = _live(ec2, role)
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        user_data = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
        script = base64.b64decode(user_data["UserData"]["Value"]).decode()
        assert ("buildfarm:lease" in tags) is leased, role
        assert ("buildfarm-lease-watch" in script) is leased, role
        assert (instance["MetadataOptions"].get("InstanceMetadataTags") == "enabled") is leased, role
