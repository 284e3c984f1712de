"""buildfarm.ec2.cost under ansible-playbook, and build.yml's estimate before launch (estimate_only, max_cost_usd),
against a moto server with the local cloud's price fixture: exact numbers, and nothing created when refused."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from tests.conftest import COLLECTIONS, ROOT, child_env
from tests.pricing_server import fixture

pytest_plugins = ["tests.pricing_server"]  # the priced and priced_server fixtures

REGION = "us-east-1"
PLAY = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/buildfarm.ec2.aws:
      endpoint_url: "{{ lookup('env', 'AWS_ENDPOINT_URL') }}"
      region: us-east-1
  tasks:
"""
OD = fixture.ON_DEMAND[REGION]
GP3 = float(fixture.STORAGE[REGION]["gp3"])


def _play(priced, tmp_path, text, extra_vars=None, check=False, playbook=None):
    path = playbook or tmp_path / "play.yml"
    if playbook is None:
        path.write_text(PLAY + text)
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "--connection=local", str(path)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    env = child_env(
        priced,
        dict(
            ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ),
    )
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    try:
        parsed = json.loads(proc.stdout)
    except ValueError:
        parsed = {}
    return proc.returncode, parsed, proc.stdout + proc.stderr


def _task(parsed, name):
    return [t["hosts"]["localhost"] for p in parsed["plays"] for t in p["tasks"] if t["task"]["name"] == name][-1]


def test_estimate_and_report_through_the_module_in_check_mode(priced, tmp_path):
    ec2 = priced.client("ec2")
    instance = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        InstanceType="c6i.xlarge",
        Placement={"AvailabilityZone": "us-east-1c"},
        InstanceMarketOptions={"MarketType": "spot"},
        TagSpecifications=bf_tags.tag_specifications("instance", bf_tags.cluster_tags("c2", role="builder")),
    )["Instances"][0]
    until = bf_tags.format_time(instance["LaunchTime"] + timedelta(seconds=600))
    tasks = """
    - name: Estimate
      buildfarm.ec2.cost:
        mode: estimate
        seconds: 7200
        cache_path: "{{ cache }}"
        roles:
          - {name: host, type: t3.small}
          - {name: builder, type: c6i.4xlarge, count: 3}
      register: estimate
    - name: Report
      buildfarm.ec2.cost:
        cluster: c2
        until: "{{ until }}"
        cache_path: "{{ cache }}"
      register: report
    - name: Bad
      buildfarm.ec2.cost:
        mode: estimate
        seconds: 0
        roles: [{name: host, type: t3.small, count: -1}]
      register: bad
      ignore_errors: true
"""
    rc, parsed, out = _play(priced, tmp_path, tasks, {"until": until, "cache": str(tmp_path / "p.json")}, check=True)
    assert rc == 0, out[-4000:]
    estimate = _task(parsed, "Estimate")
    assert estimate["changed"] is False
    assert estimate["total_usd"] == round(2 * float(OD["t3.small"]) + 3 * 2 * float(OD["c6i.4xlarge"]), 6) == 4.1216
    assert [i["source"] for i in estimate["items"]] == ["price-list", "price-list"]
    report = _task(parsed, "Report")
    (line,) = [i for i in report["items"] if i["kind"] == "instance"]
    spot = float(fixture.spot_price(REGION, "c6i.xlarge", "us-east-1c"))
    assert (line["lifecycle"], line["seconds"], line["price_usd"], line["source"]) == (
        "spot",
        600,
        spot,
        "spot-price-history",
    )
    assert line["cost_usd"] == round(spot / 6, 6)
    assert report["biggest"]["kind"] == "instance" and report["until"] == until
    bad = _task(parsed, "Bad")
    assert bad["failed"] and "seconds must be positive" in bad["msg"] and "must not be negative" in bad["msg"]


BUILD = dict(
    cluster="cost-cap",
    region=REGION,
    image_id="ami-12c6146b",
    ssh_cidr="127.0.0.1/32",
    bucket="cost-bucket",
    build_script_content="exit 0",
    host_type="t3.small",
    builder_type="c6i.4xlarge",
    builders=2,
    build_timeout=3600,
    max_lifetime=120,
)
# The requested cluster for an hour: three instances with a public IPv4 each and an 8 GiB gp3 root volume.
EXPECTED = round(
    float(OD["t3.small"])
    + 2 * float(OD["c6i.4xlarge"])
    + 3 * 0.005
    + round(8 * GP3 / 730, 6)
    + round(16 * GP3 / 730, 6),
    6,
)


def _nothing_made(ec2):
    named = [{"Name": "tag:buildfarm:cluster", "Values": ["cost-cap"]}]
    assert ec2.describe_vpcs(Filters=named)["Vpcs"] == []
    assert ec2.describe_security_groups(Filters=named)["SecurityGroups"] == []
    assert ec2.describe_instances()["Reservations"] == []
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []


