"""Build progress: distccd's stats counters over a real socket, the log's fallbacks and last line, and the
build_wait action printing a line while a real async job runs (ansible-playbook, default callback)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.buildfarm.ec2.plugins.module_utils import progress

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent

# What distccd 3.4 --stats answers on its stats port (the HTTP/1.0 response it writes on connect).
STATS = """HTTP/1.0 200 OK
Content-Type: text/plain
Connection: close

argv /usr/sbin/distccd
<distccstats>
dcc_tcp_accept %(accept)d
dcc_rej_bad_req 0
dcc_rej_overload 0
dcc_compile_ok %(ok)d
dcc_compile_error %(error)d
dcc_compile_timeout 0
dcc_cli_disconnect 0
dcc_other 0
dcc_longest_job lvm.c
dcc_longest_job_compiler gcc
dcc_longest_job_time_msecs 812
dcc_max_kids 4
dcc_current_load 1
dcc_free_space 1024 MB
</distccstats>
"""


class StatsPort:
    """A stats port on loopback that answers like distccd and counts one more compile per connection."""

    def __init__(self, ok=0):
        self.ok = ok
        self.connections = 0
        self.release = None  # (after this many connections, touch this file)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _peer = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall((STATS % {"accept": self.ok + 1, "ok": self.ok, "error": 1}).encode())
            self.ok += 1
            self.connections += 1
            if self.release and self.connections >= self.release[0]:
                Path(self.release[1]).touch()

    def close(self):
        self.sock.close()


@pytest.fixture
def stats():
    port = StatsPort(ok=40)
    yield port
    port.close()


def test_parse_stats_reads_the_integer_counters():
    counters = progress.parse_stats(STATS % {"accept": 9, "ok": 7, "error": 2})
    assert counters["dcc_compile_ok"] == 7
    assert counters["dcc_compile_error"] == 2
    assert "dcc_longest_job" not in counters  # not a number
    assert progress.compiles(counters) == 9


def test_collect_counts_since_the_baseline_and_marks_an_unreachable_server(stats, tmp_path):
    log = tmp_path / "build.log"
    log.write_text(
        "=== buildfarm: build started\n"
        "distcc[12] (dcc_build_somewhere) Warning: failed to distribute, running locally instead\n"
        + "x" * (3 << 20)  # the next mark lies past the first chunk
        + "\ndistcc[13] (dcc_build_somewhere) Warning: failed to distribute, running locally instead\n"
        "CC lvm.o\n\n"
    )
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    first = progress.collect(str(log), ["127.0.0.1"], stats.port, elapsed=0)
    assert first["remote"] == 41  # no baseline: the daemon's whole count (40 ok + 1 error)
    later = progress.collect(str(log), ["127.0.0.1"], stats.port, progress.baseline_of(first), elapsed=95)
    assert later["remote"] == 1
    assert later["local"] == 2
    assert later["last_line"] == "CC lvm.o"
    assert progress.line(later) == "1m35s elapsed, compiles 1 remote / 2 local fallback | log: CC lvm.o"
    gone = progress.collect(str(log), ["127.0.0.1"], dead_port, elapsed=5)
    assert gone["unreachable"] == ["127.0.0.1"] and gone["remote"] == 0
    assert "stats unreachable: 127.0.0.1" in progress.line(gone)
    cached = dict(later, cache={"hits": 30, "misses": 3})  # build_progress's ccache counters
    assert progress.line(cached) == (
        "1m35s elapsed, compiles 1 remote / 2 local fallback, cache 30 hits / 3 misses | log: CC lvm.o"
    )


def test_a_mark_cut_by_a_chunk_boundary_counts_once(tmp_path):
    log = tmp_path / "build.log"
    cut = (1 << 20) - 5  # the mark starts 5 bytes before the end of the first 1 MiB chunk
    log.write_bytes(b"a" * (cut - 1) + b"\n" + progress.FALLBACK_MARK + b"\n")
    assert progress.scan_log(str(log)) == (1, progress.FALLBACK_MARK.decode())
    assert progress.scan_log(str(tmp_path / "missing.log")) == (0, "")


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59, "59s"), (150, "2m30s"), (3725, "1h02m05s")])
def test_duration(seconds, text):
    assert progress.duration(seconds) == text


PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    # The job runs until the stats port was read three times (the baseline and two progress lines).
    - name: Start a job that writes a log until it is released
      ansible.builtin.shell: |
        i=0; until [ -e {log}.go ]; do i=$((i+1)); echo "step $i" >> {log}; sleep 0.5; done
        echo "=== buildfarm: build success after 6s" >> {log}
      async: 120
      poll: 0
      register: job

    - name: Wait for it with progress
      buildfarm.ec2.build_wait:
        jid: "{{{{ job.ansible_job_id }}}}"
        timeout: 120
        poll: 1
        interval: 1
        progress:
          log: {log}
          servers: [127.0.0.1]
          stats_port: {port}
          dest: {dest}
      register: waited

    - name: Keep the result
      ansible.builtin.copy:
        content: "{{{{ waited | to_json }}}}"
        dest: {dest}.result
        mode: "0600"
"""


