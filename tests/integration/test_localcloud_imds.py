"""The local cloud's instance metadata service and spot control are EC2's (docs/localcloud.md, "Instance metadata"
and "Spot control"): IMDSv2 tokens, 401 without one when HttpTokens is required, nothing at all when the endpoint
is disabled, ModifyInstanceMetadataOptions in effect, the identity document, instance-profile credentials that
boto3 on the instance uses with no keys anywhere, spot capacity refused per type, interruption notice then
termination with EC2's state reason.

Real containers, probed from inside over SSH (curl; boto3 copied from the host's venv, so the instances need no
package download). One local cloud for the module, all instances launched at once so they boot together.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError
from test_localcloud import _cli, _instance, _ssh, _wait_ssh, _wait_state
from test_localcloud import pytestmark as _engine_marks
from test_localcloud_network import AMI, _client, _eventually, _gateway, _group, _igw

from ansible_collections.buildfarm.ec2.plugins.module_utils import iam as bf_iam
from tests.conftest import ROOT, local_cloud

sys.path.insert(0, str(ROOT / "tools" / "localcloud"))
from localcloud import iam as localiam  # noqa: E402  (how long a new profile is refused)

pytestmark = _engine_marks
CIDR = "10.86.1.0/24"
IMDS = "http://169.254.169.254"
TOKEN = "curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: %d' %s/latest/api/token"
CREDENTIAL_SECONDS = 30
BUCKET = "lc-imds"
REGION = "eu-west-1"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def _code(cloud, ip, path, token=None, method="GET", headers=()):
    """The HTTP status of a metadata request from inside the instance ("000": nothing answered in 3 s)."""
    args = ["-H '%s'" % h for h in headers]
    if token:
        args.append("-H 'X-aws-ec2-metadata-token: %s'" % token)
    command = "curl -s -o /dev/null -w '%%{http_code}' --max-time 3 -X %s %s %s%s" % (
        method,
        " ".join(args),
        IMDS,
        path,
    )
    return _ssh(cloud, ip, command, check=False).stdout.strip()


def _get(cloud, ip, path, ttl=60):
    """The body of a metadata request with a fresh token (IMDSv2), from inside the instance."""
    command = 'T=$(%s) && curl -sf --max-time 3 -H "X-aws-ec2-metadata-token: $T" %s%s' % (
        TOKEN % (ttl, IMDS),
        IMDS,
        path,
    )
    return _ssh(cloud, ip, command).stdout


def _token(cloud, ip, ttl=60):
    return _ssh(cloud, ip, TOKEN % (ttl, IMDS)).stdout.strip()


def _boto3_tarball():
    """boto3 and its pure-Python dependencies from this venv, with botocore's data for the services used here."""
    import botocore

    site = os.path.dirname(os.path.dirname(botocore.__file__))
    buf = io.BytesIO()
    keep = {"sts", "s3", "ec2"}
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("boto3", "botocore", "jmespath", "s3transfer", "dateutil", "urllib3", "six.py"):

            def only_needed(info):
                parts = info.name.split("/")
                if "__pycache__" in parts:
                    return None
                if parts[:2] == ["botocore", "data"] and len(parts) > 3 and parts[2] not in keep:
                    return None
                return info

            tar.add(os.path.join(site, name), arcname=name, filter=only_needed)
    return buf.getvalue()


