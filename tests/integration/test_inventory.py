"""buildfarm.ec2.instances through ``ansible-inventory --list`` against the moto server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ansible_collections.buildfarm.ec2.plugins.module_utils import tags
from tests.conftest import COLLECTIONS, child_env, enforced_auth, free_port, iam_user, shipped_policy_actions

AMI = "ami-12c6146b"


def launch(ec2, cluster, role, count=1, instance_type="t3.micro", run_id="r1", extra=None, batch=500):
    """Start ``count`` tagged instances, ``batch`` per reservation; returns their ids."""
    ids = []
    while len(ids) < count:
        batch = min(batch, count - len(ids))
        reply = ec2.run_instances(
            ImageId=AMI,
            MinCount=batch,
            MaxCount=batch,
            InstanceType=instance_type,
            TagSpecifications=tags.tag_specifications(
                "instance", tags.cluster_tags(cluster, role=role, run_id=run_id, extra=extra)
            ),
        )
        ids += [i["InstanceId"] for i in reply["Instances"]]
    return ids


# Builds the inventory in one Python process and reports which SDK modules that loaded.
PROBE = """
import json, sys
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader([sys.argv[1]])
from ansible.parsing.dataloader import DataLoader
from ansible.inventory.manager import InventoryManager
inventory = InventoryManager(loader=DataLoader(), sources=[sys.argv[2]])
loaded = [m for m in ("boto3", "botocore", "ansible_collections.amazon.aws.plugins.plugin_utils.inventory")
          if m in sys.modules]
print(json.dumps({"hosts": len(inventory.hosts), "loaded": loaded}))
"""


@pytest.fixture
def inventory(aws, tmp_path):
    """Write a ``.buildfarm.yml`` config and run ``ansible-inventory --list`` on it (or, with ``probe``, build it
    in one process and report the loaded SDK modules); returns rc, data, stderr."""

    def run(config, env=None, args=(), name="test.buildfarm.yml", expect_rc=0, probe=False):
        path = tmp_path / name
        text = "plugin: buildfarm.ec2.instances\n" + config
        path.write_text(text)
        full_env = child_env(
            aws,
            dict(
                ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
                ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
                ANSIBLE_DEPRECATION_WARNINGS="false",
                AWS_EC2_METADATA_DISABLED="true",
                HOME=str(tmp_path),
            ),
            env,
        )
        cmd = [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(path), "--list", *args]
        if probe:
            cmd = [sys.executable, "-c", PROBE, str(COLLECTIONS), str(path)]
        proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=900, check=False)
        if expect_rc is not None:
            ok = proc.returncode == 0 if expect_rc == 0 else proc.returncode != 0
            assert ok, "rc=%d\n%s\n%s" % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
        data = json.loads(proc.stdout) if proc.returncode == 0 else {}
        return SimpleNamespace(rc=proc.returncode, data=data, stderr=proc.stderr)

    return run


def hosts_of(data, group):
    return sorted(data.get(group, {}).get("hosts", []))


def hostvars(data):
    return data["_meta"]["hostvars"]


def plain(value):
    """ansible-inventory marks plugin values as unsafe ({"__ansible_unsafe": ...}); the plain value."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def by_id(data):
    return {plain(v["instance_id"]): (name, plain(v)) for name, v in hostvars(data).items()}


