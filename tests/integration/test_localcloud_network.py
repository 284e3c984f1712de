"""The local cloud's network is EC2's (docs/localcloud.md, "Network"): public IPv4 on the local internet network,
egress only as the route table allows (internet gateway + public IP, NAT gateway, S3 gateway endpoint), security
groups enforced on every packet, the controller's real source address, and nothing left behind by a killed endpoint.

Real containers over real sockets: probes run inside instances (SSH) and in a probe container on the internet
network; traffic goes only to loopback and to containers and networks the local cloud made. One local cloud is
shared; every case has its own VPC, all instances are launched at once (module fixture) so they boot together.
Probes of dropped traffic use 3 s timeouts.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from types import SimpleNamespace

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from test_localcloud import _cli, _free_port, _gone_or_zombie, _instance, _ssh, _wait_ssh
from test_localcloud import pytestmark as _engine_marks

pytestmark = _engine_marks
AMI = "ami-12c6146b"
EFFECT = 6  # seconds a change may take to show (the contract is two; probes add their own time)


def _client(exports, service, url=None):
    return boto3.client(
        service,
        endpoint_url=url or exports["AWS_ENDPOINT_URL"],
        region_name=exports["AWS_REGION"],
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=10),
    )


def _up(state_dir):
    proc = _cli(state_dir, "up", "--no-engine", "--port", str(_free_port()))
    if proc.returncode:
        _cli(state_dir, "down")
        pytest.fail("localcloud up failed:\n%s" % proc.stderr)
    return dict(line[len("export ") :].split("=", 1) for line in proc.stdout.splitlines() if line.startswith("export "))


def _tcp_from_host(ip, port, timeout=3):
    """True when a TCP connection from the host to ip:port is accepted."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def _banner(ip, timeout=3):
    try:
        with socket.create_connection((ip, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).decode(errors="replace")
    except OSError:
        return ""


def _eventually(probe, wanted, deadline=EFFECT, what=""):
    """Poll ``probe()`` until it returns ``wanted``; returns the seconds it took."""
    start = time.monotonic()
    while True:
        got = probe()
        if got == wanted:
            return time.monotonic() - start
        if time.monotonic() - start > deadline:
            raise AssertionError("%s: still %r after %d s (wanted %r)" % (what or probe, got, deadline, wanted))
        time.sleep(0.5)


def _inside(cloud, ssh_ip, command):
    """True when ``command`` succeeds inside the instance reached over SSH at ``ssh_ip``."""
    return _ssh(cloud, ssh_ip, command, timeout=30, check=False).returncode == 0


def _tcp(ip, port):
    return "timeout 3 bash -c '</dev/tcp/%s/%d'" % (ip, port)


def _http(url):
    return "curl -s -o /dev/null --max-time 3 %s" % url


def _vpc(ec2, cidr, name):
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": name}])
    return vpc


def _main_table(ec2, vpc):
    tables = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"]
    return tables[0]["RouteTableId"]


def _igw(ec2, vpc):
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    return igw


def _group(ec2, vpc, name, ssh_from):
    group = ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
    if ssh_from:
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[_perm("tcp", 22, cidr=ssh_from)])
    return group


def _perm(proto, port, cidr=None, group=None):
    perm = {"IpProtocol": proto, "FromPort": port, "ToPort": port}
    if cidr:
        perm["IpRanges"] = [{"CidrIp": cidr}]
    if group:
        perm["UserIdGroupPairs"] = [{"GroupId": group}]
    return perm


def _launch(ec2, subnet, groups, public=None, key="lc-net"):
    nic = {"DeviceIndex": 0, "SubnetId": subnet, "Groups": groups}
    if public is not None:
        nic["AssociatePublicIpAddress"] = public
    return ec2.run_instances(
        ImageId=AMI, InstanceType="t3.micro", MinCount=1, MaxCount=1, KeyName=key, NetworkInterfaces=[nic]
    )["Instances"][0]["InstanceId"]


def _gateway(cidr):
    return str(ipaddress.ip_network(cidr).network_address + 1)


