"""Pure helpers of module_utils/artifacts.py: glob matching, prefix, file selection, one-pass hashing."""

from __future__ import annotations

import hashlib

import pytest

from ansible_collections.buildfarm.ec2.plugins.module_utils import artifacts


@pytest.mark.parametrize(
    "pattern, path, expected",
    [
        ("**/*", "a.txt", True),
        ("**/*", "d/e/a.txt", True),
        ("*.o", "a.o", True),
        ("*.o", "deep/dir/a.o", True),  # no '/': the name at any depth
        ("bin/*", "bin/app", True),
        ("bin/*", "bin/sub/app", False),  # '*' does not cross '/'
        ("bin/**", "bin/sub/app", True),
        ("**/lib/*.so", "lib/libfoo.so", True),
        ("**/lib/*.so", "x/y/lib/libfoo.so", True),
        ("lib/*.so", "x/lib/libfoo.so", False),  # with '/': anchored at the source directory
        ("file?.log", "file1.log", True),
        ("file?.log", "file10.log", False),
        ("[!a]*.txt", "b.txt", True),
        ("[!a]*.txt", "a.txt", False),
        ("a+b(1).txt", "a+b(1).txt", True),
    ],
)
def test_glob_to_regex(pattern, path, expected):
    assert bool(artifacts.glob_to_regex(pattern).match(path)) is expected


def test_prefix():
    assert artifacts.normalise_prefix(None, "demo", "r1") == "demo/r1/"
    assert artifacts.normalise_prefix("/a/b", "demo", None) == "a/b/"
    assert artifacts.normalise_prefix("", "demo", None) == ""
    with pytest.raises(artifacts.ArtifactError, match="run_id is required"):
        artifacts.normalise_prefix(None, "demo", None)


def test_select_files(tmp_path):
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "scratch.bin").write_bytes(b"x")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "app").write_bytes(b"app")
    (tmp_path / "bin" / "app.o").write_bytes(b"o")
    log = tmp_path.parent / ("%s.log" % tmp_path.name)
    log.write_text("log")
    files = artifacts.select_files(
        str(tmp_path), ["**/*"], ["tmp", "*.o"], [{"src": str(log), "dest": "logs/build.log"}], False
    )
    assert [f["name"] for f in files] == ["bin/app", "logs/build.log"]
    assert files[0]["size"] == 3
    with pytest.raises(artifacts.ArtifactError, match="would overwrite"):
        artifacts.select_files(str(tmp_path), ["**/*"], [], [{"src": str(log), "dest": "bin/app"}], False)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(artifacts.ArtifactError, match="reserved for the manifest"):
        artifacts.select_files(str(tmp_path), ["**/*"], [], [], False)


def test_hash_file_reads_once_and_keeps_small_files(tmp_path):
    data = bytes(range(256)) * 5000
    path = tmp_path / "f"
    path.write_bytes(data)
    sha, size, kept = artifacts.hash_file(str(path), len(data))
    assert (sha, size, kept) == (hashlib.sha256(data).hexdigest(), len(data), data)
    assert artifacts.hash_file(str(path), len(data) - 1)[2] is None
