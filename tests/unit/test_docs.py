"""The docs run as written: every fenced block of README.md, docs/*.md and roles/*/README.md is extracted and checked.

YAML blocks (```yaml) say what they are:
- a build.yml parameter file starts with the line ``# params.yml``: it must pass build.yml's real validation
  (playbooks/tasks/validate.yml under ansible-playbook after vars/build_defaults.yml, as build.yml runs it and as
  test_build_spec.py's checker does; every set of this file in one run), as must every examples/*/params.yml;
- an inventory configuration starts with a comment naming its file, ``# <name>.buildfarm.yml``: its keys must be
  options of the buildfarm.ec2.instances plugin (as ansible-doc lists them);
- a YAML list is a playbook or a task list (never a parameter file: ``-e @file`` takes a mapping): it passes
  ``ansible-playbook --syntax-check``, its role variables are in the roles' argument specs and its buildfarm.ec2
  module arguments are options of the modules;
- any other block fails: a mapping that is neither says so with one of the two first lines.

Shell blocks (```sh, ```console: the ``$ `` lines) are commands. What a command or the text names exists: the
playbooks (``buildfarm.ec2.<playbook>``, ``playbooks/*.yml``), every ``buildfarm.ec2.<name>`` (module, plugin,
role, playbook, the ``group/buildfarm.ec2.aws`` action group), the repository paths (``examples/...``,
``tools/...``, ``docs/...``, ...), the .yml files, the relative links and their #anchors; every ``make TARGET`` is a
target of the Makefile; README.md's set-up is exactly ``make demo`` and ``make test``; an ad-hoc
``ansible -m buildfarm.ec2.<module> -a ...`` gives options of the module; a collection tarball the docs install is
the one ``make build`` writes.

"Example commands are the ones the tests run" is this rule, for every documented command that runs build.yml,
sweep.yml or handoff.yml (``ansible-playbook buildfarm.ec2.X`` or ``ansible-playbook playbooks/X.yml``):
1. the playbook is one the e2e tests run (tests/e2e/*.py: ``runner.run/start/command("X.yml", ...)``,
   ``build(...)``) or tools/demo.sh runs;
2. its options are only those the e2e Runner (tests/e2e/conftest.py) and tools/demo.sh give ansible-playbook
   (``-e``);
3. build.yml: its parameters come from ``-e @FILE``, FILE being the docs' ``params.yml`` or an examples/ parameter
   file that tools/demo.sh or an e2e test names; its ``-e NAME=VALUE`` names are ones tools/demo.sh gives on its
   command line too; the file's parameters with those values pass the validation;
4. sweep.yml, handoff.yml: its ``-e`` names are exactly those of one e2e run of that playbook, and the command, run
   as written (no AWS credentials, a closed loopback endpoint), passes the playbook's "Check the parameters" task:
   it fails only at its first API call.
Each checker is also fed a deliberately wrong block (the ``test_*_is_caught`` cases), so the checks can fail.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import test_build_spec as spec  # tests/unit is on sys.path (pytest's rootdir-relative import)
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "roles").glob("*/README.md")))
DEMO = ROOT / "tools" / "demo.sh"
E2E = sorted((ROOT / "tests" / "e2e").glob("*.py"))
PLAYBOOKS_THE_TESTS_RUN = {"build.yml", "sweep.yml", "handoff.yml"}
PARAMS_MARK = "# params.yml"
INVENTORY_MARK = re.compile(r"# (\S+\.buildfarm\.ya?ml)\b")
SHELLS = {"sh", "bash", "shell", "console"}
# Paths of the repository a doc may name (build/ and .venv/ are made by the Makefile, not tracked).
PATH_RE = re.compile(
    r"(?<![\w./@:-])((?:playbooks|examples|tools|docs|roles|plugins|inventories|tests|bench|meta|extensions)"
    r"/[\w./*<>{}-]*[\w*>}])"
)


def _rel(path):
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


# ---------------------------------------------------------------------------------------------------------------
# Extraction


def fenced_blocks(text):
    """(language, first line number, dedented text) of every fenced block, also those indented in a list."""
    found = []
    for match in re.finditer(r"^( *)```(\w*)[^\n]*\n(.*?)^\1```", text, re.S | re.M):
        line = text.count("\n", 0, match.start()) + 2
        found.append((match.group(2), line, textwrap.dedent(match.group(3))))
    return found


def commands(lang, block):
    """The commands of a shell block: ``$ `` lines of a console block, every line of a script; continuations
    joined, comments dropped (shlex)."""
    lines, joined = [], ""
    for line in block.splitlines():
        if lang == "console" and not joined:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        joined += line
        if joined.endswith("\\"):
            joined = joined[:-1] + " "
            continue
        if joined.strip() and not joined.lstrip().startswith("#"):
            lines.append(" ".join(shlex.split(joined, comments=True)))
        joined = ""
    return [line for line in lines if line]


def doc_blocks(paths=DOCS):
    for path in paths:
        for lang, line, block in fenced_blocks(path.read_text()):
            yield path, lang, line, block


def kind_of(block):
    """What a YAML block is: 'params', 'inventory', 'list', or an error message."""
    first = block.lstrip().splitlines()[0] if block.strip() else ""
    data = yaml.safe_load(block)
    if first.strip() == PARAMS_MARK:
        return "params" if isinstance(data, dict) else "%s marks a block that is not a mapping" % PARAMS_MARK
    if isinstance(data, list):
        return "list"
    if isinstance(data, dict) and INVENTORY_MARK.match(first):
        return "inventory"
    return (
        "a YAML block that is neither a list nor marked: start it with '%s' (build.yml parameters) or" % (PARAMS_MARK)
        + " '# <name>.buildfarm.yml' (an inventory configuration)"
    )


def yaml_blocks():
    return [
        pytest.param(block, id="%s:%d" % (_rel(path), line))
        for path, lang, line, block in doc_blocks()
        if lang in ("yaml", "yml")
    ]


def doc_commands(paths=DOCS):
    """(where, command) of every command of the shell blocks, and of the ``ansible-playbook`` code spans of the
    text that give arguments (a bare ``ansible-playbook buildfarm.ec2.build`` in a sentence names the playbook,
    it is not a command to run as written)."""
    found = [
        ("%s:%d" % (_rel(path), line), command)
        for path, lang, line, block in doc_blocks(paths)
        if lang in SHELLS
        for command in commands(lang, block)
    ]
    for path in paths:
        text = path.read_text()
        prose = re.sub(r"^( *)```.*?^\1```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S | re.M)
        for match in re.finditer(r"`(ansible-playbook [^` ]+ -[^`]+)`", prose):
            found.append(("%s:%d" % (_rel(path), prose.count("\n", 0, match.start()) + 1), match.group(1)))
    return found


# ---------------------------------------------------------------------------------------------------------------
# YAML blocks


def test_the_docs_have_blocks_of_every_kind():
    kinds = {kind_of(p.values[0]) for p in yaml_blocks()}
    assert kinds == {"params", "inventory", "list"}, kinds
    assert len(doc_commands()) >= 20


@pytest.mark.parametrize("block", yaml_blocks())
def test_each_yaml_block_says_what_it_is(block):
    kind = kind_of(block)
    assert kind in ("params", "inventory", "list"), kind


def test_an_unmarked_mapping_is_caught():
    assert kind_of("cluster: demo\nbuilders: 2\n").startswith("a YAML block that is neither")
    assert kind_of("# params.yml\n- cluster: demo\n").endswith("is not a mapping")
    assert kind_of("# params.yml\ncluster: demo\n") == "params"


def parameter_files():
    found = [
        pytest.param(yaml.safe_load(block), id="%s:%d" % (_rel(path), line))
        for path, lang, line, block in doc_blocks()
        if lang in ("yaml", "yml") and kind_of(block) == "params"
    ]
    for path in sorted((ROOT / "examples").glob("*/params.yml")):
        found.append(pytest.param(yaml.safe_load(path.read_text()), id=_rel(path)))
    return found


def test_the_parameter_files_are_found():
    names = {p.id.split(":")[0] for p in parameter_files()}
    assert {"README.md", "docs/guide.md", "examples/hello/params.yml", "examples/lua/params.yml"} <= names


def batch_validation(param_sets, top):
    """build.yml's validation (tasks/validate.yml, as in test_build_spec.py's checker) of each parameter set, in
    one ansible-playbook run: one play per set, its parameters loaded after build.yml's defaults (as -e @file
    overrides them). The list of the errors of each set, [] for a valid one."""
    (top / "playbooks").mkdir(exist_ok=True)
    for name in ("vars", "tasks"):
        if not (top / "playbooks" / name).exists():
            (top / "playbooks" / name).symlink_to(ROOT / "playbooks" / name)
    if not (top / "examples").exists():
        (top / "examples").symlink_to(ROOT / "examples")
    cwd = top / "cwd"  # the user's directory: ./src and ./build.sh of the docs' parameter files
    (cwd / "src").mkdir(parents=True, exist_ok=True)
    (cwd / "build.sh").write_text("make\n")
    plays = []
    for number, params in enumerate(param_sets):
        (top / ("params-%d.json" % number)).write_text(json.dumps(params))
        plays.append(
            {
                "name": "set %d" % number,
                "hosts": "localhost",
                "connection": "local",
                "gather_facts": False,
                "ignore_errors": True,
                "vars_files": [
                    "vars/build_defaults.yml",
                    "vars/node_contract.yml",
                    str(top / ("params-%d.json" % number)),
                ],
                "tasks": [{"name": "Validate", "ansible.builtin.import_tasks": "tasks/validate.yml"}],
            }
        )
    (top / "playbooks" / "check.yml").write_text(yaml.safe_dump(plays))
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        AWS_REGION="eu-west-1",
        HOME=str(top),
    )
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), str(top / "playbooks" / "check.yml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    verdicts = []
    for play in json.loads(proc.stdout)["plays"]:
        (last,) = [t["hosts"]["localhost"] for t in play["tasks"] if t["task"]["name"].startswith("Stop on wrong")]
        verdicts.append(last["msg"].splitlines()[1:] if last.get("failed") else [])
    assert len(verdicts) == len(param_sets)
    return verdicts


@pytest.fixture(scope="module")
def validate(tmp_path_factory):
    """params -> the validation's errors: [] when valid, else one line each (or the unknown names). Every
    parameter set this file checks is validated in the first call's one run; others get a run of their own."""
    top = tmp_path_factory.mktemp("validate")
    known = {}

    def key(params):
        return json.dumps(params, sort_keys=True)

    def check(params):
        unknown = set(params) - set(spec.OPTIONS)
        if unknown:
            return ["not a parameter of build.yml: %s" % ", ".join(sorted(unknown))]
        if not known:
            sets = {key(p): p for p in parameter_sets() if not set(p) - set(spec.OPTIONS)}
            known.update(zip(sets, batch_validation(list(sets.values()), top), strict=True))
        if key(params) not in known:
            (known[key(params)],) = batch_validation([params], top)
        return known[key(params)]

    return check