def _listen(cloud, ssh_ip, port):
    """An HTTP server on ``port`` inside the instance (a transient systemd unit)."""
    _ssh(cloud, ssh_ip, "sudo systemd-run --unit lc-listen-%d python3 -m http.server %d" % (port, port))
    _eventually(lambda: _inside(cloud, ssh_ip, _tcp("127.0.0.1", port)), True, what="listener on %d" % port)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """One local cloud and, launched at once, the VPCs and instances of every case below."""
    base = tmp_path_factory.mktemp("localcloud-net")
    state_dir = base / "state"
    exports = _up(state_dir)
    ns = SimpleNamespace(dir=state_dir, exports=exports, key_file=base / "id_admin", probe=None)
    ns.ec2 = ec2 = _client(exports, "ec2")
    ns.s3 = _client(exports, "s3")
    ns.internet = ipaddress.ip_network(exports["BUILDFARM_LOCALCLOUD_INTERNET_CIDR"])
    ns.controller = exports["BUILDFARM_LOCALCLOUD_CONTROLLER_CIDR"]
    try:
        ns.key_file.write_text(ec2.create_key_pair(KeyName="lc-net")["KeyMaterial"])
        ns.key_file.chmod(0o600)
        ns.cases = {}
        # public IP lifecycle: no address unless mapped or asked for
        vpc = _vpc(ec2, "10.81.0.0/16", "pubip")
        plain = ec2.create_subnet(VpcId=vpc, CidrBlock="10.81.1.0/24")["Subnet"]["SubnetId"]
        mapped = ec2.create_subnet(VpcId=vpc, CidrBlock="10.81.2.0/24")["Subnet"]["SubnetId"]
        ec2.modify_subnet_attribute(SubnetId=mapped, MapPublicIpOnLaunch={"Value": True})
        group = _group(ec2, vpc, "pubip", "0.0.0.0/0")
        ns.cases["pubip"] = SimpleNamespace(
            vpc=vpc,
            none=_launch(ec2, plain, [group]),
            asked=_launch(ec2, plain, [group], public=True),
            mapped=_launch(ec2, mapped, [group]),
        )
        # egress by route table
        vpc = _vpc(ec2, "10.82.0.0/16", "egress")
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.82.1.0/24")["Subnet"]["SubnetId"]
        group = _group(ec2, vpc, "egress", _gateway("10.82.1.0/24") + "/32")
        ns.cases["egress"] = SimpleNamespace(
            vpc=vpc, public=_launch(ec2, subnet, [group], public=True), private=_launch(ec2, subnet, [group])
        )
        # NAT gateway: a public subnet (IGW route) holds it, the private subnet routes to it
        vpc = _vpc(ec2, "10.83.0.0/16", "nat")
        public_subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.83.0.0/24")["Subnet"]["SubnetId"]
        private_subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.83.1.0/24")["Subnet"]["SubnetId"]
        igw = _igw(ec2, vpc)
        public_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=public_table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        ec2.associate_route_table(RouteTableId=public_table, SubnetId=public_subnet)
        private_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.associate_route_table(RouteTableId=private_table, SubnetId=private_subnet)
        group = _group(ec2, vpc, "nat", _gateway("10.83.1.0/24") + "/32")
        ns.cases["nat"] = SimpleNamespace(
            vpc=vpc,
            public_subnet=public_subnet,
            private_table=private_table,
            node=_launch(ec2, private_subnet, [group]),
        )
        # S3 gateway endpoint: no internet at all
        vpc = _vpc(ec2, "10.84.0.0/16", "s3")
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.84.1.0/24")["Subnet"]["SubnetId"]
        group = _group(ec2, vpc, "s3", _gateway("10.84.1.0/24") + "/32")
        ns.cases["s3"] = SimpleNamespace(vpc=vpc, node=_launch(ec2, subnet, [group]))
        # security groups: a, b in "front", c in "back"
        vpc = _vpc(ec2, "10.85.0.0/16", "sg")
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.85.1.0/24")["Subnet"]["SubnetId"]
        front = _group(ec2, vpc, "front", _gateway("10.85.1.0/24") + "/32")
        back = _group(ec2, vpc, "back", _gateway("10.85.1.0/24") + "/32")
        ns.cases["sg"] = SimpleNamespace(
            vpc=vpc,
            subnet=subnet,
            front=front,
            back=back,
            a=_launch(ec2, subnet, [front]),
            b=_launch(ec2, subnet, [front]),
            c=_launch(ec2, subnet, [back]),
        )
        # the public side: SSH only from the controller's public address
        vpc = _vpc(ec2, "10.86.0.0/16", "edge")
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.86.1.0/24")["Subnet"]["SubnetId"]
        ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
        ec2.create_route(RouteTableId=_main_table(ec2, vpc), DestinationCidrBlock="0.0.0.0/0", GatewayId=_igw(ec2, vpc))
        group = _group(ec2, vpc, "edge", ns.controller)
        ns.cases["edge"] = SimpleNamespace(vpc=vpc, group=group, node=_launch(ec2, subnet, [group]))
        ids = [v for case in ns.cases.values() for k, v in vars(case).items() if str(v).startswith("i-")]
        ec2.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig={"Delay": 1, "MaxAttempts": 180})
        ns.ip = {i: _instance(ec2, i)["PrivateIpAddress"] for i in ids}
        yield ns
    finally:
        if ns.probe:
            subprocess.run(["docker", "rm", "-f", ns.probe], capture_output=True, check=False)
        down = _cli(state_dir, "down")
        assert down.returncode == 0, down.stderr


