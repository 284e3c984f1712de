"""examples/fetch-debian-source.sh against the host's Debian mirror: the newest version it can serve, a pin, and a
refusal that says it is the mirror."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FETCH = ROOT / "examples" / "fetch-debian-source.sh"


def _fetch(spec, dest):
    return subprocess.run([str(FETCH), spec, str(dest)], capture_output=True, text=True, check=False)


def test_a_pinned_version_is_fetched_and_reported(tmp_path):
    listed = _fetch("zlib=0.0-does-not-exist", tmp_path)
    assert listed.returncode == 2, listed.stderr
    assert "is not listed by the mirror; it lists: " in listed.stderr
    versions = listed.stderr.rsplit("it lists: ", 1)[1].split()
    assert versions, listed.stderr
    oldest = versions[-1]
    pinned = _fetch("zlib=" + oldest, tmp_path)
    assert pinned.returncode == 0, pinned.stderr
    assert "zlib %s" % oldest in pinned.stderr
    src = Path(pinned.stdout.strip().splitlines()[-1])
    assert (src / "zlib.h").is_file()
    assert (tmp_path / ".versions" / "zlib").read_text().strip() == oldest


def test_an_unknown_package_is_the_mirrors_refusal(tmp_path):
    out = _fetch("no-such-source-package-buildfarm", tmp_path)
    assert out.returncode == 2
    assert "the mirror lists no source package 'no-such-source-package-buildfarm'" in out.stderr
    assert not (tmp_path / "no-such-source-package-buildfarm").exists()