def _install_boto3(cloud, ip):
    """boto3 in /tmp/py on the instance (from :func:`_boto3_tarball`), once."""
    if _ssh(cloud, ip, "test -d /tmp/py/boto3", check=False).returncode == 0:
        return
    proc = subprocess.run(
        [
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
            "LogLevel=ERROR",
            "admin@" + ip,
            "mkdir -p /tmp/py && tar -C /tmp/py -xz",
        ],
        input=_boto3_tarball(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    base = tmp_path_factory.mktemp("localcloud-imds")
    state_dir = base / "state"
    with local_cloud(state_dir, "--no-engine", "--credential-seconds", str(CREDENTIAL_SECONDS)) as exports:
        ns = SimpleNamespace(dir=state_dir, exports=exports, key_file=base / "id_admin")
        ns.ec2 = ec2 = _client(exports, "ec2")
        ns.iam = iam = _client(exports, "iam")
        ns.key_file.write_text(ec2.create_key_pair(KeyName="lc-imds")["KeyMaterial"])
        ns.key_file.chmod(0o600)
        vpc = ec2.create_vpc(CidrBlock="10.86.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=CIDR)["Subnet"]["SubnetId"]
        table = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"][0]
        ec2.create_route(RouteTableId=table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=_igw(ec2, vpc))
        ns.group = _group(ec2, vpc, "imds", _gateway(CIDR) + "/32")
        iam.create_role(RoleName="lc-imds-node", AssumeRolePolicyDocument=json.dumps(TRUST))
        iam.create_instance_profile(InstanceProfileName="lc-imds-node")
        iam.add_role_to_instance_profile(InstanceProfileName="lc-imds-node", RoleName="lc-imds-node")
        # the collection's artifacts policy: read and write only under run/ of the bucket
        iam.put_role_policy(
            RoleName="lc-imds-node",
            PolicyName="artifacts",
            PolicyDocument=json.dumps(bf_iam.artifacts_policy(BUCKET, "run/")),
        )
        _client(exports, "s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})

        def launch(**extra):
            nic = {"DeviceIndex": 0, "SubnetId": subnet, "Groups": [ns.group], "AssociatePublicIpAddress": True}
            return ec2.run_instances(
                ImageId=AMI,
                InstanceType="t3.micro",
                MinCount=1,
                MaxCount=1,
                KeyName="lc-imds",
                NetworkInterfaces=[nic],
                **extra,
            )["Instances"][0]["InstanceId"]

        ns.refused = {}
        for name in ("lc-imds-node", "no-such-profile"):  # too new to be seen by EC2 yet, unknown
            try:
                launch(IamInstanceProfile={"Name": name})
            except ClientError as e:
                ns.refused[name] = e.response["Error"]
        time.sleep(localiam.PROFILE_PROPAGATION_SECONDS)
        ns.v2 = launch(  # IMDSv2 only, with a profile and its tags in IMDS, spot
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled", "InstanceMetadataTags": "enabled"},
            IamInstanceProfile={"Name": "lc-imds-node"},
            InstanceMarketOptions={"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time"}},
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "imds-v2"}]}],
        )
        ns.v1 = launch()  # EC2's default: HttpTokens optional, no profile, on-demand
        ns.spot = launch(
            InstanceMarketOptions={"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time"}},
        )
        ns.ip = {}
        for iid in (ns.v2, ns.v1, ns.spot):
            ns.ip[iid] = _wait_state(ec2, iid, "running", deadline=240)["PrivateIpAddress"]
        for ip in ns.ip.values():
            _wait_ssh(ns, ip)
        yield ns


def test_v2_only_refuses_tokenless_requests(cloud):
    ip = cloud.ip[cloud.v2]
    assert _code(cloud, ip, "/latest/meta-data/instance-id") == "401"
    assert _get(cloud, ip, "/latest/meta-data/instance-id") == cloud.v2
    assert _code(cloud, ip, "/latest/meta-data/instance-id", token="not-a-token") == "401"
    # the token PUT: TTL header required and 1-21600, no proxies
    assert _code(cloud, ip, "/latest/api/token", method="PUT") == "400"
    assert (
        _code(cloud, ip, "/latest/api/token", method="PUT", headers=["X-aws-ec2-metadata-token-ttl-seconds: 0"])
        == "400"
    )
    proxied = ["X-aws-ec2-metadata-token-ttl-seconds: 60", "X-Forwarded-For: 10.0.0.1"]
    assert _code(cloud, ip, "/latest/api/token", method="PUT", headers=proxied) == "403"
    # a token is bound to its instance and expires with its TTL
    other = _token(cloud, cloud.ip[cloud.v1])
    assert _code(cloud, ip, "/latest/meta-data/instance-id", token=other) == "401"
    short = _token(cloud, ip, ttl=1)
    assert _code(cloud, ip, "/latest/meta-data/instance-id", token=short) == "200"
    time.sleep(2)
    assert _code(cloud, ip, "/latest/meta-data/instance-id", token=short) == "401"


