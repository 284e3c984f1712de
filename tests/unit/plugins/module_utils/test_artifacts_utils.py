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


@pytest.mark.parametrize("old_s3transfer", [False, True])
def test_a_kept_file_is_one_put_that_s3_verifies_with_any_s3transfer(aws, old_s3transfer):
    """A kept (small) file goes in one PUT carrying its sha256. s3transfer before 0.11 (Debian 12's 0.6, on a build
    host) refuses ChecksumSHA256 in ExtraArgs: then botocore computes the sha256 itself (ChecksumAlgorithm) and S3
    stores the same checksum."""
    from s3transfer.manager import TransferConfig, TransferManager

    class OldTransferManager(TransferManager):
        ALLOWED_UPLOAD_ARGS = [a for a in TransferManager.ALLOWED_UPLOAD_ARGS if not a.startswith("Checksum")] + [
            "ChecksumAlgorithm"
        ]

    s3 = aws.client("s3")
    s3.create_bucket(Bucket="kept-files", CreateBucketConfiguration={"LocationConstraint": aws.region})
    data = b"int main(void) { return 0; }\n" * 100
    entry = {"key": "p/t.c", "name": "t.c", "sha256": hashlib.sha256(data).hexdigest()}
    sent = []
    s3.meta.events.register("before-send.s3.PutObject", lambda request, **kwargs: sent.append(dict(request.headers)))
    counter, slots = artifacts._Counter(), artifacts.threading.BoundedSemaphore(1)
    # released by the upload's subscriber
    slots.acquire()  # pylint: disable=consider-using-with
    with (OldTransferManager if old_s3transfer else TransferManager)(s3, TransferConfig()) as manager:
        artifacts.start_upload(manager, "kept-files", entry, data, {}, counter, slots).result()
    got = s3.get_object(Bucket="kept-files", Key="p/t.c", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and counter.value == len(data)
    checksum = artifacts.base64.b64encode(hashlib.sha256(data).digest()).decode()
    (headers,) = sent
    header = headers["x-amz-checksum-sha256"]
    assert (header.decode() if isinstance(header, bytes) else header) == checksum
    if old_s3transfer:  # botocore's own sha256 with its algorithm header: moto stores it (S3 verifies both ways)
        assert got["ChecksumSHA256"] == checksum
    assert got["Metadata"][artifacts.SHA256_META] == entry["sha256"]
