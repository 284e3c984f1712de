"""Inventory build time: buildfarm.ec2.instances vs amazon.aws.aws_ec2 on one moto server (not a test).

For each size, the server holds SIZE instances of cluster ``bench`` (one ``host``, the rest ``builder``)
plus SIZE/10 instances of another cluster. Both plugins list the ``bench`` cluster's running instances in
one region and produce the same groups (``cluster_bench``, ``host``, ``builder``): ours by itself, aws_ec2
with the same server-side filters and ``keyed_groups`` on the tags. The runs of ``ansible-inventory --list``
alternate between the two plugins; the report gives medians of wall time and of the child's CPU time
(user+sys, the controller's own work) and the ratio ours/aws_ec2, plus cached runs of both (the inventory
build inside one process, answered from a jsonfile cache with the endpoint dead).

``--moto-tag-index`` (the default) serves tags from moto's per-resource dict instead of moto's
``describe_tags`` scan over every tag of the region, which moto runs once per instance and per filter: that
makes stock moto's DescribeInstances quadratic in the instance count and the server time would swamp both
plugins. ``--stock-moto`` measures with moto unchanged.

    .venv/bin/python bench/inventory_bench.py --sizes 1000 5000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COLLECTIONS = ROOT / "build" / "collections"
REGION = "eu-west-1"
CLUSTER = "bench"

TAG_INDEX_PATCH = """
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix


