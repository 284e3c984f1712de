"""The local cloud (tools/localcloud) end to end: its CLI starts the endpoint, boto3 drives it, SSH and docker
check that the instances are real containers. Traffic goes only to loopback and to containers this endpoint made.

The tests share one local cloud (module scope) and run in file order: launch, boot, volumes, power states, down.
The network is EC2's (docs/localcloud.md): the VPC gets an internet gateway and a default route, the subnet maps
public IPs (user-data uploads to S3 through them), and the group admits SSH from the controller's address on the
subnet's network (the tests SSH to private IPs; tests/integration/test_localcloud_network.py covers the rest).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "tools" / "localcloud" / "localcloud.sh"
VPC_CIDR = "10.77.0.0/16"
SUBNET_CIDR = "10.77.1.0/24"
BUCKET = "localcloud-test"
USER_DATA = """#!/bin/bash
echo "marker from $(hostname)" > /var/tmp/user-data-marker
curl -sS -f -X PUT -H 'Content-Type: application/octet-stream' --data-binary "hello from $(hostname)" \\
    "$AWS_ENDPOINT_URL/%s/$(hostname)"
echo "user-data about to fail on purpose"
exit 7
""" % BUCKET


def _engine_answers():
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not _engine_answers(), reason="the container engine does not answer (make engine)"),
]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


def _cli(state_dir, *args, timeout=600):
    env = dict(os.environ, BUILDFARM_LOCALCLOUD_DIR=str(state_dir))
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _docker_state(instance_id):
    """(status, ip, hostname) of the instance's container, or None when there is no container."""
    proc = subprocess.run(
        ["docker", "inspect", "bf-lc-" + instance_id], capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode:
        return None
    info = json.loads(proc.stdout)[0]
    nets = info["NetworkSettings"]["Networks"]
    return info["State"]["Status"], next(iter(nets.values()))["IPAddress"], info["Config"]["Hostname"]


def _ssh(cloud, ip, command, timeout=60, check=True):
    argv = [
        "ssh",
        "-i",
        str(cloud.key_file),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
        "admin@" + ip,
        command,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode:
        raise AssertionError("ssh %s %r: rc %d\n%s%s" % (ip, command, proc.returncode, proc.stdout, proc.stderr))
    return proc


def _wait_ssh(cloud, ip, deadline=180):
    end = time.monotonic() + deadline
    while True:
        proc = _ssh(cloud, ip, "true", check=False)
        if proc.returncode == 0:
            return
        if time.monotonic() > end:
            raise AssertionError("no SSH to %s within %d s: %s" % (ip, deadline, proc.stderr))
        time.sleep(2)


def _wait_rebooted(cloud, ip, deadline=120):
    """Wait until the instance answers SSH again with a fresh /run (tmpfs: empty after every boot)."""
    end = time.monotonic() + deadline
    while _ssh(cloud, ip, "test ! -e /run/before-reboot", check=False).returncode != 0:
        assert time.monotonic() < end, "%s did not reboot" % ip
        time.sleep(1)


def _instance(ec2, instance_id):
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def _wait_state(ec2, instance_id, wanted, deadline=120):
    end = time.monotonic() + deadline
    while True:
        inst = _instance(ec2, instance_id)
        if inst["State"]["Name"] == wanted:
            return inst
        if time.monotonic() > end:
            raise AssertionError("%s is %s, not %s" % (instance_id, inst["State"]["Name"], wanted))
        time.sleep(1)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """A local cloud started by the CLI on a free port with its own state dir; always taken down."""
    base = tmp_path_factory.mktemp("localcloud")
    state_dir = base / "state"
    proc = _cli(state_dir, "up", "--port", str(_free_port()))
    if proc.returncode:
        _cli(state_dir, "down")
        pytest.fail("localcloud up failed:\n%s" % proc.stderr)
    exports = dict(
        line[len("export ") :].split("=", 1) for line in proc.stdout.splitlines() if line.startswith("export ")
    )
    ns = type("Cloud", (), {})()
    ns.dir = state_dir
    ns.exports = exports
    ns.key_file = base / "id_admin"
    ns.ec2 = boto3.client(
        "ec2",
        endpoint_url=exports["AWS_ENDPOINT_URL"],
        region_name=exports["AWS_REGION"],
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
    )
    ns.s3 = boto3.client(
        "s3",
        endpoint_url=exports["AWS_ENDPOINT_URL"],
        region_name=exports["AWS_REGION"],
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
    )
    yield ns
    _cli(state_dir, "down")


def test_up_writes_the_env_file(cloud):
    env_file = cloud.dir / "env"
    written = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert written == cloud.exports
    for key in (
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "BUILDFARM_INSTANCE_ENDPOINT_URL",
        "BUILDFARM_INSTANCE_S3_ENDPOINT_URL",
        "BUILDFARM_LOCALCLOUD_INTERNET_CIDR",
        "BUILDFARM_LOCALCLOUD_CONTROLLER_CIDR",
    ):
        assert written[key], key
    internet = ipaddress.ip_network(written["BUILDFARM_LOCALCLOUD_INTERNET_CIDR"])
    assert internet.subnet_of(ipaddress.ip_network("198.18.0.0/15"))
    controller = ipaddress.ip_network(written["BUILDFARM_LOCALCLOUD_CONTROLLER_CIDR"])
    assert controller.prefixlen == 32 and controller.network_address == internet.network_address + 1
    assert written["BUILDFARM_INSTANCE_S3_ENDPOINT_URL"] != written["BUILDFARM_INSTANCE_ENDPOINT_URL"]
    assert written["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert written["AWS_ENDPOINT_URL"].rsplit(":", 1)[1] == written["BUILDFARM_INSTANCE_ENDPOINT_URL"].rsplit(":", 1)[1]
    status = json.loads(_cli(cloud.dir, "status", "--json").stdout)
    assert status["endpoint"]["answers"] is True
    # a second up is a no-op that prints the same environment
    again = _cli(cloud.dir, "up")
    assert again.returncode == 0 and "already up" in again.stderr
    assert cloud.exports["AWS_ENDPOINT_URL"] in again.stdout


def test_launch_boot_ssh_and_user_data(cloud):
    ec2 = cloud.ec2
    cloud.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": cloud.exports["AWS_REGION"]})
    vpc = ec2.create_vpc(CidrBlock=VPC_CIDR)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=SUBNET_CIDR)["Subnet"]["SubnetId"]
    # egress for user-data's upload: public IPs and a default route to an attached internet gateway
    ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    main = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"][0]
    ec2.create_route(RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    group = ec2.create_security_group(GroupName="lc-test", Description="localcloud test", VpcId=vpc)["GroupId"]
    controller_private = str(ipaddress.ip_network(SUBNET_CIDR).network_address + 1)  # the host on the subnet
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": controller_private + "/32"}]}
        ],
    )
    pair = ec2.create_key_pair(KeyName="lc-test")
    cloud.key_file.write_text(pair["KeyMaterial"])
    cloud.key_file.chmod(0o600)
    common = dict(
        ImageId="ami-12c6146b",
        InstanceType="t3.micro",
        SubnetId=subnet,
        SecurityGroupIds=[group],
        KeyName="lc-test",
        UserData=USER_DATA,
    )
    two = ec2.run_instances(MinCount=2, MaxCount=2, **common)["Instances"]
    # a type of one vCPU: the instance sees one CPU (nproc), as on EC2
    third = ec2.run_instances(
        MinCount=1, MaxCount=1, InstanceInitiatedShutdownBehavior="terminate", **{**common, "InstanceType": "t2.micro"}
    )
    instances = two + third["Instances"]
    assert {i["State"]["Name"] for i in instances} == {"pending"}
    cloud.ids = [i["InstanceId"] for i in instances]
    ec2.get_waiter("instance_running").wait(InstanceIds=cloud.ids, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    cloud.ips = {}
    net = ipaddress.ip_network(SUBNET_CIDR)
    internet = ipaddress.ip_network(cloud.exports["BUILDFARM_LOCALCLOUD_INTERNET_CIDR"])
    for inst in (_instance(ec2, i) for i in cloud.ids):
        ip = inst["PrivateIpAddress"]
        assert ipaddress.ip_address(ip) in net and ip != str(net.network_address + 1)
        # a public address from the local internet network, never one of moto's invented ones
        assert ipaddress.ip_address(inst["PublicIpAddress"]) in internet
        status, container_ip, hostname = _docker_state(inst["InstanceId"])
        assert (status, container_ip) == ("running", ip)
        assert hostname == "ip-" + ip.replace(".", "-")
        cloud.ips[inst["InstanceId"]] = ip
    for ip in cloud.ips.values():
        _wait_ssh(cloud, ip)
        out = _ssh(cloud, ip, "id -un; hostname; nproc; sudo -n cat /var/tmp/user-data-marker").stdout.split()
        assert out[:2] == ["admin", "ip-" + ip.replace(".", "-")]
        vcpus = 1 if ip == cloud.ips[third["Instances"][0]["InstanceId"]] else min(2, os.cpu_count())
        assert out[2] == str(vcpus), "nproc %s on %s, the type has %d vCPUs" % (out[2], ip, vcpus)
        assert "marker" in out
    for ip in cloud.ips.values():  # user-data may still be running right after SSH came up
        deadline = time.monotonic() + 60
        while "exit status" not in _ssh(cloud, ip, "cat /var/log/user-data.log", check=False).stdout:
            assert time.monotonic() < deadline, "user-data did not finish on %s" % ip
            time.sleep(1)
        log = _ssh(cloud, ip, "cat /var/log/user-data.log").stdout
        assert "user-data about to fail on purpose" in log
        assert "exit status 7" in log  # a failing script shows in the log
        assert _ssh(cloud, ip, "cat /var/lib/localcloud/user-data.exit").stdout.strip() == "7"
    # S3 is reachable from inside the instances at the same endpoint
    keys = {o["Key"] for o in cloud.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert keys == {"ip-" + ip.replace(".", "-") for ip in cloud.ips.values()}


def test_volume_survives_a_hand_off(cloud):
    ec2 = cloud.ec2
    a, b = cloud.ids[0], cloud.ids[1]
    ip_a, ip_b = cloud.ips[a], cloud.ips[b]
    zone = _instance(ec2, a)["Placement"]["AvailabilityZone"]
    volume = ec2.create_volume(Size=1, AvailabilityZone=zone)["VolumeId"]
    cloud.volume = volume
    ec2.attach_volume(VolumeId=volume, InstanceId=a, Device="/dev/sdf")
    by_id = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_" + volume.replace("-", "")
    _ssh(
        cloud,
        ip_a,
        'test -b /dev/sdf && test "$(readlink %s)" = /dev/sdf && sudo mkfs.ext4 -q /dev/sdf && sudo mkdir -p /mnt/v '
        "&& sudo mount /dev/sdf /mnt/v && echo payload-%s | sudo tee /mnt/v/data >/dev/null" % (by_id, volume),
    )
    with pytest.raises(ClientError) as refused:  # a mounted volume is not yanked away
        ec2.detach_volume(VolumeId=volume)
    assert refused.value.response["Error"]["Code"] == "VolumeInUse"
    assert "mounted at /mnt/v" in refused.value.response["Error"]["Message"]
    _ssh(cloud, ip_a, "sudo umount /mnt/v")
    ec2.detach_volume(VolumeId=volume)
    assert ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["State"] == "available"
    assert _ssh(cloud, ip_a, "test -e /dev/sdf || test -e %s" % by_id, check=False).returncode == 1
    ec2.attach_volume(VolumeId=volume, InstanceId=b, Device="/dev/nvme1n1")
    out = _ssh(
        cloud, ip_b, "sudo mkdir -p /mnt/v && sudo mount %s /mnt/v && cat /mnt/v/data && sudo umount /mnt/v" % by_id
    )
    assert out.stdout.strip() == "payload-" + volume
    assert _ssh(cloud, ip_b, "readlink %s" % by_id).stdout.strip() == "/dev/nvme1n1"


def test_stop_start_reboot_terminate_follow_the_container(cloud):
    ec2 = cloud.ec2
    b = cloud.ids[1]
    ec2.stop_instances(InstanceIds=[b])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[b], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    assert _docker_state(b)[0] == "exited"
    ec2.start_instances(InstanceIds=[b])
    ec2.get_waiter("instance_running").wait(InstanceIds=[b], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    assert _docker_state(b)[0] == "running"
    _wait_ssh(cloud, cloud.ips[b])
    # the attached volume is back after the stop/start, data included, and user-data did not run again
    out = _ssh(cloud, cloud.ips[b], "sudo mount /dev/nvme1n1 /mnt/v && cat /mnt/v/data && sudo umount /mnt/v")
    assert out.stdout.strip() == "payload-" + cloud.volume
    assert _ssh(cloud, cloud.ips[b], "grep -c 'user-data started' /var/log/user-data.log").stdout.strip() == "1"
    _ssh(cloud, cloud.ips[b], "sudo touch /run/before-reboot")
    ec2.reboot_instances(InstanceIds=[b])
    _wait_rebooted(cloud, cloud.ips[b])
    assert _instance(ec2, b)["State"]["Name"] == "running"
    assert _ssh(cloud, cloud.ips[b], "test -b /dev/nvme1n1", check=False).returncode == 0
    # a reboot from inside the instance boots it again (it does not count as a power-off)
    _ssh(cloud, cloud.ips[b], "sudo touch /run/before-reboot && sudo systemctl reboot", check=False)
    _wait_rebooted(cloud, cloud.ips[b])
    assert _instance(ec2, b)["State"]["Name"] == "running"
    # terminate: the container goes, the volume is detached and available again
    ec2.terminate_instances(InstanceIds=[b])
    assert _instance(ec2, b)["State"]["Name"] in ("shutting-down", "terminated")
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[b], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    assert _docker_state(b) is None
    assert ec2.describe_volumes(VolumeIds=[cloud.volume])["Volumes"][0]["State"] == "available"
    with pytest.raises(ClientError) as refused:
        ec2.start_instances(InstanceIds=[b])
    assert refused.value.response["Error"]["Code"] == "IncorrectInstanceState"


def test_an_instance_that_powers_itself_off(cloud):
    ec2 = cloud.ec2
    a, c = cloud.ids[0], cloud.ids[2]  # shutdown behaviour: stop (default) and terminate
    for instance_id in (a, c):
        _ssh(cloud, cloud.ips[instance_id], "sudo shutdown -h now", check=False)
    stopped = _wait_state(ec2, a, "stopped")
    assert stopped["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    assert _docker_state(a)[0] == "exited"
    terminated = _wait_state(ec2, c, "terminated")
    assert terminated["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    deadline = time.monotonic() + 60
    while _docker_state(c) is not None:
        assert time.monotonic() < deadline, "the container of %s is still there" % c
        time.sleep(1)


def test_overlapping_subnet_is_a_clear_error(cloud):
    ec2 = cloud.ec2
    bridge = subprocess.run(
        ["docker", "network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Subnet}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    vpc = ec2.create_vpc(CidrBlock=bridge)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=str(next(ipaddress.ip_network(bridge).subnets(new_prefix=24))))
    with pytest.raises(ClientError) as refused:
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet["Subnet"]["SubnetId"])
    assert refused.value.response["Error"]["Code"] == "InvalidSubnet.Conflict"
    assert "overlaps docker network bridge" in refused.value.response["Error"]["Message"]


def test_up_removes_what_a_killed_local_cloud_left(cloud, tmp_path):
    """Local clouds killed without `down` (a CI job stopped mid-run) left a container, a subnet network and loop
    devices; the next `up` of another local cloud removes them and leaves the running one alone."""
    dead = tmp_path / "killed"
    (dead / "volumes").mkdir(parents=True)
    ended = subprocess.Popen(["true"])
    ended.wait()
    (dead / "endpoint.pid").write_text("%d\n" % ended.pid)  # its endpoint's pid: no longer running
    live_before = _cli(cloud.dir, "status", "--json")
    live = json.loads(live_before.stdout)
    assert live["containers"] and live["networks"]
    image = subprocess.run(
        ["docker", "inspect", live["containers"][0]["name"], "--format", "{{.Config.Image}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    labels = ["--label", "buildfarm.localcloud=1", "--label", "buildfarm.localcloud.dir=%s" % os.path.realpath(dead)]
    subprocess.run(
        ["docker", "network", "create", *labels, "--subnet", "10.78.5.0/24", "bf-lc-orphan-test"], check=True
    )
    subprocess.run(["docker", "create", *labels, "--name", "bf-lc-orphan-test", image, "true"], check=True)
    dead_chain = "BFLC-%s-FWD" % hashlib.sha1(os.path.realpath(dead).encode()).hexdigest()[:8]
    subprocess.run(["iptables", "-w", "5", "-N", dead_chain], check=True)
    subprocess.run(["iptables", "-w", "5", "-A", dead_chain, "-s", "10.78.5.9/32", "-j", "DROP"], check=True)
    comment = "buildfarm.localcloud.dir=%s" % os.path.realpath(dead)
    jump = ["DOCKER-USER", "-m", "comment", "--comment", comment, "-j", dead_chain]
    subprocess.run(["iptables", "-w", "5", "-I", *jump], check=True)
    orphan_loops = []
    volume_only = tmp_path / "killed-before-any-instance"  # a volume but no container: found by its loop device
    for state_dir in (dead, volume_only):
        image_file = state_dir / "volumes" / "vol-orphan.img"
        image_file.parent.mkdir(parents=True, exist_ok=True)
        image_file.write_bytes(b"\0" * 1024 * 1024)
        (state_dir / "loops.json").write_text("{}\n")
        orphan_loops.append(
            subprocess.run(
                ["losetup", "--find", "--show", str(image_file)], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
    other = tmp_path / "next"
    up = _cli(other, "up", "--no-engine", "--port", str(_free_port()))
    try:
        assert up.returncode == 0, up.stderr
        assert "no longer running (%s)" % os.path.realpath(dead) in up.stderr
        label = "label=buildfarm.localcloud.dir=%s" % os.path.realpath(dead)
        for kind in (["ps", "-aq"], ["network", "ls", "-q"]):
            left = subprocess.run(["docker", *kind, "--filter", label], capture_output=True, text=True, check=True)
            assert left.stdout.strip() == "", kind
        loops = subprocess.run(
            ["losetup", "--list", "--noheadings", "--output", "NAME"], capture_output=True, text=True, check=True
        )
        assert not set(orphan_loops) & set(loops.stdout.split())
        assert not volume_only.exists()
        saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
        assert dead_chain not in saved  # its host rules went too (chain and jump)
        live_after = _cli(cloud.dir, "status", "--json")
        assert json.loads(live_after.stdout) == live  # the running local cloud is untouched
    finally:
        down = _cli(other, "down")
    assert down.returncode == 0, down.stderr


def test_down_leaves_nothing(cloud):
    ec2 = cloud.ec2
    a = cloud.ids[0]
    ec2.attach_volume(VolumeId=cloud.volume, InstanceId=a, Device="/dev/xvdg")  # a loop device for down to find
    ec2.start_instances(InstanceIds=[a])
    ec2.get_waiter("instance_running").wait(InstanceIds=[a], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    status = json.loads(_cli(cloud.dir, "status", "--json").stdout)
    assert [d["file"] for d in status["loop_devices"]] == [str(cloud.dir / "volumes" / (cloud.volume + ".img"))]
    assert [c["instance"] for c in status["containers"]] == [a]
    internet = cloud.exports["BUILDFARM_LOCALCLOUD_INTERNET_CIDR"]
    assert sorted(n["cidr"] for n in status["networks"]) == sorted([SUBNET_CIDR, internet])
    assert any(" -> BFLC-" in rule for rule in status["host_rules"])
    pid = status["endpoint"]["pid"]
    proc = _cli(cloud.dir, "down")
    assert proc.returncode == 0, proc.stderr
    label = "label=buildfarm.localcloud.dir=%s" % os.path.realpath(cloud.dir)
    ps = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True, check=True)
    nets = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", label], capture_output=True, text=True, check=True
    )
    loops = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "BACK-FILE"], capture_output=True, text=True, check=True
    )
    assert ps.stdout.strip() == "" and nets.stdout.strip() == ""
    assert str(cloud.dir) not in loops.stdout
    assert not cloud.dir.exists()
    assert _gone_or_zombie(pid)
    assert _host_chains(status["host_rules"]) == []


def _host_chains(rules):
    """The host rules named in ``rules`` (status' host_rules) that are still in iptables-save."""
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    chains = {word for rule in rules for word in rule.split() if word.startswith("BFLC-")}
    return sorted(c for c in chains if c in saved)


def _gone_or_zombie(pid):
    """The endpoint process ended (it may linger as a zombie until whoever adopted it reaps it)."""
    try:
        stat = Path("/proc/%d/stat" % pid).read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_a_container_that_cannot_start_terminates_its_instance(tmp_path):
    """A second local cloud whose image does not exist: the instance ends terminated with the docker error."""
    state_dir = tmp_path / "broken"
    proc = _cli(state_dir, "up", "--no-engine", "--port", str(_free_port()), "--image", "buildfarm/missing:none")
    assert proc.returncode == 0, proc.stderr
    try:
        env = dict(line.split("=", 1) for line in (state_dir / "env").read_text().splitlines())
        ec2 = boto3.client(
            "ec2",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        vpc = ec2.create_vpc(CidrBlock="10.79.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.79.1.0/24")["Subnet"]["SubnetId"]
        instance_id = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][
            0
        ]["InstanceId"]
        inst = _wait_state(ec2, instance_id, "terminated", deadline=60)
        assert inst["StateReason"]["Code"] == "Server.InternalError"
        assert "buildfarm/missing:none" in inst["StateReason"]["Message"]
        assert _docker_state(instance_id) is None
    finally:
        down = _cli(state_dir, "down")
    assert down.returncode == 0, down.stderr