def test_groups_and_hostvars(aws, inventory):
    ec2 = aws.client("ec2")
    host = launch(ec2, "demo", "host", instance_type="c5.large")
    builders = launch(ec2, "demo", "builder", count=2)
    other = launch(ec2, "other-1", "builder")
    launch(ec2, "skip", "builder")
    ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1)  # no cluster tag: never listed

    data = inventory("clusters: [demo, other-1]\nprivate_key_file: /keys/{cluster}.pem\n").data
    found = by_id(data)
    assert sorted(found) == sorted(host + builders + other)
    assert hosts_of(data, "cluster_demo") == sorted(found[i][0] for i in host + builders)
    assert hosts_of(data, "cluster_other_1") == [found[other[0]][0]]
    assert hosts_of(data, "host") == [found[host[0]][0]]
    assert hosts_of(data, "builder") == sorted(found[i][0] for i in builders + other)

    name, hv = found[host[0]]
    described = ec2.describe_instances(InstanceIds=host)["Reservations"][0]["Instances"][0]
    assert name == described["PrivateIpAddress"]
    assert hv["ansible_host"] == described["PrivateIpAddress"]
    assert hv["private_ip_address"] == described["PrivateIpAddress"]
    assert hv["public_ip_address"] == described.get("PublicIpAddress")
    assert hv["private_dns_name"] == described["PrivateDnsName"]
    assert hv["public_dns_name"] == (described.get("PublicDnsName") or None)
    assert hv["instance_type"] == "c5.large"
    assert hv["availability_zone"] == described["Placement"]["AvailabilityZone"]
    assert hv["buildfarm_cluster"] == "demo"
    assert hv["buildfarm_role"] == "host"
    assert hv["buildfarm_run"] == "r1"
    assert hv["region"] == aws.region
    assert hv["tags"]["buildfarm:cluster"] == "demo"
    assert hv["ansible_user"] == "admin"
    assert hv["ansible_ssh_private_key_file"] == "/keys/demo.pem"
    assert found[other[0]][1]["ansible_ssh_private_key_file"] == "/keys/other-1.pem"


def test_all_clusters_when_none_given(aws, inventory):
    ec2 = aws.client("ec2")
    ids = launch(ec2, "demo", "builder") + launch(ec2, "other", "host")
    ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1)
    data = inventory("ansible_user: ''\n").data
    assert sorted(by_id(data)) == sorted(ids)
    assert "ansible_user" not in next(iter(hostvars(data).values()))
    assert set(data) >= {"cluster_demo", "cluster_other", "host", "builder"}


def test_hostnames_preference_and_duplicates(aws, inventory):
    ec2 = aws.client("ec2")
    ids = launch(ec2, "demo", "builder", count=2)
    data = inventory("hostnames: [tag:Name, private-ip-address]\n").data
    names = sorted(hostvars(data))
    # both are tagged Name=demo-builder: the later instance id gets a suffix
    assert names == ["demo-builder", "demo-builder_%s" % sorted(ids)[1]]
    assert plain(hostvars(data)["demo-builder"]["ansible_host"]).count(".") == 3

    data = inventory("hostnames: [instance-id, public-ip-address]\n").data
    assert sorted(hostvars(data)) == sorted(ids)
    described = {
        i["InstanceId"]: i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]
    }
    for instance_id in ids:
        assert plain(hostvars(data)[instance_id]["ansible_host"]) == described[instance_id]["PublicIpAddress"]


def test_compose_groups_keyed_groups(aws, inventory):
    ec2 = aws.client("ec2")
    big = launch(ec2, "demo", "builder", instance_type="c5.4xlarge")
    small = launch(ec2, "demo", "builder", instance_type="t3.micro", run_id="r2")
    config = """
compose:
  ansible_host: public_ip_address
  distcc_jobs: "8 if instance_type == 'c5.4xlarge' else 2"
groups:
  big: instance_type.startswith('c5')
keyed_groups:
  - key: instance_type
    prefix: type
  - key: buildfarm_run
    prefix: run
"""
    data = inventory(config).data
    found = by_id(data)
    big_name, big_vars = found[big[0]]
    small_name, small_vars = found[small[0]]
    assert big_vars["ansible_host"] == big_vars["public_ip_address"] != big_vars["private_ip_address"]
    assert big_vars["distcc_jobs"] == 8
    assert small_vars["distcc_jobs"] == 2
    assert hosts_of(data, "big") == [big_name]
    assert hosts_of(data, "type_c5_4xlarge") == [big_name]
    assert hosts_of(data, "type_t3_micro") == [small_name]
    assert hosts_of(data, "run_r1") == [big_name]
    assert hosts_of(data, "run_r2") == [small_name]


