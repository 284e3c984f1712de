"""build.yml run the way AWX runs a job template: ansible-runner, a private data dir, survey answers as extra
vars (strings where AWX sends strings), the AWS credential injected as environment, on the local cloud."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import ansible_runner
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.engine


@pytest.mark.minutes(2)
def test_build_job_template_through_ansible_runner(cloud, tmp_path, monkeypatch):
    cloud.bucket("buildfarm-awx")
    pdd = tmp_path / "pdd"
    (pdd / "env").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    (pdd / "project").symlink_to(ROOT)  # AWX: the project's SCM checkout
    (pdd / "inventory" / "hosts").write_text(
        "localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable
    )
    # The AWX inventory source: our plugin, for the cluster the job makes (empty when the job starts; the job
    # adds its hosts in-run with add_host, as an AWX job must).
    (pdd / "inventory" / "cluster.buildfarm.yml").write_text(
        yaml.safe_dump(
            {"plugin": "buildfarm.ec2.instances", "clusters": ["e2e-awx"], "regions": [cloud.env["AWS_REGION"]]}
        )
    )
    envvars = {k: v for k, v in cloud.env.items() if k.startswith("AWS_")}
    envvars["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / "build" / "collections")  # AWX: the execution environment
    (pdd / "env" / "envvars").write_text(yaml.safe_dump(envvars))
    survey = {
        "cluster": "e2e-awx",
        "region": cloud.env["AWS_REGION"],
        "builders": 1,
        "builder_type": "c6i.large",
        "host_type": "t3.small",
        "image_id": "ami-12c6146b",
        "ssh_cidr": cloud.env["BUILDFARM_LOCALCLOUD_CONTROLLER_CIDR"],
        "vpc_cidr": "10.96.0.0/16",
        "subnet_cidr": "10.96.0.0/24",
        "source_dir": "{{ playbook_dir }}/../examples/hello/src",
        "build_script": "{{ playbook_dir }}/../examples/hello/build.sh",
        "outputs": ["hello"],
        "bucket": "buildfarm-awx",
        "build_timeout": 300,
        "max_lifetime": 30,
        "keep_cluster": "false",
        "scheduler": "distcc",
        "work_dir": str(tmp_path / "runs"),
    }
    (pdd / "env" / "extravars").write_text(yaml.safe_dump(survey))
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PATH", "%s:%s" % (Path(sys.executable).parent, os.environ["PATH"]))

    runner = ansible_runner.run(private_data_dir=str(pdd), playbook="playbooks/build.yml", quiet=True)
    output = runner.stdout.read()
    assert runner.status == "successful", output[-8000:]
    assert "Failed to parse" not in output and "Unable to parse" not in output, output[:4000]
    # AWX's job output (its events) carries the build's start lines and progress, not just async polls.
    shown = "\n".join(event.get("stdout", "") for event in runner.events)
    assert "outputs, log and report: s3://buildfarm-awx/e2e-awx/" in shown, output[-6000:]
    assert "build progress [" in shown and "finished, " in shown and "elapsed, compiles" in shown, output[-6000:]
    keys = set(cloud.objects("buildfarm-awx", "e2e-awx/"))
    assert any(k.endswith("/hello") for k in keys) and any(k.endswith("/manifest.json") for k in keys), keys
    assert cloud.leftovers("e2e-awx") == {}
