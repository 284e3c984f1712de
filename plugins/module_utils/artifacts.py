# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Push a build's outputs to S3: select files, hash them once, skip what is already there, upload the rest
with s3transfer, delete extras on request, and write ``manifest.json`` last.

:func:`push` runs these stages in order (so that a failure never leaves a manifest claiming success):

1. Select (:func:`push_settings`, :func:`select_files`, :func:`list_remote`): validate everything that can be
   validated without sending data: options, source directory, globs, extra files, key collisions, the listing
   of the prefix (bucket exists, access). Errors raise :class:`ArtifactError`.
2. Hash (:func:`prepare_file`, fed by :func:`hashed_in_order`): every selected file is hashed in one read
   (sha256). A file is skipped when the object under its key already carries the same sha256
   (``x-amz-meta-sha256``). The previous manifest (one GET) records each object's ETag and sha256; when the
   listed ETag still matches, no HEAD is needed. Otherwise a HEAD per candidate (same size) decides. With
   ``compare: size_mtime`` a file whose size and mtime are the ones the previous manifest recorded (and whose
   object kept its ETag) is not read at all: it keeps the recorded sha256.
3. Upload (:func:`send_files`, :func:`start_upload`), pipelined with the hashing: files below
   ``multipart_threshold`` keep their bytes in memory and are uploaded from them in one PUT with
   ``ChecksumSHA256`` (S3 verifies the body against the hash), so they are read exactly once; larger files
   are streamed from disk by s3transfer (multipart, parallel parts, a CRC32 per part) after the hashing
   pass. Every request body carries a checksum, so the client does not sign payloads (see
   ``aws.s3_client``); the ETags come from the upload responses, not from a second listing.
4. Manifest (:func:`delete_old_manifest`, :func:`delete_keys`, :func:`build_manifest`,
   :func:`write_manifest`): before the first upload or delete, a previous ``manifest.json`` is deleted; extras
   are deleted on request; the new manifest is written only after every upload (and delete) succeeded. An
   unchanged push keeps the old manifest and sends nothing.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime
import functools
import hashlib
import io
import json
import mimetypes
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

try:
    import botocore
    from boto3.s3.transfer import TransferConfig, create_transfer_manager
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.buildfarm.ec2.plugins.module_utils.aws import error_code, paginate

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
SHA256_META = "sha256"
MiB = 1024 * 1024
READ_BLOCK = MiB
# Fields of the manifest that change on every push and are ignored when deciding whether it changed.
VOLATILE_MANIFEST_KEYS = ("started_at", "finished_at")
RESERVED_MANIFEST_KEYS = (
    "schema",
    "bucket",
    "prefix",
    "cluster",
    "run_id",
    "objects",
    "count",
    "total_size",
) + VOLATILE_MANIFEST_KEYS


class ArtifactError(Exception):
    """A clear, user-facing error (bad input, missing bucket, failed upload)."""


# ---------------------------------------------------------------------------------------------- selection


def glob_to_regex(pattern):
    """Compile a glob matched against a path relative to the source directory (``/`` separated).

    ``*`` and ``?`` never cross ``/``; ``**`` crosses directories (``**/`` also matches no directory);
    ``[...]`` is a character class (``[!...]`` negated). A pattern without ``/`` matches the file or directory
    name at any depth, as in rsync and .gitignore.
    """
    pattern = pattern.strip()
    if pattern.startswith("./"):
        pattern = pattern[2:]
    anchored = "/" in pattern.rstrip("/")
    pattern = pattern.strip("/")
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if j == -1:
                out.append(re.escape(c))
                i += 1
                continue
            body = pattern[i + 1 : j]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    regex = "".join(out)
    if not anchored:
        regex = "(?:.*/)?" + regex
    return re.compile("^" + regex + "$")


def _matches(relpath, regexes):
    return [r for r in regexes if r.match(relpath)]


def normalise_prefix(prefix, cluster, run_id):
    """The key prefix: ``prefix`` as given (no leading ``/``, one trailing ``/`` unless empty) or
    ``<cluster>/<run_id>/``."""
    if prefix is None:
        if not run_id:
            raise ArtifactError(
                "run_id is required when prefix is not given (the default prefix is <cluster>/<run_id>/)"
            )
        prefix = "%s/%s/" % (cluster, run_id)
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix


