# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node status document: schema, build/merge, atomic write, read over HTTP, validate and compare.

One document per node, served by the status_page role at http://<private-ip>/status.json::

    {"schema": 1, "node": "b1", "role": "builder", "phase": "ready", "updated": "2026-11-24T20:00:00Z",
     "toolchain": {"cc": "gcc", "version": "12.2.0", "sha256": "..."},
     "distcc": {"port": 3632, "jobs": 8}, "error": null}

Written by the buildfarm.ec2.node_status module, read by buildfarm.ec2.wait_ready. Nothing here talks to AWS.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections import namedtuple
from datetime import datetime, timezone

from ansible.module_utils.urls import open_url

SCHEMA = 1
PHASES = ("booting", "configuring", "ready", "building", "done", "failed")
KEYS = ("schema", "node", "role", "phase", "updated", "toolchain", "distcc", "error")
TOOLCHAIN_KEYS = ("cc", "version", "sha256")
WaitResult = namedtuple("WaitResult", ["ok", "docs", "laggards", "mismatches", "reference", "elapsed"])
DISTCC_KEYS = ("port", "jobs")


def now_iso(now=None):
    """UTC time as YYYY-MM-DDTHH:MM:SSZ."""
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text):
    """Parse an ISO UTC time written by now_iso(); None when it is not one."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None


def validate(doc):
    """Return a list of problems with a status document (empty when it is valid)."""
    if not isinstance(doc, dict):
        return ["the status document is not a JSON object"]
    problems = []
    for key in KEYS:
        if key not in doc:
            problems.append("missing key %r" % key)
    if doc.get("schema") != SCHEMA:
        problems.append("schema is %r, expected %d" % (doc.get("schema"), SCHEMA))
    if "phase" in doc and doc["phase"] not in PHASES:
        problems.append("phase %r is not one of %s" % (doc["phase"], ", ".join(PHASES)))
    for key in ("node", "role"):
        if key in doc and not isinstance(doc[key], str):
            problems.append("%s is not a string" % key)
    if "updated" in doc and parse_time(doc["updated"]) is None:
        problems.append("updated %r is not a UTC time like 2026-01-01T00:00:00Z" % (doc["updated"],))
    for key, sub in (("toolchain", TOOLCHAIN_KEYS), ("distcc", DISTCC_KEYS)):
        value = doc.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            problems.append("%s is neither an object nor null" % key)
            continue
        unknown = sorted(set(value) - set(sub))
        if unknown:
            problems.append("%s has unknown keys %s" % (key, ", ".join(unknown)))
    if doc.get("error") is not None and not isinstance(doc.get("error"), str):
        problems.append("error is neither a string nor null")
    return problems


def _clean(sub, keys):
    if sub is None:
        return None
    return {k: sub.get(k) for k in keys}


def build(current, node=None, role=None, phase=None, toolchain=None, distcc=None, error=None, clear_error=False):
    """Merge the given fields over the current document (None: keep). Returns a document without 'updated'."""
    current = current if isinstance(current, dict) and not validate(current) else {}
    doc = {
        "schema": SCHEMA,
        "node": node if node is not None else current.get("node", ""),
        "role": role if role is not None else current.get("role", ""),
        "phase": phase if phase is not None else current.get("phase", "booting"),
        "toolchain": _clean(toolchain, TOOLCHAIN_KEYS) if toolchain is not None else current.get("toolchain"),
        "distcc": _clean(distcc, DISTCC_KEYS) if distcc is not None else current.get("distcc"),
        "error": None if clear_error else (error if error is not None else current.get("error")),
    }
    return doc


def same_content(a, b):
    """True when two documents differ at most in 'updated'."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    return _without_updated(a) == _without_updated(b)


def _without_updated(doc):
    return {k: v for k, v in doc.items() if k != "updated"}