def test_estimate_only_prints_the_estimate_and_creates_nothing(priced, tmp_path):
    params = dict(BUILD, estimate_only=True, work_dir=str(tmp_path / "runs"))
    rc, parsed, out = _play(priced, tmp_path, "", params, playbook=ROOT / "playbooks" / "build.yml")
    assert rc == 0, out[-6000:]
    estimate = _task(parsed, "Price the requested cluster for build_timeout")
    assert estimate["total_usd"] == EXPECTED
    printed = "\n".join(_task(parsed, "Print the estimate")["msg"])
    assert "total $%.4f" % EXPECTED in printed and "(price-list)" in printed, printed
    names = [t["task"]["name"] for p in parsed["plays"] for t in p["tasks"]]
    assert "Create the network" not in names and "Tear down the cluster" not in names
    _nothing_made(priced.client("ec2"))


def test_the_estimate_for_the_time_the_last_successful_run_took(priced, tmp_path):
    """An earlier run's report.json in the cluster's work directory gives the expected time: the newest successful
    one (a newer failed run and an unreadable file do not count), its provision + configure + build seconds."""
    runs = tmp_path / "runs" / "cost-cap"
    phases = [
        {"phase": "provision", "seconds": 40.4},
        {"phase": "configure", "seconds": 80.0},
        {"phase": "build", "seconds": 299.8},
        {"phase": "push", "seconds": 12.0},
    ]
    for name, status, age in (("old-ok", "success", 300), ("older-ok", "success", 600), ("new-failed", "failed", 10)):
        (runs / name).mkdir(parents=True)
        report = runs / name / "report.json"
        report.write_text(json.dumps({"run_id": name, "build": {"status": status}, "phases": phases}))
        os.utime(report, (time.time() - age, time.time() - age))
    params = dict(BUILD, estimate_only=True, work_dir=str(tmp_path / "runs"))
    rc, parsed, out = _play(priced, tmp_path, "", params, playbook=ROOT / "playbooks" / "build.yml")
    assert rc == 0, out[-6000:]
    expected = _task(parsed, "Price the requested cluster for the time the last successful run took")
    assert expected["seconds"] == 420  # 40.4 + 80 + 299.8, the push not counted
    assert abs(expected["total_usd"] - EXPECTED * 420 / 3600) < 1e-4, expected
    printed = "\n".join(_task(parsed, "Print the estimate")["msg"])
    assert "expected $%.4f for 420 s, what run old-ok took" % expected["total_usd"] in printed, printed
    _nothing_made(priced.client("ec2"))
    # Without an earlier successful run there is no expected line.
    (runs / "old-ok" / "report.json").write_text("{not json")
    (runs / "older-ok" / "report.json").unlink()
    rc, parsed, out = _play(priced, tmp_path, "", params, playbook=ROOT / "playbooks" / "build.yml")
    assert rc == 0, out[-6000:]
    assert "expected $" not in "\n".join(_task(parsed, "Print the estimate")["msg"])


def test_a_cluster_over_max_cost_usd_is_refused_before_anything_exists(priced, tmp_path):
    params = dict(BUILD, max_cost_usd=1.0, work_dir=str(tmp_path / "runs"))
    rc, parsed, out = _play(priced, tmp_path, "", params, playbook=ROOT / "playbooks" / "build.yml")
    assert rc != 0
    refused = _task(parsed, "Refuse a cluster over the budget")
    assert refused["failed"]
    assert "the estimate for build_timeout (3600 s) is $%.4f, over max_cost_usd $1.0000" % EXPECTED in refused["msg"]
    _nothing_made(priced.client("ec2"))
    # A type without any price (not in the fixture, not in the table) cannot be held to a budget.
    params = dict(params, max_cost_usd=1000.0, builder_type="x9.huge")
    rc, parsed, out = _play(priced, tmp_path, "", params, playbook=ROOT / "playbooks" / "build.yml")
    assert rc != 0
    assert "there is no price for x9.huge" in _task(parsed, "Refuse a budget that cannot be checked")["msg"]
    _nothing_made(priced.client("ec2"))


@pytest.mark.parametrize("budget", [EXPECTED + 0.01])
def test_a_cluster_within_max_cost_usd_is_not_refused(priced, tmp_path, budget):
    # estimate_only with a cap above the estimate: the refusal is skipped, the play ends after the estimate.
    params = dict(BUILD, max_cost_usd=budget, estimate_only=True, work_dir=str(tmp_path / "runs"))
    rc, parsed, out = _play(priced, tmp_path, "", params, playbook=ROOT / "playbooks" / "build.yml")
    assert rc == 0, out[-6000:]
    assert _task(parsed, "Refuse a cluster over the budget").get("skipped") is True
    _nothing_made(priced.client("ec2"))