def select_files(src, include, exclude, extra_files, allow_empty):
    """Local files to push as a sorted list of dicts ``{name, path, size}`` (``name`` is the key below the
    prefix). Raises ArtifactError for a missing source, an include glob that matches nothing, or an empty
    selection (unless ``allow_empty``), a missing extra file and duplicate names."""
    include_re = [(p, glob_to_regex(p)) for p in (include or ["**/*"])]
    exclude_re = [glob_to_regex(p) for p in (exclude or [])]
    selected = {}
    matched = set()
    if src is not None:
        if not os.path.exists(src):
            raise ArtifactError("source directory %s does not exist" % src)
        if not os.path.isdir(src):
            raise ArtifactError("source %s is not a directory" % src)
        for root, dirs, files in os.walk(src):
            rel_root = os.path.relpath(root, src)
            rel_root = "" if rel_root == "." else rel_root.replace(os.sep, "/") + "/"
            # An excluded directory is not entered at all.
            dirs[:] = sorted(d for d in dirs if not _matches(rel_root + d, exclude_re))
            for name in sorted(files):
                rel = rel_root + name
                path = os.path.join(root, name)
                if not os.path.isfile(path):  # broken symlink, socket, ...
                    continue
                hits = [p for p, r in include_re if r.match(rel)]
                if not hits:
                    continue
                matched.update(hits)
                if _matches(rel, exclude_re):
                    continue
                selected[rel] = dict(name=rel, path=path, size=os.path.getsize(path))
        if not allow_empty:
            if not selected:
                raise ArtifactError(
                    "nothing to push: %s has no file matching include %s and not matching exclude %s "
                    "(set allow_empty to push anyway)" % (src, list(include or ["**/*"]), list(exclude or []))
                )
            unmatched = [p for p, _r in include_re if p not in matched]
            if unmatched:
                raise ArtifactError(
                    "include glob(s) %s match no file in %s" % (", ".join(repr(p) for p in unmatched), src)
                )
    for extra in extra_files or []:
        path = extra["src"]
        if not os.path.isfile(path):
            raise ArtifactError("extra file %s does not exist or is not a file" % path)
        name = (extra.get("dest") or os.path.basename(path)).lstrip("/")
        if name in selected:
            raise ArtifactError("extra file %s would overwrite %s from the source directory" % (path, name))
        selected[name] = dict(name=name, path=path, size=os.path.getsize(path))
    if MANIFEST_NAME in selected:
        raise ArtifactError("%s is reserved for the manifest; exclude it or rename it" % MANIFEST_NAME)
    if not selected and not allow_empty:
        raise ArtifactError("nothing to push (set allow_empty to push an empty manifest)")
    return [selected[k] for k in sorted(selected)]


def hash_file(path, keep_limit):
    """sha256 and size of ``path`` in one read; the bytes too when the file is at most ``keep_limit``."""
    digest = hashlib.sha256()
    size = 0
    keep = os.path.getsize(path) <= keep_limit
    chunks = [] if keep else None
    with open(path, "rb") as f:
        while True:
            block = f.read(READ_BLOCK)
            if not block:
                break
            digest.update(block)
            size += len(block)
            if keep:
                chunks.append(block)
    data = b"".join(chunks) if keep else None
    return digest.hexdigest(), size, data


# ---------------------------------------------------------------------------------------------- remote side


def list_remote(s3, bucket, prefix):
    """``{key: {size, etag}}`` of the objects under ``prefix``; the listing is also the check that the bucket
    exists and that these credentials may read it (no separate HeadBucket)."""
    try:
        contents = paginate(s3, "list_objects_v2", "Contents", Bucket=bucket, Prefix=prefix)
    except botocore.exceptions.ClientError as e:
        code = error_code(e)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise ArtifactError("bucket %s does not exist" % bucket) from None
        if code in ("403", "AccessDenied", "Forbidden"):
            raise ArtifactError(
                "access denied to bucket %s listing s3://%s/%s (check credentials, their IAM policy: "
                "s3:ListBucket, and the bucket policy)" % (bucket, bucket, prefix)
            ) from None
        raise
    return {obj["Key"]: dict(size=obj["Size"], etag=obj["ETag"]) for obj in contents}


def read_manifest(s3, bucket, key):
    """The manifest stored under ``key`` as a dict, or None (missing or unreadable)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key, aws_retry=True)["Body"].read()
        manifest = json.loads(body)
    except (botocore.exceptions.ClientError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def manifest_records(manifest):
    """The previous manifest's object records by key; only those with an ETag can vouch for an object."""
    records = {}
    for obj in (manifest or {}).get("objects", []):
        if isinstance(obj, dict) and obj.get("key") and obj.get("etag"):
            records[obj["key"]] = obj
    return records


