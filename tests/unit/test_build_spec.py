"""build.yml's parameters are defined once, in playbooks/vars/build_spec.yml; what repeats them follows it.

Generated from the spec (``python tests/unit/test_build_spec.py --write`` rewrites them; the tests fail when they
differ): the parameter section of playbooks/vars/build_defaults.yml and the parameter table of docs/guide.md, each
between BEGIN/END marker lines. Tested against the spec: the build survey of playbooks/awx_setup.yml (types,
min/max, choices, defaults, required), the defaults that live in vars/node_contract.yml, the modules' own rules
the spec repeats (the cluster name, the volume size). The real validation (playbooks/tasks/validate.yml, run by
ansible-playbook) must reject wrong values, every one of a run at once, each on its own line. The guide names the
nodes' user-data log the collection writes. The docs' parameter files and commands: tests/unit/test_docs.py.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

ROOT = Path(__file__).resolve().parents[2]
SPEC_FILE = ROOT / "playbooks" / "vars" / "build_spec.yml"
DEFAULTS_FILE = ROOT / "playbooks" / "vars" / "build_defaults.yml"
NODE_CONTRACT = ROOT / "playbooks" / "vars" / "node_contract.yml"
GUIDE = ROOT / "docs" / "guide.md"
README = ROOT / "README.md"
AWX_SETUP = ROOT / "playbooks" / "awx_setup.yml"
BIN = Path(sys.executable).parent
COLLECTIONS = ROOT / "build" / "collections"  # made by tests/conftest.py (or `make collection`)

WRITE = "python tests/unit/test_build_spec.py --write"
DEFAULTS_BEGIN = "# BEGIN build parameters, written from vars/build_spec.yml by `%s`" % WRITE
DEFAULTS_END = "# END build parameters"
TABLE_BEGIN = "<!-- BEGIN build parameters: generated from playbooks/vars/build_spec.yml by `%s` -->" % WRITE
TABLE_END = "<!-- END build parameters -->"

# Keys Ansible's argument spec reads, and the spec's own (checked by tasks/validate.yml; see the spec's header).
ANSIBLE_KEYS = {"type", "elements", "choices", "required", "default", "description"}
OWN_KEYS = {"allowed", "pattern", "elements_pattern", "min", "max", "min_length", "max_length", "default_in"}
TYPES = {"str", "int", "float", "bool", "list", "dict", "raw"}
# Survey question types a spec type may be asked with.
SURVEY_TYPES = {"str": {"text", "textarea", "password"}, "int": {"integer"}, "float": {"float"}}


def load_spec():
    return yaml.safe_load(SPEC_FILE.read_text())["buildfarm_build_spec"]


OPTIONS = load_spec()["options"]
RULES = load_spec()["rules"]


def is_template(value):
    return isinstance(value, str) and "{{" in value


# ---------------------------------------------------------------------------------------------------------------
# Rendering the generated parts


def yaml_value(value):
    """A default as it is written in build_defaults.yml: plain when YAML reads it back as the same string."""
    if isinstance(value, str) and value and value[0] not in "{[*&!|>'\"%@`#-?:," and ": " not in value:
        if " #" not in value and yaml.safe_load(value) == value:
            return value
    return json.dumps(value)


def _comment(text, first):
    return textwrap.wrap(first + " " + " ".join(text.split()), 114, initial_indent="# ", subsequent_indent="#   ")


def render_defaults():
    lines = [DEFAULTS_BEGIN]
    for name, option in OPTIONS.items():
        if option.get("required"):
            lines += _comment(option["description"], "%s (required, no default):" % name)
        elif "default_in" in option:
            lines += _comment(option["description"], "%s (default in %s):" % (name, option["default_in"]))
        elif "default" not in option:
            lines += _comment(option["description"], "%s (unset unless given):" % name)
        else:
            lines += _comment(option["description"], "%s:" % name)
            lines.append("%s: %s" % (name, yaml_value(option["default"])))
    lines.append(DEFAULTS_END)
    return "\n".join(lines)


def doc_default(option):
    if option.get("required"):
        return "**required**"
    if "default_in" in option:
        return "in `playbooks/%s`" % option["default_in"]
    if "default" not in option:
        return "unset"
    value = option["default"]
    if is_template(value):
        found = re.findall(r"lookup\('env', '(\w+)'\)", value)
        return "environment: " + " or ".join("`%s`" % name for name in found)
    return "`%s`" % json.dumps(value)


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;")


def render_table():
    lines = [
        TABLE_BEGIN,
        "| parameter | type | default | allowed | what it does |",
        "|---|---|---|---|---|",
    ]
    for name, option in OPTIONS.items():
        kind = option["type"] + (" of %s" % option["elements"] if "elements" in option else "")
        cells = ["`%s`" % name, kind, doc_default(option), option["allowed"], option["description"]]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    lines.append(TABLE_END)
    return "\n".join(lines)


def generated_block(text, begin, end):
    start = text.index(begin)
    return text[start : text.index(end, start) + len(end)]


def write():
    for path, begin, end, content in (
        (DEFAULTS_FILE, DEFAULTS_BEGIN, DEFAULTS_END, render_defaults()),
        (GUIDE, TABLE_BEGIN, TABLE_END, render_table()),
    ):
        text = path.read_text()
        path.write_text(text.replace(generated_block(text, begin, end), content))


# ---------------------------------------------------------------------------------------------------------------
# The spec itself


@pytest.mark.parametrize("name", list(OPTIONS))
def test_each_option_is_complete_and_consistent(name):
    option = OPTIONS[name]
    assert set(option) <= ANSIBLE_KEYS | OWN_KEYS, set(option) - ANSIBLE_KEYS - OWN_KEYS
    assert option["type"] in TYPES
    assert option.get("description") and option.get("allowed")
    assert ("elements" in option) == (option["type"] == "list")
    # A required parameter has no default (else Ansible would never call it missing), and at most one default.
    assert not (option.get("required") and ("default" in option or "default_in" in option))
    assert not ("default" in option and "default_in" in option)
    # The message and the table say what is allowed: the choices and the range are in the words.
    for choice in option.get("choices", []):
        assert str(choice) in option["allowed"]
    for bound in ("min", "max"):
        if bound in option:
            assert option["type"] == "int" and str(option[bound]) in option["allowed"]
    if "elements_pattern" in option:
        assert option["type"] == "list"
    # A (literal) default satisfies its own spec.
    if "default" in option and not is_template(option["default"]):
        assert errors_of(name, option["default"]) == []


def errors_of(name, value):
    """The spec's per-parameter checks in Python (the playbook's are in tasks/validate.yml), for the defaults."""
    option = OPTIONS[name]
    spec = {key: option[key] for key in ANSIBLE_KEYS & set(option) - {"description"}}
    result = ArgumentSpecValidator({name: spec}).validate({name: value})
    errors = list(result.error_messages)
    if "pattern" in option and not re.match(option["pattern"], str(value)):
        errors.append("pattern")
    for element in value if "elements_pattern" in option else []:
        if not re.match(option["elements_pattern"], str(element)):
            errors.append("element pattern")
    if not option.get("min", -math.inf) <= (value if option["type"] == "int" else 0) <= option.get("max", math.inf):
        errors.append("range")
    if (
        not option.get("min_length", 0)
        <= len(value if option["type"] in ("str", "list") else "")
        <= option.get("max_length", math.inf)
    ):
        errors.append("length")
    return errors


def test_the_spec_is_an_argument_spec_ansible_validates():
    spec = {name: {k: v for k, v in option.items() if k in ANSIBLE_KEYS} for name, option in OPTIONS.items()}
    required = {name: "x" for name, option in OPTIONS.items() if option.get("required")}
    assert ArgumentSpecValidator(spec).validate(required).error_messages == []
    assert "missing required arguments" in ArgumentSpecValidator(spec).validate({}).error_messages[0]


def test_rules_name_every_parameter_they_read():
    for rule in RULES:
        assert set(rule) == {"params", "that", "msg"}
        assert set(rule["params"]) <= set(OPTIONS)
        read = {name for name in OPTIONS if re.search(r"\b%s\b" % name, rule["that"])}
        assert read == set(rule["params"]), rule["that"]


def test_the_spec_repeats_the_modules_rules():
    from ansible_collections.buildfarm.ec2.plugins.module_utils import fleet, tags

    assert OPTIONS["cluster"]["pattern"] == tags.CLUSTER_NAME_RE.pattern
    assert OPTIONS["root_volume_size"]["max"] == fleet.MAX_VOLUME_GIB


def test_node_contract_holds_the_defaults_the_spec_points_to():
    contract = yaml.safe_load(NODE_CONTRACT.read_text())
    for name, option in OPTIONS.items():
        if "default_in" in option:
            assert option["default_in"] == "vars/node_contract.yml"
            assert name in contract


# ---------------------------------------------------------------------------------------------------------------
# What is generated from it


def test_build_defaults_are_generated_from_the_spec():
    text = DEFAULTS_FILE.read_text()
    assert generated_block(text, DEFAULTS_BEGIN, DEFAULTS_END) == render_defaults(), "run `%s`" % WRITE
    defaults = yaml.safe_load(text)
    for name, option in OPTIONS.items():
        if "default" in option:
            assert defaults[name] == option["default"]
        else:
            assert name not in defaults  # required, or its default is elsewhere, or unset


def test_the_guide_table_is_generated_from_the_spec():
    assert generated_block(GUIDE.read_text(), TABLE_BEGIN, TABLE_END) == render_table(), "run `%s`" % WRITE
    assert "docs/guide.md#parameters-of-buildyml" in README.read_text()


# ---------------------------------------------------------------------------------------------------------------
# The AWX survey


def _survey():
    (play,) = yaml.safe_load(AWX_SETUP.read_text())
    return play["vars"]["buildfarm_awx_build_survey"]["spec"]


@pytest.mark.parametrize("question", _survey(), ids=lambda q: q["variable"])
def test_the_awx_survey_agrees_with_the_spec(question):
    name = question["variable"]
    assert name in OPTIONS, "the survey asks for %s, which build.yml does not take" % name
    option = OPTIONS[name]
    if "choices" in option:
        assert question["type"] == "multiplechoice" and question["choices"] == option["choices"]
    elif option["type"] == "bool":
        assert question["type"] == "multiplechoice" and sorted(question["choices"]) == ["false", "true"]
    else:
        assert question["type"] in SURVEY_TYPES[option["type"]]
    if option.get("required"):
        assert question["required"] is True
    if question["type"] == "integer":
        for bound in ("min", "max"):
            if bound in option:
                assert question[bound] == option[bound], bound
        assert question["min"] >= option.get("min", -math.inf)
        assert question["max"] <= option.get("max", math.inf)
    if question["type"] in ("text", "textarea"):
        for bound, key in (("min", "min_length"), ("max", "max_length")):
            if key in option:
                assert question[bound] == option[key], bound
    # The survey's default is the spec's; where the spec's is empty (nothing given), the survey may offer a value
    # (build_script_content: make -j"$BUILDFARM_JOBS"), which must then pass the checks.
    default = option.get("default")
    if "default" in option and not is_template(default) and default != "":
        expected = str(default).lower() if option["type"] == "bool" else default
        assert question.get("default") == expected
    if "default" in question:
        value = question["default"]
        assert errors_of(name, value if option["type"] != "bool" else value == "true") == []


def test_the_guide_lists_the_survey_questions():
    row = next(line for line in GUIDE.read_text().splitlines() if line.startswith("| job template | `buildfarm build`"))
    listed = re.search(r"survey with (.*?) \|", row).group(1).replace(" and ", ", ").split(", ")
    assert listed == [q["variable"] for q in _survey()]


# ---------------------------------------------------------------------------------------------------------------
# The real validation (tasks/validate.yml under ansible-playbook, no AWS endpoint)


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    """Runs build.yml's validation alone: a playbook in a copy of playbooks/ (links to the real vars/ and tasks/,
    so {{ playbook_dir }}/../examples/... resolves as for build.yml)."""
    top = tmp_path_factory.mktemp("checker")
    (top / "playbooks").mkdir()
    for name in ("vars", "tasks"):
        (top / "playbooks" / name).symlink_to(ROOT / "playbooks" / name)
    (top / "examples").symlink_to(ROOT / "examples")
    playbook = top / "playbooks" / "check.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Check build.yml's parameters",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "vars_files": ["vars/build_defaults.yml", "vars/node_contract.yml"],
                    "tasks": [{"name": "Validate", "ansible.builtin.import_tasks": "tasks/validate.yml"}],
                }
            ]
        )
    )
    cwd = top / "cwd"
    (cwd / "src").mkdir(parents=True)
    (cwd / "build.sh").write_text("make\n")

    def run(params, playbook=playbook, extra=()):
        params_file = cwd / "params.json"
        params_file.write_text(json.dumps(params))
        env = dict(
            os.environ,
            ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
            ANSIBLE_NOCOLOR="1",
            AWS_REGION="eu-west-1",
            HOME=str(top),
        )
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), str(playbook), "-e", "@%s" % params_file, *extra],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=120,
            check=False,
        )
        return proc.returncode, proc.stdout + proc.stderr

    return run


VALID = {
    "cluster": "demo",
    "image_id": "ami-0123456789abcdef0",
    "ssh_cidr": "203.0.113.7/32",
    "bucket": "my-build-results",
    "build_script_content": "make",
}


def test_a_valid_run_passes(checker):
    rc, out = checker(VALID, extra=["-e", "builders=3", "-e", "spot=yes", "-e", "keep_cluster=false"])
    assert rc == 0, out
    assert "every parameter is valid" in out


def _errors(out):
    """The lines of the validation's failure message (the error display prints them one per line)."""
    match = re.search(r"wrong parameter\(s\), nothing was created:\n(.*?)\nOrigin:", out, re.S)
    assert match, out
    return match.group(1).splitlines()


