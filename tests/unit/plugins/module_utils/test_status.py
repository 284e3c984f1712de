"""The node status document: build/merge, atomic write, and reading real HTTP servers on loopback (no mocks)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from ansible_collections.buildfarm.ec2.plugins.module_utils import status


def doc(node="b1", phase="ready", sha="a" * 64, version="12.2.0", error=None, role="builder"):
    return {
        "schema": 1,
        "node": node,
        "role": role,
        "phase": phase,
        "updated": "2026-11-24T20:00:00Z",
        "toolchain": {"cc": "gcc", "version": version, "sha256": sha},
        "distcc": {"port": 3632, "jobs": 2},
        "error": error,
    }


class Node:
    """A real HTTP server on a loopback port serving one mutable status document (or an error)."""

    def __init__(self, document):
        self.document = document
        self.code = 200
        self.body = None
        node = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/status.json":
                    self.send_error(404)
                    return
                body = node.body if node.body is not None else json.dumps(node.document).encode()
                self.send_response(node.code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/status.json" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def nodes():
    made = []

    def make(document):
        node = Node(document)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


class CountingClock:
    """The real clock, counting the sleeps between polls."""

    def __init__(self):
        self.sleeps = 0

    def monotonic(self):
        return time.monotonic()

    def sleep(self, seconds):
        self.sleeps += 1
        time.sleep(seconds)


def closed_port_url():
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return "http://127.0.0.1:%d/status.json" % port


# --- the document itself -----------------------------------------------------------------------------


def test_valid_document_has_no_problems():
    assert status.validate(doc()) == []


@pytest.mark.parametrize(
    "change, word",
    [
        ({"phase": "sleeping"}, "phase"),
        ({"schema": 2}, "schema"),
        ({"updated": "yesterday"}, "updated"),
        ({"toolchain": "gcc"}, "toolchain"),
        ({"distcc": {"port": 1, "jobs": 2, "extra": 3}}, "unknown"),
        ({"error": 5}, "error"),
    ],
)
def test_invalid_documents_are_named(change, word):
    problems = status.validate(dict(doc(), **change))
    assert problems and any(word in p for p in problems)


def test_missing_keys_and_non_objects():
    assert "missing key 'phase'" in status.validate({k: v for k, v in doc().items() if k != "phase"})
    assert status.validate([1, 2]) == ["the status document is not a JSON object"]


def test_build_merges_over_current_and_defaults_new_documents():
    new = status.build(None, node="n1", role="host")
    assert new == {
        "schema": 1,
        "node": "n1",
        "role": "host",
        "phase": "booting",
        "toolchain": None,
        "distcc": None,
        "error": None,
    }
    merged = status.build(doc(error="boom", phase="failed"), phase="ready", clear_error=True)
    assert merged["phase"] == "ready" and merged["error"] is None
    assert merged["node"] == "b1" and merged["toolchain"]["sha256"] == "a" * 64
    kept = status.build(doc(error="boom"))
    assert kept["error"] == "boom"


def test_same_content_ignores_only_updated():
    a = doc()
    b = dict(doc(), updated="2030-01-01T00:00:00Z")
    assert status.same_content(a, b)
    assert not status.same_content(a, dict(b, phase="done"))
    assert not status.same_content(None, a)


def test_write_atomic_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "status.json"
    status.write_atomic(str(path), doc(phase="booting"))
    status.write_atomic(str(path), doc(phase="ready"), mode=0o640)
    assert status.read_file(str(path))["phase"] == "ready"
    assert (path.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_read_file_missing_and_garbage(tmp_path):
    assert status.read_file(str(tmp_path / "nope.json")) is None
    (tmp_path / "bad.json").write_text("{not json")
    assert status.read_file(str(tmp_path / "bad.json")) is None


def run(argv):
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc on the PATH")
def test_detect_toolchain_hashes_the_real_compiler():
    toolchain, binaries = status.detect_toolchain("gcc", shutil.which, run)
    assert toolchain["cc"] == "gcc"
    assert toolchain["version"][0].isdigit()
    assert len(toolchain["sha256"]) == 64
    assert any(os.path.basename(b) == "cc1" for b in binaries)
    assert status.detect_toolchain("gcc", shutil.which, run)[0] == toolchain


def test_detect_toolchain_unknown_compiler():
    with pytest.raises(RuntimeError, match="not found"):
        status.detect_toolchain("no-such-compiler-xyz", shutil.which, run)


# --- over HTTP -----------------------------------------------------------------------------------------


def test_fetch_reads_a_served_document(nodes):
    node = nodes(doc(node="s1"))
    got, reason = status.fetch(node.url)
    assert reason is None and got["node"] == "s1"


def test_fetch_explains_failures(nodes):
    node = nodes(doc())
    node.body = b"<html>"
    assert status.fetch(node.url) == (None, "not JSON")
    node.body = json.dumps(dict(doc(), phase="x")).encode()
    got, reason = status.fetch(node.url)
    assert got is None and reason.startswith("invalid status document") and "phase" in reason
    node.body = None
    node.code = 500
    got, reason = status.fetch(node.url)
    assert got is None and reason.startswith("unreachable")
    got, reason = status.fetch(closed_port_url(), timeout=2)
    assert got is None and "unreachable" in reason


def test_wait_succeeds_when_all_ready_and_agree(nodes):
    a, b = nodes(doc(node="s1")), nodes(doc(node="s2"))
    result = status.wait([a.url, b.url], timeout=5, interval=0.1)
    assert result.ok and not result.laggards and not result.mismatches
    assert result.reference["sha256"] == "a" * 64
    assert result.docs[b.url]["node"] == "s2"


def test_wait_sees_a_node_become_ready(nodes):
    a = nodes(doc(node="s1", phase="configuring"))
    timer = threading.Timer(0.5, lambda: a.document.update(phase="ready"))
    timer.start()
    clock = CountingClock()
    try:
        result = status.wait([a.url], timeout=20, interval=0.1, clock=clock)
    finally:
        timer.cancel()
    assert result.ok and not result.laggards and clock.sleeps >= 1


def test_wait_times_out_naming_every_laggard(nodes):
    ready = nodes(doc(node="s1"))
    slow = nodes(doc(node="s2", phase="configuring"))
    broken = nodes(doc(node="s3", phase="failed", error="distccd did not start"))
    gone = closed_port_url()
    result = status.wait([ready.url, slow.url, broken.url, gone], timeout=1, interval=0.2, request_timeout=1)
    assert not result.ok and not result.mismatches
    assert [lag["node"] for lag in result.laggards] == ["s2", "s3", None]
    message = status.describe(result.laggards, result.mismatches)
    assert "s2 (%s) is configuring, not ready" % slow.url in message
    assert "s3" in message and "failed" in message and "distccd did not start" in message
    assert gone in message and "unreachable" in message
    assert "s1" not in message


def test_toolchain_mismatch_names_node_and_both_versions_and_ends_the_wait(nodes):
    a = nodes(doc(node="s1", sha="a" * 64, version="12.2.0"))
    b = nodes(doc(node="s2", sha="b" * 64, version="13.1.0"))
    clock = CountingClock()
    result = status.wait([a.url, b.url], timeout=600, interval=0.1, clock=clock)
    assert not result.ok and not result.laggards
    assert clock.sleeps == 0  # ended by the mismatch at the first poll, not by the timeout
    assert [m["node"] for m in result.mismatches] == ["s2"]
    message = status.describe(result.laggards, result.mismatches)
    assert "toolchain mismatch on s2" in message
    assert "gcc 13.1.0" in message and "gcc 12.2.0" in message and "s1" in message


def test_expected_hash_is_the_reference(nodes):
    a = nodes(doc(node="s1", sha="a" * 64))
    result = status.wait(
        [a.url], expected_sha256="c" * 64, expected_version="gcc 12.2.0", expected_node="client", timeout=0
    )
    assert not result.ok
    message = status.describe([], result.mismatches)
    assert "toolchain mismatch on s1" in message and "client has gcc 12.2.0 sha256 " + "c" * 64 in message
    assert status.wait([a.url], expected_sha256="a" * 64, timeout=0).ok


def test_ready_node_without_toolchain_is_a_laggard(nodes):
    a = nodes(dict(doc(node="s1"), toolchain=None))
    result = status.wait([a.url], timeout=0)
    assert not result.ok and result.laggards[0]["reason"] == "no toolchain sha256 reported"


def test_other_phase_can_be_awaited(nodes):
    a = nodes(doc(node="s1", phase="done"))
    assert status.wait([a.url], phase="done", timeout=0).ok