def remote_sha256(s3, bucket, key):
    """The sha256 stored in the object's metadata (None when missing)."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key, aws_retry=True)
    except botocore.exceptions.ClientError as e:
        if error_code(e) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head.get("Metadata", {}).get(SHA256_META)


def object_url(endpoint, region, bucket, key):
    """An https URL for the object (virtual-hosted on AWS, path-style on another endpoint)."""
    path = quote(key, safe="/~")
    if endpoint and "amazonaws.com" not in endpoint:
        return "%s/%s/%s" % (endpoint.rstrip("/"), bucket, path)
    return "https://%s.s3.%s.amazonaws.com/%s" % (bucket, region or "us-east-1", path)


def upload_extra_args(params, sha256, name):
    """ExtraArgs for put/upload: sha256 metadata, content type, storage class, server-side encryption."""
    args = dict(Metadata={SHA256_META: sha256})
    content_type = mimetypes.guess_type(name)[0]
    args["ContentType"] = content_type or "application/octet-stream"
    if params.get("storage_class"):
        args["StorageClass"] = params["storage_class"]
    encryption = params.get("encryption") or "AES256"
    if encryption != "none":
        args["ServerSideEncryption"] = encryption
        if encryption == "aws:kms" and params.get("kms_key_id"):
            args["SSEKMSKeyId"] = params["kms_key_id"]
    return args


def raw_client(s3):
    """The boto3 client behind amazon.aws's retrying wrapper: the one s3transfer drives and presigning uses."""
    return getattr(s3, "client", s3)


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _manifest_object(entry):
    """An object's record in the manifest (its file's mtime only under ``compare: size_mtime``)."""
    return {k: entry[k] for k in ("key", "name", "size", "sha256", "etag", "mtime_ns") if k in entry}


def _canonical(manifest):
    return {k: v for k, v in (manifest or {}).items() if k not in VOLATILE_MANIFEST_KEYS}


class _Counter:
    """Thread-safe byte counter fed by s3transfer progress callbacks."""

    def __init__(self):
        self.lock = threading.Lock()
        self.value = 0

    def add(self, amount):
        with self.lock:
            self.value += amount


class _ETags:
    """While in use as a context manager, records the ETag of every object this client writes (from the
    PutObject / CompleteMultipartUpload responses), so the manifest needs no second listing of the prefix."""

    EVENTS = ("PutObject", "CompleteMultipartUpload")

    def __init__(self, client):
        self.client = client
        self.etags = {}
        self.lock = threading.Lock()

    def _params(self, params, context, **kwargs):
        context["buildfarm_key"] = params.get("Key")

    def _response(self, parsed, context, **kwargs):
        key = context.get("buildfarm_key")
        if key and parsed.get("ETag"):
            with self.lock:
                self.etags[key] = parsed["ETag"]

    def __enter__(self):
        for op in self.EVENTS:
            self.client.meta.events.register("before-parameter-build.s3.%s" % op, self._params)
            self.client.meta.events.register("after-call.s3.%s" % op, self._response)
        return self

    def __exit__(self, *exc_info):
        for op in self.EVENTS:
            self.client.meta.events.unregister("before-parameter-build.s3.%s" % op, self._params)
            self.client.meta.events.unregister("after-call.s3.%s" % op, self._response)


class _Done:
    """s3transfer subscriber that counts the bytes sent and releases a memory slot when a transfer ends."""

    def __init__(self, counter, slot):
        self.counter = counter
        self.slot = slot

    def on_progress(self, future, bytes_transferred, **kwargs):
        self.counter.add(bytes_transferred)

    def on_done(self, future, **kwargs):
        if self.slot is not None:
            self.slot.release()


# ---------------------------------------------------------------------------------------------- 1. select

Settings = collections.namedtuple(
    "Settings", "bucket prefix manifest_key threshold chunksize concurrency trust_mtime metadata"
)


