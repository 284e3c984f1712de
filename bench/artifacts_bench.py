"""Benchmark (not a test): buildfarm.ec2.artifacts vs `aws s3 sync` vs a loop of amazon.aws.s3_object.

Everything talks to ONE moto server process this script starts on loopback (reset between measurements).
Two data sets of --size bytes: --files small files, and 4 large files. For each tool: a first push (wall
time, throughput) and an unchanged re-push (wall time, request-body bytes counted by a small proxy on
loopback in front of moto; the proxy is only used for the re-push so it does not slow the first push).

Tools: "ours (playbook)" is the module as the one task of an ansible-playbook run; "aws s3 sync (playbook)"
the same playbook with `aws s3 sync` as its one `command` task (so both carry Ansible's start-up, and the
task time from the json callback compares the two steps as a playbook runs them); "ours (direct)" is
module_utils.artifacts.push() from a bare Python process and "aws s3 sync" the bare command; "s3_object loop"
is amazon.aws.s3_object in a loop. All send SSE AES256 and use the same part size / threshold / concurrency
(8 MiB / 8 MiB / 10, the awscli defaults). Every round runs every tool on both sets, the order of the tools
rotating; reported are medians, the client's and the server's CPU time, and ratios of throughput.

    .venv/bin/python bench/artifacts_bench.py --size 1GiB --files 1000 --out docs/bench-artifacts.md
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
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.s3proxy import CountingProxy  # noqa: E402 (the counting proxy the artifacts tests use)

BIN = Path(sys.executable).parent
COLLECTIONS = ROOT / "build" / "collections"
REGION = "eu-west-1"
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
    "ANSIBLE_LOCALHOST_WARNING": "false",
    "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
}

OURS_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Push
      buildfarm.ec2.artifacts:
        endpoint_url: "{{ endpoint }}"
        region: eu-west-1
        cluster: bench
        bucket: "{{ bucket }}"
        prefix: out
        src: "{{ src }}"
"""

S3_OBJECT_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Find
      ansible.builtin.find:
        paths: "{{ src }}"
        recurse: true
      register: found
    - name: Push
      amazon.aws.s3_object:
        endpoint_url: "{{ endpoint }}"
        region: eu-west-1
        bucket: "{{ bucket }}"
        object: "out/{{ item.path | relpath(src) }}"
        src: "{{ item.path }}"
        mode: put
        encrypt: true
      loop: "{{ found.files }}"
      loop_control:
        label: "{{ item.path | basename }}"
"""

AWS_SYNC_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Push
      ansible.builtin.command:
        argv: ["{{ aws }}", --endpoint-url, "{{ endpoint }}", s3, sync, "{{ src }}", "s3://{{ bucket }}/out/",
               --sse, AES256, --only-show-errors, --no-progress]
"""