def test_every_mistake_of_a_run_is_reported_at_once_one_line_each(checker):
    params = dict(
        VALID,
        cluster="Bad_Name",
        builders="two",
        scheduler="make",
        ssh_cidr="0.0.0.0/0",
        vpc_cidr="10.0.0.0/8",
        security_group_ids="sg-0123456789abcdef0",
        max_lifetime=5,
        outputs=[],
        spot="maybe",
        root_volume_size=-1,
    )
    del params["bucket"]
    rc, out = checker(params)
    assert rc == 2, out
    assert _errors(out) == [  # in the order of the spec, then the rules
        "- cluster: 'Bad_Name' is invalid: give " + OPTIONS["cluster"]["allowed"],
        "- builders: 'two' is invalid: give a whole number from 1 to 1000",
        "- spot: 'maybe' is invalid: give true or false",
        "- root_volume_size: -1 is invalid: give " + OPTIONS["root_volume_size"]["allowed"],
        "- security_group_ids: 'sg-0123456789abcdef0' is invalid: give " + OPTIONS["security_group_ids"]["allowed"],
        "- vpc_cidr: '10.0.0.0/8' is invalid: give an IPv4 CIDR of /16 to /28",
        "- outputs: [] is invalid: give " + OPTIONS["outputs"]["allowed"],
        "- bucket is required: give " + OPTIONS["bucket"]["allowed"],
        "- scheduler: 'make' is invalid: give distcc or slurm",
        "- max_lifetime: 5 is invalid: give " + OPTIONS["max_lifetime"]["allowed"],
        # the rule on ssh_cidr: its value passed the parameter's own check
        "- ssh_cidr 0.0.0.0/0 opens SSH of every node to the whole internet: give the controller's address"
        " (e.g. 203.0.113.7/32), or set ssh_from_anywhere=true if that is really meant",
    ]


