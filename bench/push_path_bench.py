"""Benchmark (not a test): what crosses the controller when build.yml pushes the outputs, on the local cloud.

Runs playbooks/build.yml twice on one local cloud (its own state dir and port), with a build script that writes
--size bytes of incompressible outputs, once per path:

- direct (``instance_profile: true``, the default): the build host pushes to S3 with its instance profile;
- controller (``instance_profile: false``): the build host packs the outputs, the controller fetches the tarball
  over SSH and pushes it to S3.

For each run it records the bytes the controller exchanged with the nodes (the counters of the local cloud's
internet bridge, the only way between the controller and the nodes' public addresses: SSH, the dashboard tunnel),
what the controller's run directory holds, the bytes under the run's S3 prefix and the wall time.

    flock /tmp/bf-docker.lock .venv/bin/python bench/push_path_bench.py --size 256MiB --out /tmp/push-path.md
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
LOCALCLOUD = ROOT / "tools" / "localcloud" / "localcloud.sh"
BUCKET = "buildfarm-bench"


def parse_size(text):
    units = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def bridge_of(cidr):
    """The host interface holding the .1 of the local cloud's internet network."""
    gateway = str(next(ipaddress.ip_network(cidr).hosts()))
    for line in subprocess.run(
        ["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True
    ).stdout.splitlines():
        fields = line.split()
        if fields[3].split("/")[0] == gateway:
            return fields[1]
    raise RuntimeError("no interface holds %s" % gateway)


def counters(interface):
    base = Path("/sys/class/net") / interface / "statistics"
    return {name: int((base / name).read_text()) for name in ("rx_bytes", "tx_bytes")}


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
    bridge = bridge_of(env["BUILDFARM_LOCALCLOUD_INTERNET_CIDR"])
    child = dict(os.environ, **env)
    child.update(
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"), ANSIBLE_PYTHON_INTERPRETER=sys.executable
    )
    before, started = counters(bridge), time.monotonic()
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
    seconds, after = time.monotonic() - started, counters(bridge)
    if proc.returncode:
        raise RuntimeError("build.yml (%s) failed:\n%s" % (mode, proc.stdout[-5000:]))
    run_dir = workdir / "runs" / cluster / params["run_id"]
    listed = (
        s3_client(env).list_objects_v2(Bucket=BUCKET, Prefix="%s/%s/" % (cluster, params["run_id"])).get("Contents", [])
    )
    return {
        "mode": mode,
        "seconds": round(seconds, 1),
        # rx: what the host received from the nodes on the bridge, tx: what it sent them
        "from_nodes": after["rx_bytes"] - before["rx_bytes"],
        "to_nodes": after["tx_bytes"] - before["tx_bytes"],
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
    return "\n".join(lines) + "\n"


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
        Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