@pytest.mark.parametrize("params", parameter_files())
def test_each_parameter_file_passes_the_validation(params, validate):
    assert validate(params) == []


WRONG = {"builders": "eight", "scheduler": "make"}


def readme_params():
    (readme,) = [p.values[0] for p in parameter_files() if p.id.startswith("README.md")]
    return readme


def test_a_wrong_parameter_file_is_caught(validate):
    readme = readme_params()
    """The README's block with one wrong name, one wrong type and one wrong value: each one named."""
    assert validate(dict(readme, builder=3)) == ["not a parameter of build.yml: builder"]
    assert validate(dict(readme, **WRONG)) == [
        "- builders: 'eight' is invalid: give a whole number from 1 to 1000",
        "- scheduler: 'make' is invalid: give distcc or slurm",
    ]


@pytest.fixture(scope="module")
def inventory_options():
    doc = _ansible_doc("-t", "inventory", "buildfarm.ec2.instances")["buildfarm.ec2.instances"]
    return set(doc["doc"]["options"]) | {"plugin"}


def unknown_inventory_options(block, options):
    return sorted(set(yaml.safe_load(block)) - options)


def test_each_inventory_block_uses_options_of_the_plugin(inventory_options):
    blocks = [p.values[0] for p in yaml_blocks() if kind_of(p.values[0]) == "inventory"]
    assert len(blocks) >= 3
    for block in blocks:
        assert unknown_inventory_options(block, inventory_options) == [], block
    assert unknown_inventory_options("# x.buildfarm.yml\nclustrs: [demo]\n", inventory_options) == ["clustrs"]