def push_settings(params):
    """The push's :class:`Settings` from the module's options, checked before anything is read or sent."""
    prefix = normalise_prefix(params.get("prefix"), params.get("cluster"), params.get("run_id"))
    threshold = params.get("multipart_threshold") or 8 * MiB
    chunksize = params.get("multipart_chunksize") or 8 * MiB
    concurrency = params.get("max_concurrency") or 10
    if threshold < 5 * MiB or chunksize < 5 * MiB:
        raise ArtifactError("multipart_threshold and multipart_chunksize must be at least 5 MiB (S3 minimum part)")
    if concurrency < 1:
        raise ArtifactError("max_concurrency must be at least 1")
    metadata = dict(params.get("metadata") or {})
    clash = sorted(set(metadata) & set(RESERVED_MANIFEST_KEYS))
    if clash:
        raise ArtifactError("metadata keys %s are reserved by the manifest" % ", ".join(clash))
    return Settings(
        bucket=params["bucket"],
        prefix=prefix,
        manifest_key=prefix + MANIFEST_NAME,
        threshold=threshold,
        chunksize=chunksize,
        concurrency=concurrency,
        trust_mtime=params.get("compare") == "size_mtime",
        metadata=metadata,
    )


# ---------------------------------------------------------------------------------------------- 2. hash


def vouches(record, there, stat):
    """Whether, under ``compare: size_mtime``, the previous manifest's ``record`` may stand in for reading the
    file: it has a sha256, the object (``there``) kept its ETag, and size and mtime are the recorded ones."""
    return bool(
        record
        and there
        and record.get("sha256")
        and record.get("etag") == there["etag"]
        and record.get("mtime_ns") == stat.st_mtime_ns
        and record.get("size") == stat.st_size == there["size"]
    )


def is_stored(s3, bucket, key, sha, size, there, record):
    """Whether the object under ``key`` already holds this content: the previous manifest says so while the
    object kept its ETag; otherwise a HEAD reads its sha256 metadata (only when the size matches)."""
    if there is None or there["size"] != size:
        return False
    if record and record.get("etag") == there["etag"] and record.get("sha256") == sha:
        return True
    return remote_sha256(s3, bucket, key) == sha


def prepare_file(s3, settings, remote, records, slots, local, keep):
    """Hash one file (unless ``size_mtime`` lets the manifest vouch for it) and decide whether it must be sent.

    Returns ``(entry, same, data)``. When ``keep``, the caller took a memory slot for the file's bytes: they are
    returned as ``data`` for a single PUT, or, when not needed after all, dropped and the slot released here."""
    key = settings.prefix + local["name"]
    there = remote.get(key)
    record = records.get(key)
    stat = os.stat(local["path"]) if settings.trust_mtime else None  # before reading: a later write changes it
    if stat and vouches(record, there, stat):
        sha, size, data, same = record["sha256"], stat.st_size, None, True
    else:
        sha, size, data = hash_file(local["path"], settings.threshold - 1 if keep else -1)
        same = is_stored(s3, settings.bucket, key, sha, size, there, record)
    if keep and (same or data is None):
        slots.release()
        data = None
    entry = dict(key=key, name=local["name"], path=local["path"], size=size, sha256=sha)
    if stat:
        entry["mtime_ns"] = stat.st_mtime_ns
    return entry, same, data


@contextlib.contextmanager
def hashing_pools(concurrency):
    """Two pools: small files hash in parallel; large ones one at a time, in order, so that the first can start
    uploading after one file's hash while the next ones hash. On an error, hashing not started is cancelled."""
    pools = (ThreadPoolExecutor(max_workers=min(concurrency, 8)), ThreadPoolExecutor(max_workers=1))
    try:
        yield pools
    except BaseException:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
        raise
    for pool in pools:
        pool.shutdown()


def hashed_in_order(files, prepare, pools, slots, threshold, check_mode):
    """Yield ``prepare(local, keep)`` for every file, in order, while the pools hash the next ones ahead.

    A small file's bytes hold a memory slot from its hashing until its upload ends (``2 x max_concurrency``
    slots bound the memory). Only this generator takes slots; before waiting for one it yields the oldest
    prepared file, so that it can be handed to s3transfer and the pipeline cannot deadlock."""
    small_pool, large_pool = pools
    pending = collections.deque()
    for local in files:
        large = local["size"] >= threshold
        keep = not large and not check_mode
        if keep:
            while not slots.acquire(blocking=False):
                if not pending:
                    slots.acquire()  # every slot belongs to a running upload, which releases it
                    break
                yield pending.popleft().result()
        pending.append((large_pool if large else small_pool).submit(prepare, local, keep))
    while pending:
        yield pending.popleft().result()


# ---------------------------------------------------------------------------------------------- 3. upload