def read_file(path):
    """The document at path, or None when it is missing or not JSON."""
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def render(doc):
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def write_atomic(path, doc, mode=0o644):
    """Write the document to a temporary file beside path, then rename it over path."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".status-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(render(doc))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _output(run, argv):
    rc, out, err = run(argv)
    if rc != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(argv), (err or "").strip()))
    return (out or "").strip()


def detect_toolchain(compiler, which, run):
    """Identify a gcc-style compiler: its version and one sha256 over the driver, cc1 and cc1plus binaries.

    ``which`` resolves a command name to a path (module.get_bin_path), ``run`` runs an argv and returns
    (rc, stdout, stderr) as text (module.run_command). Returns (toolchain, binaries) where binaries maps each
    hashed file (real path) to its own sha256.
    """
    driver = compiler if os.path.isabs(compiler) else which(compiler)
    if not driver or not os.path.exists(driver):
        raise RuntimeError("compiler %s not found" % compiler)
    driver = os.path.realpath(driver)
    version = _output(run, [driver, "-dumpfullversion", "-dumpversion"]).splitlines()[0]
    binaries = {driver: sha256_file(driver)}
    for prog in ("cc1", "cc1plus"):
        found = _output(run, [driver, "-print-prog-name=%s" % prog])
        if os.path.isabs(found) and os.path.exists(found):
            real = os.path.realpath(found)
            binaries[real] = sha256_file(real)
    combined = hashlib.sha256()
    for name in sorted(binaries, key=os.path.basename):
        combined.update(("%s %s\n" % (os.path.basename(name), binaries[name])).encode("utf-8"))
    toolchain = {"cc": os.path.basename(compiler), "version": version, "sha256": combined.hexdigest()}
    return toolchain, binaries


def fetch(url, timeout=5):
    """GET a status document. Returns (doc, reason): doc None and a reason when unreachable or invalid."""
    try:
        response = open_url(url, timeout=timeout, validate_certs=True, follow_redirects="safe")
        body = response.read()
    except Exception as e:  # any network failure is a reason to report, not a crash
        return None, "unreachable: %s" % (getattr(e, "reason", None) or e)
    try:
        doc = json.loads(body.decode("utf-8"))
    except ValueError:
        return None, "not JSON"
    problems = validate(doc)
    if problems:
        return None, "invalid status document: %s" % "; ".join(problems)
    return doc, None


def _version_of(doc):
    tc = doc.get("toolchain") or {}
    return "%s %s" % (tc.get("cc") or "?", tc.get("version") or "?")


def assess(results, phase="ready", expected_sha256=None, expected_version=None, expected_node=None):
    """Judge fetched documents. results: list of (url, doc, reason).

    Returns (laggards, mismatches, reference): laggards are dicts (url, node, phase, error, reason) of nodes that
    are not yet in the wanted phase; mismatches are dicts (url, node, version, sha256, expected_version,
    expected_sha256, reference_node) of nodes whose toolchain differs from the reference (expected_sha256 when
    given, described by expected_version and expected_node, otherwise the first ready node's).
    """
    laggards = []
    mismatches = []
    reference = None
    if expected_sha256:
        reference = {
            "node": expected_node or "the expected toolchain",
            "sha256": expected_sha256,
            "version": expected_version or "?",
        }
    for url, doc, reason in results:
        if doc is None:
            laggards.append({"url": url, "node": None, "phase": None, "error": None, "reason": reason})
            continue
        if doc["phase"] != phase:
            laggards.append(
                {"url": url, "node": doc["node"], "phase": doc["phase"], "error": doc.get("error"), "reason": None}
            )
            continue
        sha = (doc.get("toolchain") or {}).get("sha256")
        if not sha:
            laggards.append(
                {
                    "url": url,
                    "node": doc["node"],
                    "phase": doc["phase"],
                    "error": doc.get("error"),
                    "reason": "no toolchain sha256 reported",
                }
            )
            continue
        if reference is None:
            reference = {"node": doc["node"], "sha256": sha, "version": _version_of(doc)}
            continue
        if sha != reference["sha256"]:
            mismatches.append(
                {
                    "url": url,
                    "node": doc["node"],
                    "version": _version_of(doc),
                    "sha256": sha,
                    "expected_version": reference["version"],
                    "expected_sha256": reference["sha256"],
                    "reference_node": reference["node"],
                }
            )
    return laggards, mismatches, reference


def describe(laggards, mismatches, phase="ready"):
    """One human message naming every laggard and every toolchain mismatch."""
    parts = []
    for lag in laggards:
        if lag["reason"] and lag["phase"] is None:
            parts.append("%s %s" % (lag["url"], lag["reason"]))
            continue
        text = "%s (%s) is %s, not %s" % (lag["node"], lag["url"], lag["phase"], phase)
        if lag["reason"]:
            text += " (%s)" % lag["reason"]
        if lag["error"]:
            text += ", error: %s" % lag["error"]
        parts.append(text)
    for mis in mismatches:
        parts.append(
            "toolchain mismatch on %s (%s): %s sha256 %s, but %s has %s sha256 %s"
            % (
                mis["node"],
                mis["url"],
                mis["version"],
                mis["sha256"],
                mis["reference_node"],
                mis["expected_version"],
                mis["expected_sha256"],
            )
        )
    return "; ".join(parts)


def wait(
    urls,
    phase="ready",
    expected_sha256=None,
    expected_version=None,
    expected_node=None,
    timeout=300,
    interval=2.0,
    request_timeout=5,
    clock=time,
):
    """Poll every URL until all are in phase with one toolchain hash, or the timeout passes.

    A toolchain mismatch of a node that is already in the wanted phase does not heal by waiting: it ends the
    wait at once.

    Returns a WaitResult (ok, docs, laggards, mismatches, reference, elapsed); docs maps url -> last document
    (or None).
    """
    start = clock.monotonic()
    while True:
        results = []
        for url in urls:
            doc, reason = fetch(url, timeout=request_timeout)
            results.append((url, doc, reason))
        laggards, mismatches, reference = assess(
            results,
            phase=phase,
            expected_sha256=expected_sha256,
            expected_version=expected_version,
            expected_node=expected_node,
        )
        elapsed = clock.monotonic() - start
        docs = {url: doc for url, doc, _reason in results}
        if not laggards and not mismatches:
            return WaitResult(True, docs, laggards, mismatches, reference, elapsed)
        if mismatches or elapsed + interval > timeout:
            return WaitResult(False, docs, laggards, mismatches, reference, elapsed)
        clock.sleep(interval)
