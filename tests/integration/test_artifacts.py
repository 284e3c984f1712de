"""buildfarm.ec2.artifacts through ansible-playbook against the moto server.

Requests are counted by a small reverse proxy on loopback in front of moto (written below): the module talks
to the proxy, the test checks the objects with boto3 directly against moto.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest

from tests.conftest import AWS_PLAY, enforced_auth, iam_user, shipped_policy_actions

BUCKET = "bf-artifacts"
PREFIX = "demo/r1/"

PLAY = AWS_PLAY + """
    - name: Push
      buildfarm.ec2.artifacts:
        cluster: demo
        run_id: r1
        bucket: "{{ bucket }}"
        src: "{{ src }}"
        include: "{{ include | default(omit) }}"
        exclude: "{{ exclude | default(omit) }}"
        extra_files: "{{ extra_files | default(omit) }}"
        delete_extra: "{{ delete_extra | default(false) }}"
        allow_empty: "{{ allow_empty | default(false) }}"
        encryption: "{{ encryption | default(omit) }}"
        storage_class: "{{ storage_class | default(omit) }}"
        presign: "{{ presign | default(false) }}"
        metadata: "{{ metadata | default(omit) }}"
        multipart_threshold: 5242880
        multipart_chunksize: 5242880
        compare: "{{ compare | default(omit) }}"
