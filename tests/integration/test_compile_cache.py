"""buildfarm.ec2.compile_cache through ansible-playbook against the moto server (through the counting proxy of
tests/s3proxy.py, so a save that sends nothing is seen to send nothing)."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from tests.conftest import AWS_PLAY, free_port

BUCKET = "bf-cache"
TOOLCHAIN = "ab" * 32
KEY = "compile-cache/%s/ccache.tar" % TOOLCHAIN

PLAY = AWS_PLAY + """
    - name: Cache
      buildfarm.ec2.compile_cache:
        state: "{{ state | default('restore') }}"
        bucket: "{{ bucket }}"
        toolchain: "{{ toolchain | default('%s') }}"
        path: "{{ path }}"
        ccache: "{{ ccache | default(omit) }}"
        ccache_config: "{{ ccache_config | default(omit) }}"
      register: cache
""" % TOOLCHAIN


@pytest.fixture
def s3(aws):
    client = aws.client("s3")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region})
    return client


def _fill(path):
    """A ccache directory as ccache 4 lays it out: entries in two-level subdirectories, per-directory stats
    files, locks and a tmp directory (the last three are not cache content)."""
    for rel, size in [("a/b/0abcR", 3000), ("a/b/0abcM", 200), ("c/d/1cdeR", 5000)]:
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(os.urandom(size))
    (path / "a" / "stats").write_text("0 1 2\n")
    (path / "a" / "b" / "0abcR.lock").write_text("")
    (path / "tmp").mkdir()
    (path / "tmp" / "scratch.tmp").write_bytes(b"x" * 100)
    return {"a/b/0abcR", "a/b/0abcM", "c/d/1cdeR"}


def _tree(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _put(s3, data):
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=data)


def test_first_restore_finds_nothing_save_then_restore_on_another_node(s3, proxy, tmp_path, run_play):
    first = tmp_path / "first"
    cold = run_play(PLAY, extra_vars=dict(endpoint=proxy.url, bucket=BUCKET, path=str(first))).task("Cache")
    assert cold["restored"] is False and cold["changed"] is False and "no cache at s3://" in cold["reason"]
    assert cold["cache_warnings"] == []  # a first run has no cache: that is not a problem worth a warning
    assert first.is_dir() and not any(first.iterdir())

    entries = _fill(first)
    saved = run_play(PLAY, extra_vars=dict(endpoint=proxy.url, bucket=BUCKET, path=str(first), state="save"))
    saved = saved.task("Cache")
    assert saved["saved"] is True and saved["changed"] is True and saved["files"] == 3 and saved["key"] == KEY
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())) as tar:
        assert {m.name for m in tar.getmembers()} == entries  # no stats, locks or tmp

    # Nothing new: the object's entries digest matches, no byte is sent.
    proxy.reset()
    again = run_play(PLAY, extra_vars=dict(endpoint=proxy.url, bucket=BUCKET, path=str(first), state="save"))
    again = again.task("Cache")
    assert again["changed"] is False and again["unchanged"] is True and again["saved"] is False
    assert proxy.writes() == []

    # Another (fresh) node: a stale directory is replaced by exactly the saved entries.
    second = tmp_path / "second"
    (second / "old").mkdir(parents=True)
    (second / "old" / "stale").write_text("stale")
    warm = run_play(PLAY, extra_vars=dict(endpoint=proxy.url, bucket=BUCKET, path=str(second))).task("Cache")
    assert warm["restored"] is True and warm["changed"] is True and warm["files"] == 3
    assert _tree(second) == {rel: (first / rel).read_bytes() for rel in entries}

    # A new entry changes the digest: the next save uploads.
    (second / "e" / "f").mkdir(parents=True)
    (second / "e" / "f" / "2efgR").write_bytes(b"new")
    grown = run_play(PLAY, extra_vars=dict(endpoint=proxy.url, bucket=BUCKET, path=str(second), state="save"))
    assert grown.task("Cache")["saved"] is True and grown.task("Cache")["files"] == 4


def test_check_mode_changes_nothing(s3, proxy, tmp_path, run_play):
    path = tmp_path / "cache"
    path.mkdir()
    _fill(path)
    before = _tree(path)
    would = run_play(
        PLAY, extra_vars=dict(endpoint=proxy.url, bucket=BUCKET, path=str(path), state="save"), check=True
    ).task("Cache")
    assert would["changed"] is True and would["saved"] is False and "would save 3 files" in would["reason"]
    assert proxy.writes() == [] and "Contents" not in s3.list_objects_v2(Bucket=BUCKET)

    _put(s3, b"whatever")
    other = tmp_path / "other"
    (other / "keep").mkdir(parents=True)
    would = run_play(PLAY, extra_vars=dict(endpoint=proxy.url, bucket=BUCKET, path=str(other)), check=True)
    assert would.task("Cache")["changed"] is True and would.task("Cache")["restored"] is False
    assert (other / "keep").is_dir() and _tree(path) == before


@pytest.mark.parametrize(
    "kind",
    ["garbage", "symlink", "escape", "absolute"],
)
def test_a_corrupt_or_unsafe_archive_degrades_to_an_empty_cache(s3, proxy, tmp_path, run_play, kind):
    if kind == "garbage":
        data = os.urandom(4096)
    else:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            member = tarfile.TarInfo({"symlink": "a/link", "escape": "../outside", "absolute": "/tmp/abs"}[kind])
            if kind == "symlink":
                member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(member)
            else:
                member.size = 4
                tar.addfile(member, io.BytesIO(b"evil"))
        data = buf.getvalue()
    _put(s3, data)
    path = tmp_path / "nest" / "cache"
    path.mkdir(parents=True)
    (path / "old").write_text("old")
    result = run_play(PLAY, extra_vars=dict(endpoint=proxy.url, bucket=BUCKET, path=str(path))).task("Cache")
    assert result["restored"] is False and result.get("failed") is not True
    assert "is corrupt" in result["reason"] and "building without it" in result["reason"]
    assert any("is corrupt" in w for w in result["warnings"]) and result["cache_warnings"] == [result["reason"]]
    assert path.is_dir() and not any(path.iterdir())
    assert not (tmp_path / "nest" / "outside").exists() and not (tmp_path / "outside").exists()
    assert sorted(p.name for p in (tmp_path / "nest").iterdir()) == ["cache"]  # no scratch left


def test_an_unreachable_cache_warns_and_never_fails(tmp_path, run_play, aws):
    dead = "http://127.0.0.1:%d" % free_port()  # nothing listens there
    path = tmp_path / "cache"
    restore = run_play(PLAY, extra_vars=dict(endpoint=dead, bucket=BUCKET, path=str(path))).task("Cache")
    assert restore["restored"] is False and "unreachable" in restore["reason"]
    assert any("building without it" in w for w in restore["warnings"]) and restore["cache_warnings"]
    _fill(path)
    save = run_play(PLAY, extra_vars=dict(endpoint=dead, bucket=BUCKET, path=str(path), state="save")).task("Cache")
    assert save["saved"] is False and "unreachable" in save["reason"] and save["cache_warnings"]


def test_counters_from_ccache_and_bad_options(s3, proxy, tmp_path, run_play):
    fake = tmp_path / "ccache"  # ccache's --print-stats format (tab-separated); the real one runs in the e2e test
    fake.write_text(
        "#!/bin/sh\n"
        '[ "$1" = --print-stats ] && [ "$CCACHE_CONFIGPATH" = %s ] || exit 3\n'
        "printf 'direct_cache_hit\\t20\\npreprocessed_cache_hit\\t5\\ncache_miss\\t25\\n"
        "cache_size_kibibyte\\t300\\nfiles_in_cache\\t50\\nstats_updated_timestamp\\t1700000000\\n'\n"
        % (tmp_path / "ccache.conf")
    )
    fake.chmod(0o755)
    stats = run_play(
        PLAY,
        extra_vars=dict(
            endpoint=proxy.url,
            bucket=BUCKET,
            path=str(tmp_path / "c"),
            state="stats",
            ccache=str(fake),
            ccache_config=str(tmp_path / "ccache.conf"),
        ),
    ).task("Cache")
    assert stats["stats"] == {"hits": 25, "misses": 25, "hit_rate": 0.5, "size_bytes": 300 * 1024, "files": 50}
    assert stats["changed"] is False

    bad = run_play(
        PLAY, extra_vars=dict(endpoint=proxy.url, bucket=BUCKET, path=str(tmp_path), toolchain="gcc-12"), expect_rc=2
    ).task("Cache")
    assert bad["failed"] and "toolchain must be a sha256" in bad["msg"]
