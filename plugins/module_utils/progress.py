# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build progress: distccd's stats counters, distcc's fallback warnings in the build log, the log's last line.

Read on the build host by the buildfarm.ec2.build_progress module, printed on the controller by the
buildfarm.ec2.build_wait action and shown by the dashboard (progress.json next to status.json).

Remote compiles are what the builders' distccd counted (``dcc_compile_ok`` + ``dcc_compile_error`` on the stats
port, since a baseline taken when the build started: the counters are the daemon's, a kept cluster keeps them);
local fallbacks are distcc's own "failed to distribute, running locally instead" warnings in the build log. A
builder whose stats port does not answer is listed as unreachable and counts with its last known value.
"""

from __future__ import annotations

import socket

FALLBACK_MARK = b"running locally instead"
COMPILE_COUNTERS = ("dcc_compile_ok", "dcc_compile_error")
LAST_LINE_MAX = 200


def parse_stats(text):
    """distccd --stats output (an HTTP/1.0 text response) -> {counter: int} for its integer counters."""
    counters = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("dcc_"):
            try:
                counters[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return counters


def read_stats(address, port, timeout=3.0):
    """The counters of one distccd stats port; None when it does not answer with them."""
    chunks = []
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError:
        return None
    counters = parse_stats(b"".join(chunks).decode("utf-8", "replace"))
    return counters if "dcc_compile_ok" in counters else None


def compiles(counters):
    """Compiles a distccd ran (succeeded or failed) from its counters."""
    return sum(counters.get(name, 0) for name in COMPILE_COUNTERS)


def scan_log(path):
    """(fallbacks, last non-empty line) of a build log; (0, '') when there is none yet."""
    fallbacks = 0
    tail = b""
    try:
        with open(path, "rb") as handle:
            carry = b""
            while True:
                chunk = handle.read(1 << 20)
                if not chunk:
                    break
                # The previous chunk's tail, shorter than the mark, finds a mark cut in two and none twice.
                data = carry + chunk
                fallbacks += data.count(FALLBACK_MARK)
                carry = data[-(len(FALLBACK_MARK) - 1) :]
                tail = (tail + chunk)[-8192:]
    except OSError:
        return 0, ""
    lines = [line.strip() for line in tail.decode("utf-8", "replace").splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return fallbacks, (last[: LAST_LINE_MAX - 3] + "...") if len(last) > LAST_LINE_MAX else last


def collect(log, servers, port, baseline=None, elapsed=None):
    """The progress document: elapsed seconds, remote compiles since the baseline, local fallbacks, last line.

    servers: addresses of the distccd stats ports; baseline: {address: compiles} when the build started."""
    baseline = baseline or {}
    builders = []
    for address in servers:
        counters = read_stats(address, port)
        now = compiles(counters) if counters is not None else None
        builders.append(
            {
                "address": address,
                "reachable": counters is not None,
                "total": now,
                "compiles": max(0, now - int(baseline.get(address, 0))) if now is not None else None,
            }
        )
    fallbacks, last = scan_log(log)
    return {
        "schema": 1,
        "elapsed": None if elapsed is None else int(elapsed),
        "remote": sum(b["compiles"] or 0 for b in builders),
        "local": fallbacks,
        "unreachable": [b["address"] for b in builders if not b["reachable"]],
        "builders": builders,
        "last_line": last,
    }


def baseline_of(doc):
    """{address: total} of a progress document, to pass as the next call's baseline."""
    return {b["address"]: b["total"] for b in doc.get("builders", []) if b.get("total") is not None}


def duration(seconds):
    """12 -> '12s', 150 -> '2m30s', 3725 -> '1h02m05s'."""
    seconds = int(seconds or 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return "%dh%02dm%02ds" % (hours, minutes, secs)
    if minutes:
        return "%dm%02ds" % (minutes, secs)
    return "%ds" % secs


def line(doc):
    """The one progress line the controller prints (and the dashboard shows)."""
    text = "%s elapsed, compiles %d remote / %d local fallback" % (
        duration(doc.get("elapsed")),
        doc.get("remote", 0),
        doc.get("local", 0),
    )
    if doc.get("cache"):
        text += ", cache %d hits / %d misses" % (doc["cache"]["hits"], doc["cache"]["misses"])
    if doc.get("unreachable"):
        text += ", stats unreachable: " + " ".join(doc["unreachable"])
    return text + " | log: " + (doc.get("last_line") or "(empty)")