# Mistakes that go together in one run (each run reports all of its own), and the line each one must get.
RUNS = [
    {
        "build_script": ("build.sh", "give exactly one of build_script (a file on the controller) and"),
        "source_git": ("https://git.example.org/p.git", "give at most one of source_dir and source_git"),
        "source_dir": ("src", None),
        "internet_gateway": (False, "internet_gateway=false with the cluster's own network (subnet_id empty)"),
        "max_lifetime": (60, "max_lifetime (60 minutes) must be longer than build_timeout + ready_timeout (4200 s)"),
        "build_timeout": (3600, None),
        "image_id": ("ubuntu", "image_id: 'ubuntu' is invalid: give an AMI id such as ami-0123456789abcdef0"),
        "region": ("Europe", "region: 'Europe' is invalid: give an AWS region name such as eu-west-1"),
        "ssh_address": ("dns", "ssh_address: 'dns' is invalid: give auto, public_ip or private_ip"),
        "host_type": ("big", "host_type: 'big' is invalid: give an EC2 instance type such as t3.small"),
    },
    {
        "build_script": ("missing.sh", "build_script: 'missing.sh' is not a file on the controller"),
        "build_script_content": ("", None),
        "source_dir": ("nowhere", "source_dir: 'nowhere' is not a directory on the controller"),
        "subnet_id": ("vpc-1", "subnet_id: 'vpc-1' is invalid: give empty (the cluster's own network) or a subnet id"),
    },
    {"build_script_content": ("", "give exactly one of build_script (a file on the controller) and")},
    {
        "keep_host": (True, "give at most one of keep_host (terminate the builders, keep the host) and keep_cluster"),
        "keep_cluster": (True, None),
        "workspace": ("bad name!", "workspace: 'bad name!' is invalid: give empty, or 1-63 letters"),
        "workspace_size": (0, "workspace_size: 0 is invalid: give a whole number of GiB from 1 to 16384"),
    },
    {
        "keep_host": (True, "keep_host needs scheduler distcc: a run's teardown terminates the builders"),
        "scheduler": ("slurm", None),
        "workspace": ("workspace", "workspace needs scheduler distcc: the volume is attached to one build host"),
    },
    {"workspace": ("workspace", "workspace workspace needs keep_host or keep_cluster: without them the run's sweep")},
]