def as_playbook(block):
    """A list block as a playbook: its plays, or its tasks in a play on localhost."""
    data = yaml.safe_load(block)
    if all(isinstance(item, dict) and "hosts" in item for item in data):
        return data
    return [{"name": "Tasks of the docs", "hosts": "localhost", "gather_facts": False, "tasks": data}]


def playbook_errors(plays, module_options):
    """Role variables that are not options of the role's argument spec (main, or the tasks_from entry point), and
    module arguments that are not options of the buildfarm.ec2 module."""
    errors = []
    for play in plays:
        for entry in play.get("roles", []):
            entry = entry if isinstance(entry, dict) else {"role": entry}
            errors += _role_var_errors(entry["role"], "main", entry.get("vars", {}))
        for task in [t for key in ("pre_tasks", "tasks", "post_tasks") for t in play.get(key, [])]:
            for action, args in task.items():
                if action in ("ansible.builtin.include_role", "ansible.builtin.import_role"):
                    errors += _role_var_errors(args["name"], args.get("tasks_from", "main"), task.get("vars", {}))
                elif action.startswith("buildfarm.ec2."):
                    unknown = set(args) - module_options[action]
                    errors += ["%s has no option %s" % (action, name) for name in sorted(unknown)]
    return errors


def _role_var_errors(role, entry, variables):
    name = role.removeprefix("buildfarm.ec2.")
    specs = ROOT / "roles" / name / "meta" / "argument_specs.yml"
    if not role.startswith("buildfarm.ec2.") or not specs.is_file():
        return ["%s is not a role of buildfarm.ec2" % role]
    options = yaml.safe_load(specs.read_text())["argument_specs"][entry]["options"]
    return ["role %s has no variable %s" % (role, var) for var in sorted(set(variables) - set(options))]