def get_tags(self):
    if not self.id:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
    tags = self.ec2_backend.tags.get(self.id) or {}
    return [{"resource_id": self.id, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]


TaggedEC2Resource.get_tags = get_tags
"""

# botocore gives up on a response after 60 s; stock aws_ec2 has no option to change that, and on a busy machine
# moto needs longer than that for 5,000 instances. Both plugins' processes get this longer default (ours sets
# 300 s itself).
SITECUSTOMIZE = """
try:
    import botocore.config
    botocore.config.Config.OPTION_DEFAULTS["read_timeout"] = 900
except ImportError:
    pass
"""

OURS = """plugin: buildfarm.ec2.instances
regions: [{region}]
clusters: [{cluster}]
hostnames: [instance-id, private-ip-address]
"""
OURS_CACHED = OURS + """cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: {cache}
cache_timeout: 3600
"""
CACHE = """cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: {cache}
cache_timeout: 3600
"""
AWS_EC2 = """plugin: amazon.aws.aws_ec2
regions: [{region}]
filters:
  tag:buildfarm:cluster: {cluster}
  instance-state-name: running
hostnames: [instance-id]
keyed_groups:
  - key: tags['buildfarm:cluster']
    prefix: cluster
  - key: tags['buildfarm:role']
    separator: ''
compose:
  ansible_host: private_ip_address
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(tag_index, log):
    port = free_port()
    code = (TAG_INDEX_PATCH if tag_index else "") + "\nimport moto.server\nmoto.server.main(%r)\n" % (
        ["-H", "127.0.0.1", "-p", str(port)]
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/data.json", timeout=2).read()  # noqa: S310 (loopback)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("moto server did not start") from None
            time.sleep(0.2)


def seed(url, size):
    """SIZE instances of the bench cluster (1 host) and SIZE/10 of another; returns the seconds it took."""
    urllib.request.urlopen(
        urllib.request.Request(url + "/moto-api/reset", data=b"", method="POST")
    ).read()  # noqa: S310
    ec2 = boto3.client(
        "ec2", region_name=REGION, endpoint_url=url, aws_access_key_id="bench", aws_secret_access_key="bench"
    )
    started = time.monotonic()
    plan = [(CLUSTER, "host", 1), (CLUSTER, "builder", size - 1), ("other", "builder", size // 10)]
    for cluster, role, count in plan:
        while count > 0:
            batch = min(500, count)
            tags = [
                {"Key": "buildfarm:cluster", "Value": cluster},
                {"Key": "buildfarm:role", "Value": role},
                {"Key": "buildfarm:run", "Value": "r1"},
                {"Key": "Name", "Value": "%s-%s" % (cluster, role)},
            ]
            ec2.run_instances(
                ImageId="ami-12c6146b",
                MinCount=batch,
                MaxCount=batch,
                InstanceType="c5.large",
                TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
            )
            count -= batch
    return time.monotonic() - started


def run_inventory(path, env, extra=()):
    """Wall and CPU seconds of one ``ansible-inventory --list`` and its parsed output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(path), "--list", *extra],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit("ansible-inventory failed on %s:\n%s" % (path, proc.stderr[-3000:]))
    return wall, cpu, json.loads(proc.stdout)


def groups_of(data):
    """{group: sorted hosts} without the bookkeeping groups, to check both plugins built the same thing."""
    skip = {"_meta", "all", "ungrouped", "aws_ec2"}
    return {g: sorted(v.get("hosts", [])) for g, v in data.items() if g not in skip and v.get("hosts")}


def in_process_cached(path, env):
    """Seconds the plugin takes to fill the inventory from its cache, measured inside one process."""
    code = (
        "import time\n"
        "from ansible.plugins.loader import init_plugin_loader\n"
        "init_plugin_loader([%r])\n"
        "from ansible.parsing.dataloader import DataLoader\n"
        "from ansible.inventory.manager import InventoryManager\n"
        "t = time.monotonic()\n"
        "inv = InventoryManager(loader=DataLoader(), sources=[%r])\n"
        "print(time.monotonic() - t, len(inv.hosts))\n" % (str(COLLECTIONS), str(path))
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit("in-process inventory failed:\n%s" % out.stderr[-3000:])
    seconds, hosts = out.stdout.split()[-2:]
    return float(seconds), int(hosts)


def bench(url, size, runs, workdir):
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION=REGION,
        AWS_ENDPOINT_URL=url,
        AWS_URL=url,
        AWS_EC2_METADATA_DISABLED="true",
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        ANSIBLE_SYSTEM_WARNINGS="false",
    )
    (workdir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    # Only aws_ec2 needs the longer read timeout (ours sets its own); the patch imports botocore at start-up,
    # which would add to our cached runs the very import they avoid.
    their_env = dict(env, PYTHONPATH=str(workdir))
    seeded = seed(url, size)
    values = dict(region=REGION, cluster=CLUSTER, cache=workdir / ("cache-%d" % size))
    ours = workdir / ("ours-%d.buildfarm.yml" % size)
    ours.write_text(OURS.format(**values))
    theirs = workdir / ("theirs-%d.aws_ec2.yml" % size)
    theirs.write_text(AWS_EC2.format(**values))
    cached = workdir / ("cached-%d.buildfarm.yml" % size)
    cached.write_text(OURS_CACHED.format(**values))
    their_cached = workdir / ("theirs-cached-%d.aws_ec2.yml" % size)
    their_values = dict(values)
    their_values["cache"] = workdir / ("their-cache-%d" % size)
    their_cached.write_text((AWS_EC2 + CACHE).format(**their_values))

    times = {"ours": [], "aws_ec2": []}
    outputs = {}
    for i in range(runs):
        order = (("ours", ours), ("aws_ec2", theirs)) if i % 2 == 0 else (("aws_ec2", theirs), ("ours", ours))
        for name, path in order:
            wall, cpu, data = run_inventory(path, their_env if name == "aws_ec2" else env)
            times[name].append((wall, cpu))
            outputs[name] = data
            print("  size %d run %d %-8s wall %7.2f s  cpu %7.2f s" % (size, i + 1, name, wall, cpu), flush=True)
    same = groups_of(outputs["ours"]) == groups_of(outputs["aws_ec2"])
    hosts = len(outputs["ours"]["_meta"]["hostvars"])

    run_inventory(cached, env, extra=("--flush-cache",))
    dead = dict(env, AWS_ENDPOINT_URL="http://127.0.0.1:%d" % free_port())
    dead["AWS_URL"] = dead["AWS_ENDPOINT_URL"]
    cached_runs = [run_inventory(cached, dead)[:2] for i in range(runs)]
    in_proc = [in_process_cached(cached, dead) for i in range(runs)]
    run_inventory(their_cached, their_env, extra=("--flush-cache",))
    their_dead = dict(dead, PYTHONPATH=their_env["PYTHONPATH"])
    their_in_proc = [in_process_cached(their_cached, their_dead) for i in range(runs)]
    # The floor: ansible-inventory with a one-host static inventory.
    empty = [run_inventory("localhost,", env)[:2] for i in range(runs)]

    def med(name, k):
        return statistics.median(t[k] for t in times[name])

    return {
        "size": size,
        "hosts": hosts,
        "same_groups": same,
        "groups": sorted(groups_of(outputs["ours"])),
        "seed_seconds": round(seeded, 1),
        "runs": runs,
        "ours_wall": med("ours", 0),
        "aws_ec2_wall": med("aws_ec2", 0),
        "ours_cpu": med("ours", 1),
        "aws_ec2_cpu": med("aws_ec2", 1),
        "wall_ratio": med("ours", 0) / med("aws_ec2", 0),
        "cpu_ratio": med("ours", 1) / med("aws_ec2", 1),
        "cached_wall": statistics.median(run[0] for run in cached_runs),
        "cached_cpu": statistics.median(run[1] for run in cached_runs),
        "cached_plugin": statistics.median(run[0] for run in in_proc),
        "cached_hosts": in_proc[0][1],
        "aws_ec2_cached_plugin": statistics.median(run[0] for run in their_in_proc),
        "aws_ec2_cached_hosts": their_in_proc[0][1],
        "empty_wall": statistics.median(run[0] for run in empty),
        "empty_cpu": statistics.median(run[1] for run in empty),
        "raw": times,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stock-moto", dest="tag_index", action="store_false", help="moto without the tag index")
    parser.add_argument("--moto-tag-index", dest="tag_index", action="store_true", default=True)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    print("load average before: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bf-inv-bench-") as tmp, open(Path(tmp) / "moto.log", "wb") as log:
        proc, url = start_moto(args.tag_index, log)
        try:
            for size in args.sizes:
                results.append(bench(url, size, args.runs, Path(tmp)))
                print("  result: %s" % json.dumps({k: v for k, v in results[-1].items() if k != "raw"}), flush=True)
                if args.json:
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    args.json.write_text(json.dumps(results, indent=2))
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())
    print()
    print("moto: %s" % ("tags indexed per resource" if args.tag_index else "stock"))
    print(
        "| instances | same groups | ours wall s | aws_ec2 wall s | wall ratio | ours cpu s | aws_ec2 cpu s "
        "| cpu ratio | cached run wall s | cached run cpu s | cached plugin s | aws_ec2 cached plugin s"
        " | cached ratio | `-i localhost,` wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            "| %d | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.3f | %.3f | %.2f | %.2f |"
            % (
                r["hosts"],
                "yes" if r["same_groups"] else "NO",
                r["ours_wall"],
                r["aws_ec2_wall"],
                r["wall_ratio"],
                r["ours_cpu"],
                r["aws_ec2_cpu"],
                r["cpu_ratio"],
                r["cached_wall"],
                r["cached_cpu"],
                r["cached_plugin"],
                r["aws_ec2_cached_plugin"],
                r["cached_plugin"] / r["aws_ec2_cached_plugin"],
                r["empty_wall"],
            )
        )


if __name__ == "__main__":
    main()