def transfer_manager(raw, settings, check_mode):
    """An s3transfer manager with the push's threshold, part size and parallelism; a no-op in check mode."""
    if check_mode:
        return contextlib.nullcontext()
    config = TransferConfig(
        multipart_threshold=settings.threshold,
        multipart_chunksize=settings.chunksize,
        max_concurrency=settings.concurrency,
        use_threads=True,
    )
    return create_transfer_manager(raw, config)


def start_upload(manager, bucket, entry, data, params, counter, slots):
    """Hand one file to s3transfer: kept bytes (``data``) in one PUT whose sha256 S3 verifies, releasing their
    memory slot when done; otherwise the file from disk, multipart with a CRC32 per part. Returns the future."""
    extra = upload_extra_args(params, entry["sha256"], entry["name"])
    if data is not None:
        # A single PUT: S3 verifies the body against our sha256 (and botocore need not compute a CRC). An older
        # s3transfer (before 0.11, as Debian 12's python3-s3transfer 0.6 on a build host) refuses a full-object
        # checksum in ExtraArgs: botocore then computes the same sha256 (ChecksumAlgorithm) and S3 verifies it.
        if "ChecksumSHA256" in getattr(manager, "ALLOWED_UPLOAD_ARGS", ()):
            extra["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(entry["sha256"])).decode()
        else:
            extra["ChecksumAlgorithm"] = "SHA256"
        return manager.upload(io.BytesIO(data), bucket, entry["key"], extra, [_Done(counter, slots)])
    extra["ChecksumAlgorithm"] = "CRC32"  # S3 verifies every part, whatever the client's checksum defaults
    return manager.upload(entry["path"], bucket, entry["key"], extra, [_Done(counter, None)])


def upload_failures(uploads):
    """Wait for every ``(entry, future)`` upload; the failures as ``key: error`` (reported together)."""
    failures = []
    for entry, future in uploads:
        try:
            future.result()
        except Exception as e:  # every failure is reported together
            failures.append("%s: %s" % (entry["key"], e))
    return failures


def delete_old_manifest(s3, bucket, key, remote):
    """Delete the previous manifest before the first write, so that a failed push leaves none claiming success.
    Once deleted it is dropped from ``remote``, so later calls do nothing."""
    if key in remote:
        s3.delete_object(Bucket=bucket, Key=key, aws_retry=True)
        del remote[key]


def send_files(s3, files, settings, remote, records, params, check_mode):
    """Hash ``files`` and upload the changed ones, the uploads starting while later files still hash.

    Returns the entries (in order, each with its ``status`` and ``etag``) and the bytes sent. Raises
    ArtifactError, once every upload has ended, when any failed."""
    raw = raw_client(s3)
    counter = _Counter()
    slots = threading.BoundedSemaphore(2 * settings.concurrency)
    prepare = functools.partial(prepare_file, s3, settings, remote, records, slots)
    entries = []
    uploads = []  # (entry, future)
    with _ETags(raw) as written, transfer_manager(raw, settings, check_mode) as manager:
        with hashing_pools(settings.concurrency) as pools:
            for entry, same, data in hashed_in_order(files, prepare, pools, slots, settings.threshold, check_mode):
                entries.append(entry)
                entry["status"] = "unchanged" if same else "uploaded"
                if same or check_mode:
                    continue
                delete_old_manifest(s3, settings.bucket, settings.manifest_key, remote)
                future = start_upload(manager, settings.bucket, entry, data, params, counter, slots)
                uploads.append((entry, future))
        failures = upload_failures(uploads)
    if failures:
        raise ArtifactError(
            "%d of %d uploads failed, no manifest was written: %s"
            % (len(failures), len(uploads), "; ".join(failures[:10]))
        )
    for entry in entries:
        if entry["status"] == "uploaded":
            entry["etag"] = written.etags.get(entry["key"])
        else:
            entry["etag"] = remote[entry["key"]]["etag"]
    return entries, counter.value


# ---------------------------------------------------------------------------------------------- 4. manifest


def delete_keys(s3, bucket, keys):
    """Delete ``keys`` in batches of 1000 (the DeleteObjects limit); a failed delete raises, before the manifest."""
    for i in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[i : i + 1000]]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True}, aws_retry=True)
        if response.get("Errors"):
            failed = ["%s: %s" % (err.get("Key"), err.get("Message")) for err in response["Errors"][:10]]
            raise ArtifactError("deleting extra objects failed, no manifest was written: %s" % "; ".join(failed))