def list_blocks():
    return [p for p in yaml_blocks() if kind_of(p.values[0]) == "list"]


@pytest.fixture(scope="module")
def module_options():
    modules = [m.stem for m in (ROOT / "plugins" / "modules").glob("*.py") if m.stem != "__init__"]
    out = _ansible_doc(*["buildfarm.ec2." + m for m in modules])
    return {name: set(doc["doc"]["options"]) for name, doc in out.items()}


def _ansible_doc(*args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"))
    command = [str(BIN / "ansible-doc"), "--json", *args]
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True, timeout=120).stdout
    return json.loads(out)


def test_the_playbook_blocks_pass_the_syntax_check_with_their_roles_and_modules_options(tmp_path, module_options):
    """Every list block (roles/*/README.md, the guide, artifacts.md) as ansible-playbook --syntax-check reads it,
    its role variables in the roles' argument specs, its module arguments in the modules' options."""
    files = []
    for param in list_blocks():
        plays = as_playbook(param.values[0])
        assert playbook_errors(plays, module_options) == [], param.id
        files.append(tmp_path / (re.sub(r"\W", "_", param.id) + ".yml"))
        files[-1].write_text(yaml.safe_dump(plays))
    assert len(files) >= 10
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_wrong_role_variable_or_module_option_is_caught(module_options):
    plays = as_playbook(
        "- hosts: builders\n  roles:\n    - role: buildfarm.ec2.distcc\n      vars: {distcc_rol: server}\n"
        "    - buildfarm.ec2.compiler\n"
    )
    assert playbook_errors(plays, module_options) == [
        "role buildfarm.ec2.distcc has no variable distcc_rol",
        "buildfarm.ec2.compiler is not a role of buildfarm.ec2",
    ]
    tasks = as_playbook("- buildfarm.ec2.artifacts: {cluster: c, bucket: b, source: out}\n")
    assert playbook_errors(tasks, module_options) == ["buildfarm.ec2.artifacts has no option source"]


# ---------------------------------------------------------------------------------------------------------------
# What the docs name exists


@functools.cache
def make_targets():
    return set(re.findall(r"^([\w.-]+):(?!=)", (ROOT / "Makefile").read_text(), re.M)) - {".PHONY"}