def _play(tmp_path, text, *args):
    play = tmp_path / "play.yml"
    play.write_text(text)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_FORCE_COLOR="false",
    )
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", str(play), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_build_wait_prints_progress_lines_while_the_job_runs(stats, tmp_path):
    log, dest = tmp_path / "build.log", tmp_path / "progress.json"
    stats.release = (3, str(log) + ".go")
    out = _play(tmp_path, PLAY.format(log=log, port=stats.port, dest=dest))
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("build progress [localhost]: ")]
    running = [line for line in lines if "finished" not in line]
    assert len(running) >= 2, out.stdout[-4000:]  # the job ends after the second line
    assert any("| log: step " in line for line in running), lines
    assert lines[-1].startswith("build progress [localhost]: finished, ")
    assert lines[-1].endswith("| log: === buildfarm: build success after 6s")
    # Each call of the stats port counts one more compile: the counts only grow, from the baseline.
    counts = [int(line.split("compiles ")[1].split(" remote")[0]) for line in lines]
    assert counts == sorted(counts) and counts[0] >= 1 and counts[-1] >= len(lines)
    result = json.loads(Path(str(dest) + ".result").read_text())
    assert result["rc"] == 0 and result["progress"]["remote"] == counts[-1]
    written = json.loads(dest.read_text())
    assert written["last_line"] == "=== buildfarm: build success after 6s" and written["remote"] == counts[-1]


def test_build_wait_refuses_an_interval_over_30_seconds(stats, tmp_path):
    (tmp_path / "l.go").touch()  # the job ends at once
    text = PLAY.format(log=tmp_path / "l", port=stats.port, dest=tmp_path / "p").replace("interval: 1", "interval: 31")
    out = _play(tmp_path, text)
    assert out.returncode != 0
    assert "interval must be 1-30 seconds, got 31" in out.stdout, out.stdout


SHORT_JOB = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Start a job of three seconds
      ansible.builtin.command: sleep 3
      async: 120
      poll: 0
      register: job

    - name: Wait for it
      buildfarm.ec2.build_wait:
        jid: "{{ job.ansible_job_id }}"
        timeout: 120
        poll: 60
      register: waited

    - name: Check its result
      ansible.builtin.assert:
        that: waited.rc == 0
"""


def test_build_wait_checks_a_short_job_sooner_than_its_poll(tmp_path):
    """poll is the most seconds between checks: a job of three seconds is found ended within seconds, not after a
    whole poll of 60 (the whole play must end within 45 s: far above what a loaded machine takes for the play and
    the first checks, below the 60 s a check every poll waits)."""
    started = time.monotonic()
    out = _play(tmp_path, SHORT_JOB)
    assert out.returncode == 0, out.stdout[-4000:]
    assert time.monotonic() - started < 45, out.stdout[-2000:]
