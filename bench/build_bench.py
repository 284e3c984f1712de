"""Benchmark (not a test): the distributed build against `make -j`, and build.yml's own time, on the local cloud.

One local cloud of this script (its own state dir and port), Lua's sources from the host's Debian mirror
(examples/fetch-debian-source.sh), and two parts:

1. overhead: ONE kept cluster (a c6i.large host and --builders c6i.large builders, made by build.yml with
   keep_cluster) and, on its host over SSH, round after round with the order rotating: Lua built with plain
   `make -j<cores>` on the host alone, and with distcc over the first K builders (K = 1, 2, 4; DISTCC_HOSTS as
   build.yml writes it: the K builders and localhost/2, make -j<slots>). All containers of this machine share its
   cores (docs/localcloud.md: an instance gets at most the host's cores), so every variant has the same total CPU:
   what distcc costs shows as the ratio of its wall time to make -j's. Each build also reads the client's CPU time
   and the builders' distccd CPU meters (the distcc role's distccd-cpu), so the speedup model
   (plugins/module_utils/speedup.py) made from the K=1 build predicts K=2 and K=4, side by side with what they took.
2. orchestration: build.yml runs of fresh clusters of 1+2, 1+5 and 1+11 nodes with an empty build script: the time
   outside the build script (the report's phases) and the EC2 and S3 API requests the local cloud answered during
   the run (its endpoint log), the EC2 ones per phase too (between the bounds of each phase in the report).

    .venv/bin/python bench/build_bench.py --rounds 3 --out docs/bench-build.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the collection as Ansible sees it (make collection: build/collections/ansible_collections/buildfarm/ec2)
sys.path[:0] = [str(ROOT), str(ROOT / "build" / "collections")]
from ansible_collections.buildfarm.ec2.plugins.module_utils import speedup  # noqa: E402

BIN = Path(sys.executable).parent
# A build script that builds nothing: one output file, since a successful build with nothing to push fails the job.
EMPTY_BUILD = 'touch "$BUILDFARM_OUTPUT_DIR/empty"\n'
LOCALCLOUD = ROOT / "tools" / "localcloud" / "localcloud.sh"
BASE_IMAGE = "ami-12c6146b"  # the local cloud's Debian 12 image
# build.yml's parameters of every run here (--baked: image_id auto, the image bake.yml made from BASE_IMAGE)
BASE = {"image_id": BASE_IMAGE, "host_type": "c6i.large", "builder_type": "c6i.large", "bucket": "bench-build"}
SSH = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
# One build on the host: clean, then the build with `times` after it (the children's user and system time).
# `times` runs in this shell, not in a pipeline: a builtin in a pipeline runs in a subshell, which has no children
# of its own to report (the reading was 0.0 that way).
BUILD = (
    "set -e; cd /srv/buildfarm/src; make clean >/dev/null 2>&1 || true; %s TIMEFORMAT=%%R; "
    "{ time make -j%d CC=%s linux >/dev/null 2>&1; } 2>/tmp/bench-wall; times >/tmp/bench-times; "
    "tail -1 /tmp/bench-times; cat /tmp/bench-wall"
)


def write_report(lines, out=None):
    """A bench's report: printed, and written to ``out`` when given (the benches here share it)."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)