def test_the_report_and_the_summary_have_a_line_per_node_and_the_total(priced, tmp_path):
    """report.json.j2 and summary.txt.j2 as tasks/report.yml and teardown render them, from the cost module's
    report of two instances billed for 900 s."""
    ec2 = priced.client("ec2")
    launched = {}
    for role, itype, spot in (("host", "t3.small", False), ("builder", "c6i.4xlarge", True)):
        extra = {"InstanceMarketOptions": {"MarketType": "spot"}} if spot else {}
        launched[role] = ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            InstanceType=itype,
            Placement={"AvailabilityZone": "us-east-1a"},
            TagSpecifications=bf_tags.tag_specifications(
                "instance", bf_tags.cluster_tags("cost-rep", role=role, run_id="r1")
            ),
            **extra,
        )["Instances"][0]
    until = bf_tags.format_time(max(i["LaunchTime"] for i in launched.values()) + timedelta(seconds=900))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    play = f"""
- hosts: localhost
  gather_facts: false
  vars_files: ["{ROOT}/playbooks/vars/build_defaults.yml", "{ROOT}/playbooks/vars/node_contract.yml"]
  module_defaults:
    group/buildfarm.ec2.aws:
      endpoint_url: "{{{{ lookup('env', 'AWS_ENDPOINT_URL') }}}}"
      region: us-east-1
  vars:
    cluster: cost-rep
    region: us-east-1
    bucket: b
    buildfarm_run_id: r1
    buildfarm_run_dir: "{run_dir}"
    buildfarm_build: {{status: success, reason: ok}}
    buildfarm_failure: ""
    buildfarm_phase_seconds: {{}}
    buildfarm_estimate: {{total_usd: 0.5, seconds: 3600}}
  tasks:
    - name: Price
      buildfarm.ec2.cost:
        cluster: cost-rep
        run_id: r1
        until: "{until}"
        cache_path: "{run_dir}/prices.json"
      register: buildfarm_cost
    - name: Write the report
      ansible.builtin.copy:
        dest: "{run_dir}/report.json"
        content: "{{{{ lookup('ansible.builtin.template', '{ROOT}/playbooks/templates/report.json.j2') }}}}"
        mode: "0600"
    - name: Summary
      ansible.builtin.debug:
        msg: "{{{{ lookup('ansible.builtin.template', '{ROOT}/playbooks/templates/summary.txt.j2') }}}}"
"""
    path = tmp_path / "report.yml"
    path.write_text(play)
    rc, parsed, out = _play(priced, tmp_path, "", playbook=path)
    assert rc == 0, out[-6000:]
    report = json.loads((run_dir / "report.json").read_text())
    cost = report["cost"]
    nodes = {n["role"]: n for n in cost["nodes"]}
    host_seconds = pricing_seconds(launched["host"], until)
    builder_seconds = pricing_seconds(launched["builder"], until)
    spot = float(fixture.spot_price(REGION, "c6i.4xlarge", "us-east-1a"))
    assert (nodes["host"]["type"], nodes["host"]["lifecycle"], nodes["host"]["price_usd"], nodes["host"]["source"]) == (
        "t3.small",
        "on-demand",
        0.0208,
        "price-list",
    )
    assert nodes["host"]["seconds"] == host_seconds
    assert nodes["host"]["cost_usd"] == round(host_seconds / 3600 * 0.0208, 6)
    assert (nodes["builder"]["lifecycle"], nodes["builder"]["source"], nodes["builder"]["seconds"]) == (
        "spot",
        "spot-price-history",
        builder_seconds,
    )
    assert nodes["builder"]["cost_usd"] == round(builder_seconds / 3600 * spot, 6)
    kinds = sorted(i["kind"] for i in cost["items"])
    assert kinds == ["public_ipv4", "public_ipv4", "volume", "volume"]
    assert cost["total_usd"] == round(sum(i["cost_usd"] for i in cost["nodes"] + cost["items"]), 6)
    assert report["estimated_cost_usd"] == cost["total_usd"] and cost["estimate_usd"] == 0.5
    assert report["instance_hours"] == round((host_seconds + builder_seconds) / 3600, 4)
    assert cost["biggest"]["id"] == launched["builder"]["InstanceId"]
    summary = _task(parsed, "Summary")["msg"]
    assert "cost $%.4f until %s (estimate $0.5000 for build_timeout)" % (cost["total_usd"], until) in summary
    assert (
        "biggest item: instance %s c6i.4xlarge spot $%.4f"
        % (
            launched["builder"]["InstanceId"],
            nodes["builder"]["cost_usd"],
        )
        in summary
    ), summary