def test_metadata_and_identity_document(cloud):
    ip = cloud.ip[cloud.v2]
    inst = _instance(cloud.ec2, cloud.v2)
    listing = _get(cloud, ip, "/latest/meta-data/").split("\n")
    for entry in ("instance-id", "instance-type", "ami-id", "local-ipv4", "public-ipv4", "placement/", "mac", "iam/"):
        assert entry in listing
    assert "spot/" not in listing  # no interruption pending
    assert _get(cloud, ip, "/latest/meta-data/instance-type") == "t3.micro"
    assert _get(cloud, ip, "/latest/meta-data/ami-id") == AMI
    assert _get(cloud, ip, "/latest/meta-data/local-ipv4") == inst["PrivateIpAddress"]
    assert _get(cloud, ip, "/latest/meta-data/public-ipv4") == inst["PublicIpAddress"]
    assert _get(cloud, ip, "/latest/meta-data/placement/region") == cloud.exports["AWS_REGION"]
    assert _get(cloud, ip, "/latest/meta-data/placement/availability-zone") == inst["Placement"]["AvailabilityZone"]
    assert _get(cloud, ip, "/latest/meta-data/mac") == inst["NetworkInterfaces"][0]["MacAddress"]
    assert _get(cloud, ip, "/latest/meta-data/security-groups") == "imds"
    assert _get(cloud, ip, "/latest/meta-data/instance-life-cycle") == "spot"
    assert _get(cloud, ip, "/latest/meta-data/tags/instance/Name") == "imds-v2"
    doc = json.loads(_get(cloud, ip, "/latest/dynamic/instance-identity/document"))
    assert doc["instanceId"] == cloud.v2
    assert doc["instanceType"] == "t3.micro"
    assert doc["imageId"] == AMI
    assert doc["privateIp"] == inst["PrivateIpAddress"]
    assert doc["region"] == cloud.exports["AWS_REGION"]
    assert doc["availabilityZone"] == inst["Placement"]["AvailabilityZone"]
    assert doc["accountId"] == inst["NetworkInterfaces"][0]["OwnerId"]
    # without a profile there is no iam/, without InstanceMetadataTags no tags/, and no public address: none shown
    v1 = cloud.ip[cloud.v1]
    listing = _get(cloud, v1, "/latest/meta-data/").split("\n")
    assert "iam/" not in listing and "tags/" not in listing
    assert _code(cloud, v1, "/latest/meta-data/iam/info", token=_token(cloud, v1)) == "404"
    assert _get(cloud, v1, "/latest/meta-data/instance-life-cycle") == "on-demand"


def test_optional_tokens_then_modify_metadata_options(cloud):
    ec2, ip = cloud.ec2, cloud.ip[cloud.v1]
    assert _code(cloud, ip, "/latest/meta-data/instance-id") == "200"  # IMDSv1 where the instance allows it
    try:
        ec2.modify_instance_metadata_options(InstanceId=cloud.v1, HttpTokens="required")
        _eventually(lambda: _code(cloud, ip, "/latest/meta-data/instance-id"), "401", what="HttpTokens required")
        ec2.modify_instance_metadata_options(InstanceId=cloud.v1, HttpEndpoint="disabled")
        _eventually(
            lambda: _code(
                cloud, ip, "/latest/api/token", method="PUT", headers=["X-aws-ec2-metadata-token-ttl-seconds: 60"]
            ),
            "000",
            what="endpoint disabled",
        )
        assert _code(cloud, ip, "/latest/meta-data/instance-id") == "000"  # nothing answers at all
    finally:
        ec2.modify_instance_metadata_options(InstanceId=cloud.v1, HttpEndpoint="enabled", HttpTokens="optional")
    _eventually(lambda: _code(cloud, ip, "/latest/meta-data/instance-id"), "200", what="endpoint enabled again")


def test_security_groups_do_not_filter_imds(cloud):
    """A group with no egress rule at all still reaches IMDS (as on EC2), and nothing else."""
    ec2, ip = cloud.ec2, cloud.ip[cloud.v1]
    group = ec2.describe_security_groups(GroupIds=[cloud.group])["SecurityGroups"][0]
    egress = group["IpPermissionsEgress"]
    assert egress, "the group has moto's default egress rule"
    ec2.revoke_security_group_egress(GroupId=cloud.group, IpPermissions=egress)
    try:
        endpoint = cloud.exports["BUILDFARM_INSTANCE_ENDPOINT_URL"] + "/moto-api/"
        cut = "curl -s -o /dev/null --max-time 3 %s" % endpoint
        _eventually(lambda: _ssh(cloud, ip, cut, check=False).returncode != 0, True, what="egress cut")
        assert _code(cloud, ip, "/latest/meta-data/instance-id") == "200"
    finally:
        ec2.authorize_security_group_egress(GroupId=cloud.group, IpPermissions=egress)