def lua_sources():
    """Lua's sources from the host's Debian mirror (examples/fetch-debian-source.sh), kept in build/e2e/sources."""
    return subprocess.run(
        [str(ROOT / "examples" / "fetch-debian-source.sh"), "lua5.4", str(ROOT / "build" / "e2e" / "sources")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]


def cloud_up(state):
    env = dict(os.environ, BUILDFARM_LOCALCLOUD_DIR=str(state))
    up = subprocess.run([str(LOCALCLOUD), "up"], env=env, capture_output=True, text=True, check=True)
    for line in up.stdout.splitlines():
        if line.startswith("export "):
            key, value = line[len("export ") :].split("=", 1)
            env[key] = value.strip("'\"")
    return env


def aws_client(env, service):
    """A boto3 client of the local cloud of ``env`` (its endpoint, region and credentials, not this process's)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
    )


def playbook(env, work, name, params):
    """ansible-playbook playbooks/<name> with ``params`` as extra vars; returns (seconds, start, end as epoch)."""
    params = dict(work_dir=str(work), ssh_cidr=env["BUILDFARM_LOCALCLOUD_CONTROLLER_CIDR"], **params)
    path = work / ("params-%s-%s.json" % (name, params["cluster"]))
    path.write_text(json.dumps(params))
    env = dict(
        env,
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        # as bin/buildfarm-build runs Ansible: every node at once (Ansible's default is 5 at a time)
        ANSIBLE_FORKS=os.environ.get("ANSIBLE_FORKS", "50"),
    )
    start = time.time()
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), str(ROOT / "playbooks" / name), "-e", "@%s" % path],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    end = time.time()
    if proc.returncode != 0:
        sys.exit("%s failed for %s:\n%s" % (name, params["cluster"], (proc.stdout + proc.stderr)[-4000:]))
    return end - start, start, end


def bake(env, work):
    """playbooks/bake.yml from the local cloud's Debian image; afterwards build.yml runs boot it (image_id auto).
    Returns bake.yml's seconds."""
    seconds, _start, _end = playbook(
        env,
        work,
        "bake.yml",
        dict(cluster="bake", base_image_id=BASE_IMAGE, vpc_cidr="10.119.0.0/16", subnet_cidr="10.119.0.0/24"),
    )
    BASE.update(image_id="auto", base_image_id=BASE_IMAGE)
    return seconds


def build_yml(env, work, params):
    """One build.yml run; returns (seconds, its report, its start and end as epoch seconds)."""
    params = dict(BASE, **params)
    seconds, start, end = playbook(env, work, "build.yml", params)
    reports = sorted((work / params["cluster"]).glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    return seconds, json.loads(reports[-1].read_text()), start, end


def sh(address, key, command):
    out = subprocess.run(
        ["ssh", *SSH, "-i", str(key), "admin@" + address, "sudo bash -c %s" % shlex.quote(command)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if out.returncode != 0:
        sys.exit("ssh %s failed: %s" % (address, out.stderr[-2000:]))
    return out.stdout


def seconds_of(value):
    minutes, seconds = re.fullmatch(r"(\d+)m([\d.]+)s", value).groups()
    return int(minutes) * 60 + float(seconds)


def one_build(host, builders, key, k):
    """Lua on the host: plain make -j (k=0) or distcc over the first k builders; (wall, client CPU, server CPU)."""
    if k == 0:
        command = BUILD % ("", 2, "gcc")
    else:
        hosts = " ".join("%s/2" % b["private"] for b in builders[:k]) + " localhost/2"
        command = BUILD % ("export DISTCC_HOSTS=%s;" % shlex.quote(hosts), 2 * k + 2, "'distcc gcc'")
    meters = [float(sh(b["public"], key, "/usr/local/libexec/buildfarm/distccd-cpu")) for b in builders[:k]]
    user, system, wall = sh(host["public"], key, command).split()
    after = [float(sh(b["public"], key, "/usr/local/libexec/buildfarm/distccd-cpu")) for b in builders[:k]]
    return float(wall), seconds_of(user) + seconds_of(system), sum(a - b for a, b in zip(after, meters, strict=True))


def nodes_of(env, cluster):
    ec2 = aws_client(env, "ec2")
    found = ec2.describe_instances(
        Filters=[
            {"Name": "tag:buildfarm:cluster", "Values": [cluster]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )
    nodes = {"host": [], "builder": []}
    for r in found["Reservations"]:
        for i in r["Instances"]:
            role = {t["Key"]: t["Value"] for t in i["Tags"]}["buildfarm:role"]
            nodes[role].append(
                {"private": i["PrivateIpAddress"], "public": i["PublicIpAddress"], "id": i["InstanceId"]}
            )
    return nodes["host"][0], sorted(nodes["builder"], key=lambda b: b["id"])


def sweep(env, work, cluster):
    env = dict(
        env, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"), ANSIBLE_PYTHON_INTERPRETER=sys.executable
    )
    subprocess.run(
        [str(BIN / "ansible-playbook"), str(ROOT / "playbooks" / "sweep.yml"), "-e", "cluster=" + cluster]
        + ["-e", "region=" + env["AWS_REGION"], "-e", "endpoint_url=" + env["AWS_ENDPOINT_URL"]],
        env=env,
        capture_output=True,
        check=False,
    )


def requests_between(log, start, end):
    """EC2-style (POST /) and S3 requests the endpoint answered between two epoch times."""
    counts = {"ec2": 0, "other": 0}
    for line in log.read_text().splitlines():
        found = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+) .*\"(\w+) (\S+) HTTP", line)
        if not found:
            continue
        at = datetime.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(found.group(2)) / 1000
        if start <= at <= end:
            counts["ec2" if (found.group(3), found.group(4)) == ("POST", "/") else "other"] += 1
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--builders", type=int, default=4)
    parser.add_argument("--orchestration", default="2,5,11", help="builder counts of the orchestration runs")
    parser.add_argument("--skip-orchestration", action="store_true")
    parser.add_argument("--baked", action="store_true", help="bake an image first, boot it (image_id auto)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="build-bench-"))
    state = work / "cloud"
    state.mkdir()
    sources = lua_sources()
    env = cloud_up(state)
    lines = [
        "Run %s UTC on the %s, Ansible with %s forks; this machine: %d cores shared by every container."
        % (
            datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "image bake.yml baked (image_id auto)" if args.baked else "plain base image (packages installed)",
            os.environ.get("ANSIBLE_FORKS", "50"),
            os.cpu_count(),
        ),
        "",
    ]
    try:
        aws_client(env, "s3").create_bucket(
            Bucket=BASE["bucket"], CreateBucketConfiguration={"LocationConstraint": env["AWS_REGION"]}
        )
        if args.baked:
            lines += ["bake.yml: %.0f s (once; not part of any run below)." % bake(env, work), ""]
        # 1. overhead on one kept cluster
        ks = [k for k in (1, 2, 4) if k <= args.builders]
        build_yml(
            env,
            work,
            dict(
                cluster="bench-lua",
                builders=args.builders,
                vpc_cidr="10.120.0.0/16",
                subnet_cidr="10.120.0.0/24",
                source_dir=sources,
                build_script_content=EMPTY_BUILD,
                keep_cluster=True,
            ),
        )
        host, builders = nodes_of(env, "bench-lua")
        key = work / "bench-lua" / "id_cluster"
        variants = [0] + ks
        load_before = os.getloadavg()[0]
        results = {k: [] for k in variants}
        for r in range(args.rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for k in order:
                results[k].append(one_build(host, builders, key, k))
                print(
                    "round %d %s: %s" % (r + 1, "make -j" if k == 0 else "distcc K=%d" % k, results[k][-1]), flush=True
                )
        sweep(env, work, "bench-lua")
        med = {k: tuple(statistics.median(x[i] for x in results[k]) for i in range(3)) for k in variants}
        make_wall = med[0][0]
        lines += [
            "## Overhead: distcc over K builders against make -j, on the same cores",
            "",
            "Lua %s (33 C files), %d rounds, order rotated, medians; this machine: %d cores shared by every container;"
            " load average %.1f when the rounds started, %.1f when they ended (other work on the machine counts)."
            % (Path(sources).name, args.rounds, os.cpu_count(), load_before, os.getloadavg()[0]),
            "",
            "| variant | wall s | ratio to make -j | client CPU s | builders' CPU s | model from K=1 predicts s |",
            "|---|---|---|---|---|---|",
        ]
        base = med[ks[0]]
        fractions = speedup.fractions_of(base[0], base[1], 2, base[2], 2, ks[0])
        for k in variants:
            wall, client, server = med[k]
            predicted = "" if k == 0 or fractions is None else "%.1f" % speedup.predict(fractions, k)
            lines.append(
                "| %s | %.1f | %.2f | %.1f | %.1f | %s |"
                % (
                    "make -j2 (host only)" if k == 0 else "distcc K=%d" % k,
                    wall,
                    wall / make_wall,
                    client,
                    server,
                    predicted,
                )
            )
        lines.append("")
        # 2. orchestration
        if not args.skip_orchestration:
            lines += [
                "## Orchestration: build.yml outside the build script",
                "",
                "| nodes | total s | provision s | configure s | build s | validate, push, teardown s |"
                " outside the script s | EC2 API requests (all: provision, configure, build, the rest) |"
                " S3 and other requests |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            log = state / "endpoint.log"
            for n, count in enumerate(int(c) for c in args.orchestration.split(",")):
                total, report, start, end = build_yml(
                    env,
                    work,
                    dict(
                        cluster="bench-orch%d" % count,
                        builders=count,
                        vpc_cidr="10.%d.0.0/16" % (121 + n),
                        subnet_cidr="10.%d.0.0/24" % (121 + n),
                        build_script_content=EMPTY_BUILD,
                    ),
                )
                phases = {p["phase"]: p for p in report["phases"]}
                calls = requests_between(log, start, end)
                # per phase: between its bounds in the report (the controller's clock, as the endpoint's log)
                per_phase = [
                    (
                        requests_between(log, phases[p]["started"], phases[p]["ended"])["ec2"]
                        if phases.get(p, {}).get("started") and phases[p].get("ended")
                        else 0
                    )
                    for p in ("provision", "configure", "build")
                ]
                named = [phases.get(p, {}).get("seconds", 0.0) for p in ("provision", "configure", "build")]
                outside = total - named[2]
                lines.append(
                    "| 1+%d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %d: %s, %d | %d |"
                    % (
                        count,
                        total,
                        *named,
                        total - sum(named),
                        outside,
                        calls["ec2"],
                        ", ".join(str(c) for c in per_phase),
                        calls["ec2"] - sum(per_phase),
                        calls["other"],
                    )
                )
            lines.append("")
    finally:
        subprocess.run([str(LOCALCLOUD), "down"], env=dict(env, BUILDFARM_LOCALCLOUD_DIR=str(state)), check=False)
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
