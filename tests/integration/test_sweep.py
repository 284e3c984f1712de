"""buildfarm.ec2.sweep (and playbooks/sweep.yml) through ansible-playbook against the moto server."""

from __future__ import annotations

import http.server
import threading
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ansible_collections.buildfarm.ec2.plugins.module_utils import tags
from tests.conftest import AWS_PLAY, enforced_auth, iam_user, shipped_policy_actions

ROOT = Path(__file__).resolve().parents[2]
SWEEP_PLAYBOOK = ROOT / "playbooks" / "sweep.yml"

BUILD = AWS_PLAY + """
    - name: Network
      buildfarm.ec2.network:
        cluster: "{{ cluster }}"
        run_id: r1
        ssh_cidr: 203.0.113.7/32
      register: net

    - name: Fleet
      buildfarm.ec2.fleet:
        cluster: "{{ cluster }}"
        run_id: r1
        image_id: ami-12c6146b
        subnet_id: "{{ net.subnet_id }}"
        security_group_ids: ["{{ net.security_group_id }}"]
        roles:
          - {name: host, count: 1, type: t3.small}
          - {name: builder, count: 3, type: c6i.large, spot: true}
      register: fleet
      no_log: true

    - name: Workspace
      buildfarm.ec2.volume:
        cluster: "{{ cluster }}"
        name: workspace
        size: 4
        state: attached
        instance_id: "{{ fleet.instances[0].id }}"

    - name: Cache
      buildfarm.ec2.volume:
        cluster: "{{ cluster }}"
        name: cache
        size: 2
        keep: true
        availability_zone: "{{ fleet.instances[0].availability_zone }}"
"""

SWEEP = AWS_PLAY + """
    - name: Sweep
      buildfarm.ec2.sweep:
        cluster: "{{ cluster | default(omit) }}"
        run_id: "{{ run_id | default(omit) }}"
        expired_only: "{{ expired_only | default(false) }}"
        delete_kept: "{{ delete_kept | default(false) }}"
"""


def _left(ec2, cluster="demo"):
    """Every resource still tagged with ``cluster`` (instances that are not terminated)."""
    f = [{"Name": "tag:buildfarm:cluster", "Values": [cluster]}]
    live = [{"Name": "instance-state-name", "Values": ["pending", "running", "shutting-down", "stopping", "stopped"]}]
    return {
        "instances": [
            i["InstanceId"] for r in ec2.describe_instances(Filters=f + live)["Reservations"] for i in r["Instances"]
        ],
        "volumes": [v["VolumeId"] for v in ec2.describe_volumes(Filters=f)["Volumes"]],
        "key_pairs": [k["KeyName"] for k in ec2.describe_key_pairs(Filters=f)["KeyPairs"]],
        "security_groups": [g["GroupId"] for g in ec2.describe_security_groups(Filters=f)["SecurityGroups"]],
        "subnets": [s["SubnetId"] for s in ec2.describe_subnets(Filters=f)["Subnets"]],
        "route_tables": [t["RouteTableId"] for t in ec2.describe_route_tables(Filters=f)["RouteTables"]],
        "internet_gateways": [
            g["InternetGatewayId"] for g in ec2.describe_internet_gateways(Filters=f)["InternetGateways"]
        ],
        "vpcs": [v["VpcId"] for v in ec2.describe_vpcs(Filters=f)["Vpcs"]],
    }


def _total(left):
    return sum(len(ids) for ids in left.values())