def test_strict_mode(aws, inventory):
    launch(aws.client("ec2"), "demo", "builder")
    config = "strict: %s\ncompose:\n  broken: no_such_variable + 1\nkeyed_groups:\n  - key: no_such_var\n"
    data = inventory(config % "false").data
    assert len(hostvars(data)) == 1
    assert "broken" not in next(iter(hostvars(data).values()))
    stderr = inventory(config % "true", expect_rc=1).stderr
    assert "buildfarm.ec2.instances" in stderr and "no_such_variable" in stderr


def test_stopped_instances_excluded_by_default(aws, inventory):
    ec2 = aws.client("ec2")
    running = launch(ec2, "demo", "builder")
    stopped = launch(ec2, "demo", "builder")
    ec2.stop_instances(InstanceIds=stopped)
    terminated = launch(ec2, "demo", "builder")
    ec2.terminate_instances(InstanceIds=terminated)
    data = inventory("").data
    assert sorted(by_id(data)) == running
    data = inventory("instance_states: [running, stopped]\n").data
    found = by_id(data)
    assert sorted(found) == sorted(running + stopped)
    assert found[stopped[0]][1]["instance_state"] == "stopped"


def test_empty_result(aws, inventory):
    launch(aws.client("ec2"), "other", "builder")
    data = inventory("clusters: [demo]\n").data
    assert hostvars(data) == {}
    assert not any(g.startswith("cluster_") for g in data)


def test_two_regions(aws, inventory):
    here = launch(aws.client("ec2"), "demo", "host")
    there = launch(aws.client("ec2", region="us-east-1"), "demo", "builder", count=2)
    data = inventory("regions: [eu-west-1, us-east-1]\n").data
    found = by_id(data)
    assert sorted(found) == sorted(here + there)
    assert found[here[0]][1]["region"] == "eu-west-1"
    assert {found[i][1]["region"] for i in there} == {"us-east-1"}
    assert {found[i][1]["availability_zone"][:-1] for i in there} == {"us-east-1"}
    assert len(hosts_of(data, "cluster_demo")) == 3
    # only the configured region is queried (here from the environment when 'regions' is empty)
    data = inventory("", env={"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": None}).data
    assert sorted(by_id(data)) == sorted(there)


def test_more_than_a_page(aws, inventory):
    ec2 = aws.client("ec2")
    ids = launch(ec2, "big", "builder", count=1100, batch=100)
    launch(ec2, "demo", "builder", count=3)
    # the server really pages at this size (moto counts reservations, AWS instances): a NextToken comes back
    page = ec2.describe_instances(Filters=tags.filters(cluster="big"), MaxResults=5)
    assert len(page["Reservations"]) == 5 and page.get("NextToken")
    data = inventory("clusters: [big]\npage_size: 5\n").data
    assert sorted(by_id(data)) == sorted(ids)
    assert len(hosts_of(data, "cluster_big")) == 1100


def test_cache_serves_second_run_without_api(aws, inventory, tmp_path):
    ec2 = aws.client("ec2")
    ids = launch(ec2, "demo", "builder", count=2)
    config = "cache: true\ncache_plugin: ansible.builtin.jsonfile\ncache_connection: %s\ncache_timeout: 3600\n" % (
        tmp_path / "cache"
    )
    first = inventory(config).data
    assert sorted(by_id(first)) == sorted(ids)
    assert list((tmp_path / "cache").iterdir()), "nothing was cached"

    dead = {"AWS_ENDPOINT_URL": "http://127.0.0.1:%d" % free_port()}
    later = launch(ec2, "demo", "builder")
    # a dead endpoint: any API call would fail, so this answer comes from the cache alone
    second = inventory(config, env=dead).data
    assert second == first
    # --flush-cache forces the API call: the dead endpoint now fails with a clear message
    stderr = inventory(config, env=dead, args=["--flush-cache"], expect_rc=1).stderr
    assert "cannot reach the EC2 endpoint" in stderr
    # and against the live endpoint it refreshes (the instance launched since is there)
    third = inventory(config, args=["--flush-cache"]).data
    assert sorted(by_id(third)) == sorted(ids + later)
    fourth = inventory(config, env=dead).data
    assert sorted(by_id(fourth)) == sorted(ids + later)
    # an edited query (other clusters) is not answered from the entry made for the old one
    stderr = inventory(config + "clusters: [other]\n", env=dead, expect_rc=1).stderr
    assert "cannot reach the EC2 endpoint" in stderr