def reference_errors(text, where):
    """What ``text`` (a doc of directory ``where``) names that does not exist."""
    errors = []
    tracked = _tracked()
    for name in set(re.findall(r"(?<![\w/.-])buildfarm\.ec2\.(\w+)", text)):
        candidates = [
            "plugins/modules/%s.py",
            "plugins/inventory/%s.py",
            "plugins/test/%s.py",
            "roles/%s/tasks/main.yml",
            "playbooks/%s.yml",
        ]
        runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
        if not any((ROOT / (c % name)).is_file() for c in candidates) and name not in runtime["action_groups"]:
            errors.append("buildfarm.ec2.%s is no module, plugin, role, playbook or action group" % name)
    for path in set(PATH_RE.findall(text.replace("file://", " "))):
        if "<" in path or "{" in path:
            continue  # a placeholder: roles/<role>/README.md
        if not list(ROOT.glob(path.rstrip("/"))) and not list(where.glob(path.rstrip("/"))):  # or of a role's
            errors.append("%s does not exist" % path)
    for name in set(re.findall(r"(?<![\w.*<>-])([\w/-]+\.ya?ml)\b", text)) - {"params.yml"}:  # params.yml: the user's
        if name.lstrip("./") not in tracked and Path(name).name not in tracked:
            errors.append("%s does not exist" % name)
    for target, anchor in re.findall(r"\]\(([^)#\s:]*)(?:#([\w-]+))?\)", text):
        linked = (where / target) if target else None
        if linked is not None and not linked.exists():
            errors.append("link %s does not exist" % target)
        elif anchor and (linked is None or linked.suffix == ".md"):
            heads = (linked.read_text() if linked else text).splitlines()
            slugs = {_slug(h.lstrip("#")) for h in heads if h.startswith("#")}
            if anchor not in slugs:
                errors.append("link %s#%s: no such heading" % (target, anchor))
    # make in prose ("make a filesystem") is no command: targets are read in code spans and shell blocks only.
    prose = re.sub(r"^( *)```.*?^\1```", "", text, flags=re.S | re.M)
    code = re.findall(r"`([^`\n]+)`", prose) + [
        c for lang, _line, b in fenced_blocks(text) if lang in SHELLS for c in commands(lang, b)
    ]
    for words in re.findall(r"(?:^|[\s;&|(])make ((?:[\w-]+ ?)+)", "\n".join(code)):
        for target in words.split():
            if target not in make_targets():
                errors.append("make %s: no such target" % target)
    return errors


def _slug(heading):
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@functools.cache
def _tracked():
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return {Path(name).name for name in listed} | set(listed)


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_what_each_doc_names_exists(path):
    errors = reference_errors(path.read_text(), path.parent)
    assert errors == [], "%s: %s" % (_rel(path), errors)


def test_a_wrong_reference_is_caught():
    where = ROOT / "docs"
    assert reference_errors("`ansible-playbook -i x buildfarm.ec2.configure`", where) == [
        "buildfarm.ec2.configure is no module, plugin, role, playbook or action group"
    ]
    assert reference_errors("see tools/localcloud/nothing.sh and `make unit lint demos`", where) == [
        "tools/localcloud/nothing.sh does not exist",
        "make demos: no such target",
    ]
    assert sorted(reference_errors("[the guide](guide.md#no-such-part), [x](gone.md)", where)) == [
        "link gone.md does not exist",
        "link guide.md#no-such-part: no such heading",
    ]
    assert reference_errors("[the guide](guide.md#parameters-of-buildyml) `make demo`", where) == []


def tarball_errors(command):
    """A collection tarball a command installs is the one `make build` writes."""
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    built = "build/dist/%(namespace)s-%(name)s-%(version)s.tar.gz" % galaxy
    words = shlex.split(command)
    return [
        "%s: `make build` writes %s" % (word, built)
        for word in words[3:]
        if words[:3] == ["ansible-galaxy", "collection", "install"] and word.endswith(".tar.gz") and word != built
    ]


def test_the_collection_the_docs_install_is_the_one_make_build_writes():
    installs = [c for _where, c in doc_commands() if c.startswith("ansible-galaxy collection install ")]
    assert any(c.endswith(".tar.gz") for c in installs)
    assert [e for c in installs for e in tarball_errors(c)] == []
    assert tarball_errors("ansible-galaxy collection install buildfarm-ec2-1.0.0.tar.gz") == [
        "buildfarm-ec2-1.0.0.tar.gz: `make build` writes build/dist/buildfarm-ec2-1.0.0.tar.gz"
    ]