def test_playbook_sweeps_a_whole_cluster_and_only_it(aws, run_play):
    ec2 = aws.client("ec2")
    run_play(BUILD, extra_vars={"cluster": "demo"})
    run_play(BUILD, extra_vars={"cluster": "other"})
    before = _left(ec2)
    assert len(before["instances"]) == 4 and len(before["vpcs"]) == 1 and len(before["volumes"]) >= 2
    other_before = _left(ec2, "other")
    cache = ec2.describe_volumes(
        Filters=[{"Name": "tag:buildfarm:cluster", "Values": ["demo"]}, {"Name": "tag:Name", "Values": ["cache"]}]
    )["Volumes"][0]["VolumeId"]
    params = {"cluster": "demo", "region": aws.region, "endpoint_url": aws.endpoint}

    check = run_play(SWEEP_PLAYBOOK, extra_vars=params, check=True).task("Delete the resources of the cluster")
    assert check["changed"] is True
    assert sorted(check["deleted"]["instances"]) == sorted(before["instances"])
    assert check["deleted"]["vpcs"] == before["vpcs"] and check["kept"] == [cache]
    assert _left(ec2) == before

    swept = run_play(SWEEP_PLAYBOOK, extra_vars=params).task("Delete the resources of the cluster")
    assert swept["changed"] is True and swept["clusters"] == ["demo"]
    assert sorted(swept["deleted"]["instances"]) == sorted(before["instances"])
    assert swept["deleted"]["vpcs"] == before["vpcs"]
    assert swept["count"] == sum(len(ids) for ids in swept["deleted"].values())
    left = _left(ec2)
    assert left.pop("volumes") == [cache]  # kept
    assert _total(left) == 0, left
    assert _left(ec2, "other") == other_before

    again = run_play(SWEEP_PLAYBOOK, extra_vars=params).task("Delete the resources of the cluster")
    assert again["changed"] is False and again["count"] == 0

    kept_too = run_play(SWEEP, extra_vars={"cluster": "demo", "delete_kept": True}).task("Sweep")
    assert kept_too["deleted"]["volumes"] == [cache]
    assert _total(_left(ec2)) == 0


def test_half_made_and_half_deleted_cluster_is_removed(aws, run_play):
    ec2 = aws.client("ec2")
    run_play(BUILD.split("    - name: Fleet", maxsplit=1)[0], extra_vars={"cluster": "demo"})  # network only
    failed = run_play(BUILD.replace("ami-12c6146b", "ami-00000000"), extra_vars={"cluster": "demo"}, expect_rc=2)
    assert failed.task("Fleet")["failed"] is True
    left = _left(ec2)
    # half-delete by hand: the gateway detached and deleted, the subnet gone
    vpc = left["vpcs"][0]
    ec2.detach_internet_gateway(InternetGatewayId=left["internet_gateways"][0], VpcId=vpc)
    ec2.delete_internet_gateway(InternetGatewayId=left["internet_gateways"][0])
    ec2.delete_subnet(SubnetId=left["subnets"][0])
    # two groups that reference each other
    t = tags.cluster_tags("demo", role="extra")
    second = ec2.create_security_group(
        GroupName="second", Description="x", VpcId=vpc, TagSpecifications=tags.tag_specifications("security-group", t)
    )["GroupId"]
    first = left["security_groups"][0]
    ec2.authorize_security_group_ingress(
        GroupId=second,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2, "UserIdGroupPairs": [{"GroupId": first}]}],
    )
    ec2.authorize_security_group_ingress(
        GroupId=first,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2, "UserIdGroupPairs": [{"GroupId": second}]}],
    )
    swept = run_play(SWEEP, extra_vars={"cluster": "demo"}).task("Sweep")
    assert swept["changed"] is True
    assert sorted(swept["deleted"]["security_groups"]) == sorted([first, second])
    assert _total(_left(ec2)) == 0
    assert run_play(SWEEP, extra_vars={"cluster": "demo"}).task("Sweep")["changed"] is False


