"""The Galaxy tarball holds the collection, not the developer's tools, venvs, caches or bench data."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_galaxy_build_excludes_dev_only_content(tmp_path):
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    subprocess.run(
        [str(galaxy), "collection", "build", "--force", "--output-path", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (tarball,) = tmp_path.glob("buildfarm-ec2-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "plugins/module_utils/tags.py" in names
    assert "meta/runtime.yml" in names
    forbidden = ("tools/", ".venv/", "build/", ".ci/", "bench/results/", ".pytest_cache/", "tests/output/")
    leaked = [n for n in names if n.startswith(forbidden) or "__pycache__" in n or n.endswith(".pyc")]
    assert leaked == []