@pytest.mark.parametrize("mistakes", RUNS, ids=",".join)
def test_each_check_has_its_own_line(mistakes, checker):
    rc, out = checker(dict(VALID, **{name: pair[0] for name, pair in mistakes.items()}))
    assert rc == 2, out
    errors = _errors(out)
    expected = [pair[1] for pair in mistakes.values() if pair[1]]
    assert len(errors) == len(expected), errors
    for line in expected:
        assert len([error for error in errors if line in error]) == 1, (line, errors)


def test_build_yml_fails_in_the_validation_before_any_api_call(checker):
    """The real playbook, its endpoint a closed port: the failure comes from the validation task."""
    rc, out = checker(
        {"cluster": "x-", "builders": 0, "endpoint_url": "http://127.0.0.1:9"},
        playbook=ROOT / "playbooks" / "build.yml",
    )
    assert rc == 2, out
    assert "TASK [Stop on wrong parameters, before any resource is made]" in out
    assert "Create the network" not in out and "127.0.0.1:9" not in out.split("nothing was created")[0]
    required = [
        "- %s is required: give %s" % (name, OPTIONS[name]["allowed"]) for name in ("image_id", "ssh_cidr", "bucket")
    ]
    assert set(_errors(out)) >= {
        "- cluster: 'x-' is invalid: give " + OPTIONS["cluster"]["allowed"],
        "- builders: 0 is invalid: give a whole number from 1 to 1000",
        *required,
    }


# ---------------------------------------------------------------------------------------------------------------
# What the guide says of the nodes


def test_the_guide_names_the_user_data_log_the_collection_writes():
    from ansible_collections.buildfarm.ec2.plugins.module_utils import fleet

    guide = GUIDE.read_text()
    assert "`%s`" % fleet.USER_DATA_LOG in guide
    assert "/var/log/user-data.log" not in guide  # the local cloud's own log (docs/localcloud.md), not the nodes'


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        sys.exit("usage: python tests/unit/test_build_spec.py --write")
