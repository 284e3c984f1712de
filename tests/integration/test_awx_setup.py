"""playbooks/awx_setup.yml: syntax, and every awx.awx task's arguments as the real modules validate them.

No live AWX exists here. Each awx.awx task is run for real (``--start-at-task``) against a controller URL on
a closed loopback port: AnsibleModule validates the arguments (names, types, choices, required) before the
module makes its first HTTP request, so a task whose arguments are wrong fails with an argument error, and a
task whose arguments are right fails only at the connection. The play's templating, ``module_defaults`` and
``omit`` handling are the real ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import COLLECTIONS, free_port

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "awx_setup.yml"
BIN = Path(sys.executable).parent
CONNECTION_ERROR = "Connection refused"
ARGUMENT_ERRORS = ("Unsupported parameters", "missing required", "must be one of", "is of type", "unable to convert")
MAIN_PARAMETERS = {
    "cluster": "text",
    "region": "text",
    "builders": "integer",
    "builder_type": "text",
    "host_type": "text",
    "image_id": "text",
    "ssh_cidr": "text",
    "source_git": "text",
    "build_script_content": "textarea",
    "bucket": "text",
    "build_timeout": "integer",
    "max_cost_usd": "float",
    "estimate_only": "multiplechoice",
    "keep_cluster": "multiplechoice",
    "keep_host": "multiplechoice",
    "workspace": "text",
    "scheduler": "multiplechoice",
}
EXTRA_VARS = {
    "buildfarm_awx_project_url": "https://git.example.org/buildfarm.ec2.git",
    "buildfarm_awx_aws_access_key": "AKIAEXAMPLE",
    "buildfarm_awx_aws_secret_key": "wJalrXUtnFEMI-example-secret",
    "buildfarm_awx_ee_image": "buildfarm-ee:1.0.0",
    "buildfarm_awx_extra_credential": "buildfarm ssh",
    "buildfarm_awx_controller_username": "admin",
    "buildfarm_awx_controller_password": "password",
    "buildfarm_awx_controller_validate_certs": False,
    "buildfarm_awx_hide_secrets": False,
    "ansible_python_interpreter": sys.executable,
}


def _play():
    (play,) = yaml.safe_load(PLAYBOOK.read_text())
    return play


def _awx_tasks():
    return [task for task in _play()["tasks"] if any(key.startswith("awx.awx.") for key in task)]


def _playbook(args, tmp_path, extra_vars):
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_NOCOLOR="1",
    )
    for key in [k for k in env if k.startswith(("CONTROLLER_", "TOWER_", "AWX_"))]:
        del env[key]
    env["HOME"] = str(tmp_path)  # no ~/.tower_cli.cfg
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(extra_vars))
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-e", "@%s" % vars_file, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )


def _results(proc):
    """(task name, result) of every task that ran, from the JSON callback."""
    report = json.loads(proc.stdout)
    return [(task["task"]["name"], task["hosts"]["localhost"]) for play in report["plays"] for task in play["tasks"]]


@pytest.fixture()
def closed_controller():
    return "https://127.0.0.1:%d" % free_port()


def test_syntax_check(tmp_path):
    proc = _playbook(["--syntax-check", str(PLAYBOOK)], tmp_path, EXTRA_VARS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_it_creates_every_object_the_issue_asks_for():
    modules = [key for task in _awx_tasks() for key in task if key.startswith("awx.awx.")]
    for module in ("credential", "project", "inventory", "inventory_source", "job_template"):
        assert "awx.awx." + module in modules
    by_module = {}
    for task in _awx_tasks():
        for key, args in task.items():
            if key.startswith("awx.awx."):
                by_module.setdefault(key, []).append(args)
    (credential,) = by_module["awx.awx.credential"]
    assert credential["credential_type"] == "Amazon Web Services"
    (source,) = by_module["awx.awx.inventory_source"]
    assert source["source"] == "scm"
    assert source["source_path"] == "inventories/aws/demo.buildfarm.yml"
    playbooks = {t["playbook"] for t in by_module["awx.awx.job_template"]}
    assert playbooks == {"playbooks/build.yml", "playbooks/sweep.yml"}
    # the build job configures up to 50 nodes at once (AWX's default is Ansible's 5 forks)
    (build,) = [t for t in by_module["awx.awx.job_template"] if t["playbook"] == "playbooks/build.yml"]
    assert build["forks"] == "{{ buildfarm_awx_build_forks }}" and _play()["vars"]["buildfarm_awx_build_forks"] == 50
    # what dead controllers leave (docs/faults.md): an expired-only sweep template and its schedule
    (expired,) = [t for t in by_module["awx.awx.job_template"] if "expired_only" in t.get("extra_vars", {})]
    assert expired["extra_vars"]["expired_only"] is True and expired["playbook"] == "playbooks/sweep.yml"
    (schedule,) = by_module["awx.awx.schedule"]
    assert schedule["unified_job_template"] == expired["name"] and "RRULE:FREQ=MINUTELY" in schedule["rrule"]


def test_build_survey_asks_for_the_main_parameters():
    spec = _play()["vars"]["buildfarm_awx_build_survey"]["spec"]
    assert {q["variable"]: q["type"] for q in spec} == MAIN_PARAMETERS
    valid_types = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}
    for question in spec:
        assert question["type"] in valid_types
        assert question["question_name"]
        if question["type"] == "multiplechoice":
            assert question["default"] in question["choices"]
        if question["type"] == "integer" and "default" in question:
            assert question["min"] <= question["default"] <= question["max"]
    scheduler = next(q for q in spec if q["variable"] == "scheduler")
    assert scheduler["choices"] == ["distcc", "slurm"]
    sweep = _play()["vars"]["buildfarm_awx_sweep_survey"]["spec"]
    assert {q["variable"] for q in sweep} == {"cluster", "region"}


@pytest.mark.parametrize("name", [task["name"] for task in _awx_tasks()])
def test_awx_task_arguments_pass_the_module_validation(name, tmp_path, closed_controller):
    extra_vars = dict(EXTRA_VARS, buildfarm_awx_controller_host=closed_controller)
    proc = _playbook(["--start-at-task", name, str(PLAYBOOK)], tmp_path, extra_vars)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    results = _results(proc)
    assert results[0][0] == name, results
    result = results[0][1]
    assert result.get("failed"), result
    message = json.dumps(result)
    assert not any(error in message for error in ARGUMENT_ERRORS), message
    assert CONNECTION_ERROR in message, message
    assert closed_controller in message, message
    assert EXTRA_VARS["buildfarm_awx_aws_secret_key"] not in message  # awx.awx masks credential inputs


def test_a_wrong_argument_is_caught(tmp_path, closed_controller):
    """The check above can fail: the same run with an argument job_template does not have."""
    playbook = tmp_path / "wrong.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Wrong",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Job template with a typo",
                            "awx.awx.job_template": {
                                "name": "x",
                                "playbok": "playbooks/build.yml",
                                "controller_host": closed_controller,
                            },
                        }
                    ],
                }
            ]
        )
    )
    proc = _playbook([str(playbook)], tmp_path, {"ansible_python_interpreter": sys.executable})
    assert proc.returncode == 2
    message = json.dumps(_results(proc)[0][1])
    assert "Unsupported parameters" in message and "playbok" in message
    assert CONNECTION_ERROR not in message