def adhoc_errors(command, module_options):
    """The arguments of an ad-hoc ``ansible ... -m buildfarm.ec2.<module> -a "k=v ..."`` are the module's options."""
    words = shlex.split(command)
    if words[0] != "ansible" or "-m" not in words or not words[words.index("-m") + 1].startswith("buildfarm.ec2."):
        return []
    module = words[words.index("-m") + 1]
    given = {arg.split("=", 1)[0] for arg in shlex.split(words[words.index("-a") + 1])} if "-a" in words else set()
    return ["%s has no option %s" % (module, name) for name in sorted(given - module_options[module])]


def test_the_ad_hoc_commands_give_options_of_their_modules(module_options):
    adhoc = [c for _where, c in doc_commands() if c.startswith("ansible ") and "buildfarm.ec2." in c]
    assert adhoc
    assert [e for c in adhoc for e in adhoc_errors(c, module_options)] == []
    wrong = 'ansible localhost -m buildfarm.ec2.cluster_info -a "name=demo region=eu-west-1"'
    assert adhoc_errors(wrong, module_options) == ["buildfarm.ec2.cluster_info has no option name"]


def test_a_mutated_copy_of_the_readme_fails(tmp_path, validate, run_playbook):
    """A copy of README.md, as written (no error) and with a wrong parameter name, a wrong make target and a sweep
    without its region: each mistake is found by the checks above."""
    readme = (ROOT / "README.md").read_text()
    mistakes = [
        ("\nbuilders: 8\n", "\nbuilder: 8\n"),
        ("make test   # every", "make tests  # every"),
        ("sweep -e cluster=NAME -e region=REGION`", "sweep -e cluster=NAME`"),
    ]
    for wrong in (False, True):
        text = readme
        for right, mistake in mistakes if wrong else []:
            assert right in text
            text = text.replace(right, mistake)
        copy = tmp_path / "README.md"
        copy.write_text(text)
        (params,) = [
            yaml.safe_load(b)
            for _path, lang, _line, b in doc_blocks([copy])
            if lang == "yaml" and kind_of(b) == "params"
        ]
        (sweep,) = [c for _where, c in doc_commands([copy]) if c.startswith("ansible-playbook buildfarm.ec2.sweep")]
        errors = validate(params) + reference_errors(text, ROOT) + run_errors(sweep, validate, run_playbook)
        assert errors == (
            [
                "not a parameter of build.yml: builder",
                "make tests: no such target",
                "-e ['cluster']: no e2e run of sweep.yml gives these",
            ]
            if wrong
            else []
        ), errors


def test_the_readme_sets_up_with_make_demo_and_make_test_only():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    found = [c for lang, _line, block in fenced_blocks(setup) if lang in SHELLS for c in commands(lang, block)]
    assert found == ["make demo", "make test"]


# ---------------------------------------------------------------------------------------------------------------
# Example commands are the ones the tests run


def _names(node, assigned):
    """The keys of an extra-vars expression of an e2e test (a dict literal, dict(NAME, key=...), a NAME bound to
    one of those in the same function); None when they cannot be read."""
    if isinstance(node, ast.Dict) and all(isinstance(k, ast.Constant) for k in node.keys):
        return frozenset(k.value for k in node.keys)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        base = _names(node.args[0], assigned) if node.args else frozenset()
        if base is None or any(k.arg is None for k in node.keywords):
            return None
        return base | {k.arg for k in node.keywords}
    if isinstance(node, ast.Name) and node.id in assigned:
        return _names(assigned[node.id], assigned)
    return None