def parse_size(text):
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Moto:
    def __init__(self, log):
        port = free_port()
        self.url = "http://127.0.0.1:%d" % port
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/moto-api/data.json", timeout=2).read()  # noqa: S310
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto did not start") from None
                time.sleep(0.1)

    def reset(self):
        req = urllib.request.Request(self.url + "/moto-api/reset", data=b"", method="POST")
        urllib.request.urlopen(req, timeout=60).read()  # noqa: S310

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def make_data(base, total, files):
    """Two trees of ``total`` bytes: ``files`` small files in 10 directories, and 4 large files."""
    many, few = base / "many", base / "few"
    block = os.urandom(1024 * 1024)
    each = total // files
    for i in range(files):
        d = many / ("dir%02d" % (i % 10))
        d.mkdir(parents=True, exist_ok=True)
        # Unique content per file (a different first 16 bytes), without paying for os.urandom each time.
        head = i.to_bytes(16, "big")
        body = (block * (each // len(block) + 1))[: each - len(head)]
        (d / ("obj%04d.bin" % i)).write_bytes(head + body)
    few.mkdir(parents=True)
    for i in range(4):
        with open(few / ("part%d.img" % i), "wb") as f:
            left = total // 4
            f.write(i.to_bytes(16, "big"))
            left -= 16
            while left > 0:
                chunk = block[: min(left, len(block))]
                f.write(chunk)
                left -= len(chunk)
    return {"1 GiB as %d files" % files: many, "as 4 large files": few}


def subset(src, dest, count):
    """The first ``count`` files of ``src`` (hard links) and their total size."""
    files = sorted(p for p in src.rglob("*") if p.is_file())[:count]
    size = 0
    for p in files:
        target = dest / p.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(p, target)
        size += p.stat().st_size
    return dest, size


def _cpu(pid):
    """CPU seconds (user + system) of process ``pid`` so far."""
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(cmd, env, what):
    """Run ``cmd``; (wall seconds, CPU seconds of the command and its children, stdout)."""
    full = dict(os.environ)
    full.update(env)
    before = os.times()
    start = time.monotonic()
    proc = subprocess.run(cmd, env=full, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    after = os.times()
    if proc.returncode != 0:
        raise RuntimeError(
            "%s failed (rc=%d):\n%s\n%s" % (what, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
        )
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return elapsed, cpu, proc.stdout


def _task_seconds(out):
    """Wall time of the playbook's last task, from the ansible.posix.json callback."""
    duration = json.loads(out)["plays"][0]["tasks"][-1]["task"]["duration"]
    parse = datetime.datetime.fromisoformat
    return (parse(duration["end"].rstrip("Z")) - parse(duration["start"].rstrip("Z"))).total_seconds()


def create_bucket(endpoint, bucket):
    import boto3

    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return s3


def _playbook(text, name, endpoint, bucket, src, workdir, env=None):
    play = workdir / (name + ".yml")
    play.write_text(text)
    extra = json.dumps({"endpoint": endpoint, "bucket": bucket, "src": str(src), "aws": str(BIN / "aws")})
    cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play), "-e", extra]
    return run(cmd, env or ENV, name)


def ours(endpoint, bucket, src, workdir):
    elapsed, cpu, out = _playbook(OURS_PLAY, "ours", endpoint, bucket, src, workdir)
    task = json.loads(out)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return dict(seconds=elapsed, cpu=cpu, task_seconds=_task_seconds(out), detail=task)


def aws_sync_task(endpoint, bucket, src, workdir):
    elapsed, cpu, out = _playbook(AWS_SYNC_PLAY, "aws_sync", endpoint, bucket, src, workdir)
    return dict(seconds=elapsed, cpu=cpu, task_seconds=_task_seconds(out))


DIRECT = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper
from ansible_collections.buildfarm.ec2.plugins.module_utils import artifacts, aws


class Module:  # the one thing aws.s3_client needs from AnsibleAWSModule: its client factory
    def client(self, service, retry_decorator=None, config=None):
        import boto3
        from botocore.config import Config

        raw = boto3.client(service, region_name="eu-west-1", endpoint_url=sys.argv[2], config=Config(**config))
        return RetryingBotoClientWrapper(raw, retry_decorator)


bucket, src, compare = sys.argv[3:6]
params = dict(cluster="bench", bucket=bucket, prefix="out", src=src, include=["**/*"], encryption="AES256",
              storage_class="STANDARD", compare=compare)
print(json.dumps(artifacts.push(aws.s3_client(Module(), 12), params)))
"""


def ours_direct(endpoint, bucket, src, workdir, compare="sha256"):
    cmd = [sys.executable, "-c", DIRECT, str(COLLECTIONS), endpoint, bucket, str(src), compare]
    elapsed, cpu, out = run(cmd, ENV, "ours (direct)")
    return dict(seconds=elapsed, cpu=cpu, detail=json.loads(out))


def ours_direct_size_mtime(endpoint, bucket, src, workdir):
    return ours_direct(endpoint, bucket, src, workdir, compare="size_mtime")


def aws_sync(endpoint, bucket, src, workdir):
    cmd = [str(BIN / "aws"), "--endpoint-url", endpoint, "s3", "sync", str(src), "s3://%s/out/" % bucket]
    cmd += ["--sse", "AES256", "--only-show-errors", "--no-progress"]
    elapsed, cpu, _out = run(cmd, ENV, "aws s3 sync")
    return dict(seconds=elapsed, cpu=cpu)


def s3_object_loop(endpoint, bucket, src, workdir):
    env = dict(ENV, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal")
    elapsed, cpu, _out = _playbook(S3_OBJECT_PLAY, "s3_object", endpoint, bucket, src, workdir, env)
    return dict(seconds=elapsed, cpu=cpu)


TOOLS = {
    "ours (playbook)": ours,
    "aws s3 sync (playbook)": aws_sync_task,
    "ours (direct)": ours_direct,
    "ours size_mtime (direct)": ours_direct_size_mtime,
    "aws s3 sync": aws_sync,
    "s3_object loop": s3_object_loop,
}
# Each pair is compared as a ratio of throughputs (> 1: ours is faster).
PAIRS = [
    ("ours (playbook)", "aws s3 sync (playbook)", "seconds", "one-task playbooks, whole process"),
    ("ours (playbook)", "aws s3 sync (playbook)", "task_seconds", "the task inside the playbook"),
    ("ours (direct)", "aws s3 sync", "seconds", "bare processes: push() from Python vs the aws command"),
    ("ours (playbook)", "aws s3 sync", "seconds", "our playbook vs the bare aws command"),
    ("ours (playbook)", "s3_object loop", "seconds", "one-task playbook vs s3_object in a loop"),
    ("ours (direct)", "aws s3 sync", "repush_seconds", "unchanged re-push, bare: content hashes vs size+mtime"),
    ("ours size_mtime (direct)", "aws s3 sync", "repush_seconds", "unchanged re-push, bare: both size+mtime"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1GiB", help="bytes per data set (e.g. 1GiB, 256MiB)")
    parser.add_argument("--files", type=int, default=1000, help="number of files in the many-files set")
    parser.add_argument(
        "--tools",
        default="ours (playbook),aws s3 sync (playbook),ours (direct),aws s3 sync",
        help="comma-separated subset of: " + ", ".join(TOOLS),
    )
    parser.add_argument("--runs", type=int, default=3, help="rounds; the tools' order rotates every round")
    parser.add_argument(
        "--s3-object-files",
        type=int,
        default=0,
        help="run the s3_object loop on only the first N files of each set (0: all; it takes ~2.5 s per file)",
    )
    parser.add_argument("--out", help="write the results as Markdown to this file")
    parser.add_argument("--workdir", help="where to put the data (a temporary directory by default)")
    args = parser.parse_args()
    total = parse_size(args.size)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        os.environ[key] = ENV[key]
    tools = [t.strip() for t in args.tools.split(",")]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        parser.error("unknown tool(s) %s; choose from: %s" % (unknown, ", ".join(TOOLS)))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bf-artifacts-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if not (COLLECTIONS / "ansible_collections" / "buildfarm" / "ec2").exists():
        (COLLECTIONS / "ansible_collections" / "buildfarm").mkdir(parents=True, exist_ok=True)
        (COLLECTIONS / "ansible_collections" / "buildfarm" / "ec2").symlink_to(ROOT)
    print("data: %s in %s" % (args.size, workdir), flush=True)
    sets = make_data(workdir / "data", total, args.files)
    sets = {name.replace("1 GiB", args.size): path for name, path in sets.items()}
    moto = Moto(workdir / "moto.log")
    runs = []
    started = time.time()
    try:
        for round_no in range(args.runs):
            order = tools[round_no % len(tools) :] + tools[: round_no % len(tools)]
            for set_name, src in sets.items():
                for tool in order:
                    runs.append(measure(moto, tool, set_name, src, total, args, workdir, len(runs)))
                    print(json.dumps(runs[-1]), flush=True)
    finally:
        moto.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report = render(runs, args, tools, started)
    print(report)
    if args.out:
        Path(args.out).write_text(report)


def measure(moto, tool, set_name, src, total, args, workdir, number):
    """One first push (and one unchanged re-push through the counting proxy) of ``src`` by ``tool``."""
    tool_src, tool_bytes = src, total
    if tool == "s3_object loop" and args.s3_object_files:
        tool_src, tool_bytes = subset(src, workdir / ("subset-" + src.name), args.s3_object_files)
    moto.reset()
    bucket = "bench-%d" % number
    create_bucket(moto.url, bucket)
    server_cpu = _cpu(moto.proc.pid)
    first = TOOLS[tool](moto.url, bucket, tool_src, workdir)
    server_cpu = _cpu(moto.proc.pid) - server_cpu
    proxy = CountingProxy(moto.url)
    try:
        again = TOOLS[tool](proxy.url, bucket, tool_src, workdir)
    finally:
        proxy.close()
    row = dict(
        set=set_name,
        tool=tool,
        files=sum(1 for p in tool_src.rglob("*") if p.is_file()),
        bytes=tool_bytes,
        seconds=round(first["seconds"], 2),
        task_seconds=round(first["task_seconds"], 2) if "task_seconds" in first else None,
        cpu=round(first["cpu"], 2),
        server_cpu=round(server_cpu, 2),
        repush_seconds=round(again["seconds"], 2),
        repush_body_bytes=sum(r[2] for r in proxy.requests),
        repush_writes=len(proxy.writes()),
        repush_requests=len(proxy.requests),
    )
    if again.get("detail") is not None:
        row["repush_bytes_uploaded"] = again["detail"].get("bytes_uploaded")
    return row


def render(runs, args, tools, started):
    def med(rows, key):
        values = [r[key] for r in rows if r[key] is not None]
        return statistics.median(values) if values else None

    def fmt(value, pattern="%.2f"):
        return "-" if value is None else pattern % value

    lines = [
        "Medians of %d run(s), started %s." % (args.runs, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))),
        "",
        "| data set | tool | files | MiB | first push s | task s | MiB/s | client CPU s | server CPU s"
        " | re-push s | re-push body bytes | re-push PUT/POST | re-push requests |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    sets = list(dict.fromkeys(r["set"] for r in runs))
    for set_name in sets:
        for tool in tools:
            rows = [r for r in runs if r["set"] == set_name and r["tool"] == tool]
            if not rows:
                continue
            seconds = med(rows, "seconds")
            lines.append(
                "| %s | %s | %d | %.0f | %.2f | %s | %.1f | %.2f | %.2f | %.2f | %d | %d | %d |"
                % (
                    set_name,
                    tool,
                    rows[0]["files"],
                    rows[0]["bytes"] / 1024**2,
                    seconds,
                    fmt(med(rows, "task_seconds")),
                    rows[0]["bytes"] / 1024**2 / seconds,
                    med(rows, "cpu"),
                    med(rows, "server_cpu"),
                    med(rows, "repush_seconds"),
                    max(r["repush_body_bytes"] for r in rows),
                    max(r["repush_writes"] for r in rows),
                    med(rows, "repush_requests"),
                )
            )
    lines += ["", "| data set | ours / peer, throughput (> 1: ours faster) | what is compared | per run |"]
    lines += ["|---|---|---|---|"]
    for set_name in sets:
        for ours_tool, peer, key, what in PAIRS:
            mine = [r for r in runs if r["set"] == set_name and r["tool"] == ours_tool]
            theirs = [r for r in runs if r["set"] == set_name and r["tool"] == peer]
            if not mine or not theirs or med(mine, key) is None or med(theirs, key) is None:
                continue
            # Throughput per byte: the s3_object loop may have pushed a subset.
            ratio = (med(theirs, key) / theirs[0]["bytes"]) / (med(mine, key) / mine[0]["bytes"])
            per_run = [(t[key] / t["bytes"]) / (m[key] / m["bytes"]) for m, t in zip(mine, theirs, strict=True)]
            lines.append(
                "| %s | **%.2fx** (%s vs %s, %s) | %s | %s |"
                % (
                    set_name,
                    ratio,
                    ours_tool,
                    peer,
                    key.replace("_", " "),
                    what,
                    ", ".join("%.2f" % r for r in per_run),
                )
            )
    command = "`.venv/bin/python bench/artifacts_bench.py --size %s --files %d --runs %d --tools '%s'" % (
        args.size,
        args.files,
        args.runs,
        args.tools,
    )
    command += " --s3-object-files %d%s`" % (args.s3_object_files, " --out %s" % args.out if args.out else "")
    return "\n".join(lines) + "\n\nCommand: " + command + "\n"


if __name__ == "__main__":
    main()