def test_instance_profile_credentials_work_with_boto3_and_rotate(cloud):
    ip = cloud.ip[cloud.v2]
    assert "AWS_ACCESS_KEY_ID" not in _ssh(cloud, ip, "cat /etc/environment").stdout  # no keys on the instance
    assert _get(cloud, ip, "/latest/meta-data/iam/security-credentials/") == "lc-imds-node"
    info = json.loads(_get(cloud, ip, "/latest/meta-data/iam/info"))
    assert info["Code"] == "Success" and info["InstanceProfileArn"].endswith(":instance-profile/lc-imds-node")
    first = json.loads(_get(cloud, ip, "/latest/meta-data/iam/security-credentials/lc-imds-node"))
    assert first["Code"] == "Success" and first["Type"] == "AWS-HMAC"
    assert first["AccessKeyId"] and first["SecretAccessKey"] and first["Token"]
    # boto3 on the instance: credentials from IMDS (v2), region and endpoint from /etc/environment
    _install_boto3(cloud, ip)
    script = (
        "import boto3; s = boto3.Session(); c = s.get_credentials(); "
        "print(c.method); print(s.client('sts').get_caller_identity()['Arn'])"
    )
    out = _ssh(cloud, ip, 'set -a; . /etc/environment; PYTHONPATH=/tmp/py python3 -c "%s"' % script, timeout=120)
    method, arn = out.stdout.split()
    assert method == "iam-role"
    assert arn.endswith(":assumed-role/lc-imds-node/%s" % cloud.v2)
    # new credentials before the old ones expire (lifetime CREDENTIAL_SECONDS here)
    expires = time.mktime(time.strptime(first["Expiration"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    deadline = time.time() + CREDENTIAL_SECONDS
    while True:
        now = json.loads(_get(cloud, ip, "/latest/meta-data/iam/security-credentials/lc-imds-node"))
        if now["AccessKeyId"] != first["AccessKeyId"]:
            break
        assert time.time() < deadline, "credentials never rotated"
        time.sleep(2)
    assert time.time() < expires, "rotated only after the old credentials expired"
    assert now["Expiration"] > first["Expiration"]


def test_a_new_or_unknown_profile_is_refused_at_launch(cloud):
    """EC2: a profile made a moment ago may not be usable yet (IAM is eventually consistent); an unknown one never
    is. Both: InvalidParameterValue naming iamInstanceProfile, nothing launched."""
    for name in ("lc-imds-node", "no-such-profile"):
        error = cloud.refused[name]
        assert error["Code"] == "InvalidParameterValue", error
        assert "Value (%s) for parameter iamInstanceProfile.name is invalid" % name in error["Message"]
    named = cloud.ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["imds-v2"]}])["Reservations"]
    assert len(named) == 1  # only the launch after the wait


def test_the_role_policy_decides_what_instance_credentials_may_do_in_s3(cloud):
    """With the collection's artifacts policy (bucket lc-imds, prefix run/): put, get and list under run/ work; a
    put or get elsewhere, a listing of another prefix or of the whole bucket are AccessDenied."""
    ip = cloud.ip[cloud.v2]
    _install_boto3(cloud, ip)
    script = (
        "import boto3, botocore\n"
        "s3 = boto3.client('s3')\n"
        "def tried(name, **kw):\n"
        "    try:\n"
        "        getattr(s3, name)(Bucket='%s', **kw)\n"
        "        return 'ok'\n"
        "    except botocore.exceptions.ClientError as e:\n"
        "        return e.response['Error']['Code']\n"
        "print(tried('put_object', Key='run/bin/app', Body=b'x'))\n"
        "print(tried('get_object', Key='run/bin/app'))\n"
        "print(tried('list_objects_v2', Prefix='run/'))\n"
        "print(tried('put_object', Key='other/app', Body=b'x'))\n"
        "print(tried('put_object', Key='runaway', Body=b'x'))\n"
        "print(tried('get_object', Key='other/secret'))\n"
        "print(tried('list_objects_v2', Prefix='other/'))\n"
        "print(tried('list_objects_v2'))\n"
        "print(tried('delete_object', Key='run/bin/app'))\n"
    ) % BUCKET
    _ssh(cloud, ip, "cat > /tmp/s3check.py <<'EOF'\n%sEOF" % script)
    out = _ssh(cloud, ip, "set -a; . /etc/environment; PYTHONPATH=/tmp/py python3 /tmp/s3check.py", timeout=120)
    assert out.stdout.split() == ["ok", "ok", "ok"] + ["AccessDenied"] * 6, out.stdout + out.stderr
    s3 = _client(cloud.exports, "s3")  # the controller's (dummy) keys are left to moto: not enforced
    assert s3.get_object(Bucket=BUCKET, Key="run/bin/app")["Body"].read() == b"x"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="other/")