@functools.cache
def e2e_runs():
    """{playbook: [set of extra-var names (None: not readable) of each run]} of tests/e2e."""
    runs = {}
    for path in E2E:
        for func in ast.walk(ast.parse(path.read_text())):
            if not isinstance(func, ast.FunctionDef):
                continue
            assigned = {
                t.id: n.value
                for n in ast.walk(func)
                if isinstance(n, ast.Assign)
                for t in n.targets
                if isinstance(t, ast.Name)
            }
            for call in (n for n in ast.walk(func) if isinstance(n, ast.Call) and n.args):
                first = call.args[0]
                if (
                    isinstance(call.func, ast.Attribute)
                    and call.func.attr in ("run", "start", "command")
                    and isinstance(first, ast.Constant)
                    and str(first.value) in PLAYBOOKS_THE_TESTS_RUN
                ):
                    extra = call.args[1] if len(call.args) > 1 else None
                    runs.setdefault(first.value, []).append(_names(extra, assigned) if extra else None)
                elif isinstance(call.func, ast.Name) and call.func.id == "build" and len(call.args) == 1:
                    runs.setdefault("build.yml", []).append(_names(first, assigned))
    return runs


@functools.cache
def runner_options():
    """The options the e2e Runner gives ansible-playbook (the string constants of Runner.command)."""
    (runner,) = [
        n for n in ast.walk(ast.parse((ROOT / "tests" / "e2e" / "conftest.py").read_text())) if _is(n, "Runner")
    ]
    (command,) = [n for n in runner.body if _is(n, "command")]
    return {n.value for n in ast.walk(command) if isinstance(n, ast.Constant) and str(n.value).startswith("-")}


def _is(node, name):
    return isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name


@functools.cache
def demo_command():
    """tools/demo.sh's ansible-playbook command: (playbook, options, the -e NAME=VALUE names, the default params
    file)."""
    text = DEMO.read_text()
    (command,) = [c for c in commands("sh", text) if c.startswith("ansible-playbook ")]
    playbook, options, names, files = parse_run(command)
    default = re.search(r'PARAMS="\$\{DEMO_PARAMS:-([^}]+)\}"', text).group(1)
    assert files == ["$PARAMS"], command
    return playbook, options, names, default


def parse_run(command):
    """(playbook file name, options, {NAME: VALUE} of -e NAME=VALUE, [FILE of -e @FILE]) of an ansible-playbook
    command (None when it runs another playbook)."""
    words = shlex.split(command)
    playbook, options, names, files = None, set(), {}, []
    rest = iter(words[1:])
    for word in rest:
        if word.startswith("-"):
            options.add(word)
            value = next(rest, "") if word in ("-e", "--extra-vars", "-i", "-l", "-t") else None
            if word in ("-e", "--extra-vars"):
                if value.startswith("@"):
                    files.append(value[1:])
                else:
                    name, val = value.split("=", 1) if "=" in value else (value, "")
                    names[name] = val
        elif playbook is None:
            playbook = re.sub(r"^buildfarm\.ec2\.(\w+)$", r"\1.yml", word).split("/")[-1]
    return playbook, options, names, files


def documented_runs():
    return [
        pytest.param(command, where.split(":")[0], id=where)
        for where, command in doc_commands()
        if command.startswith("ansible-playbook ") and parse_run(command)[0] in PLAYBOOKS_THE_TESTS_RUN
    ]


def build_run_params(command, doc="README.md"):
    """The parameters a build.yml command gives: its -e @FILE (params.yml: the doc's own params.yml block, else
    README.md's) with its -e NAME=VALUE; None when they cannot be read."""
    playbook, _options, names, files = parse_run(command)
    if playbook != "build.yml" or len(files) != 1:
        return None
    if files[0] == "params.yml":
        blocks = [p.values[0] for p in parameter_files() if p.id.split(":")[0] in (doc, "README.md")]
        params = blocks[-1] if doc != "README.md" and len(blocks) > 1 else blocks[0]
    elif files[0].startswith("examples/") and (ROOT / files[0]).is_file():
        params = yaml.safe_load((ROOT / files[0]).read_text())
    else:
        return None
    return dict(params, **names)


def parameter_sets():
    """Every parameter set this file validates (they are validated in one run)."""
    sets = [p.values[0] for p in parameter_files()] + [dict(readme_params(), **WRONG)]
    for command, doc in [p.values for p in documented_runs()] + [(c, "README.md") for c, _error in WRONG_RUNS]:
        if build_run_params(command, doc) is not None:
            sets.append(build_run_params(command, doc))
    return sets


