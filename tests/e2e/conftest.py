"""End-to-end fixtures: a local cloud of this test session (own state dir and port), Lua sources from apt."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCALCLOUD = ROOT / "tools" / "localcloud" / "localcloud.sh"


def _containers(label):
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=" + label], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def pytest_assertrepr_compare(op, left, right):
    """`assert "text" in out` on a playbook's output: show its errors and its tail, not pytest's truncated repr."""
    if op in ("in", "not in") and isinstance(right, str) and "PLAY [" in right:
        lines = right.splitlines()
        errors = [line for line in lines if line.startswith(("[ERROR]", "fatal:", "failed:")) or "FAILED!" in line]
        return ["%r %s the playbook output" % (left, op), "its errors:", *errors[:40], "its tail:", *lines[-60:]]
    return None


def pytest_collection_modifyitems(items):
    """The longest tests first (their `minutes` mark; unmarked ones take about one). The two xdist workers take
    the tests in this order, one at a time as they get free: a long test that starts last keeps one worker busy
    while the other idles, longest-first lets both end together."""

    def minutes(item):
        mark = item.get_closest_marker("minutes")
        return mark.args[0] if mark else 1

    items.sort(key=minutes, reverse=True)


@pytest.fixture(scope="session")
def localcloud(tmp_path_factory):
    """The local cloud, up for the session; yields its env. `down` must leave nothing behind."""
    state = tmp_path_factory.mktemp("localcloud")
    env = dict(os.environ, BUILDFARM_LOCALCLOUD_DIR=str(state))
    up = subprocess.run([str(LOCALCLOUD), "up"], env=env, capture_output=True, text=True, check=False)
    assert up.returncode == 0, up.stderr
    cloud_env = {}
    for line in up.stdout.splitlines():
        if line.startswith("export "):
            key, value = line[len("export ") :].split("=", 1)
            cloud_env[key] = value.strip("'\"")
    assert cloud_env.get("AWS_ENDPOINT_URL", "").startswith("http://127.0.0.1:")
    yield cloud_env
    down = subprocess.run([str(LOCALCLOUD), "down"], env=env, capture_output=True, text=True, check=False)
    assert down.returncode == 0, down.stderr
    assert _containers("buildfarm.localcloud.dir=%s" % state) == []


def _debian_source(request, package):
    """The upstream sources of a Debian source package, fetched once with examples/fetch-debian-source.sh.

    The version fetched is printed in the session's output. A failed fetch is the mirror's failure, not the
    product's: the tests that need the sources error with the script's own reason."""
    dest = ROOT / "build" / "e2e" / "sources"
    dest.mkdir(parents=True, exist_ok=True)
    # The suite runs in two xdist workers, each with its own session: one fetch at a time, the second finds it done.
    with open(dest / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = subprocess.run(
            [str(ROOT / "examples" / "fetch-debian-source.sh"), package, str(dest)],
            capture_output=True,
            text=True,
            check=False,
        )
    if out.returncode != 0:
        pytest.fail(
            "the Debian mirror could not provide the sources of %s (a mirror failure, not a product failure):\n%s"
            % (package, out.stderr.strip()),
            pytrace=False,
        )
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    message = "sources: " + (out.stderr.strip().splitlines() or [package])[-1].replace("fetch-debian-source: ", "")
    if reporter is not None:
        reporter.write_line(message)
    sys.stderr.write(message + "\n")
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def lua_sources(request):
    return _debian_source(request, "lua5.4")


@pytest.fixture(scope="session")
def zlib_sources(request):
    return _debian_source(request, "zlib")


class Cloud:
    def __init__(self, env):
        self.env = env

    def client(self, name):
        return boto3.client(
            name,
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name=self.env["AWS_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    def bucket(self, name):
        s3 = self.client("s3")
        if name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.env["AWS_REGION"]})
        return name

    def objects(self, bucket, prefix=""):
        s3 = self.client("s3")
        result = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                result[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        return result

    def spot_capacity(self, instance_types, available):
        """The local cloud's spot control (docs/localcloud.md, `localcloud.sh spot refuse|allow TYPE...`)."""
        action = "allow" if available else "refuse"
        env = dict(os.environ, BUILDFARM_LOCALCLOUD_DIR=self.env["BUILDFARM_LOCALCLOUD_DIR"])
        proc = subprocess.run(
            [str(LOCALCLOUD), "spot", action, *instance_types], env=env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def interrupt(self, instance_id, delay):
        """The local cloud's spot interruption (`localcloud.sh spot interrupt ID --delay S`): EC2's notice in the
        instance's metadata now, the instance stopped or terminated ``delay`` seconds later."""
        env = dict(os.environ, BUILDFARM_LOCALCLOUD_DIR=self.env["BUILDFARM_LOCALCLOUD_DIR"])
        proc = subprocess.run(
            [str(LOCALCLOUD), "spot", "interrupt", instance_id, "--delay", str(delay)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def leftovers(self, cluster):
        """Every resource still tagged with the cluster (terminated instances excluded), plus its containers."""
        ec2 = self.client("ec2")
        tag = [{"Name": "tag:buildfarm:cluster", "Values": [cluster]}]
        live = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
        found = {
            "instances": [
                i["InstanceId"]
                for r in ec2.describe_instances(Filters=tag + live)["Reservations"]
                for i in r["Instances"]
            ],
            "vpcs": [v["VpcId"] for v in ec2.describe_vpcs(Filters=tag)["Vpcs"]],
            "subnets": [s["SubnetId"] for s in ec2.describe_subnets(Filters=tag)["Subnets"]],
            "security_groups": [g["GroupId"] for g in ec2.describe_security_groups(Filters=tag)["SecurityGroups"]],
            "volumes": [v["VolumeId"] for v in ec2.describe_volumes(Filters=tag)["Volumes"]],
            "key_pairs": [k["KeyName"] for k in ec2.describe_key_pairs(Filters=tag)["KeyPairs"]],
            "instance_profiles": [],
            "roles": [],
        }
        iam, mark = self.client("iam"), {"Key": "buildfarm:cluster", "Value": cluster}
        for profile in iam.list_instance_profiles()["InstanceProfiles"]:
            name = profile["InstanceProfileName"]
            if mark in iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"].get("Tags", []):
                found["instance_profiles"].append(name)
        for role in iam.list_roles()["Roles"]:
            if mark in iam.get_role(RoleName=role["RoleName"])["Role"].get("Tags", []):
                found["roles"].append(role["RoleName"])
        return {k: v for k, v in found.items() if v}


@pytest.fixture(scope="session")
def cloud(localcloud):
    return Cloud(localcloud)


class Runner:
    """Runs playbooks of this checkout on the local cloud, with extra vars from a JSON file."""

    def __init__(self, cloud, tmp_path):
        self.tmp_path = tmp_path
        self.cloud_env = cloud.env
        self.env = dict(os.environ, **cloud.env)
        self.env.update(
            ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"),
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_FORCE_COLOR="false",
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        )

    def command(self, playbook, extra_vars):
        params = self.tmp_path / ("params-%s.json" % playbook.replace("/", "_"))
        # The controller reaches the nodes from outside, by their public addresses: SSH is open to its address.
        defaults = {
            "work_dir": str(self.tmp_path / "runs"),
            "ssh_cidr": self.cloud_env["BUILDFARM_LOCALCLOUD_CONTROLLER_CIDR"],
        }
        params.write_text(json.dumps(dict(defaults, **extra_vars)))
        return [
            str(Path(sys.executable).parent / "ansible-playbook"),
            str(ROOT / "playbooks" / playbook),
            "-e",
            "@" + str(params),
        ]

    def start(self, playbook, extra_vars):
        """The playbook running, its output (stdout and stderr) readable line by line as it comes."""
        return subprocess.Popen(
            self.command(playbook, extra_vars),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, playbook, extra_vars, timeout=1800):
        proc = subprocess.run(
            self.command(playbook, extra_vars),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return proc.returncode, proc.stdout + proc.stderr


# Every runner's image_id=auto boots the image the session baked: `baked` comes first.
@pytest.fixture
def runner(cloud, tmp_path, baked):  # pylint: disable=unused-argument
    return Runner(cloud, tmp_path)


BASE_IMAGE = "ami-12c6146b"  # the local cloud's Debian 12 image


@pytest.fixture(scope="session")
def baked(cloud, tmp_path_factory):
    """playbooks/bake.yml once per local cloud: the image that build.yml's image_id=auto boots (one per xdist
    worker, each worker has its own cloud). Returns bake.yml's output and the image's description."""
    runner = Runner(cloud, tmp_path_factory.mktemp("bake"))
    # its own network per worker: the workers' local clouds share the engine, where subnets may not overlap
    net = 87 - int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)  # gw0: 10.87, gw1: 10.86
    params = {"base_image_id": BASE_IMAGE, "vpc_cidr": "10.%d.0.0/16" % net, "subnet_cidr": "10.%d.0.0/24" % net}
    rc, out = runner.run("bake.yml", params, timeout=1800)
    assert rc == 0, out[-6000:]
    images = cloud.client("ec2").describe_images(
        Owners=["self"], Filters=[{"Name": "tag:buildfarm:cluster", "Values": ["bake"]}]
    )["Images"]
    assert len(images) == 1 and images[0]["State"] == "available", images
    return {"output": out, "image": images[0], "params": params, "runner": runner}


@pytest.fixture
def build(runner):
    """Run playbooks/build.yml on the local cloud with extra vars; returns (rc, output)."""

    def run(extra_vars, timeout=1800):
        return runner.run("build.yml", extra_vars, timeout)

    return run
