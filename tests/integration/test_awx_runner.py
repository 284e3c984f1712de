"""A job run the way AWX runs one: ansible-runner with a private data dir.

AWX writes the survey answers to ``env/extravars``, injects the "Amazon Web Services" credential as
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SECURITY_TOKEN`` through ``env/envvars``, puts the
project checkout in ``project/`` and the inventory in ``inventory/``, and runs ``ansible-runner run``. Here
the AWS endpoint is the moto server and the collection comes from ``ANSIBLE_COLLECTIONS_PATH`` (in AWX: the
execution environment). Nothing AWS-related is left in the test process's environment, so the module can only
reach the API with what the private data dir gives it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import ansible_runner
import yaml

from tests.conftest import COLLECTIONS, CREDENTIALS

BIN = Path(sys.executable).parent
PLAYBOOK = """\
- name: An AWX-style job
  hosts: localhost
  gather_facts: false
  tasks:
    - name: List the cluster
      buildfarm.ec2.cluster_info:
        cluster: "{{ cluster }}"
        region: "{{ region }}"
      register: __info

    - name: Check the survey answers' types
      ansible.builtin.assert:
        that:
          - builders is integer
          - not (keep_cluster | bool)
          - scheduler in ['distcc', 'slurm']

    - name: Report
      ansible.builtin.debug:
        msg: "{{ __info.resources.vpcs | map(attribute='id') | list }}"
"""


def _private_data_dir(root, aws, extravars):
    (root / "project").mkdir(parents=True)
    (root / "project" / "job.yml").write_text(PLAYBOOK)
    (root / "inventory").mkdir()
    (root / "inventory" / "hosts").write_text(
        "localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable
    )
    (root / "env").mkdir()
    envvars = {
        "AWS_ACCESS_KEY_ID": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "AWS_SECURITY_TOKEN": CREDENTIALS["AWS_SESSION_TOKEN"],
        "AWS_ENDPOINT_URL": aws.endpoint,
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
    }
    (root / "env" / "envvars").write_text(yaml.safe_dump(envvars))
    (root / "env" / "extravars").write_text(yaml.safe_dump(extravars))
    return root


def _run(pdd, monkeypatch):
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PATH", "%s:%s" % (BIN, os.environ["PATH"]))
    return ansible_runner.run(private_data_dir=str(pdd), playbook="job.yml", quiet=True)


def _ok(runner, task):
    events = [e for e in runner.events if e.get("event_data", {}).get("task") == task]
    return [e["event_data"]["res"] for e in events if e["event"] == "runner_on_ok"]


def test_job_gets_credentials_and_survey_answers_from_the_private_data_dir(aws, tmp_path, monkeypatch):
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(
        CidrBlock="10.42.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "buildfarm:cluster", "Value": "demo"}]}],
    )["Vpc"]["VpcId"]
    survey = {"cluster": "demo", "region": aws.region, "builders": 2, "keep_cluster": "false", "scheduler": "distcc"}
    runner = _run(_private_data_dir(tmp_path / "pdd", aws, survey), monkeypatch)
    assert runner.status == "successful", runner.stdout.read()
    assert runner.rc == 0
    (listed,) = _ok(runner, "List the cluster")
    assert [v["id"] for v in listed["resources"]["vpcs"]] == [vpc]


def test_job_without_the_credential_cannot_reach_the_api(aws, tmp_path, monkeypatch):
    """The same job with the credential injection removed fails: the env/envvars really carry it."""
    pdd = _private_data_dir(tmp_path / "pdd", aws, {"cluster": "demo", "region": aws.region})
    envvars = yaml.safe_load((pdd / "env" / "envvars").read_text())
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN"):
        del envvars[key]
    envvars["HOME"] = str(tmp_path)  # no ~/.aws
    envvars["AWS_EC2_METADATA_DISABLED"] = "true"
    (pdd / "env" / "envvars").write_text(yaml.safe_dump(envvars))
    runner = _run(pdd, monkeypatch)
    assert runner.status == "failed"
    failed = [e["event_data"]["res"] for e in runner.events if e["event"] == "runner_on_failed"]
    assert failed and "credentials" in failed[0]["msg"].lower(), failed
