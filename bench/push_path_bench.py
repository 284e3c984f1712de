"""Benchmark (not a test): what crosses the controller when build.yml pushes the outputs, on the local cloud.

Runs playbooks/build.yml twice on one local cloud (its own state dir and port), with a build script that writes
--size bytes of incompressible outputs, once per path:

- direct (``instance_profile: true``, the default): the build host pushes to S3 with its instance profile;
- controller (``instance_profile: false``): the build host packs the outputs, the controller fetches the tarball
  over SSH and pushes it to S3.

For each run it records the bytes of the controller's SSH connections to the cluster's nodes (Ansible, the
fetch of the controller path, the dashboard tunnel), counted by the host's packet filter per connection
(tests/ssh_traffic.py: the interface counters cannot tell them from the build host's own uploads to the local
S3, which leave by the same subnet bridge), what the controller's run directory holds, the bytes under the run's
S3 prefix and the wall time. Needs root (iptables).

    make collection engine && .venv/bin/python bench/push_path_bench.py --size 256MiB --out build/bench/push-path.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.ssh_traffic import SshTraffic  # noqa: E402 (the counter the e2e Lua test uses)

LOCALCLOUD = ROOT / "tools" / "localcloud" / "localcloud.sh"
BUCKET = "buildfarm-bench"


def parse_size(text):
    units = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def s3_client(env):
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def run_build(env, workdir, mode, size, net):
    cluster = "s3d-bench-%s" % mode
    params = {
        "cluster": cluster,
        "image_id": "ami-12c6146b",
        "host_type": "t3.small",
        "builder_type": "c6i.large",
        "builders": 1,
        "bucket": BUCKET,
        "max_lifetime": 60,
        "build_timeout": 600,  # (with the default ready_timeout, within max_lifetime)
        "vpc_cidr": "10.%d.0.0/16" % net,
        "subnet_cidr": "10.%d.0.0/24" % net,
        "ssh_cidr": env["BUILDFARM_LOCALCLOUD_CONTROLLER_CIDR"],
        "work_dir": str(workdir / "runs"),
        "instance_profile": mode == "direct",
        "build_script_content": '#!/bin/sh\nset -e\nhead -c %d /dev/urandom > "$BUILDFARM_OUTPUT_DIR/blob.bin"\n'
        % size,
        "run_id": "bench-%s" % mode,
    }
    path = workdir / ("params-%s.json" % mode)
    path.write_text(json.dumps(params))
    child = dict(os.environ, **env)
    child.update(
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"), ANSIBLE_PYTHON_INTERPRETER=sys.executable
    )
    with SshTraffic(params["subnet_cidr"]) as traffic:
        started = time.monotonic()
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible-playbook"),
                str(ROOT / "playbooks" / "build.yml"),
                "-e",
                "@%s" % path,
            ],
            env=child,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds, ssh = time.monotonic() - started, traffic.read()
    if proc.returncode:
        raise RuntimeError("build.yml (%s) failed:\n%s" % (mode, proc.stdout[-5000:]))
    run_dir = workdir / "runs" / cluster / params["run_id"]
    listed = (
        s3_client(env).list_objects_v2(Bucket=BUCKET, Prefix="%s/%s/" % (cluster, params["run_id"])).get("Contents", [])
    )
    return {
        "mode": mode,
        "seconds": round(seconds, 1),
        # the controller's SSH connections: what the nodes sent it, what it sent them (IP bytes)
        "from_nodes": ssh["from_nodes"],
        "to_nodes": ssh["to_nodes"],
        "run_dir": sorted(p.name for p in run_dir.iterdir()),
        "run_dir_bytes": sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()),
        "s3_bytes": sum(o["Size"] for o in listed),
        "s3_objects": len(listed),
    }


def render(results, size):
    lines = [
        "| path | outputs MiB | S3 objects | S3 MiB | controller <- nodes MiB | controller -> nodes MiB | "
        "controller run dir MiB | run dir holds | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    mib = 1024 * 1024
    for r in results:
        lines.append(
            "| %s | %.1f | %d | %.1f | %.1f | %.1f | %.2f | %s | %.0f |"
            % (
                r["mode"],
                size / mib,
                r["s3_objects"],
                r["s3_bytes"] / mib,
                r["from_nodes"] / mib,
                r["to_nodes"] / mib,
                r["run_dir_bytes"] / mib,
                ", ".join(r["run_dir"]),
                r["seconds"],
            )
        )
    by_mode = {r["mode"]: r for r in results}
    if {"direct", "controller"} <= set(by_mode):
        direct, controller = by_mode["direct"], by_mode["controller"]
        lines += [
            "",
            "| controller path / direct path | ratio |",
            "|---|---:|",
            "| controller <- nodes bytes | %s |" % _ratio(controller["from_nodes"], direct["from_nodes"]),
            "| controller -> nodes bytes | %s |" % _ratio(controller["to_nodes"], direct["to_nodes"]),
            "| controller run dir bytes | %s |" % _ratio(controller["run_dir_bytes"], direct["run_dir_bytes"]),
            "| wall time | %s |" % _ratio(controller["seconds"], direct["seconds"]),
        ]
    return "\n".join(lines) + "\n"


def _ratio(a, b):
    return "%.2fx" % (a / b) if b else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="256MiB", help="bytes of outputs the build writes (e.g. 256MiB)")
    parser.add_argument("--net", type=int, default=101, help="second octet of the clusters' networks (10.N, 10.N+1)")
    parser.add_argument("--out", help="also write the table (Markdown) to this file")
    args = parser.parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="push-path-") as tmp:
        workdir = Path(tmp)
        state = dict(os.environ, BUILDFARM_LOCALCLOUD_DIR=str(workdir / "localcloud"))
        up = subprocess.run([str(LOCALCLOUD), "up"], env=state, capture_output=True, text=True, check=False)
        if up.returncode:
            raise SystemExit("localcloud up failed:\n" + up.stderr)
        env = {}
        for line in up.stdout.splitlines():
            if line.startswith("export "):
                key, value = line[len("export ") :].split("=", 1)
                env[key] = value.strip("'\"")
        try:
            s3_client(env).create_bucket(
                Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": env["AWS_REGION"]}
            )
            results = [
                run_build(env, workdir, "direct", size, args.net),
                run_build(env, workdir, "controller", size, args.net + 1),
            ]
        finally:
            subprocess.run([str(LOCALCLOUD), "down"], env=state, capture_output=True, text=True, check=False)
    table = render(results, size)
    print(table, end="")
    print(json.dumps(results, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