def build_manifest(settings, params, entries):
    """The manifest of this push, without its timestamps (which :func:`write_manifest` adds)."""
    manifest = dict(
        schema=MANIFEST_SCHEMA,
        bucket=settings.bucket,
        prefix=settings.prefix,
        cluster=params.get("cluster"),
        run_id=params.get("run_id"),
        count=len(entries),
        total_size=sum(e["size"] for e in entries),
        objects=[_manifest_object(e) for e in entries],
    )
    manifest.update(settings.metadata)
    return manifest


def write_manifest(s3, settings, manifest, params, started_at):
    """PUT the manifest with its timestamps, its sha256 as the checksum S3 verifies and the objects' settings."""
    stamped = dict(manifest, started_at=started_at, finished_at=_utcnow())
    body = json.dumps(stamped, indent=2, sort_keys=True).encode()
    digest = hashlib.sha256(body)
    s3.put_object(
        Bucket=settings.bucket,
        Key=settings.manifest_key,
        Body=body,
        ChecksumSHA256=base64.b64encode(digest.digest()).decode(),
        aws_retry=True,
        **upload_extra_args(params, digest.hexdigest(), MANIFEST_NAME),
    )


# ---------------------------------------------------------------------------------------------- push


def push(s3, params, check_mode=False):
    """Push the artifacts described by ``params`` (the module's options) with the S3 client ``s3`` (the
    amazon.aws retrying wrapper; ``s3.client`` is the raw client s3transfer drives). Returns the result dict.

    Raises ArtifactError for user errors and botocore errors for unexpected API failures.
    """
    started = time.monotonic()
    started_at = _utcnow()

    # 1. Select: everything that can fail before a byte is sent.
    settings = push_settings(params)
    bucket, prefix, manifest_key = settings.bucket, settings.prefix, settings.manifest_key
    files = select_files(
        params.get("src"),
        params.get("include"),
        params.get("exclude"),
        params.get("extra_files"),
        params.get("allow_empty"),
    )
    remote = list_remote(s3, bucket, prefix)
    old_manifest = read_manifest(s3, bucket, manifest_key) if manifest_key in remote else None

    # 2.-3. Hash, and upload what changed.
    entries, bytes_uploaded = send_files(
        s3, files, settings, remote, manifest_records(old_manifest), params, check_mode
    )
    uploaded = [e for e in entries if e["status"] == "uploaded"]

    # 4. Extras under the prefix that this push does not contain, then the manifest, last.
    pushed = {e["key"] for e in entries}
    to_delete = []
    if params.get("delete_extra"):
        to_delete = sorted(k for k in remote if k not in pushed and k != manifest_key)
    if to_delete and not check_mode:
        delete_old_manifest(s3, bucket, manifest_key, remote)
        delete_keys(s3, bucket, to_delete)
    manifest = build_manifest(settings, params, entries)
    manifest_same = (
        old_manifest is not None and not uploaded and not to_delete and _canonical(old_manifest) == _canonical(manifest)
    )
    manifest_written = False
    if not manifest_same and not check_mode:
        delete_old_manifest(s3, bucket, manifest_key, remote)
        write_manifest(s3, settings, manifest, params, started_at)
        manifest_written = True

    raw = raw_client(s3)
    endpoint = raw.meta.endpoint_url
    region = raw.meta.region_name
    objects = [
        dict(
            key=e["key"],
            size=e["size"],
            sha256=e["sha256"],
            status=e["status"],
            url=object_url(endpoint, region, bucket, e["key"]),
        )
        for e in entries
    ]
    result = dict(
        changed=bool(uploaded or to_delete or not manifest_same),
        bucket=bucket,
        prefix=prefix,
        manifest_key=manifest_key,
        manifest_url=object_url(endpoint, region, bucket, manifest_key),
        manifest_written=manifest_written,
        uploaded=len(uploaded),
        unchanged=len(entries) - len(uploaded),
        deleted=len(to_delete),
        deleted_keys=to_delete,
        bytes_uploaded=bytes_uploaded,
        bytes_to_upload=sum(e["size"] for e in uploaded),
        objects=objects,
        duration=round(time.monotonic() - started, 3),
    )
    if params.get("presign") and not check_mode:
        expiry = params.get("presign_expiry") or 3600
        keys = [e["key"] for e in entries] + [manifest_key]
        result["presigned_urls"] = {
            k: raw.generate_presigned_url("get_object", Params=dict(Bucket=bucket, Key=k), ExpiresIn=expiry)
            for k in keys
        }
    return result