def test_cached_run_loads_no_sdk(aws, inventory, tmp_path):
    """A run answered from the cache imports neither boto3/botocore nor amazon.aws's plugin base (about half of
    a cached run's time); a run that asks the API does."""
    launch(aws.client("ec2"), "demo", "builder", count=2)
    config = "cache: true\ncache_plugin: ansible.builtin.jsonfile\ncache_connection: %s\n" % (tmp_path / "cache")
    cold = inventory(config, probe=True).data
    assert cold["hosts"] == 2 and "botocore" in cold["loaded"]
    warm = inventory(config, env={"AWS_ENDPOINT_URL": "http://127.0.0.1:%d" % free_port()}, probe=True).data
    assert warm == {"hosts": 2, "loaded": []}


def test_templated_options_and_plain_cache(aws, inventory, tmp_path):
    """Options may be templates; what reaches the cache and the hosts is plain data (no origin/trust tags)."""
    ec2 = aws.client("ec2")
    ids = launch(ec2, "demo", "builder", count=2)
    launch(ec2, "other", "builder")
    config = (
        "regions: [\"{{ lookup('env', 'BF_REGION') }}\"]\n"
        "clusters: [\"{{ lookup('env', 'BF_CLUSTER') }}\"]\n"
        "cache: true\ncache_plugin: ansible.builtin.jsonfile\ncache_connection: %s\n" % (tmp_path / "cache")
    )
    data = inventory(config, env={"BF_REGION": aws.region, "BF_CLUSTER": "demo"}).data
    assert sorted(by_id(data)) == sorted(ids)
    assert {plain(v["region"]) for v in hostvars(data).values()} == {aws.region}
    (entry,) = (tmp_path / "cache").iterdir()
    assert "__ansible" not in entry.read_text()  # no tagged value was serialised