def test_run_id_limits_the_sweep(aws, run_play):
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    for run in ("r1", "r2"):
        ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=2,
            MaxCount=2,
            SubnetId=subnet,
            TagSpecifications=tags.tag_specifications("instance", tags.cluster_tags("demo", "builder", run)),
        )
    swept = run_play(SWEEP, extra_vars={"cluster": "demo", "run_id": "r1"}).task("Sweep")
    assert len(swept["deleted"]["instances"]) == 2
    remaining = ec2.describe_instances(
        Filters=[
            {"Name": "tag:buildfarm:run", "Values": ["r2"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )
    assert sum(len(r["Instances"]) for r in remaining["Reservations"]) == 2
    assert len(_left(ec2)["instances"]) == 2


def test_expired_only_sweeps_expired_clusters_of_any_name(aws, run_play):
    ec2 = aws.client("ec2")
    now = datetime.now(timezone.utc)
    past, future = tags.format_time(now - timedelta(minutes=5)), tags.format_time(now + timedelta(hours=2))
    for cluster, expires in (("old", past), ("young", future), ("mixed", past), ("forever", None)):
        t = tags.cluster_tags(cluster, role="network", expires=expires)
        ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=tags.tag_specifications("vpc", t))
    t = tags.cluster_tags("mixed", role="network", expires=future)
    ec2.create_vpc(CidrBlock="10.1.0.0/16", TagSpecifications=tags.tag_specifications("vpc", t))

    check = run_play(SWEEP, extra_vars={"expired_only": True}, check=True).task("Sweep")
    assert check["clusters"] == ["old"] and check["count"] == 1
    swept = run_play(SWEEP, extra_vars={"expired_only": True}).task("Sweep")
    assert swept["clusters"] == ["old"]
    assert _left(ec2, "old")["vpcs"] == []
    for cluster in ("young", "mixed", "forever"):
        assert _left(ec2, cluster)["vpcs"], cluster
    assert run_play(SWEEP, extra_vars={"expired_only": True}).task("Sweep")["changed"] is False
    young = run_play(SWEEP, extra_vars={"expired_only": True, "cluster": "young"}).task("Sweep")
    assert young["changed"] is False


@pytest.mark.parametrize(
    "extra, message",
    [
        ({}, "cluster is required unless expired_only=true"),
        ({"cluster": "Bad_Name"}, "cluster name 'Bad_Name' is invalid"),
        ({"cluster": "demo", "run_id": "bad run"}, "run id 'bad run' is invalid"),
    ],
)
def test_bad_input_is_refused(aws, run_play, extra, message):
    ec2 = aws.client("ec2")
    ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=tags.tag_specifications("vpc", tags.cluster_tags("demo")))
    result = run_play(SWEEP, extra_vars=extra, expect_rc=2).task("Sweep")
    assert message in result["msg"]
    assert len(_left(ec2)["vpcs"]) == 1


THROTTLED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>'
    b"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>throttle</RequestID></Response>"
)


class ThrottlingProxy(http.server.ThreadingHTTPServer):
    """A loopback proxy to moto that answers every ``every``-th EC2 request with RequestLimitExceeded."""

    def __init__(self, upstream, every):
        self.upstream, self.every, self.seen, self.throttled = upstream, every, 0, 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.seen += 1
            throttle = b"Action=" in body and self.server.seen % self.server.every == 0
            self.server.throttled += throttle
        if throttle:
            self.send_response(503)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(THROTTLED)))
            self.end_headers()
            self.wfile.write(THROTTLED)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        request = urllib.request.Request(
            self.server.upstream + self.path,
            data=body if self.command == "POST" else None,
            headers=headers,
            method=self.command,
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # loopback moto only
                status, payload, kind = response.status, response.read(), response.headers.get("Content-Type")
        except urllib.error.HTTPError as e:
            status, payload, kind = e.code, e.read(), e.headers.get("Content-Type")
        self.send_response(status)
        self.send_header("Content-Type", kind or "text/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = _forward
    do_GET = _forward


@pytest.fixture
def throttling(aws):
    proxy = ThrottlingProxy(aws.endpoint, every=3)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_provisioning_and_sweep_converge_under_throttling(aws, run_play, throttling):
    ec2 = aws.client("ec2")
    env = {"AWS_ENDPOINT_URL": throttling.url}
    run_play(BUILD, extra_vars={"cluster": "demo"}, env=env)
    assert len(_left(ec2)["instances"]) == 4  # no duplicate launch after a throttled RunInstances
    run_play(SWEEP, extra_vars={"cluster": "demo", "delete_kept": True}, env=env)
    assert _total(_left(ec2)) == 0
    assert throttling.throttled >= 10


def test_shipped_iam_policy_is_enough_to_provision_and_sweep(aws, run_play):
    """On a server that checks credentials and IAM policies, the actions of docs/iam-policy.json build a cluster
    (network, fleet, volumes) and sweep all of it; without ec2:TerminateInstances the sweep fails and says so."""
    ec2 = aws.client("ec2")
    shipped = iam_user(aws, "provisioner", shipped_policy_actions())
    no_terminate = iam_user(aws, "no-terminate", shipped_policy_actions() - {"ec2:TerminateInstances"})
    with enforced_auth(aws.endpoint):
        run_play(BUILD, extra_vars={"cluster": "demo"}, env=shipped)
        refused = run_play(SWEEP, extra_vars={"cluster": "demo"}, env=no_terminate, expect_rc=2).task("Sweep")
    assert len(_left(ec2)["instances"]) == 4
    assert "TerminateInstances" in refused["msg"]
    with enforced_auth(aws.endpoint):
        swept = run_play(SWEEP, extra_vars={"cluster": "demo", "delete_kept": True}, env=shipped).task("Sweep")
    assert swept["changed"] and len(swept["deleted"]["instances"]) == 4
    assert _total(_left(ec2)) == 0
