"""bin/buildfarm-build's forks: the launcher runs ansible-playbook with 50 forks unless the user says otherwise.

The launcher runs the ansible-playbook beside its Python: here a Python linked into a directory of the test, next
to a stand-in ansible-playbook that writes the arguments it got (no playbook runs, nothing is contacted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

STAND_IN = """#!/bin/sh
exec %s -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"
"""


@pytest.fixture
def launch(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    playbook = bindir / "ansible-playbook"
    playbook.write_text(STAND_IN % sys.executable)
    playbook.chmod(0o755)

    def run(args, **env):
        environ = {k: v for k, v in os.environ.items() if k != "ANSIBLE_FORKS"}
        proc = subprocess.run(
            [str(bindir / "python"), str(ROOT / "bin" / "buildfarm-build"), *args],
            env=dict(environ, **env),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return json.loads(proc.stdout)

    return run


def forks_of(argv):
    """The forks ansible-playbook would use: its -f/--forks options, the last one given wins (argparse)."""
    found = [argv[i + 1] for i, arg in enumerate(argv) if arg in ("-f", "--forks")]
    return found[-1] if found else None


def test_the_launcher_gives_fifty_forks(launch):
    argv = launch(["-e", "@params.yml"])
    assert argv[0] == "buildfarm.ec2.build" and forks_of(argv) == "50", argv
    assert argv[-2:] == ["-e", "@params.yml"]


def test_the_users_forks_win(launch):
    assert forks_of(launch(["-f", "7", "-e", "@params.yml"])) == "7"
    assert forks_of(launch(["--forks", "12"])) == "12"


def test_ansible_forks_in_the_environment_wins(launch):
    argv = launch(["-e", "@params.yml"], ANSIBLE_FORKS="9")
    assert forks_of(argv) is None, argv