def test_associate_instance_profile_later(cloud):
    ec2, ip = cloud.ec2, cloud.ip[cloud.v1]
    token = _token(cloud, ip)
    assert _code(cloud, ip, "/latest/meta-data/iam/security-credentials/", token=token) == "404"
    assoc = ec2.associate_iam_instance_profile(InstanceId=cloud.v1, IamInstanceProfile={"Name": "lc-imds-node"})
    assert _get(cloud, ip, "/latest/meta-data/iam/security-credentials/") == "lc-imds-node"
    ec2.disassociate_iam_instance_profile(AssociationId=assoc["IamInstanceProfileAssociation"]["AssociationId"])
    assert _code(cloud, ip, "/latest/meta-data/iam/security-credentials/", token=token) == "404"


def test_spot_capacity_refused_per_type(cloud):
    ec2 = cloud.ec2
    proc = _cli(cloud.dir, "spot", "refuse", "t3.nano")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["refused_types"] == ["t3.nano"]
    spot = dict(
        ImageId=AMI,
        InstanceType="t3.nano",
        MinCount=1,
        MaxCount=1,
        SubnetId=ec2.describe_instances(InstanceIds=[cloud.v1])["Reservations"][0]["Instances"][0]["SubnetId"],
        InstanceMarketOptions={"MarketType": "spot"},
    )
    client = boto3.client(
        "ec2",
        endpoint_url=cloud.exports["AWS_ENDPOINT_URL"],
        region_name=cloud.exports["AWS_REGION"],
        aws_access_key_id=cloud.exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=cloud.exports["AWS_SECRET_ACCESS_KEY"],
    )
    with pytest.raises(ClientError) as refused:
        client.run_instances(**spot)
    error = refused.value.response
    assert error["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert error["Error"]["Message"] == "There is no Spot capacity available that matches your request."
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 500  # a server error, as EC2's (SDKs retry it)
    before = {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert len(before) == 3  # nothing was launched
    proc = _cli(cloud.dir, "spot", "allow", "t3.nano")
    assert json.loads(proc.stdout)["refused_types"] == []


def test_spot_interruption_notice_then_termination(cloud):
    ec2, iid, ip = cloud.ec2, cloud.spot, cloud.ip[cloud.spot]
    token = _token(cloud, ip)
    assert _code(cloud, ip, "/latest/meta-data/spot/instance-action", token=token) == "404"
    assert _code(cloud, ip, "/latest/meta-data/events/recommendations/rebalance", token=token) == "404"
    refused = _cli(cloud.dir, "spot", "interrupt", cloud.v1, "--delay", "5")
    assert refused.returncode != 0 and "not a spot instance" in refused.stderr
    proc = _cli(cloud.dir, "spot", "interrupt", iid, "--delay", "8")
    assert proc.returncode == 0, proc.stderr
    noticed = time.time()
    action = json.loads(_get(cloud, ip, "/latest/meta-data/spot/instance-action"))
    assert action["action"] == "terminate"
    when = time.mktime(time.strptime(action["time"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(when - (noticed + 8)) < 3
    assert "noticeTime" in json.loads(_get(cloud, ip, "/latest/meta-data/events/recommendations/rebalance"))
    assert _instance(ec2, iid)["State"]["Name"] == "running"  # the warning comes first
    inst = _wait_state(ec2, iid, "terminated", deadline=60)
    assert time.time() - noticed >= 7
    assert inst["StateReason"]["Code"] == "Server.SpotInstanceTermination"
    assert inst["StateReason"]["Message"].startswith("Server.SpotInstanceTermination: The instance was terminated")


def test_fleet_spot_fallback_against_the_control(cloud):
    """The product's spot launch (module_utils/fleet.py) against refused capacity: on-demand instead, or, with
    spot_fallback false, an error naming the type and the code, with nothing launched."""
    from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper

    from ansible_collections.buildfarm.ec2.plugins.module_utils import aws as bf_aws
    from ansible_collections.buildfarm.ec2.plugins.module_utils import fleet as bf_fleet
    from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags

    ec2 = RetryingBotoClientWrapper(cloud.ec2, bf_aws.RETRY)
    subnet = _instance(cloud.ec2, cloud.v1)["SubnetId"]
    launch = {
        "image_id": AMI,
        "subnet_id": subnet,
        "security_group_ids": [cloud.group],
        "public_ip": False,
        "user_data": "#!/bin/sh\ntrue\n",
        "root_device": "/dev/sda1",
        # The cluster's tags as the fleet module gives them (the launch's ClientToken is derived from them).
        "tags": {
            "builder": dict(bf_tags.cluster_tags("lc-imds", role="builder", run_id="r1"), Name="lc-imds-fallback")
        },
    }
    role = {"name": "builder", "type": "t3.nano", "spot": True}
    assert json.loads(_cli(cloud.dir, "spot", "refuse", "t3.nano").stdout)["refused_types"] == ["t3.nano"]
    try:
        with pytest.raises(bf_fleet.FleetError) as refused:
            bf_fleet.run_instances(ec2, dict(role, spot_fallback=False), 1, launch)
        assert "t3.nano" in str(refused.value) and "InsufficientInstanceCapacity" in str(refused.value)
        named = cloud.ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["lc-imds-fallback"]}])
        assert named["Reservations"] == []  # nothing launched
        ids, fallbacks = bf_fleet.run_instances(ec2, role, 1, launch)
        assert [f["type"] for f in fallbacks] == ["t3.nano"]
        assert fallbacks[0]["reason"].startswith("InsufficientInstanceCapacity: There is no Spot capacity")
        inst = _instance(cloud.ec2, ids[0])
        assert inst["InstanceType"] == "t3.nano" and "InstanceLifecycle" not in inst  # on-demand
    finally:
        _cli(cloud.dir, "spot", "allow", "t3.nano")
    ids, fallbacks = bf_fleet.run_instances(ec2, dict(role, spot_fallback=False), 1, launch)
    assert fallbacks == [] and _instance(cloud.ec2, ids[0])["InstanceLifecycle"] == "spot"


def test_spot_over_several_instance_types_against_the_control(cloud):
    """A spot role over two types (module_utils/fleet.py): the count is spread over them, a refused type's share
    goes to the other one, and only when both refuse does it go on-demand (first type) - or, with spot_fallback
    false, fail naming both types and EC2's code, launching nothing."""
    from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper

    from ansible_collections.buildfarm.ec2.plugins.module_utils import aws as bf_aws
    from ansible_collections.buildfarm.ec2.plugins.module_utils import fleet as bf_fleet
    from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags

    ec2 = RetryingBotoClientWrapper(cloud.ec2, bf_aws.RETRY)
    name = "lc-imds-types"

    def launch(first):
        return {
            "image_id": AMI,
            "subnet_id": _instance(cloud.ec2, cloud.v1)["SubnetId"],
            "security_group_ids": [cloud.group],
            "public_ip": False,
            "user_data": "#!/bin/sh\ntrue\n",
            "root_device": "/dev/sda1",
            "tags": {"builder": dict(bf_tags.cluster_tags("lc-imds", role="builder", run_id="r2"), Name=name)},
            "first": {"builder": first},  # another launch of the role each time: another ClientToken
        }

    def launched(ids):
        return sorted((i["InstanceType"], i.get("InstanceLifecycle", "on-demand")) for i in map(_inst, ids))

    def _inst(instance_id):
        return _instance(cloud.ec2, instance_id)

    role = {"name": "builder", "type": "t3.nano,t3.micro", "spot": True}
    ids, fallbacks = bf_fleet.run_instances(ec2, role, 2, launch(10))
    assert launched(ids) == [("t3.micro", "spot"), ("t3.nano", "spot")] and fallbacks == []
    try:
        _cli(cloud.dir, "spot", "refuse", "t3.nano")
        ids, fallbacks = bf_fleet.run_instances(ec2, role, 1, launch(20))
        assert launched(ids) == [("t3.micro", "spot")] and [f["type"] for f in fallbacks] == ["t3.nano"]
        _cli(cloud.dir, "spot", "refuse", "t3.micro")
        before = cloud.ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])["Reservations"]
        with pytest.raises(bf_fleet.FleetError) as refused:
            bf_fleet.run_instances(ec2, dict(role, spot_fallback=False), 1, launch(30))
        message = str(refused.value)
        assert (
            "t3.nano (InsufficientInstanceCapacity: " in message
            and "t3.micro (InsufficientInstanceCapacity: " in message
        )
        after = cloud.ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])["Reservations"]
        assert len(after) == len(before)  # nothing launched
        ids, fallbacks = bf_fleet.run_instances(ec2, role, 1, launch(40))
        assert launched(ids) == [("t3.nano", "on-demand")]
        assert sorted(f["type"] for f in fallbacks) == ["t3.micro", "t3.nano"]
    finally:
        _cli(cloud.dir, "spot", "allow", "t3.nano", "t3.micro")