def run_errors(command, validate, run_playbook, doc="README.md"):
    """Why a documented command is not one the tests run (the rule of this file's docstring); [] when it is."""
    playbook, options, names, files = parse_run(command)
    runs = e2e_runs()
    demo_playbook, demo_options, demo_names, demo_params = demo_command()
    errors = []
    if playbook not in runs and playbook != demo_playbook:
        errors.append("neither the e2e tests nor tools/demo.sh run %s" % playbook)
    if not options <= runner_options() | demo_options:
        errors.append("options the tests do not give: %s" % sorted(options - runner_options() - demo_options))
    if playbook == "build.yml":
        named = set(re.findall(r"examples/[\w/.-]+\.yml", "\n".join(p.read_text() for p in [DEMO, *E2E])))
        named.add(demo_params)
        if len(files) != 1 or files[0] not in named | {"params.yml"}:
            errors.append("-e @%s: give the docs' params.yml or an examples/ file the tests run" % files)
        if set(names) - set(demo_names):
            errors.append("-e %s: tools/demo.sh does not give it" % sorted(set(names) - set(demo_names)))
        if not errors:
            errors += validate(build_run_params(command, doc))
    elif playbook in runs:
        if frozenset(names) not in runs[playbook]:
            errors.append("-e %s: no e2e run of %s gives these" % (sorted(names), playbook))
        if files:
            errors.append("-e @file: the e2e runs of %s give -e NAME=VALUE" % playbook)
        if not errors:
            errors += run_playbook(playbook, names)
    return errors


@pytest.fixture(scope="module")
def run_playbook(tmp_path_factory):
    """Run playbooks/<playbook> with -e NAME=VALUE as written, with no AWS credentials and a closed loopback
    endpoint: [] when it passes its "Check the parameters" task."""
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        HOME=str(home),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_NOCOLOR="1",
        AWS_CONFIG_FILE=str(home / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )

    done = {}

    def run(playbook, names):
        key = (playbook, tuple(sorted(names.items())))
        if key not in done:
            done[key] = _run(playbook, names)
        return done[key]

    def _run(playbook, names):
        args = [str(BIN / "ansible-playbook"), str(ROOT / "playbooks" / playbook)]
        for name, value in names.items():
            args += ["-e", "%s=%s" % (name, value)]
        args += ["-e", "endpoint_url=http://127.0.0.1:9"]
        out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, check=False).stdout
        checked = out.split("TASK [Check the parameters]", 1)[-1].split("TASK [", 1)[0]
        return [] if "ok: [localhost]" in checked else ["%s fails its parameter check: %s" % (playbook, checked)]

    return run


def test_the_docs_run_the_playbooks_the_tests_run():
    assert {parse_run(p.values[0])[0] for p in documented_runs()} >= {"build.yml", "sweep.yml"}
    assert len(documented_runs()) >= 4
    assert frozenset({"cluster", "region"}) in e2e_runs()["sweep.yml"]
    assert runner_options() == {"-e"}
    assert demo_command()[0] == "build.yml"


@pytest.mark.parametrize("command, doc", documented_runs())
def test_each_documented_run_is_one_the_tests_run(command, doc, validate, run_playbook):
    assert run_errors(command, validate, run_playbook, doc) == []


WRONG_RUNS = [
    ("ansible-playbook buildfarm.ec2.sweep -e cluster=demo", "no e2e run of sweep.yml gives these"),
    ("ansible-playbook buildfarm.ec2.sweep -e cluster=demo -e region=", "sweep.yml fails its parameter check"),
    ("ansible-playbook -i hosts buildfarm.ec2.build -e @params.yml", "options the tests do not give: ['-i']"),
    ("ansible-playbook buildfarm.ec2.build -e @mine.yml", "give the docs' params.yml or an examples/ file"),
    ("ansible-playbook buildfarm.ec2.build -e @params.yml -e builders=0", "tools/demo.sh does not give it"),
    ("ansible-playbook playbooks/build.yml -e @params.yml -e ssh_cidr=0.0.0.0/0", "- ssh_cidr 0.0.0.0/0 opens"),
]


@pytest.mark.parametrize("command, error", WRONG_RUNS)
def test_a_command_the_tests_do_not_run_is_caught(command, error, validate, run_playbook):
    errors = run_errors(command, validate, run_playbook)
    assert len(errors) == 1 and error in errors[0], errors
