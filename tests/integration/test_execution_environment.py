"""The execution environment definition gives a valid ansible-builder build context.

Building the image itself needs a container registry (base image, Ansible Galaxy), which this machine does not
reach: the tests stop at ``ansible-builder create`` and check what the image build would get.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EE_FILES = ("execution-environment.yml", "requirements.yml", "requirements.txt", "bindep.txt")


def _run(cmd, **kwargs):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(kwargs.pop("collections", "/nonexistent")))
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, check=False, **kwargs)
    assert result.returncode == 0, "%s failed:\n%s\n%s" % (cmd, result.stdout, result.stderr)
    return result


def _lines(path):
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def ee(tmp_path_factory):
    """The EE files copied with their layout, the collection tarball as `make build` writes it, the context."""
    tmp = tmp_path_factory.mktemp("ee")
    for name in EE_FILES:
        shutil.copy(ROOT / name, tmp / name)
    _run([BIN / "ansible-galaxy", "collection", "build", "--force", "--output-path", tmp / "build" / "dist", ROOT])
    context = tmp / "context"
    _run(
        [
            BIN / "ansible-builder",
            "create",
            "--file",
            tmp / "execution-environment.yml",
            "--context",
            context,
            "--output-filename",
            "Containerfile",
        ]
    )
    return context


def test_definition_is_v3_with_a_placeholder_base_image():
    definition = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    assert definition["images"]["base_image"]["name"] == "buildfarm/ee-base:latest"
    assert definition["dependencies"]["galaxy"] == "requirements.yml"
    assert definition["dependencies"]["python"] == "requirements.txt"
    assert definition["dependencies"]["system"] == "bindep.txt"


def test_containerfile_takes_the_base_image_as_build_arg_and_installs_everything(ee):
    context = ee
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="buildfarm/ee-base:latest"' in containerfile
    assert "FROM $EE_BASE_IMAGE AS base" in containerfile
    assert "ansible-core==2.19.14" in containerfile
    assert "ansible-runner==2.4.3" in containerfile
    # Galaxy collections, then our own tarball, both into the path the final image copies.
    galaxy = containerfile.index('-r requirements.yml --collections-path "/usr/share/ansible/collections"')
    ours = containerfile.index("/build/collections/buildfarm-ec2-*.tar.gz")
    assert galaxy < ours < containerfile.index("# Builder build stage")
    assert "COPY _build/requirements.txt requirements.txt" in containerfile
    assert "COPY _build/bindep.txt bindep.txt" in containerfile
    assert "LABEL ansible-execution-environment=true" in containerfile


def test_build_context_holds_what_we_declared(ee):
    context = ee
    build = context / "_build"
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    names = {c["name"] for c in galaxy["collections"]}
    assert names == {"amazon.aws", "community.general", "ansible.posix"}
    assert _lines(build / "requirements.txt") == _lines(ROOT / "requirements.txt")
    assert any(re.match(r"boto3\b", line) for line in _lines(build / "requirements.txt"))
    assert _lines(build / "bindep.txt") == _lines(ROOT / "bindep.txt")
    (tarball,) = (build / "collections").glob("buildfarm-ec2-*.tar.gz")
    assert tarball.stat().st_size > 0


def test_galaxy_requirements_match_galaxy_yml_dependencies():
    galaxy_yml = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    requirements = {c["name"] for c in yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]}
    assert set(galaxy_yml["dependencies"]) <= requirements


def test_collection_metadata_is_introspected(ee, tmp_path):
    """ansible-builder's own introspection, run on the installed tarball, finds our Python and system deps."""
    context = ee
    collections = tmp_path / "collections"
    (tarball,) = (context / "_build" / "collections").glob("buildfarm-ec2-*.tar.gz")
    _run(
        [
            BIN / "ansible-galaxy",
            "collection",
            "install",
            "--force",
            "--offline",
            "--no-deps",
            "-p",
            collections,
            tarball,
        ],
        collections=collections,
    )
    assert (collections / "ansible_collections" / "buildfarm" / "ec2" / "meta" / "execution-environment.yml").is_file()
    out = _run([sys.executable, context / "_build" / "scripts" / "introspect.py", "introspect", collections])
    found = yaml.safe_load(out.stdout)
    assert "boto3>=1.34.0  # from collection buildfarm.ec2" in found["python"]
    assert "openssh-client [platform:dpkg]  # from collection buildfarm.ec2" in found["system"]