"""


@pytest.fixture
def s3(aws):
    client = aws.client("s3")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region})
    return client


@pytest.fixture
def outputs(tmp_path):
    src = tmp_path / "out"
    (src / "bin").mkdir(parents=True)
    (src / "lib").mkdir()
    (src / "obj").mkdir()
    (src / "bin" / "app").write_bytes(os.urandom(200_000))
    (src / "lib" / "libfoo.so").write_bytes(os.urandom(50_000))
    (src / "README.txt").write_text("hello\n")
    (src / "obj" / "main.o").write_bytes(b"object code")
    (src / "lib" / "foo.o").write_bytes(b"more object code")
    return src


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _objects(s3, prefix=PREFIX):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"]: o for page in pages for o in page.get("Contents", [])}


def _manifest(s3, key=PREFIX + "manifest.json"):
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _vars(proxy, src, **kw):
    return dict(endpoint=proxy.url, bucket=BUCKET, src=str(src), **kw)


def test_push_manifest_and_unchanged_repush(s3, proxy, outputs, tmp_path, run_play):
    log = tmp_path / "build.log"
    log.write_text("compiling...\nok\n")
    extra = [{"src": str(log)}, {"src": str(log), "dest": "report/log-copy.txt"}]
    variables = _vars(proxy, outputs, exclude=["*.o"], extra_files=extra, metadata={"status": "success", "jobs": 24})

    first = run_play(PLAY, extra_vars=variables).task("Push")
    names = ["README.txt", "bin/app", "build.log", "lib/libfoo.so", "report/log-copy.txt"]
    assert first["changed"] is True
    assert first["uploaded"] == 5 and first["unchanged"] == 0
    assert first["bytes_uploaded"] == sum(os.path.getsize(o) for o in [log, log]) + 200_000 + 50_000 + 6
    assert first["manifest_key"] == PREFIX + "manifest.json"
    assert [o["key"] for o in first["objects"]] == [PREFIX + n for n in names]

    stored = _objects(s3)
    assert sorted(stored) == sorted([PREFIX + n for n in names] + [PREFIX + "manifest.json"])
    assert not any(k.endswith(".o") for k in stored)  # excludes honoured
    manifest = _manifest(s3)
    assert manifest["status"] == "success" and manifest["jobs"] == 24
    assert manifest["cluster"] == "demo" and manifest["run_id"] == "r1" and manifest["count"] == 5
    assert manifest["started_at"] <= manifest["finished_at"]
    for entry in manifest["objects"]:
        obj = s3.get_object(Bucket=BUCKET, Key=entry["key"])
        data = obj["Body"].read()
        assert _sha(data) == entry["sha256"] == obj["Metadata"]["sha256"]
        assert len(data) == entry["size"]
        assert obj["ServerSideEncryption"] == "AES256"
        # Small files go in one PUT carrying our sha256 as the S3 checksum, which S3 verifies (moto does not).
        (put,) = [r for r in proxy.writes() if r[1].split("?")[0] == "/%s/%s" % (BUCKET, entry["key"])]
        assert base64.b64decode(put[3]["x-amz-checksum-sha256"]).hex() == entry["sha256"]
        # ... so the body is not hashed once more for the signature, even on this http endpoint.
        assert put[3]["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        # The ETag recorded is the one S3 gave the object (taken from the PUT response, not a second listing).
        assert entry["etag"] == stored[entry["key"]]["ETag"]
    assert len([r for r in proxy.requests if r[0] == "GET" and "list-type=2" in r[1]]) == 1
    # The manifest is the last object written, and carries its own checksum.
    assert proxy.writes()[-1][1].split("?")[0].endswith("/manifest.json")
    assert "x-amz-checksum-sha256" in proxy.writes()[-1][3]

    before = {k: (o["ETag"], o["LastModified"]) for k, o in _objects(s3).items()}
    proxy.reset()
    again = run_play(PLAY, extra_vars=variables).task("Push")
    assert again["changed"] is False
    assert again["uploaded"] == 0 and again["bytes_uploaded"] == 0 and again["unchanged"] == 5
    assert again["manifest_written"] is False
    assert proxy.writes() == []  # not one PUT/POST reached S3
    assert sum(r[2] for r in proxy.requests) == 0
    assert {k: (o["ETag"], o["LastModified"]) for k, o in _objects(s3).items()} == before


def test_changed_file_is_resent_alone(s3, proxy, outputs, run_play):
    variables = _vars(proxy, outputs)
    run_play(PLAY, extra_vars=variables)
    app = (outputs / "bin" / "app").read_bytes()
    changed = app[:-1] + bytes([app[-1] ^ 0xFF])  # same size, other content
    (outputs / "bin" / "app").write_bytes(changed)
    proxy.reset()

    result = run_play(PLAY, extra_vars=variables).task("Push")
    assert result["changed"] is True
    assert result["uploaded"] == 1 and result["unchanged"] == 4
    assert result["bytes_uploaded"] == len(changed)
    puts = [r[1].split("?")[0] for r in proxy.writes()]
    assert puts == ["/%s/%sbin/app" % (BUCKET, PREFIX), "/%s/%smanifest.json" % (BUCKET, PREFIX)]
    stored = s3.get_object(Bucket=BUCKET, Key=PREFIX + "bin/app")
    assert _sha(stored["Body"].read()) == _sha(changed) == stored["Metadata"]["sha256"]
    entry = {o["key"]: o for o in _manifest(s3)["objects"]}[PREFIX + "bin/app"]
    assert entry["sha256"] == _sha(changed)


def test_size_mtime_reads_only_files_the_manifest_cannot_vouch_for(s3, proxy, outputs, run_play):
    trusting = _vars(proxy, outputs, compare="size_mtime")
    run_play(PLAY, extra_vars=trusting)
    recorded = {o["name"]: o["mtime_ns"] for o in _manifest(s3)["objects"]}
    files = [p for p in outputs.rglob("*") if p.is_file()]
    assert recorded == {p.relative_to(outputs).as_posix(): p.stat().st_mtime_ns for p in files}

    # Same size, same mtime, other content: not read under size_mtime (the documented trade-off); sha256 sees it.
    app = outputs / "bin" / "app"
    old = app.read_bytes()
    before = app.stat()
    app.write_bytes(old[:-1] + bytes([old[-1] ^ 0xFF]))
    os.utime(app, ns=(before.st_atime_ns, before.st_mtime_ns))
    proxy.reset()
    trusted = run_play(PLAY, extra_vars=trusting).task("Push")
    assert trusted["changed"] is False and trusted["uploaded"] == 0 and proxy.writes() == []
    assert {o["key"]: o["sha256"] for o in trusted["objects"]}[PREFIX + "bin/app"] == _sha(old)  # the recorded one
    hashed = run_play(PLAY, extra_vars=_vars(proxy, outputs)).task("Push")
    assert hashed["uploaded"] == 1 and "mtime_ns" not in _manifest(s3)["objects"][0]

    # A touched file (new mtime, same content) is read again, not re-sent; the manifest records the new mtime.
    run_play(PLAY, extra_vars=trusting)
    readme = outputs / "README.txt"
    os.utime(readme, ns=(readme.stat().st_atime_ns, readme.stat().st_mtime_ns + 5_000_000_000))
    proxy.reset()
    touched = run_play(PLAY, extra_vars=trusting).task("Push")
    assert touched["uploaded"] == 0 and touched["unchanged"] == 5
    assert [r[1].split("?")[0] for r in proxy.writes()] == ["/%s/%smanifest.json" % (BUCKET, PREFIX)]
    entry = {o["name"]: o for o in _manifest(s3)["objects"]}["README.txt"]
    assert entry["mtime_ns"] == readme.stat().st_mtime_ns and entry["sha256"] == _sha(b"hello\n")


def test_object_changed_behind_the_manifest_is_resent(s3, proxy, outputs, run_play):
    variables = _vars(proxy, outputs)
    run_play(PLAY, extra_vars=variables)
    # Someone overwrites an object with other bytes (manifest and metadata now lie about it).
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "README.txt", Body=b"HELLO\n", Metadata={"sha256": "0" * 64})
    result = run_play(PLAY, extra_vars=variables).task("Push")
    assert result["uploaded"] == 1
    assert s3.get_object(Bucket=BUCKET, Key=PREFIX + "README.txt")["Body"].read() == b"hello\n"


def test_large_file_goes_multipart(s3, proxy, tmp_path, run_play):
    src = tmp_path / "big"
    src.mkdir()
    data = os.urandom(20 * 1024 * 1024)
    (src / "image.bin").write_bytes(data)
    result = run_play(PLAY, extra_vars=_vars(proxy, src, encryption="aws:kms")).task("Push")
    assert result["uploaded"] == 1 and result["bytes_uploaded"] == len(data)
    head = s3.head_object(Bucket=BUCKET, Key=PREFIX + "image.bin")
    assert head["ETag"].strip('"').endswith("-4")  # 20 MiB in 5 MiB parts
    assert head["Metadata"]["sha256"] == _sha(data)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["ContentLength"] == len(data)
    part_uploads = [r for r in proxy.writes() if "partNumber=" in r[1]]
    assert len(part_uploads) == 4
    assert all(r[3].get("x-amz-checksum-crc32") for r in part_uploads)  # S3 verifies every part
    assert _manifest(s3)["objects"][0]["etag"] == head["ETag"]
    stored = s3.get_object(Bucket=BUCKET, Key=PREFIX + "image.bin")["Body"].read()
    assert _sha(stored) == _sha(data)


def test_check_mode_sends_nothing(s3, proxy, outputs, run_play):
    result = run_play(PLAY, extra_vars=_vars(proxy, outputs), check=True).task("Push")
    assert result["changed"] is True
    assert result["uploaded"] == 5 and result["bytes_uploaded"] == 0
    assert result["bytes_to_upload"] == sum(p.stat().st_size for p in outputs.rglob("*") if p.is_file())
    assert proxy.writes() == []
    assert _objects(s3) == {}

    run_play(PLAY, extra_vars=_vars(proxy, outputs))
    (outputs / "README.txt").write_text("changed\n")
    proxy.reset()
    result = run_play(PLAY, extra_vars=_vars(proxy, outputs), check=True).task("Push")
    assert result["changed"] is True and result["uploaded"] == 1 and result["unchanged"] == 4
    assert proxy.writes() == []


def test_delete_extra_and_presign(s3, proxy, outputs, run_play):
    run_play(PLAY, extra_vars=_vars(proxy, outputs))
    s3.put_object(Bucket=BUCKET, Key="other/keep.txt", Body=b"x")
    (outputs / "README.txt").unlink()

    kept = run_play(PLAY, extra_vars=_vars(proxy, outputs)).task("Push")
    assert kept["deleted"] == 0 and PREFIX + "README.txt" in _objects(s3)

    checked = run_play(PLAY, extra_vars=_vars(proxy, outputs, delete_extra=True), check=True).task("Push")
    assert checked["deleted_keys"] == [PREFIX + "README.txt"] and PREFIX + "README.txt" in _objects(s3)

    result = run_play(PLAY, extra_vars=_vars(proxy, outputs, delete_extra=True, presign=True)).task("Push")
    assert result["deleted_keys"] == [PREFIX + "README.txt"]
    assert PREFIX + "README.txt" not in _objects(s3)
    assert "other/keep.txt" in _objects(s3, prefix="")
    assert PREFIX + "README.txt" not in {o["key"] for o in _manifest(s3)["objects"]}
    url = result["presigned_urls"][PREFIX + "bin/app"]
    assert "Signature=" in url or "X-Amz-Signature=" in url


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_bucket", "bucket bf-missing does not exist"),
        ("no_src", "does not exist"),
        ("empty_dir", "nothing to push"),
        ("glob_matches_nothing", "'*.tar.gz' match no file"),
        ("all_excluded", "nothing to push"),
    ],
)
def test_bad_inputs_fail_before_upload(s3, proxy, outputs, tmp_path, run_play, case, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    variables = {
        "no_bucket": dict(_vars(proxy, outputs), bucket="bf-missing"),
        "no_src": _vars(proxy, tmp_path / "missing"),
        "empty_dir": _vars(proxy, empty),
        "glob_matches_nothing": _vars(proxy, outputs, include=["**/*.txt", "*.tar.gz"]),
        "all_excluded": _vars(proxy, outputs, exclude=["*"]),
    }[case]
    result = run_play(PLAY, extra_vars=variables, expect_rc=2).task("Push")
    assert result["failed"] is True
    assert message in result["msg"]
    assert proxy.writes() == []
    assert _objects(s3, prefix="") == {}


def test_access_denied_fails_before_upload(s3, proxy, outputs, run_play):
    proxy.deny_all = True
    result = run_play(PLAY, extra_vars=_vars(proxy, outputs), expect_rc=2).task("Push")
    assert "access denied to bucket bf-artifacts" in result["msg"]
    assert proxy.writes() == [] and _objects(s3, prefix="") == {}


def test_allow_empty_writes_an_empty_manifest(s3, proxy, tmp_path, run_play):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_play(PLAY, extra_vars=_vars(proxy, empty, allow_empty=True)).task("Push")
    assert result["changed"] is True and result["uploaded"] == 0
    assert _manifest(s3)["objects"] == [] and _manifest(s3)["count"] == 0


def test_failed_upload_leaves_no_manifest(s3, proxy, outputs, run_play):
    run_play(PLAY, extra_vars=_vars(proxy, outputs))
    assert PREFIX + "manifest.json" in _objects(s3)
    (outputs / "new.bin").write_bytes(b"new")
    # The proxy refuses the new object's PUT: that upload fails after the old manifest was removed.
    proxy.deny.add("/%s/%snew.bin" % (BUCKET, PREFIX))
    result = run_play(PLAY, extra_vars=_vars(proxy, outputs), expect_rc=2).task("Push")
    assert "no manifest was written" in result["msg"]
    assert PREFIX + "manifest.json" not in _objects(s3)


def test_shipped_iam_policy_pushes_and_a_denied_put_leaves_no_manifest(aws, s3, proxy, outputs, run_play):
    """On a server that checks credentials and IAM policies: the S3 actions of docs/iam-policy.json push (single
    PUTs and a multipart upload) and re-push; without s3:PutObject a push fails and no manifest claims success."""
    (outputs / "big.bin").write_bytes(os.urandom(6 * 1024 * 1024))  # above the 5 MiB threshold: multipart
    shipped = iam_user(aws, "pusher", shipped_policy_actions("s3"))
    no_put = iam_user(aws, "no-put", shipped_policy_actions("s3") - {"s3:PutObject"})
    with enforced_auth(aws.endpoint):
        first = run_play(PLAY, extra_vars=_vars(proxy, outputs), env=shipped).task("Push")
        again = run_play(PLAY, extra_vars=_vars(proxy, outputs), env=shipped).task("Push")
    assert first["changed"] and not again["changed"]
    assert _manifest(s3)["count"] == 6
    (outputs / "README.txt").write_text("changed\n")
    with enforced_auth(aws.endpoint):
        denied = run_play(PLAY, extra_vars=_vars(proxy, outputs), env=no_put, expect_rc=2).task("Push")
    assert "(AccessDenied) when calling the PutObject operation" in denied["msg"]
    assert "no manifest was written" in denied["msg"]
    assert PREFIX + "manifest.json" not in _objects(s3)
    assert s3.get_object(Bucket=BUCKET, Key=PREFIX + "README.txt")["Body"].read() == b"hello\n"  # not replaced
