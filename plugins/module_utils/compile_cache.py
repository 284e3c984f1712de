# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The compile cache across runs: ccache's directory, kept in S3 as one tar archive per toolchain.

Why ccache's directory and not a remote backend: a cluster is new on every run, so the cache has to come from
outside it, and misses have to go on to distcc. ccache (Debian's) takes distcc as its ``prefix_command``, but its
remote storage speaks HTTP and Redis, not signed S3; sccache speaks S3 but sends misses to its own distributed
compiler, not to distcc (docs/compile-cache.md). So ccache runs on the build host against a local directory that
is restored from S3 before the build and saved after it: one object ``<prefix><toolchain sha256>/ccache.tar``, so
a cache a different compiler filled is never restored (ccache's own ``compiler_check`` says the same inside).

A cache never fails a build: a missing, unreadable or corrupt archive, or an S3 that does not answer, leaves an
empty cache and a warning. The archive's entries digest (names and sizes; ccache's entries are named by their
content hash) is kept in the object's metadata, so a save that added nothing uploads nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

ARCHIVE = "ccache.tar"
DIGEST_KEY = "entries-sha256"
# What a save leaves out: ccache's temporary files and locks, and its statistics (zeroed before every build).
SKIPPED_DIRS = frozenset(["tmp"])
SKIPPED_SUFFIXES = (".lock", ".tmp")
SKIPPED_NAMES = frozenset(["stats", "ccache.conf"])


def object_key(prefix, toolchain):
    """The key of the archive of ``toolchain`` (a sha256) below ``prefix``."""
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return "%s%s/%s" % (prefix, toolchain, ARCHIVE)


def _entries(path):
    """The cache's files to archive, relative to ``path``, sorted."""
    found = []
    for root, dirs, files in os.walk(path):
        rel_root = os.path.relpath(root, path)
        dirs[:] = sorted(d for d in dirs if not (rel_root == "." and d in SKIPPED_DIRS))
        for name in files:
            if name in SKIPPED_NAMES or name.endswith(SKIPPED_SUFFIXES):
                continue
            full = os.path.join(root, name)
            if os.path.isfile(full) and not os.path.islink(full):
                found.append(os.path.normpath(os.path.join(rel_root, name)))
    return sorted(found)


def entries_digest(path, entries=None):
    """sha256 over the sorted ``name size`` lines of the cache's files."""
    digest = hashlib.sha256()
    for rel in _entries(path) if entries is None else entries:
        digest.update(("%s %d\n" % (rel, os.path.getsize(os.path.join(path, rel)))).encode())
    return digest.hexdigest()


def _safe_members(tar):
    """The archive's regular files and directories with relative paths that stay inside the destination; anything
    else (links, devices, absolute or ``..`` paths) makes the archive corrupt."""
    members = []
    for member in tar.getmembers():
        name = os.path.normpath(member.name)
        if not (member.isfile() or member.isdir()) or name.startswith(("/", "..")) or os.path.isabs(name):
            raise ValueError("unsafe member %r" % member.name)
        members.append(member)
    return members


def _error_text(error):
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    return "%s: %s" % (code, error) if code else str(error)


def _is_missing(error):
    return getattr(error, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def restore(s3, bucket, key, path, check_mode=False):
    """Replace the cache directory ``path`` with the archive at ``s3://bucket/key``. Returns the result: restored,
    reason, bytes, files, warnings; an unusable archive leaves ``path`` empty."""
    url = "s3://%s/%s" % (bucket, key)
    result = dict(changed=False, key=key, restored=False, bytes=0, files=0, warnings=[], reason="")
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        if _is_missing(e):
            result["reason"] = "no cache at %s yet: every compile is a miss" % url
        else:
            result["reason"] = "compile cache %s unreachable (%s): building without it" % (url, _error_text(e))
            result["warnings"].append(result["reason"])
        if not check_mode:
            _empty(path)
        return result
    result["bytes"] = head.get("ContentLength", 0)
    if check_mode:
        result.update(changed=True, reason="would restore %s (%d bytes)" % (url, result["bytes"]))
        return result
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".compile-cache-", dir=parent)
    try:
        archive = os.path.join(work, ARCHIVE)
        fresh = os.path.join(work, "cache")
        try:
            s3.download_file(bucket, key, archive)
            with tarfile.open(archive, "r:") as tar:
                members = _safe_members(tar)
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(fresh, members=members, **kwargs)  # noqa: S202 (members checked above)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            result["reason"] = "compile cache %s could not be read (%s): building without it" % (url, _error_text(e))
            result["warnings"].append(result["reason"])
            _empty(path)
            return result
        except (tarfile.TarError, ValueError, EOFError, OSError) as e:
            result["reason"] = "compile cache %s is corrupt (%s): building without it" % (url, e)
            result["warnings"].append(result["reason"])
            _empty(path)
            return result
        os.makedirs(fresh, exist_ok=True)
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(fresh, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.update(changed=True, restored=True, files=len(_entries(path)), reason="restored %s" % url)
    return result


def _empty(path):
    """``path`` as an empty directory (a cache that could not be restored starts from nothing)."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)


def save(s3, bucket, key, path, check_mode=False):
    """Upload the cache directory ``path`` as the archive at ``s3://bucket/key`` unless the object already holds the
    same entries. Returns the result: saved, unchanged, bytes, files, warnings."""
    url = "s3://%s/%s" % (bucket, key)
    result = dict(changed=False, key=key, saved=False, unchanged=False, bytes=0, files=0, warnings=[], reason="")
    entries = _entries(path) if os.path.isdir(path) else []
    result["files"] = len(entries)
    if not entries:
        result["reason"] = "the compile cache %s is empty: nothing to save" % path
        return result
    digest = entries_digest(path, entries)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get(DIGEST_KEY) == digest:
            result.update(unchanged=True, bytes=head.get("ContentLength", 0), reason="%s holds these entries" % url)
            return result
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        if not _is_missing(e):
            result["reason"] = "compile cache %s unreachable (%s): not saved" % (url, _error_text(e))
            result["warnings"].append(result["reason"])
            return result
    if check_mode:
        result.update(changed=True, reason="would save %d files to %s" % (len(entries), url))
        return result
    parent = os.path.dirname(os.path.abspath(path))
    fd, archive = tempfile.mkstemp(prefix=".compile-cache-", suffix=".tar", dir=parent)
    os.close(fd)
    try:
        with tarfile.open(archive, "w:") as tar:  # ccache compresses its entries itself
            for rel in entries:
                tar.add(os.path.join(path, rel), arcname=rel, recursive=False)
        result["bytes"] = os.path.getsize(archive)
        try:
            s3.upload_file(archive, bucket, key, ExtraArgs={"Metadata": {DIGEST_KEY: digest}})
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            result["reason"] = "compile cache %s could not be written (%s): not saved" % (url, _error_text(e))
            result["warnings"].append(result["reason"])
            return result
    finally:
        os.unlink(archive)
    result.update(changed=True, saved=True, reason="saved %d files to %s" % (len(entries), url))
    return result


# ccache --print-stats keys (ccache 4.x) summed into the report's numbers.
HIT_KEYS = ("direct_cache_hit", "preprocessed_cache_hit")
MISS_KEYS = ("cache_miss",)


def parse_stats(text):
    """ccache's counters since the last zeroing, from the output of ``ccache --print-stats``: hits, misses,
    hit_rate (None without compiles), size_bytes, files."""
    counters = {}
    for line in text.splitlines():
        name, sep, value = line.partition("\t")
        if sep and value.strip().isdigit():
            counters[name.strip()] = int(value)
    hits = sum(counters.get(k, 0) for k in HIT_KEYS)
    misses = sum(counters.get(k, 0) for k in MISS_KEYS)
    return dict(
        hits=hits,
        misses=misses,
        hit_rate=round(hits / (hits + misses), 4) if hits + misses else None,
        size_bytes=counters.get("cache_size_kibibyte", 0) * 1024,
        files=counters.get("files_in_cache", 0),
    )