def test_missing_credentials(aws, inventory, tmp_path):
    env = {k: None for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"))
    stderr = inventory("", env=env, expect_rc=1).stderr
    assert "no AWS credentials found" in stderr


def test_credentials_and_the_shipped_iam_policy(aws, inventory):
    """On a server that checks credentials and IAM policies: docs/iam-policy.json is enough to list; unknown keys
    and keys whose policy lacks ec2:DescribeInstances get their own clear errors."""
    launch(aws.client("ec2"), "demo", "builder")
    shipped = iam_user(aws, "shipped", shipped_policy_actions())
    s3_only = iam_user(aws, "s3-only", ["s3:*"])
    with enforced_auth(aws.endpoint):
        listed = inventory("", env=shipped).data
        unknown = inventory("", env={"AWS_ACCESS_KEY_ID": "AKIAUNKNOWN0000000000"}, expect_rc=1).stderr
        denied = inventory("", env=s3_only, expect_rc=1).stderr
    assert len(listed["cluster_demo"]["hosts"]) == 1
    assert "refused the credentials in region %s (AuthFailure" % aws.region in unknown
    assert "may not call ec2:DescribeInstances in region %s" % aws.region in denied


def test_unreachable_endpoint(aws, inventory):
    port = free_port()
    stderr = inventory("endpoint_url: http://127.0.0.1:%d\n" % port, expect_rc=1).stderr
    assert "cannot reach the EC2 endpoint http://127.0.0.1:%d" % port in stderr


@pytest.mark.parametrize(
    "config, env, message",
    [
        ("regions: [mars-north-1]\n", None, "unknown region 'mars-north-1'"),
        ("", {"AWS_REGION": None, "AWS_DEFAULT_REGION": None}, "no region given"),
        ("clusters: [Bad_Name]\n", None, "bad 'clusters' entry"),
        ("hostnames: [dns-name]\n", None, "bad 'hostnames' entry 'dns-name'"),
        ("instance_states: [sleeping]\n", None, "sleeping"),
        ("page_size: 2\n", None, "'page_size' must be between 5 and 1000"),
        ("clustrs: [demo]\n", None, "unknown option clustrs"),
    ],
)
def test_bad_options(aws, inventory, config, env, message):
    launch(aws.client("ec2"), "demo", "builder")
    stderr = inventory(config, env=env, expect_rc=1).stderr
    assert message in stderr
    assert "buildfarm.ec2.instances" in stderr


def test_file_name_must_match(aws, inventory):
    launch(aws.client("ec2"), "demo", "builder")
    stderr = inventory("", name="test.aws_ec2.yml", expect_rc=1).stderr
    assert "could not be verified by inventory plugin 'buildfarm.ec2.instances'" in stderr
    data = inventory("", name="test.buildfarm.yaml").data
    assert len(hostvars(data)) == 1


REFRESH_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: One instance at the start (maybe from the cache)
      ansible.builtin.assert:
        that: groups['cluster_demo'] | length == 1
    - name: Launch another one behind the inventory's back
      ansible.builtin.command:
        argv: ["{{ python }}", "-c", "{{ launch }}"]
      changed_when: true
    - name: Refresh
      ansible.builtin.meta: refresh_inventory
    - name: Both are there after the refresh, although the cache holds one
      ansible.builtin.assert:
        that: groups['cluster_demo'] | length == 2
"""


def test_refresh_inventory_bypasses_cache(aws, run_play, tmp_path):
    launch(aws.client("ec2"), "demo", "builder")
    config = tmp_path / "refresh.buildfarm.yml"
    config.write_text(
        "plugin: buildfarm.ec2.instances\ncache: true\ncache_plugin: ansible.builtin.jsonfile\n"
        "cache_connection: %s\ncache_timeout: 3600\n" % (tmp_path / "cache")
    )
    code = (
        "import boto3; boto3.client('ec2').run_instances(ImageId=%r, MinCount=1, MaxCount=1, "
        "TagSpecifications=[{'ResourceType': 'instance', 'Tags': [{'Key': 'buildfarm:cluster', 'Value': 'demo'}]}])"
        % AMI
    )
    env = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "AWS_EC2_METADATA_DISABLED": "true"}
    run_play(REFRESH_PLAY, inventory=str(config), extra_vars={"python": sys.executable, "launch": code}, env=env)
    assert list((tmp_path / "cache").iterdir())


TAG_PLAY = """
- hosts: cluster_demo
  gather_facts: false
  connection: local
  tasks:
    - name: Tags are data, never templates (anyone with ec2:CreateTags could otherwise run code on the controller)
      ansible.builtin.assert:
        that:
          - tags['Name'] == '{{ "{{" }} lookup("pipe", "touch %s") {{ "}}" }}'
          - buildfarm_role == 'builder'
"""


def test_tag_values_are_not_templated(aws, run_play, tmp_path):
    marker = tmp_path / "pwned"
    launch(aws.client("ec2"), "demo", "builder", extra={"Name": '{{ lookup("pipe", "touch %s") }}' % marker})
    config = tmp_path / "tags.buildfarm.yml"
    config.write_text("plugin: buildfarm.ec2.instances\n")
    run_play(TAG_PLAY % marker, inventory=str(config), env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"})
    assert not marker.exists()