def test_public_ip_lifecycle(cloud):
    ec2, case = cloud.ec2, cloud.cases["pubip"]
    described = {i: _instance(ec2, i) for i in (case.none, case.asked, case.mapped)}
    assert "PublicIpAddress" not in described[case.none]
    for i in (case.asked, case.mapped):
        public = described[i]["PublicIpAddress"]
        assert ipaddress.ip_address(public) in cloud.internet  # never one of moto's invented addresses
        assert public.replace(".", "-") in described[i]["PublicDnsName"]
        assert described[i]["NetworkInterfaces"][0]["Association"]["PublicIp"] == public
    public = described[case.asked]["PublicIpAddress"]
    _wait_ssh(cloud, cloud.ip[case.asked])  # the private side answers (the group admits everyone)
    assert _banner(public) == ""  # no internet gateway: the public address carries nothing
    igw = _igw(ec2, case.vpc)
    time.sleep(3)
    assert _banner(public) == ""  # attached, but no route to it
    table = _main_table(ec2, case.vpc)
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    _eventually(lambda: _banner(public).startswith("SSH-2.0"), True, what="ssh banner at the public address")
    _ssh(cloud, public, "true")
    # stop releases it, start brings a new one
    ec2.stop_instances(InstanceIds=[case.asked])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[case.asked], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    stopped = _instance(ec2, case.asked)
    assert "PublicIpAddress" not in stopped and not stopped.get("PublicDnsName")
    status = json.loads(_cli(cloud.dir, "status", "--json").stdout)
    assert public not in status["public_addresses"]
    ec2.start_instances(InstanceIds=[case.asked])
    ec2.get_waiter("instance_running").wait(InstanceIds=[case.asked], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    renewed = _instance(ec2, case.asked)["PublicIpAddress"]
    assert renewed != public and ipaddress.ip_address(renewed) in cloud.internet
    _wait_ssh(cloud, renewed)
    assert not _tcp_from_host(public, 22)  # the old address is gone
    # removing the route takes the public path away again
    ec2.delete_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0")
    _eventually(lambda: _banner(renewed) == "", True, what="public address without a route")
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    _eventually(lambda: _banner(renewed).startswith("SSH-2.0"), True)
    # terminate releases it
    ec2.terminate_instances(InstanceIds=[case.asked])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[case.asked], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    assert "PublicIpAddress" not in _instance(ec2, case.asked)
    status = json.loads(_cli(cloud.dir, "status", "--json").stdout)
    assert renewed not in status["public_addresses"]
    assert _instance(ec2, case.mapped)["PublicIpAddress"] in status["public_addresses"]


def test_egress_follows_the_route_table(cloud):
    ec2, case = cloud.ec2, cloud.cases["egress"]
    endpoint = _http(cloud.exports["BUILDFARM_INSTANCE_ENDPOINT_URL"] + "/moto-api/")
    pub, priv = cloud.ip[case.public], cloud.ip[case.private]
    for ip in (pub, priv):
        _wait_ssh(cloud, ip)
    assert "PublicIpAddress" in _instance(ec2, case.public) and "PublicIpAddress" not in _instance(ec2, case.private)
    # no internet gateway: nothing outside the VPC, not even the host through the VPC router
    assert not _inside(cloud, pub, endpoint)
    assert not _inside(cloud, pub, _tcp(_gateway("10.82.1.0/24"), 22))
    # the VPC resolver still answers (docker's DNS: the other instance's container name)
    assert _inside(cloud, pub, "getent hosts bf-lc-%s" % case.private)
    assert _inside(cloud, pub, _tcp(priv, 22)) is False  # the group admits only the controller
    igw = _igw(ec2, case.vpc)
    table = _main_table(ec2, case.vpc)
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    took = _eventually(lambda: _inside(cloud, pub, endpoint), True, what="egress with a public IP and IGW route")
    assert not _inside(cloud, priv, endpoint)  # no public IP: no way out through the internet gateway
    assert not _inside(cloud, pub, _tcp(_gateway("10.82.1.0/24"), 22))  # still not the host's other services
    ec2.delete_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0")
    _eventually(lambda: _inside(cloud, pub, endpoint), False, what="egress after the route was deleted")
    print("egress after create_route: %.1f s" % took)


def test_nat_gateway(cloud):
    ec2, case = cloud.ec2, cloud.cases["nat"]
    ip = cloud.ip[case.node]
    endpoint = _http(cloud.exports["BUILDFARM_INSTANCE_ENDPOINT_URL"] + "/moto-api/")
    _wait_ssh(cloud, ip)
    assert not _inside(cloud, ip, endpoint)
    eip = ec2.allocate_address(Domain="vpc")
    assert ipaddress.ip_address(eip["PublicIp"]) in cloud.internet  # Elastic IPs come from the local range too
    nat = ec2.create_nat_gateway(SubnetId=case.public_subnet, AllocationId=eip["AllocationId"])["NatGateway"]
    assert nat["NatGatewayAddresses"][0]["PublicIp"] == eip["PublicIp"]
    ec2.create_route(
        RouteTableId=case.private_table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat["NatGatewayId"]
    )
    _eventually(lambda: _inside(cloud, ip, endpoint), True, what="egress through the NAT gateway")
    ec2.delete_nat_gateway(NatGatewayId=nat["NatGatewayId"])
    _eventually(lambda: _inside(cloud, ip, endpoint), False, what="egress after the NAT gateway was deleted")
    ec2.release_address(AllocationId=eip["AllocationId"])


def test_s3_gateway_endpoint(cloud):
    ec2, case = cloud.ec2, cloud.cases["s3"]
    ip = cloud.ip[case.node]
    region = cloud.exports["AWS_REGION"]
    cloud.s3.create_bucket(Bucket="lc-net-s3", CreateBucketConfiguration={"LocationConstraint": region})
    s3_url = cloud.exports["BUILDFARM_INSTANCE_S3_ENDPOINT_URL"]
    put = "curl -sS -f --max-time 3 -X PUT --data-binary from-$(hostname) %s/lc-net-s3/$(hostname)" % s3_url
    ec2_url = _http(cloud.exports["BUILDFARM_INSTANCE_ENDPOINT_URL"] + "/moto-api/")
    _wait_ssh(cloud, ip)
    env = _ssh(cloud, ip, "cat /etc/environment").stdout
    assert "AWS_ENDPOINT_URL_S3=%s\n" % s3_url in env
    assert not _inside(cloud, ip, put)
    table = _main_table(ec2, case.vpc)
    endpoint = ec2.create_vpc_endpoint(
        VpcId=case.vpc, ServiceName="com.amazonaws.%s.s3" % region, VpcEndpointType="Gateway", RouteTableIds=[table]
    )["VpcEndpoint"]["VpcEndpointId"]
    _eventually(lambda: _inside(cloud, ip, put), True, what="S3 through the gateway endpoint")
    keys = [o["Key"] for o in cloud.s3.list_objects_v2(Bucket="lc-net-s3")["Contents"]]
    assert keys == ["ip-" + ip.replace(".", "-")]
    assert not _inside(cloud, ip, ec2_url)  # S3 only: the EC2 port stays out of reach
    # and the S3 port serves S3 only
    with pytest.raises(ClientError) as refused:
        _client(cloud.exports, "ec2", url="http://127.0.0.1:" + s3_url.rsplit(":", 1)[1]).describe_instances()
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    ec2.delete_vpc_endpoints(VpcEndpointIds=[endpoint])
    _eventually(lambda: _inside(cloud, ip, put), False, what="S3 after the endpoint was deleted")


def test_security_groups_follow_rules_and_members(cloud):
    ec2, case = cloud.ec2, cloud.cases["sg"]
    a, b, c = (cloud.ip[i] for i in (case.a, case.b, case.c))
    for ip in (a, b, c):
        _wait_ssh(cloud, ip)
    _listen(cloud, c, 8080)
    _listen(cloud, a, 8080)
    assert not _inside(cloud, a, _tcp(c, 8080))  # back admits only the controller's SSH
    assert not _inside(cloud, a, _tcp(b, 22))  # front too, even from its own members
    # a rule naming the front group: its members get in, within seconds
    ec2.authorize_security_group_ingress(GroupId=case.back, IpPermissions=[_perm("tcp", 8080, group=case.front)])
    took = _eventually(lambda: _inside(cloud, a, _tcp(c, 8080)), True, what="front -> back:8080 after authorize")
    assert took < EFFECT
    assert _inside(cloud, b, _tcp(c, 8080))
    assert not _inside(cloud, c, _tcp(a, 8080))  # stateful: the reverse direction is not opened
    assert not _inside(cloud, a, _tcp(c, 8081))  # only the port in the rule
    # membership is followed: a new member gets in, a member moved to another group does not
    d = _launch(ec2, case.subnet, [case.front])
    ec2.get_waiter("instance_running").wait(InstanceIds=[d], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    d_ip = _instance(ec2, d)["PrivateIpAddress"]
    _wait_ssh(cloud, d_ip)
    _eventually(lambda: _inside(cloud, d_ip, _tcp(c, 8080)), True, what="new member of front -> back:8080")
    ec2.modify_instance_attribute(InstanceId=case.b, Groups=[case.back])
    _eventually(lambda: _inside(cloud, b, _tcp(c, 8080)), False, what="b moved out of front")
    ec2.modify_instance_attribute(InstanceId=case.b, Groups=[case.front])
    _eventually(lambda: _inside(cloud, b, _tcp(c, 8080)), True, what="b back in front")
    # the default egress rule allows all; without it nothing leaves
    everything = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ec2.revoke_security_group_egress(GroupId=case.front, IpPermissions=[everything])
    _eventually(lambda: _inside(cloud, a, _tcp(c, 8080)), False, what="front without its egress rule")
    ec2.authorize_security_group_egress(GroupId=case.front, IpPermissions=[_perm("tcp", 8080, cidr="10.85.1.0/24")])
    _eventually(lambda: _inside(cloud, a, _tcp(c, 8080)), True, what="front with egress to 8080")
    # revoke takes effect too
    ec2.revoke_security_group_ingress(GroupId=case.back, IpPermissions=[_perm("tcp", 8080, group=case.front)])
    _eventually(lambda: _inside(cloud, a, _tcp(c, 8080)), False, what="after revoke")
    ec2.terminate_instances(InstanceIds=[d])


def test_the_controller_and_the_internet_side(cloud):
    """SSH admitted for the controller's /32 works on the public path and not on the private one; a probe on the
    internet network sees only what the group allows."""
    ec2, case = cloud.ec2, cloud.cases["edge"]
    private = cloud.ip[case.node]
    public = _instance(ec2, case.node)["PublicIpAddress"]
    _wait_ssh(cloud, public)
    who = _ssh(cloud, public, "echo $SSH_CLIENT").stdout.split()[0]
    assert who + "/32" == cloud.controller  # the controller arrives with its public address
    assert _banner(private) == ""  # from the subnet's .1: not the controller's /32, refused
    _listen(cloud, public, 8080)
    probe = "bf-lc-probe-" + cloud.dir.parent.name[-8:]
    image = subprocess.run(
        ["docker", "inspect", "bf-lc-" + case.node, "--format", "{{.Config.Image}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    labels = [
        "--label",
        "buildfarm.localcloud=1",
        "--label",
        "buildfarm.localcloud.dir=%s" % os.path.realpath(cloud.dir),
    ]
    network = subprocess.run(
        ["docker", "network", "ls", "--filter", labels[3].replace("buildfarm", "label=buildfarm", 1)]
        + ["--filter", "label=buildfarm.localcloud.internet=1", "--format", "{{.Name}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    subprocess.run(
        ["docker", "run", "-d", "--name", probe, *labels, "--network", network, image, "sleep", "infinity"],
        capture_output=True,
        check=True,
    )
    cloud.probe = probe

    def from_probe(ip, port):
        cmd = ["docker", "exec", probe, "timeout", "3", "bash", "-c", "</dev/tcp/%s/%d" % (ip, port)]
        return subprocess.run(cmd, capture_output=True, timeout=20, check=False).returncode == 0

    probe_ip = json.loads(
        subprocess.run(["docker", "inspect", probe], capture_output=True, text=True, check=True).stdout
    )[0]["NetworkSettings"]["Networks"][network]["IPAddress"]
    assert ipaddress.ip_address(probe_ip) in cloud.internet
    assert not from_probe(public, 22)  # SSH only from the controller
    assert not from_probe(public, 8080)  # no rule
    assert not from_probe(private, 22)  # private addresses are not on the internet
    ec2.authorize_security_group_ingress(GroupId=case.group, IpPermissions=[_perm("tcp", 8080, cidr=probe_ip + "/32")])
    _eventually(lambda: from_probe(public, 8080), True, what="probe -> public:8080 after authorize")
    assert not from_probe(public, 22)
    assert not from_probe(private, 8080)


def test_down_after_a_killed_endpoint_leaves_no_rules(tmp_path):
    state_dir = tmp_path / "killed"
    exports = _up(state_dir)
    ec2 = _client(exports, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.87.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.87.1.0/24")["Subnet"]["SubnetId"]
    ec2.create_route(RouteTableId=_main_table(ec2, vpc), DestinationCidrBlock="0.0.0.0/0", GatewayId=_igw(ec2, vpc))
    nic = {"DeviceIndex": 0, "SubnetId": subnet, "AssociatePublicIpAddress": True}
    instance = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, NetworkInterfaces=[nic])["Instances"][0]
    instance = instance["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    public = _instance(ec2, instance)["PublicIpAddress"]
    status = json.loads(_cli(state_dir, "status", "--json").stdout)
    rules = status["host_rules"]
    assert any(r.startswith("nat ") for r in rules) and any(" -> " in r for r in rules)
    assert public in status["public_addresses"]
    pid = status["endpoint"]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _gone_or_zombie(pid):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    chains = sorted({w for r in rules for w in r.split() if w.startswith("BFLC-")})
    assert all(c in saved for c in chains)  # the rules outlive the endpoint (its containers stay filtered)
    down = _cli(state_dir, "down")
    assert down.returncode == 0, down.stderr
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    assert [c for c in chains if c in saved] == []
    assert os.path.realpath(state_dir) not in saved  # no jump rule names it
    label = "label=buildfarm.localcloud.dir=%s" % os.path.realpath(state_dir)
    for kind in (["ps", "-aq"], ["network", "ls", "-q"]):
        left = subprocess.run(["docker", *kind, "--filter", label], capture_output=True, text=True, check=True)
        assert left.stdout.strip() == "", kind
    addrs = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    assert " %s/32 " % public not in addrs