def test_a_run_on_a_kept_cluster_pays_its_share_from_its_start(priced, tmp_path):
    """report with since (the run's start): the kept node an earlier run launched is billed from then on, a node
    that was terminated before then is left out (tasks/budget.yml and tasks/report.yml price a run this way)."""
    ec2 = priced.client("ec2")

    def launch(name):
        return ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.small",
            TagSpecifications=bf_tags.tag_specifications(
                "instance", dict(bf_tags.cluster_tags("cost-k", role="host", run_id="r0"), Name=name)
            ),
        )["Instances"][0]

    gone = launch("gone")
    ec2.terminate_instances(InstanceIds=[gone["InstanceId"]])
    kept = launch("kept")
    reason = ec2.describe_instances(InstanceIds=[gone["InstanceId"]])["Reservations"][0]["Instances"][0]
    ended = bf_tags.parse_time(
        re.search(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", reason["StateTransitionReason"]).group(1).replace(" ", "T")
        + "Z"
    )
    since = max(kept["LaunchTime"], ended) + timedelta(seconds=1)
    until = since + timedelta(seconds=300)
    tasks = """
    - name: Share
      buildfarm.ec2.cost:
        cluster: cost-k
        since: "{{ since }}"
        until: "{{ until }}"
        cache_path: "{{ cache }}"
      register: share
    - name: Bad since
      buildfarm.ec2.cost:
        cluster: cost-k
        since: yesterday
      register: bad
      ignore_errors: true
"""
    extra = {
        "since": bf_tags.format_time(since),
        "until": bf_tags.format_time(until),
        "cache": str(tmp_path / "p.json"),
    }
    rc, parsed, out = _play(priced, tmp_path, tasks, extra)
    assert rc == 0, out[-4000:]
    share = _task(parsed, "Share")
    nodes = [i for i in share["items"] if i["kind"] == "instance"]
    assert [(n["id"], n["seconds"]) for n in nodes] == [(kept["InstanceId"], 300)]
    assert nodes[0]["cost_usd"] == round(300 / 3600 * float(OD["t3.small"]), 6)
    assert "since must be a UTC time such as 2026-11-24T22:00:00Z, got yesterday" in _task(parsed, "Bad since")["msg"]


def pricing_seconds(instance, until):
    return int((bf_tags.parse_time(until) - instance["LaunchTime"]).total_seconds())


@pytest.mark.parametrize("budget", [0, 0.5])
def test_the_budget_left_in_seconds_at_the_launched_rate(priced, tmp_path, budget):
    """tasks/budget.yml (after the launch): the seconds of build the rest of max_cost_usd pays for; 0 without a cap."""
    ec2 = priced.client("ec2")
    ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.small",
        TagSpecifications=bf_tags.tag_specifications(
            "instance", bf_tags.cluster_tags("cost-b", role="host", run_id="r1")
        ),
    )
    play = f"""
- hosts: localhost
  gather_facts: false
  vars_files: ["{ROOT}/playbooks/vars/build_defaults.yml", "{ROOT}/playbooks/vars/node_contract.yml"]
  module_defaults:
    group/buildfarm.ec2.aws:
      endpoint_url: "{{{{ lookup('env', 'AWS_ENDPOINT_URL') }}}}"
      region: us-east-1
  vars: {{cluster: cost-b, buildfarm_run_id: r1, buildfarm_run_started: "2000-01-01T00:00:00Z", work_dir: "{tmp_path}"}}
  tasks:
    - name: Budget
      ansible.builtin.import_tasks: "{ROOT}/playbooks/tasks/budget.yml"
    - name: Show
      ansible.builtin.debug:
        var: buildfarm_budget_seconds
"""
    path = tmp_path / "budget.yml"
    path.write_text(play)
    # An extra var, as build.yml's parameters are (build_defaults.yml, a vars file, would win over play vars).
    rc, parsed, out = _play(priced, tmp_path, "", {"max_cost_usd": budget}, playbook=path)
    assert rc == 0, out[-6000:]
    seconds = int(_task(parsed, "Show")["buildfarm_budget_seconds"])
    if budget == 0:
        assert seconds == 0
        return
    spent = _task(parsed, "Price what was launched")
    rate = 0.0208 + 0.005 + 8 * 0.1 / 730  # t3.small, its public IPv4, its 8 GiB gp2 root volume
    assert spent["usd_per_hour"] == round(rate, 6)
    assert seconds == int((budget - spent["total_usd"]) * 3600 / spent["usd_per_hour"])
    assert int(budget * 3600 / rate) - 120 < seconds < int(budget * 3600 / rate)
