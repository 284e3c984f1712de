"""build.yml end to end on the local cloud: a real multi-file C project compiled across real containers."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from ansible_collections.buildfarm.ec2.plugins.module_utils import lease as bf_lease
from tests import processes
from tests.e2e.conftest import BASE_IMAGE, Runner
from tests.networks import users_network
from tests.pricing_server import fixture as price_fixture
from tests.ssh_traffic import SshTraffic

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]

# image_id=auto boots the image the `baked` fixture made with playbooks/bake.yml (tests/e2e/conftest.py); the
# examples as shipped and the AWX job boot the plain base image and install the packages.
BASE = {
    "image_id": "auto",
    "base_image_id": BASE_IMAGE,
    "host_type": "t3.small",
    "builder_type": "c6i.large",
    "bucket": "buildfarm-e2e",
    "max_lifetime": 60,
}


def cluster_params(cluster, net, builders=1, **extra):
    """build.yml parameters of an e2e cluster with its own network 10.<net>.0.0/16 (one per test, none shared)."""
    return dict(
        BASE,
        cluster=cluster,
        builders=builders,
        vpc_cidr="10.%d.0.0/16" % net,
        subnet_cidr="10.%d.0.0/24" % net,
        **extra,
    )


def _dashboard_dom(url, profile):
    """The dashboard at ``url`` as headless Chromium renders it (its scripts ran and fetched the nodes)."""
    return subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--user-data-dir=%s" % profile,
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout


def _break_distcc_on_one_builder(cloud, cluster, done):
    """Pin distcc away on the first builder that runs (before Ansible reaches it), and remove it where the baked
    image brought it: its configuration fails when the role cannot install it."""
    ec2 = cloud.client("ec2")
    pin = "Package: distcc\nPin: release *\nPin-Priority: -1\n"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and "id" not in done:
        for r in ec2.describe_instances(
            Filters=[
                {"Name": "tag:buildfarm:cluster", "Values": [cluster]},
                {"Name": "tag:buildfarm:role", "Values": ["builder"]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        )["Reservations"]:
            for i in r["Instances"]:
                pinned = subprocess.run(
                    [
                        "docker",
                        "exec",
                        "bf-lc-" + i["InstanceId"],
                        "sh",
                        "-c",
                        "printf '%s' > /etc/apt/preferences.d/no-distcc"
                        " && { dpkg --purge distcc >/dev/null 2>&1 || true; }" % pin,
                    ],
                    capture_output=True,
                    check=False,
                )
                if pinned.returncode == 0:
                    done.update(
                        id=i["InstanceId"],
                        name=i.get("PublicIpAddress") or i["PrivateIpAddress"],  # the inventory's name
                        ip=i["PrivateIpAddress"],
                    )
                    return
        time.sleep(0.5)


def test_bake_makes_one_clean_image_and_finds_it_again(baked, cloud):
    """bake.yml (run once by the `baked` fixture): one image of the recipe, tagged with it and its base, the bake
    node and its network swept; a second run finds the recipe baked and launches nothing."""
    image, out = baked["image"], baked["output"]
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    assert tags["buildfarm:base-image"] == BASE_IMAGE and re.fullmatch(r"[0-9a-f]{16}", tags["buildfarm:recipe"])
    assert "baked %s for recipe %s (base %s)" % (image["ImageId"], tags["buildfarm:recipe"], BASE_IMAGE) in out
    assert cloud.leftovers("bake") == {}
    launched = cloud.client("ec2").describe_instances(Filters=[{"Name": "tag:buildfarm:cluster", "Values": ["bake"]}])
    before = sorted(i["InstanceId"] for r in launched["Reservations"] for i in r["Instances"])
    rc, again = baked["runner"].run("bake.yml", baked["params"])
    assert rc == 0, again[-4000:]
    assert "recipe %s is baked already: %s" % (tags["buildfarm:recipe"], image["ImageId"]) in again
    launched = cloud.client("ec2").describe_instances(Filters=[{"Name": "tag:buildfarm:cluster", "Values": ["bake"]}])
    assert sorted(i["InstanceId"] for r in launched["Reservations"] for i in r["Instances"]) == before
    images = cloud.client("ec2").describe_images(
        Owners=["self"], Filters=[{"Name": "tag:buildfarm:cluster", "Values": ["bake"]}]
    )
    assert [i["ImageId"] for i in images["Images"]] == [image["ImageId"]]


BLOB_BYTES = 32 * 1024 * 1024  # incompressible outputs of the Lua build beside the binaries (the direct push)


@pytest.mark.minutes(2)
def test_lua_builds_across_the_cluster(runner, cloud, lua_sources, tmp_path):
    """Three builders, one of which fails its configuration (distcc cannot be installed): min_builders=2, so the
    build runs on the other two and the report lists the third with its reason. The build host pushes the outputs
    (the cluster's instance profile, the default): their bytes never pass the controller's SSH connections."""
    cloud.bucket("buildfarm-e2e")
    params = cluster_params(
        "e2e-lua",
        91,
        builders=3,
        min_builders=2,
        source_dir=str(lua_sources),
        build_script_content=(
            "#!/bin/bash\nset -e\nexport DISTCC_VERBOSE=1\n"
            'make -j"$BUILDFARM_JOBS" CC="$CC" linux\n'
            'mkdir -p "$BUILDFARM_OUTPUT_DIR/bin"\ncp src/lua src/luac "$BUILDFARM_OUTPUT_DIR/bin/"\n'
            "[ \"$(src/lua -e 'print(6*7)')\" = 42 ] || build_failed 'lua does not run'\n"
            'mkdir -p "$BUILDFARM_OUTPUT_DIR/data"\n'
            'head -c %d /dev/urandom > "$BUILDFARM_OUTPUT_DIR/data/blob"\n' % BLOB_BYTES
        ),
        outputs=["bin/*", "data/*"],
        build_timeout=900,
        prefix="lua/",
        progress_interval=3,
    )
    broken = {}
    saboteur = threading.Thread(target=_break_distcc_on_one_builder, args=(cloud, "e2e-lua", broken))
    saboteur.start()
    # While the script runs, the dashboard URL the run printed opens in a browser on the controller.
    # What the controller's SSH connections to the cluster's nodes carried, the whole run (tests/ssh_traffic.py).
    with SshTraffic(params["subnet_cidr"]) as traffic:
        proc = runner.start("build.yml", params)
        lines, url, dom = [], None, None
        for line in proc.stdout:
            lines.append(line)
            found = re.search(r"dashboard: (http://127\.0\.0\.1:[0-9]+/dashboard/)", line)
            if url is None and found:
                url = found.group(1)
            if url and dom is None and line.startswith("build progress ["):  # the build runs, progress.json is there
                dom = _dashboard_dom(url, tmp_path / "chromium")
        rc, out = proc.wait(timeout=1800), "".join(lines)
        ssh = traffic.read()
    saboteur.join(timeout=60)
    assert rc == 0, out[-8000:]
    assert "buildfarm e2e-lua run" in out and "SUCCESS" in out
    assert broken, "no builder was broken"
    assert re.search(r"left out: %s \(builder\): .*distcc" % re.escape(broken["name"]), out), out[-4000:]
    assert url is not None, out[-4000:]
    assert dom and len(re.findall(r'data-node="[^"]+" data-phase="(?:ready|building)"', dom)) == 3, (dom or "")[-3000:]
    assert (
        "dashboard: %s" % url in out.rsplit("TASK [Print the summary]", maxsplit=1)[-1]
    )  # the summary says where it was
    # At the start: where to watch and where the outputs go; then progress lines while the script runs, the
    # compiles counted by the builders' distccd, and the same numbers on the dashboard.
    assert "outputs, log and report: s3://buildfarm-e2e/lua/" in out
    progress = re.findall(
        r"^build progress \[[^]]+\]: (finished, )?(\S+) elapsed, compiles (\d+) remote / (\d+) local", out, re.M
    )
    assert len(progress) >= 2 and progress[-1][0] == "finished, ", out[-6000:]
    remote = [int(p[2]) for p in progress]
    # Lua's 33 C files: most on the builders (the build host's own 2 localhost slots take the rest, not counted).
    assert remote == sorted(remote) and 10 <= remote[-1] <= 33, progress
    assert progress[-1][3] == "0"
    # ccache ran every compile (compile_cache: readwrite, the default): none of Lua's was cached yet, and the
    # cache was saved for the next run.
    cached = re.search(r"^build progress \[[^]]+\]: finished, .*, cache (\d+) hits / (\d+) misses", out, re.M)
    assert cached and cached.group(1) == "0" and int(cached.group(2)) >= 30, out[-6000:]
    shown = re.search(r'id="progress" data-remote="(\d+)" data-local="(\d+)"', dom or "")
    assert shown and ">" in dom and "elapsed, compiles" in dom, (dom or "")[-3000:]

    # The build host pushed the outputs itself (the cluster's instance profile, the default): the controller's run
    # directory got the log and the report, never the outputs.
    (run_dir,) = [p for p in (tmp_path / "runs" / "e2e-lua").iterdir() if p.is_dir()]  # beside the SSH key
    assert {"build.log", "report.json"} <= {p.name for p in run_dir.iterdir()}
    assert not (run_dir / "outputs.tar.gz").exists() and not (run_dir / "out").exists()
    assert "TASK [Create the cluster's instance profile]" in out
    # (the task's result line names the build host it was delegated to; warnings may come first)
    push_task = out.split("TASK [Push outputs, log, report and manifest]", 1)[-1].split("TASK [", 1)[0]
    assert re.search(r"^changed: \[localhost -> 198\.18\.", push_task, re.M), out[-3000:]
    # Everything the nodes sent the controller over SSH (facts, results, the build log) is less than the outputs:
    # the 32 MiB of random bytes went from the build host to S3 only. (The counter counts: Ansible's modules went
    # the other way.)
    print("controller SSH traffic with the nodes: %s" % ssh)
    assert ssh["to_nodes"] > 1024 * 1024 and 0 < ssh["from_nodes"] < BLOB_BYTES, ssh

    objects = cloud.objects("buildfarm-e2e", "lua/")
    assert {
        "lua/bin/lua",
        "lua/bin/luac",
        "lua/data/blob",
        "lua/build.log",
        "lua/report.json",
        "lua/manifest.json",
    } <= set(objects)
    assert len(objects["lua/data/blob"]) == BLOB_BYTES
    manifest = json.loads(objects["lua/manifest.json"])
    entries = {o["key"]: o for o in manifest["objects"]}
    for key in ("lua/bin/lua", "lua/bin/luac", "lua/data/blob", "lua/build.log", "lua/report.json"):
        assert entries[key]["sha256"] == hashlib.sha256(objects[key]).hexdigest(), key
    # The pushed binary is the real thing: it runs here (same Debian) and computes.
    binary = tmp_path / "lua"
    binary.write_bytes(objects["lua/bin/lua"])
    binary.chmod(0o755)
    assert (
        subprocess.run([str(binary), "-e", "print(6*7)"], capture_output=True, text=True, check=True).stdout == "42\n"
    )
    assert {k for k in objects if k.startswith("lua/bin/")} == {"lua/bin/lua", "lua/bin/luac"}
    report = json.loads(objects["lua/report.json"])
    assert report["build"]["status"] == "success"
    assert report["nodes"] == 4 and report["builders"] == 3
    # The phases before the push, in the order they ran, each with its bounds (the bench counts API calls by them).
    phases = [p for p in report["phases"] if p["started"] is not None]
    assert [p["phase"] for p in phases][:3] == ["provision", "configure", "build"], report["phases"]
    for phase, after in zip(phases, phases[1:] + [None], strict=True):
        assert phase["started"] <= phase["ended"] <= (after["started"] if after else time.time()), report["phases"]
        assert abs(phase["ended"] - phase["started"] - phase["seconds"]) <= 0.1, phase
    cache = report["compile_cache"]
    assert cache["hits"] == 0 and cache["misses"] == int(cached.group(2)) and cache["saved"] is True, cache
    # image_id=auto booted the image the `baked` fixture made (its recipe is the roles' current package lists).
    assert report["image"]["baked"] is True and report["image"]["id"].startswith("ami-"), report["image"]
    assert "image: %s (baked, recipe %s)" % (report["image"]["id"], report["image"]["recipe"]) in out
    assert sorted(report["lifecycle"].values()) == ["on-demand"] * 4 and report["spot_fallbacks"] == []
    (left_out,) = report["builders_left_out"]
    assert left_out.startswith(broken["name"] + " (builder): ") and "distcc" in left_out, left_out
    # The report's compiles are the last progress line's, per ready builder (instance id); each took its share.
    compiles = report["compiles"]
    assert compiles["remote"] == remote[-1] and compiles["local_fallbacks"] == 0, compiles
    assert sorted(b["node"] for b in compiles["per_builder"]) == sorted(
        n["id"] for n in report["cost"]["nodes"] if n["role"] == "builder" and n["id"] != broken["id"]
    ), compiles
    assert sum(b["compiles"] for b in compiles["per_builder"]) == compiles["remote"]
    assert all(b["compiles"] > 0 and b["stats_reachable"] for b in compiles["per_builder"]), compiles
    # The cost: the local cloud's fixture prices (tools/localcloud/localcloud/pricing.py), billed per second.
    cost = report["cost"]
    assert sorted((n["type"], n["lifecycle"], n["source"]) for n in cost["nodes"]) == [
        ("c6i.large", "on-demand", "price-list"),
        ("c6i.large", "on-demand", "price-list"),
        ("c6i.large", "on-demand", "price-list"),
        ("t3.small", "on-demand", "price-list"),
    ]
    for node in cost["nodes"]:
        assert node["price_usd"] == float(price_fixture.ON_DEMAND[report["region"]][node["type"]])
        assert node["seconds"] >= 60 and node["cost_usd"] == round(node["seconds"] / 3600 * node["price_usd"], 6)
    assert sorted(i["kind"] for i in cost["items"]) == ["public_ipv4"] * 4 + ["volume"] * 4
    assert cost["total_usd"] == round(sum(i["cost_usd"] for i in cost["nodes"] + cost["items"]), 6)
    assert report["estimated_cost_usd"] == cost["total_usd"] > 0 and cost["price_errors"] == []
    assert "cost $%.4f until %s" % (cost["total_usd"], cost["billed_until"]) in out
    # The speedup model from what the build measured: the two ready builders' distccd CPU, the build host's CPU and
    # cores, the build's wall time; the model reproduces this run and recommends a count for the next one.
    model = report["speedup"]
    fractions = model["fractions"]
    assert fractions["builders"] == 2 and fractions["server_cores"] == fractions["client_cores"] == 2, model
    assert fractions["server_cpu"] > 0 and fractions["client_cpu"] > 0 and 0 < fractions["wall"] <= 900, model
    at_two = {p["builders"]: p["seconds"] for p in model["curve"]}[2]
    assert abs(at_two - fractions["wall"]) <= 0.2, model
    recommended = model["recommended"]
    assert 1 <= recommended["builders"] <= 64 and recommended["cost_usd"] > 0, model
    assert (
        "next run: %d builder(s) predicted %s s of build" % (recommended["builders"], recommended["seconds"]) in out
    ), out[-3000:]
    # Where the build's time went: the client's and the builders' seconds (they overlap) and the serial rest.
    assert fractions["server_seconds"] == round(fractions["server_cpu"] / (2 * fractions["server_cores"]), 2), model
    parallel = max(fractions["client_seconds"], fractions["server_seconds"])
    assert abs(parallel + fractions["overhead"] - fractions["wall"]) <= 0.05 or fractions["overhead"] == 0, model
    went = "where the build's %s s went: client %s s (%s CPU-s of make, preprocessing, linking and local compiles" % (
        fractions["wall"],
        fractions["client_seconds"],
        fractions["client_cpu"],
    )
    assert went in out and "serial steps and network %s s" % fractions["overhead"] in out, out[-3000:]

    log = objects["lua/build.log"].decode()
    # distcc's own trace: compiles were sent to both builders, none fell back to local compilation.
    remote_hosts = {
        line.split(" on ")[-1].split(":")[0] for line in log.splitlines() if "compile " in line and " on " in line
    }
    assert len([h for h in remote_hosts if h.startswith("10.91.0.")]) >= 2, log[-4000:]
    assert broken["ip"] not in remote_hosts and broken["ip"] not in log.split("DISTCC_HOSTS=", 1)[1].split("\n", 1)[0]
    assert cloud.leftovers("e2e-lua") == {}


@pytest.mark.minutes(2)
def test_zlib_example_as_shipped(build, cloud, zlib_sources):
    """examples/zlib as a user runs it: its params' builders, outputs and build.sh (configure and make through the
    distcc wrapper, zlib's own `make test`, `make install` into the output directory). The host is a one-vCPU
    t2.micro: build_host=auto runs the build on a builder (two vCPUs), which sends its compiles to the other one."""
    cloud.bucket("buildfarm-e2e")
    example = yaml.safe_load((ROOT / "examples" / "zlib" / "params.yml").read_text())
    params = cluster_params(
        "e2e-zlib",
        97,
        builders=example["builders"],
        host_type="t2.micro",
        source_dir=str(zlib_sources),
        build_script=str(ROOT / "examples" / "zlib" / "build.sh"),
        image_id=example["image_id"],  # the plain base image, as shipped: the packages are installed
        outputs=example["outputs"],
        build_timeout=900,
        prefix="zlib/",
    )
    rc, out = build(params)
    assert rc == 0, out[-8000:]
    objects = cloud.objects("buildfarm-e2e", "zlib/")
    assert objects["zlib/lib/libz.a"].startswith(b"!<arch>\n")  # a real static library
    header = objects["zlib/include/zlib.h"].decode()
    version = (zlib_sources / "zlib.h").read_text().split('#define ZLIB_VERSION "')[1].split('"')[0]
    assert '#define ZLIB_VERSION "%s"' % version in header
    assert "*** zlib test OK ***" in objects["zlib/build.log"].decode()  # zlib's own tests passed on the cluster
    manifest = {o["key"]: o for o in json.loads(objects["zlib/manifest.json"])["objects"]}
    assert manifest["zlib/lib/libz.a"]["sha256"] == hashlib.sha256(objects["zlib/lib/libz.a"]).hexdigest()
    # The build ran on a builder (the local cloud gives each instance its type's vCPUs, capped at this machine's 2).
    report = json.loads(objects["zlib/report.json"])
    assert os.cpu_count() >= 2, "the host/builder choice needs a builder with more CPUs than the one-vCPU host"
    build_host = report["build_host"]
    assert build_host["role"] == "builder" and build_host["cpus"] == 2, build_host
    assert build_host["chosen_by"] == "build_host=auto"
    assert "the build runs on " in out and "(builder, 2 CPUs; build_host=auto)" in out, out[-4000:]
    builders = {n["id"] for n in report["cost"]["nodes"] if n["role"] == "builder"}
    assert build_host["node"] in builders and len(builders) == 2
    # Its DISTCC_HOSTS: the other builder and its own two cores; the other builder's distccd ran compiles.
    started = objects["zlib/build.log"].decode().split("=== buildfarm: build started", 1)[1].split("\n", 1)[0]
    hosts = started.split("DISTCC_HOSTS=", 1)[1].rstrip(")").split()
    assert len(hosts) == 2 and hosts[0].startswith("10.97.0.") and hosts[1] == "localhost/2", started
    (other,) = builders - {build_host["node"]}
    per_builder = report["compiles"]["per_builder"]
    assert [b["node"] for b in per_builder] == [other] and per_builder[0]["compiles"] > 0, report["compiles"]
    assert cloud.leftovers("e2e-zlib") == {}


def _connects(address, port, timeout=3.0):
    """True when a TCP connection from the controller to ``address:port`` succeeds (addresses of containers this
    test's local cloud made)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _only_ssh_from_the_controller(cloud, cluster):
    """Every node has a public address; the controller reaches SSH there only, and its private-side address
    (the subnet's gateway) is refused by the security group, as are the cluster's own ports from outside."""
    instances = [
        i
        for r in cloud.client("ec2").describe_instances(
            Filters=[
                {"Name": "tag:buildfarm:cluster", "Values": [cluster]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        )["Reservations"]
        for i in r["Instances"]
    ]
    internet = ipaddress.ip_network(cloud.env["BUILDFARM_LOCALCLOUD_INTERNET_CIDR"])
    for instance in instances:
        public, private = instance["PublicIpAddress"], instance["PrivateIpAddress"]
        assert ipaddress.ip_address(public) in internet, public
        assert _connects(public, 22), public
        assert not _connects(private, 22), "SSH from the controller's private side must be refused: %s" % private
        for port in (80, 3632, 6817):
            assert not _connects(public, port), "%s:%d open from outside the cluster" % (public, port)


CLUSTER_PORTS = [80, 2049, 3632, 3633, 6817, 6818, 6819, 60001, 60100]
# Each target probed at once (in the background), with `timeout 3` around bash's /dev/tcp: a connection is
# "open", an answer without one (RST: the group admits it, nothing listens) "refused", silence "dropped".
CLASSIFY = (
    'for t in %s; do ( if timeout 3 bash -c "</dev/tcp/${t%%:*}/${t#*:}" 2>/dev/null; then r=open; '
    'elif [ $? = 124 ]; then r=dropped; else r=refused; fi; echo "$t $r" ) & done; wait'
)


def _classify(argv, targets, remote=False):
    """{target: open|refused|dropped} for ``targets`` (ip:port) probed by ``argv`` (docker exec, or ssh with
    ``remote``: ssh hands the remote shell one command line)."""
    script = CLASSIFY % " ".join(targets)
    command = argv + (["bash -c " + shlex.quote(script)] if remote else ["bash", "-c", script])
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    return dict(line.split() for line in out.splitlines())


def _imds_v2_only(cloud, cluster):
    """On every node of the cluster a metadata request without a token gets 401 and one with a token is answered
    (the fleet launches with HttpTokens required; the local cloud's IMDS enforces it as EC2 does)."""
    ec2 = cloud.client("ec2")
    ids = [
        i["InstanceId"]
        for r in ec2.describe_instances(
            Filters=[
                {"Name": "tag:buildfarm:cluster", "Values": [cluster]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        )["Reservations"]
        for i in r["Instances"]
    ]
    assert ids
    url = "http://169.254.169.254/latest/meta-data/instance-id"
    v1 = "curl -s -o /dev/null -w '%%{http_code}' --max-time 3 %s" % url
    v2 = (
        "T=$(curl -sf --max-time 3 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
        'http://169.254.169.254/latest/api/token) && curl -sf --max-time 3 -H "X-aws-ec2-metadata-token: $T" %s' % url
    )
    for iid in ids:
        inside = ["docker", "exec", "bf-lc-" + iid, "sh", "-c"]
        assert (
            subprocess.run(inside + [v1], capture_output=True, text=True, timeout=30, check=False).stdout == "401"
        ), iid
        assert subprocess.run(inside + [v2], capture_output=True, text=True, timeout=30, check=False).stdout == iid


def _probe_from_outside_and_inside(cloud, runner, cluster):
    """A container the test puts on the local cloud's internet network (outside the cluster, outside ssh_cidr)
    reaches nothing of the nodes; between members the cluster's ports are admitted and others are not."""
    ec2 = cloud.client("ec2")
    nodes = {
        [t["Value"] for t in i["Tags"] if t["Key"] == "buildfarm:role"][0]: i
        for r in ec2.describe_instances(
            Filters=[
                {"Name": "tag:buildfarm:cluster", "Values": [cluster]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        )["Reservations"]
        for i in r["Instances"]
    }
    host, builder = nodes["host"], nodes["builder"]
    state_dir = os.path.realpath(cloud.env["BUILDFARM_LOCALCLOUD_DIR"])
    labels = ["--label", "buildfarm.localcloud=1", "--label", "buildfarm.localcloud.dir=%s" % state_dir]
    network = subprocess.run(
        [
            "docker",
            "network",
            "ls",
            "--format",
            "{{.Name}}",
            "--filter",
            "label=buildfarm.localcloud.dir=%s" % state_dir,
        ]
        + ["--filter", "label=buildfarm.localcloud.internet=1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    probe = "bf-e2e-probe-%s" % cluster
    subprocess.run(
        ["docker", "run", "-d", "--name", probe, *labels, "--network", network]
        + ["buildfarm/base:bookworm", "sleep", "infinity"],
        capture_output=True,
        check=True,
    )
    try:
        targets = ["%s:%d" % (n["PublicIpAddress"], p) for n in (host, builder) for p in [22] + CLUSTER_PORTS]
        outside = _classify(["docker", "exec", probe], targets)
        assert set(outside.values()) == {"dropped"}, outside
    finally:
        subprocess.run(["docker", "rm", "-f", probe], capture_output=True, check=False)
    key = runner.tmp_path / "runs" / cluster / "id_cluster"
    ssh = ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    ssh += ["-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "admin@" + host["PublicIpAddress"]]
    inside = _classify(ssh, ["%s:%d" % (builder["PrivateIpAddress"], p) for p in CLUSTER_PORTS + [8080]], remote=True)
    admitted = {t: r for t, r in inside.items() if not t.endswith(":8080")}
    assert "dropped" not in admitted.values(), inside
    assert admitted["%s:3632" % builder["PrivateIpAddress"]] == "open", inside  # distccd answers its peers
    assert inside["%s:8080" % builder["PrivateIpAddress"]] == "dropped", inside  # no rule for it


# Six small C files written and compiled by the build script through $CC (ccache, then distcc on a miss); the same
# sources on every run, so a warm compile cache has every one.
COMPILE_SIX = (
    'for i in 1 2 3 4 5 6; do printf "int f%d(int x) { return x * %d; }\\n" "$i" "$i" > "f$i.c"; done\n'
    'for i in 1 2 3 4 5 6; do $CC -O2 -c "f$i.c" -o "f$i.o" || exit 9; done\n'
)


# Puts back the /etc/environment a build script moved aside (test_faults_on_a_kept_cluster_then_teardown, step 2b).
RESTORE_ENVIRONMENT = "[ ! -e /etc/environment.buildfarm-test ] || mv /etc/environment.buildfarm-test /etc/environment"


def _workspace_attachments(cloud, cluster):
    (volume,) = cloud.client("ec2").describe_volumes(
        Filters=[{"Name": "tag:buildfarm:cluster", "Values": [cluster]}, {"Name": "tag:Name", "Values": ["workspace"]}]
    )["Volumes"]
    return [a["InstanceId"] for a in volume["Attachments"] if a["State"] == "attached"]


@pytest.mark.minutes(6)
def test_faults_on_a_kept_cluster_then_teardown(build, runner, cloud):
    """Five failing builds on one cluster: kept after the first four (keep_cluster), swept by the last. On the
    kept cluster, playbooks/handoff.yml moves a workspace volume to the builder and back, with its data."""
    cloud.bucket("buildfarm-e2e")
    params = cluster_params(
        "e2e-fault",
        92,
        build_timeout=300,
        keep_cluster=True,
        compile_cache_prefix="fault-cache/",  # its own: the other tests of this worker share the bucket
    )

    # 1. The script compiles six files, then exits non-zero: the job fails, its log is still pushed, the kept
    # cluster stays up. The compile cache (readwrite, the default) starts cold and is saved all the same.
    rc, out = build(
        dict(
            params,
            prefix="exit3/",
            build_script_content="#!/bin/bash\n" + COMPILE_SIX + "echo compiling broken.c\nexit 3\n",
        )
    )
    assert rc != 0
    assert "build failed: build script exited with status 3" in out
    objects = cloud.objects("buildfarm-e2e", "exit3/")
    assert "exit3/build.log" in objects, out[-6000:]
    assert "compiling broken.c" in objects["exit3/build.log"].decode()
    report = json.loads(objects["exit3/report.json"])
    assert report["build"]["status"] == "failed"
    cache = report["compile_cache"]
    assert (
        cache["mode"] == "readwrite" and cache["restored"] is False and "no cache at s3://" in cache["restore"]
    ), cache
    assert (cache["hits"], cache["misses"]) == (0, 6) and cache["saved"] is True and cache["warnings"] == [], cache
    assert re.fullmatch(r"fault-cache/[0-9a-f]{64}/ccache\.tar", cache["key"]), cache
    assert "compile cache (readwrite): 0 hits, 6 misses (0%)" in out, out[-3000:]
    stored = cloud.client("s3").head_object(Bucket="buildfarm-e2e", Key=cache["key"])
    assert stored["ContentLength"] == cache["saved_bytes"] > 0
    kept = cloud.leftovers("e2e-fault")
    assert len(kept.get("instances", [])) == 2 and kept.get("vpcs"), kept
    _only_ssh_from_the_controller(cloud, "e2e-fault")
    _probe_from_outside_and_inside(cloud, runner, "e2e-fault")
    _imds_v2_only(cloud, "e2e-fault")

    # 2. build_failed wins over exit 0 (same cluster, reused: nothing new is launched). The nodes' ccache
    # directories are wiped first, as on a fresh cluster: every hit comes from the archive in S3. compile_cache=read
    # restores it, adds nothing and leaves the object as it was.
    for instance in kept["instances"]:
        subprocess.run(["docker", "exec", "bf-lc-" + instance, "rm", "-rf", "/var/cache/buildfarm/ccache"], check=True)
    rc, out = build(
        dict(
            params,
            prefix="explicit/",
            compile_cache="read",
            build_script_content=COMPILE_SIX + "build_failed 'tests broke'\nexit 0\n",
        )
    )
    assert rc != 0
    assert "build failed: explicit build_failed: tests broke" in out
    assert cloud.leftovers("e2e-fault")["instances"] == kept["instances"]
    warm = json.loads(cloud.objects("buildfarm-e2e", "explicit/")["explicit/report.json"])["compile_cache"]
    assert warm["mode"] == "read" and warm["restored"] is True and warm["key"] == cache["key"], warm
    assert (warm["hits"], warm["misses"], warm["hit_rate"]) == (6, 0, 1.0) and warm["saved"] is False, warm
    assert "compile cache (read): 6 hits, 0 misses (100%)" in out, out[-3000:]
    again = cloud.client("s3").head_object(Bucket="buildfarm-e2e", Key=cache["key"])
    assert again["ETag"] == stored["ETag"] and again["LastModified"] == stored["LastModified"]

    # 2b. The build host's /etc/environment loses its S3 endpoint while the script runs (as an image made for AWS
    # would lack it): its push must not send the outputs to AWS's S3 while this run uses another endpoint. The run
    # fails and says why, nothing reaches the bucket, the kept cluster stays; the line comes back for what follows.
    rc, out = build(
        dict(
            params,
            prefix="noendpoint/",
            compile_cache="off",
            build_script_content=(
                "cp /etc/environment /etc/environment.buildfarm-test\n"
                "sed -i '/AWS_ENDPOINT_URL/d' /etc/environment\n"
                'echo built > "$BUILDFARM_OUTPUT_DIR/t.o"\n'
            ),
        )
    )
    for instance in kept["instances"]:
        subprocess.run(
            ["docker", "exec", "bf-lc-" + instance, "sh", "-c", RESTORE_ENVIRONMENT],
            check=True,
        )
    assert rc != 0
    assert "names no S3 endpoint in its /etc/environment" in out and "its push was not started" in out, out[-4000:]
    assert cloud.objects("buildfarm-e2e", "noendpoint/") == {}
    assert cloud.leftovers("e2e-fault")["instances"] == kept["instances"]

    # 2c. S3 refuses the push: the run's bucket is deleted while the script runs. The run fails with S3's refusal
    # in its summary, writes no manifest, and the kept cluster stays as it was.
    gone = cloud.bucket("buildfarm-e2e-gone")
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(
            zip(
                ("rc", "out"),
                build(
                    dict(
                        params,
                        bucket=gone,
                        prefix="gone/",
                        compile_cache="off",
                        build_script_content=(
                            "touch /srv/buildfarm/bucket-waiting\n"
                            "for i in $(seq 120); do [ -e /srv/buildfarm/bucket-go ] && break; sleep 1; done\n"
                            'echo built > "$BUILDFARM_OUTPUT_DIR/t.o"\n'
                        ),
                    )
                ),
                strict=True,
            )
        )
    )
    worker.start()
    deleted = False
    deadline = time.monotonic() + 900
    while worker.is_alive() and not deleted and time.monotonic() < deadline:
        for instance in kept["instances"]:
            waiting = subprocess.run(
                ["docker", "exec", "bf-lc-" + instance, "test", "-e", "/srv/buildfarm/bucket-waiting"], check=False
            )
            if waiting.returncode == 0:
                cloud.client("s3").delete_bucket(Bucket=gone)
                subprocess.run(["docker", "exec", "bf-lc-" + instance, "touch", "/srv/buildfarm/bucket-go"], check=True)
                deleted = True
        time.sleep(2)
    worker.join(timeout=900)
    for instance in kept["instances"]:
        subprocess.run(
            [
                "docker",
                "exec",
                "bf-lc-" + instance,
                "rm",
                "-f",
                "/srv/buildfarm/bucket-waiting",
                "/srv/buildfarm/bucket-go",
            ],
            check=True,
        )
    assert deleted, result.get("out", "")[-4000:]
    assert result["rc"] != 0
    assert "artifact push failed: bucket buildfarm-e2e-gone does not exist" in result["out"], result["out"][-4000:]
    assert gone not in [b["Name"] for b in cloud.client("s3").list_buckets()["Buckets"]]
    assert cloud.leftovers("e2e-fault")["instances"] == kept["instances"]

    # The workspace volume goes host -> builder (mounted by volume id, the command runs in it) -> host. The
    # second hand-off reads on the builder what the first wrote: the data travelled with the volume.
    handoff = dict(
        cluster="e2e-fault",
        handoff_size=1,
        handoff_key=str(runner.tmp_path / "runs" / "e2e-fault" / "id_cluster"),
    )
    rc, out = runner.run("handoff.yml", dict(handoff, handoff_command="sh -c 'hostname > written-on && sync'"))
    assert rc == 0, out[-6000:]
    (host,) = [
        i["InstanceId"]
        for r in cloud.client("ec2").describe_instances(
            Filters=[
                {"Name": "tag:buildfarm:cluster", "Values": ["e2e-fault"]},
                {"Name": "tag:buildfarm:role", "Values": ["host"]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        )["Reservations"]
        for i in r["Instances"]
    ]
    assert _workspace_attachments(cloud, "e2e-fault") == [host]
    rc, out = runner.run(
        "handoff.yml", dict(handoff, handoff_command="""sh -c 'test "$(cat written-on)" = "$(hostname)"'""")
    )
    assert rc == 0, out[-6000:]
    # A failing command fails the play, and the volume is back on the host all the same.
    rc, out = runner.run("handoff.yml", dict(handoff, handoff_command="test -e no-such-file"))
    assert rc != 0 and "Run the command" in out
    assert _workspace_attachments(cloud, "e2e-fault") == [host]

    # 3. A hanging script (with a child) is killed at the timeout; without keep_cluster everything goes.
    rc, out = build(
        dict(
            params,
            prefix="hang/",
            keep_cluster=False,
            build_timeout=15,
            build_script_content="sleep 1000 &\nsleep 1001\n",
        )
    )
    assert rc != 0
    assert "timed out after 15s and was killed with its whole process group" in out
    # The dashboard tunnel opened (its URL printed) and the teardown closed it.
    port = int(out.split("dashboard: http://127.0.0.1:", 1)[1].split("/", 1)[0])
    assert not _connects("127.0.0.1", port)
    assert "hang/build.log" in cloud.objects("buildfarm-e2e", "hang/")
    assert cloud.leftovers("e2e-fault") == {}


@pytest.mark.minutes(4)
def test_the_budget_stops_a_build_that_would_cost_more(build, cloud):
    """max_cost_usd at the estimate for build_timeout: launch and configuration spend part of it, so the script
    gets less than build_timeout and is stopped (or not started) when the cost reaches the cap; all swept."""
    cloud.bucket("buildfarm-e2e")
    params = cluster_params(
        "e2e-budget", 89, build_timeout=150, prefix="budget/", build_script_content="echo started\nsleep 1000\n"
    )
    rc, out = build(dict(params, estimate_only=True))
    assert rc == 0, out[-4000:]
    estimate = float(re.search(r"total \$([0-9.]+) \(", out).group(1))
    assert cloud.leftovers("e2e-budget") == {}
    # The estimate is printed to 4 decimals: a cap one unit above it is not refused before launch.
    rc, out = build(dict(params, max_cost_usd=round(estimate + 0.0001, 4)))
    assert rc != 0
    stopped = "stopped when the cost reached max_cost_usd $%.2f" % round(estimate + 0.0001, 4) in out
    unstarted = "was reached before the build started" in out
    assert stopped or unstarted, out[-6000:]
    if stopped:  # the script ran, for less than build_timeout, and its log was pushed
        seconds = int(re.search(r"after (\d+) s of build \(build_timeout 150 s\)", out).group(1))
        assert 0 < seconds < 150
        assert "started" in cloud.objects("buildfarm-e2e", "budget/")["budget/build.log"].decode()
    assert cloud.leftovers("e2e-budget") == {}


def test_bad_parameters_fail_before_any_resource(build, cloud):
    rc, out = build(dict(BASE, cluster="Bad_Name", builders=1, build_script_content="exit 0"))
    assert rc != 0
    assert "cluster: 'Bad_Name' is invalid" in out
    # Several mistakes in one run: all of them reported by that run, one line each, and still nothing is made.
    rc, out = build(
        dict(BASE, cluster="e2e-bad", builders="two", scheduler="make", max_lifetime=5, build_script_content="exit 0")
    )
    assert rc != 0
    assert "build.yml: 3 wrong parameter(s), nothing was created:" in out
    assert "\n- builders: 'two' is invalid: give a whole number from 1 to 1000\n" in out
    assert "\n- scheduler: 'make' is invalid: give distcc or slurm\n" in out
    assert "\n- max_lifetime: 5 is invalid: give a whole number of minutes, at least 10" in out
    assert cloud.leftovers("e2e-bad") == {}
    # The compile cache is the build host's to read and write: without its instance profile it is refused.
    rc, out = build(dict(BASE, cluster="e2e-bad", builders=1, instance_profile=False, build_script_content="exit 0"))
    assert rc != 0 and "compile_cache=readwrite needs the build host's instance profile" in out, out[-3000:]
    assert cloud.leftovers("e2e-bad") == {}
    assert (
        cloud.client("ec2").describe_vpcs(Filters=[{"Name": "tag:buildfarm:cluster", "Values": ["Bad_Name"]}])["Vpcs"]
        == []
    )


@pytest.mark.minutes(2)
def test_slurm_scheduler_runs_the_build_as_a_batch_job(runner, cloud):
    """scheduler=slurm: munge + Slurm on every node, the build is an sbatch job on the build host. The builders are
    asked for as spot while EC2 (the local cloud's spot control) has no spot capacity of their type: they fall back to
    on-demand and the report says which nodes are which. The outputs take the controller path (instance_profile:
    false)."""
    cloud.bucket("buildfarm-e2e")
    script = (
        "#!/bin/bash\n"
        'echo "job ${SLURM_JOB_ID:-none} on $(hostname)"\n'
        '[ -n "${SLURM_JOB_ID:-}" ] || build_failed "not running as a Slurm job"\n'
        "printf 'int main(void){return 0;}\\n' > t.c && $CC -c t.c -o \"$BUILDFARM_OUTPUT_DIR/t.o\"\n"
    )
    params = cluster_params(
        "e2e-slurm",
        93,
        scheduler="slurm",
        build_script_content=script,
        outputs=["*.o"],
        build_timeout=300,
        prefix="slurm/",
        host_type="t2.micro",
        spot=True,
        instance_profile=False,  # the controller path: no IAM role, the controller fetches and pushes the outputs
        compile_cache="off",  # (the cache is read and written by the build host's profile)
    )
    cloud.spot_capacity([BASE["builder_type"]], available=False)
    try:
        rc, out = runner.run("build.yml", params)
    finally:
        cloud.spot_capacity([BASE["builder_type"]], available=True)
    assert rc == 0, out[-8000:]
    assert "EC2 refused the spot launch of %s (InsufficientInstanceCapacity: " % BASE["builder_type"] in out
    objects = cloud.objects("buildfarm-e2e", "slurm/")
    assert "slurm/t.o" in objects
    (run_dir,) = [p for p in (runner.tmp_path / "runs" / "e2e-slurm").iterdir() if p.is_dir()]  # beside the SSH key
    assert (run_dir / "outputs.tar.gz").is_file() and (run_dir / "out" / "t.o").read_bytes() == objects["slurm/t.o"]
    manifest = json.loads(objects["slurm/manifest.json"])
    assert {o["key"]: o["sha256"] for o in manifest["objects"]}["slurm/t.o"] == hashlib.sha256(
        objects["slurm/t.o"]
    ).hexdigest()
    report = json.loads(objects["slurm/report.json"])
    assert sorted(report["lifecycle"].values()) == ["on-demand", "on-demand"]
    assert [f["role"] for f in report["spot_fallbacks"]] == ["builder"]
    assert report["spot_fallbacks"][0]["reason"].startswith("InsufficientInstanceCapacity: There is no Spot capacity")
    log = objects["slurm/build.log"].decode()
    assert "job none" not in log and "job " in log, log[-3000:]
    # The host is a one-vCPU t2.micro: the job ran on the builder (build_host=auto), the host stayed its controller;
    # with no other builder every compile is local (localhost/2).
    assert report["build_host"]["role"] == "builder", report["build_host"]
    (builder,) = [n for n in report["cost"]["nodes"] if n["role"] == "builder"]
    assert report["build_host"]["node"] == builder["id"]
    # (sbatch --nodelist: the job ran on the node whose runner logged the start)
    job = re.search(r"^job (\d+) on (\S+)$", log, re.M)
    started = re.search(r"=== buildfarm: build started \S+ on (\S+) ", log)
    assert job and started and job.group(2) == started.group(1), log[-3000:]
    assert "DISTCC_HOSTS=localhost/2)" in log, log[-3000:]
    assert cloud.leftovers("e2e-slurm") == {}


@pytest.mark.minutes(4)
def test_queued_slurm_builds_on_one_kept_cluster_each_have_their_own_run(runner, cloud, tmp_path):
    """scheduler=slurm on a kept cluster: two build.yml runs at the same time, both with keep_cluster false. Their
    builds queue (sbatch --exclusive: one at a time on the build host) in run roots of their own; both succeed with
    their own outputs and logs; the first to end keeps the cluster for the other (its mark on the host), the last
    sweeps it, and nothing is left."""
    cloud.bucket("buildfarm-e2e")
    common = dict(
        scheduler="slurm",
        instance_profile=False,
        compile_cache="off",
        outputs=["*.txt"],
        build_timeout=300,
    )
    first = cluster_params(
        "e2e-queue",
        90,
        keep_cluster=True,
        prefix="queue/0/",
        build_script_content='echo zero > "$BUILDFARM_OUTPUT_DIR/run.txt"\n',
        **common,
    )
    rc, out = runner.run("build.yml", first)
    assert rc == 0, out[-8000:]
    assert "cluster: kept (keep_cluster)" in out

    script = (
        "#!/bin/bash\nset -e\n"
        'echo "{name}: job $SLURM_JOB_ID in $BUILDFARM_SOURCE_DIR"\n'
        "sleep 20\n"
        'echo {name} > "$BUILDFARM_OUTPUT_DIR/run.txt"\n'
    )
    runs = {}
    for name in ("a", "b"):
        own = tmp_path / name
        own.mkdir()
        params = cluster_params(
            "e2e-queue",
            90,
            prefix="queue/%s/" % name,
            build_script_content=script.format(name=name),
            work_dir=str(tmp_path / "runs"),  # the first run's: the cluster's key is there
            **common,
        )
        runs[name] = (Runner(cloud, own), params, {})
    workers = [
        threading.Thread(target=lambda r=r: r[2].update(zip(("rc", "out"), r[0].run("build.yml", r[1]), strict=True)))
        for r in runs.values()
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=1800)
    for name, run in runs.items():
        if run[2].get("rc") != 0:
            print("=== run %s ===\n%s" % (name, run[2].get("out", "")))  # in full: the assertion shows only its ends
        assert run[2].get("rc") == 0, name
    objects = cloud.objects("buildfarm-e2e", "queue/")
    spans = {}
    for name in ("a", "b"):
        assert objects["queue/%s/run.txt" % name] == (name + "\n").encode()
        log = objects["queue/%s/build.log" % name].decode()
        # its own job, in its own run root; the other run's script never wrote into this log
        found = re.search(r"^%s: job (\d+) in /srv/buildfarm/runs/([^/]+)/src$" % name, log, re.M)
        assert found and ("%s: job" % ("b" if name == "a" else "a")) not in log, log[-3000:]
        started = re.search(r"=== buildfarm: build started (\S+) ", log).group(1)
        took = int(re.search(r"=== buildfarm: build success after (\d+)s", log).group(1))
        begin = time.mktime(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ"))
        spans[name] = (begin, begin + took, found.group(1), found.group(2))
    (a0, a1, a_job, a_root), (b0, b1, b_job, b_root) = spans["a"], spans["b"]
    assert a_job != b_job and a_root != b_root
    assert a1 <= b0 or b1 <= a0, spans  # one build after the other (sbatch --exclusive)
    # The run that ended first kept the cluster for the other (whichever built first), the other swept it.
    outs = [runs[name][2]["out"] for name in ("a", "b")]
    kept = [o for o in outs if "cluster: kept for the other runs that still use it (" in o]
    swept = [o for o in outs if "cluster: swept" in o]
    if len(kept) != 1 or len(swept) != 1:
        print("\n".join(outs))
    assert len(kept) == 1 and len(swept) == 1
    assert cloud.leftovers("e2e-queue") == {}


def test_spot_refused_without_fallback_fails_before_configuring(build, cloud):
    """spot_fallback=false and no spot capacity for the builder type: the run fails at the launch, names the type and
    EC2's code, launches nothing on-demand and leaves nothing."""
    cloud.bucket("buildfarm-e2e")
    params = cluster_params(
        "e2e-nospot",
        99,
        spot=True,
        spot_fallback=False,
        build_script_content="exit 0",
        outputs=["*.o"],
        prefix="nospot/",
        build_timeout=300,
    )
    cloud.spot_capacity([BASE["builder_type"]], available=False)
    try:
        rc, out = build(params)
    finally:
        cloud.spot_capacity([BASE["builder_type"]], available=True)
    assert rc != 0
    assert "EC2 refused the spot launch of 1 %s (InsufficientInstanceCapacity: " % BASE["builder_type"] in out
    assert "spot_fallback is false" in out
    assert "TASK [Wait until the node answers over SSH]" not in out
    builders = cloud.client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:buildfarm:cluster", "Values": ["e2e-nospot"]},
            {"Name": "tag:buildfarm:role", "Values": ["builder"]},
        ]
    )["Reservations"]
    assert builders == []
    assert cloud.leftovers("e2e-nospot") == {}


def _instances_ever(cloud, cluster):
    """Every instance id the cluster ever had (terminated ones included)."""
    return [
        i["InstanceId"]
        for r in cloud.client("ec2").describe_instances(
            Filters=[{"Name": "tag:buildfarm:cluster", "Values": [cluster]}]
        )["Reservations"]
        for i in r["Instances"]
    ]


def _containers_of(instance_ids):
    names = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return [n for n in names if any(n.endswith(i) for i in instance_ids)]


def _interrupt(runner, cloud, params, signum, running):
    """bin/buildfarm-build with ``params``, sent ``signum`` once ``running`` instances of the cluster are running
    (0: as soon as it has any instance); returns (exit status, output)."""
    cluster = params["cluster"]
    log = runner.tmp_path / ("interrupt-%d.log" % signum)
    command = runner.command("build.yml", params)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bin" / "buildfarm-build")] + command[2:],
            env=runner.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 600
            while True:
                states = [
                    i["State"]["Name"]
                    for r in cloud.client("ec2").describe_instances(
                        Filters=[{"Name": "tag:buildfarm:cluster", "Values": [cluster]}]
                    )["Reservations"]
                    for i in r["Instances"]
                    if i["State"]["Name"] not in ("shutting-down", "terminated")
                ]
                ready = states.count("running") >= running if running else bool(states)
                if ready:
                    break
                assert proc.poll() is None, "the run ended before it was interrupted:\n" + log.read_text()[-6000:]
                assert time.monotonic() < deadline, "no instances after 600 s"
                time.sleep(1 if not running else 3)
            proc.send_signal(signum)
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode, log.read_text()


def test_interrupted_run_is_torn_down_by_the_entry_point(runner, cloud):
    """bin/buildfarm-build: SIGTERM while the instances launch, then SIGINT (Ctrl-C) while the nodes are being
    configured; both times the cluster is swept, the summary says INTERRUPTED and the exit status 128 + signal."""
    params = cluster_params("e2e-int", 94, build_script_content="sleep 600\n", build_timeout=900)
    for signum, running, code in ((signal.SIGTERM, 0, 143), (signal.SIGINT, 2, 130)):
        rc, out = _interrupt(runner, cloud, params, signum, running)
        name = signal.Signals(signum).name
        assert rc == code, out[-6000:]
        assert "buildfarm-build: %s received, tearing the cluster down" % name in out
        assert re.search(r"buildfarm e2e-int run [0-9-]+: INTERRUPTED - interrupted by %s" % name, out), out[-4000:]
        assert '"cluster: swept"' in out
        assert cloud.leftovers("e2e-int") == {}
        launched = _instances_ever(cloud, "e2e-int")
        assert launched
        assert _containers_of(launched) == []
    # The README's cleanup command, as written there, after the entry point: nothing is left for it to delete.
    rc, out = runner.run("sweep.yml", {"cluster": "e2e-int", "region": cloud.env["AWS_REGION"]})
    assert rc == 0, out[-4000:]
    assert cloud.leftovers("e2e-int") == {}


@pytest.mark.minutes(2)
def test_a_killed_controller_lets_the_lease_lapse_and_the_expired_sweep_takes_the_rest(runner, cloud):
    """The laptop gone mid-build: ansible-playbook (that process alone) SIGKILLed while the build script runs. Its
    renewer sees its owner gone and stops, nothing renews the 1-minute lease, and every node powers itself off and
    ends `terminated` within heartbeat_timeout plus the nodes' check, with nothing else touching the cluster. Then
    `sweep.yml -e expired_only=true` (the cron / AWX schedule of docs/guide.md) removes all the rest."""
    cloud.bucket("buildfarm-e2e")
    cluster, timeout = "e2e-lease", 60
    params = cluster_params(
        cluster,
        88,
        heartbeat_timeout=timeout // 60,  # minutes; 1 is the smallest the spec allows
        build_script_content='touch "$BUILDFARM_SOURCE_DIR/../running"\nsleep 1000\n',
        build_timeout=900,
        prefix="lease/",
    )
    log = runner.tmp_path / "killed.log"
    ec2 = cloud.client("ec2")
    tag = [{"Name": "tag:buildfarm:cluster", "Values": [cluster]}]
    with log.open("w") as out:
        proc = subprocess.Popen(
            runner.command("build.yml", params), env=runner.env, stdout=out, stderr=subprocess.STDOUT
        )
    workers = {}
    try:
        deadline = time.monotonic() + 900
        while True:
            assert proc.poll() is None, "the run ended before the build script ran:\n" + log.read_text()[-6000:]
            assert time.monotonic() < deadline, "the build script did not start:\n" + log.read_text()[-6000:]
            host = [
                i["InstanceId"]
                for r in ec2.describe_instances(
                    Filters=tag
                    + [
                        {"Name": "tag:buildfarm:role", "Values": ["host"]},
                        {"Name": "instance-state-name", "Values": ["running"]},
                    ]
                )["Reservations"]
                for i in r["Instances"]
            ]
            if host:
                started = subprocess.run(
                    ["docker", "exec", "bf-lc-" + host[0], "test", "-e", "/srv/buildfarm/running"],
                    capture_output=True,
                    check=False,
                )
                if started.returncode == 0:
                    break
            time.sleep(2)
        states = list((runner.tmp_path / "runs" / cluster).glob("*/lease.json"))
        assert len(states) == 1, states
        renewer = json.loads(states[0].read_text())
        assert renewer["owner"] == proc.pid
        launched = _instances_ever(cloud, cluster)
        assert len(launched) == 2

        workers = processes.descendants(proc.pid)  # they live on (own sessions) until their task ends
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        gone = {}
        while len(gone) < len(launched):
            now = time.monotonic()
            assert now - killed_at < timeout + 60, "not terminated %d s after the kill: %s of %s\n%s" % (
                now - killed_at,
                gone,
                launched,
                log.read_text()[-3000:],
            )
            for r in ec2.describe_instances(InstanceIds=launched)["Reservations"]:
                for i in r["Instances"]:
                    if i["InstanceId"] not in gone and i["State"]["Name"] == "terminated":
                        gone[i["InstanceId"]] = (now - killed_at, i.get("StateReason", {}).get("Code"))
            if bf_lease.alive(renewer["pid"], renewer["start"]):
                assert now - killed_at < 5, "the renewer outlived its owner"
            time.sleep(2)
        print("terminated (s after the kill, reason):", gone)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        processes.kill(workers)  # the orphaned workers (whose build host is gone by now)
    # The nodes powered themselves off (no API call terminated them), not before the last lease had lapsed.
    assert {reason for _at, reason in gone.values()} == {"Client.InstanceInitiatedShutdown"}, gone
    assert min(at for at, _reason in gone.values()) > timeout // 2, gone
    assert _containers_of(launched) == []

    rc, out = runner.run("sweep.yml", {"expired_only": True, "region": cloud.env["AWS_REGION"]})
    assert rc == 0, out[-4000:]
    assert cluster in out
    assert cloud.leftovers(cluster) == {}


@pytest.mark.minutes(2)
def test_builders_lost_mid_build_get_no_new_compiles_and_all_is_swept(build, cloud, tmp_path):
    """Two spot builders (one of each of two types) are lost while the build runs: one is killed, the other gets EC2's
    spot interruption notice (and is terminated 30 s later). The build host's runner notices both, distcc skips them
    on the runner's marks (its own trace says so) and compiles locally instead, the build succeeds, the report and
    the summary name both nodes with their reasons, and nothing is left."""
    cloud.bucket("buildfarm-e2e")
    script = (
        "#!/bin/bash\nset -e\n"
        "# only the builders, so the compile has to decide about them\n"
        "export DISTCC_HOSTS=\"$(tr ' ' '\\n' <<<\"$DISTCC_HOSTS\" | grep -v '^localhost' | tr '\\n' ' ')\"\n"
        "export DISTCC_VERBOSE=1\n"
        'touch "$BUILDFARM_SOURCE_DIR/../waiting"\n'
        'for i in $(seq 120); do [ -e "$BUILDFARM_SOURCE_DIR/../go" ] && break; sleep 1; done\n'
        'for i in $(seq 90); do [ "$(grep -c \' lost at \' "$BUILDFARM_LOG")" -ge 2 ] && break; sleep 1; done\n'
        "printf 'int main(void){return 0;}\\n' > t.c\n"
        '$CC -c t.c -o "$BUILDFARM_OUTPUT_DIR/t.o"\n'
    )
    params = cluster_params(
        "e2e-kill",
        95,
        builders=2,
        spot=True,
        builder_type="c6i.large,m6i.large",  # spread: one builder of each type
        build_script_content=script,
        outputs=["*.o"],
        build_timeout=600,
        prefix="kill/",
    )
    result = {}
    worker = threading.Thread(target=lambda: result.update(zip(("rc", "out"), build(params), strict=True)))
    worker.start()
    ec2 = cloud.client("ec2")
    tag = [{"Name": "tag:buildfarm:cluster", "Values": ["e2e-kill"]}]

    def role(name):
        found = ec2.describe_instances(Filters=tag + [{"Name": "tag:buildfarm:role", "Values": [name]}])
        return [i for r in found["Reservations"] for i in r["Instances"] if i["State"]["Name"] == "running"]

    deadline = time.monotonic() + 900
    lost = None
    while worker.is_alive() and lost is None and time.monotonic() < deadline:
        host = role("host")
        waiting = host and subprocess.run(
            ["docker", "exec", "bf-lc-" + host[0]["InstanceId"], "test", "-e", "/srv/buildfarm/waiting"],
            capture_output=True,
            check=False,
        )
        if waiting and waiting.returncode == 0:
            killed, noticed = sorted(role("builder"), key=lambda i: i["InstanceId"])
            assert noticed["InstanceLifecycle"] == "spot"
            subprocess.run(["docker", "kill", "bf-lc-" + killed["InstanceId"]], capture_output=True, check=True)
            cloud.interrupt(noticed["InstanceId"], 30)
            subprocess.run(
                ["docker", "exec", "bf-lc-" + host[0]["InstanceId"], "touch", "/srv/buildfarm/go"], check=True
            )
            lost = killed, noticed
        time.sleep(2)
    worker.join(timeout=900)
    assert lost, result.get("out", "")[-6000:]
    assert result["rc"] == 0, result["out"][-8000:]
    objects = cloud.objects("buildfarm-e2e", "kill/")
    log = objects["kill/build.log"].decode()
    (killed_ip, killed_id), (noticed_ip, noticed_id) = [(i["PrivateIpAddress"], i["InstanceId"]) for i in lost]
    assert "builder %s lost at " % killed_ip in log and "distccd on %s:3632 unreachable" % killed_ip in log, log[-4000:]
    assert "builder %s lost at " % noticed_ip in log and "spot interruption notice" in log, log[-4000:]
    # distcc skipped both on the runner's marks instead of trying them, and compiled locally.
    for ip in (killed_ip, noticed_ip):
        assert "still in backoff period for %s" % ip in log, log[-4000:]
    assert "running locally instead" in log, log[-3000:]
    report = json.loads(objects["kill/report.json"])
    by_node = {entry["node"]: entry["reason"] for entry in report["builders_lost"]}
    assert set(by_node) == {killed_id, noticed_id}, report["builders_lost"]
    assert "unreachable" in by_node[killed_id] and '"action"' in by_node[noticed_id], by_node
    assert "lost during the build: %s at " % noticed_id in result["out"]
    # The two spot builders were spread over the two types; the report names each node's type and market.
    builders = sorted((n["type"], n["lifecycle"]) for n in report["cost"]["nodes"] if n["role"] == "builder")
    assert builders == [("c6i.large", "spot"), ("m6i.large", "spot")] and report["spot_fallbacks"] == []
    # EC2 ended the interrupted instance (the local cloud's control, as EC2 after its two minutes).
    state = ec2.describe_instances(InstanceIds=[noticed_id])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")
    assert cloud.leftovers("e2e-kill") == {}


def test_inside_an_existing_private_subnet_behind_a_nat_gateway(build, cloud):
    """The controller inside AWS: the cluster goes into the user's private subnet (no public addresses, its way
    out a NAT gateway), is reached by private address, compiles, and leaves the user's network as it was."""
    cloud.bucket("buildfarm-e2e")
    ec2 = cloud.client("ec2")
    net = users_network(ec2, 98)
    params = dict(
        BASE,
        cluster="e2e-inside",
        builders=1,
        subnet_id=net["private"],
        ssh_cidr="10.98.0.0/16",  # the controller is inside the VPC
        source_dir=str(ROOT / "examples" / "hello" / "src"),
        build_script=str(ROOT / "examples" / "hello" / "build.sh"),
        outputs=["hello"],
        build_timeout=300,
        prefix="inside/",
    )
    rc, out = build(params)
    assert rc == 0, out[-8000:]
    assert "hello" in {k.split("/")[-1] for k in cloud.objects("buildfarm-e2e", "inside/")}
    assert cloud.leftovers("e2e-inside") == {}
    assert ec2.describe_subnets(SubnetIds=[net["private"], net["public"]])["Subnets"]
    assert ec2.describe_nat_gateways(NatGatewayIds=[net["nat"]])["NatGateways"][0]["State"] == "available"
    assert ec2.describe_vpcs(VpcIds=[net["vpc"]])["Vpcs"]

    # The same subnet without its NAT gateway has no way out: refused before any instance starts.
    ec2.delete_nat_gateway(NatGatewayId=net["nat"])
    rc, out = build(dict(params, prefix="no-egress/"))
    assert rc != 0
    assert "would have no way to the internet" in out and "NAT gateway %s" % net["nat"] in out
    assert cloud.leftovers("e2e-inside") == {}


def _role_ids(cloud, cluster, role):
    return sorted(
        i["InstanceId"]
        for r in cloud.client("ec2").describe_instances(
            Filters=[
                {"Name": "tag:buildfarm:cluster", "Values": [cluster]},
                {"Name": "tag:buildfarm:role", "Values": [role]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )["Reservations"]
        for i in r["Instances"]
    )


def _on(instance, script):
    return subprocess.run(
        ["docker", "exec", "bf-lc-" + instance, "sh", "-c", script], capture_output=True, text=True, check=True
    ).stdout


# Compiles the workspace's greet.c on the build host and records there what it saw: its own name, the message the
# user left, and one more line in a file the workspace keeps across runs.
WORKSPACE_SCRIPT = """set -e
$CC -O2 -c greet.c -o greet.o
echo "$(hostname) $(pwd)" >> runs.log
cp greet.o runs.log message "$BUILDFARM_OUTPUT_DIR/"
hostname > "$BUILDFARM_OUTPUT_DIR/built-on"
"""


@pytest.mark.minutes(7)
def test_a_kept_host_keeps_its_workspace_while_builders_come_and_go(build, runner, cloud, tmp_path):
    """keep_host + workspace: the first run launches the host and a builder, puts source_dir into a new workspace
    volume, builds on the builder (the bigger node) in the volume, moves it back to the host and terminates the
    builder only. The user edits on the host; the second run boots a new builder beside the same host and builds
    the edited sources from the workspace alone. A failing build, and a run whose controller dies mid-build, leave
    the workspace to the next run all the same. The sweep then removes everything, the volume too."""
    cloud.bucket("buildfarm-e2e")
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "greet.c").write_text('const char *greet(void) { return "hello"; }\n')
    (sources / "message").write_text("first\n")
    params = cluster_params(
        "e2e-ws",
        100,
        host_type="t2.micro",  # one vCPU: the build runs on the two-vCPU builder, so the volume moves
        keep_host=True,
        workspace="workspace",
        workspace_size=1,
        compile_cache="off",
        build_timeout=300,
        build_script_content=WORKSPACE_SCRIPT,
    )
    # Bad input first: a workspace that the run's sweep would delete is refused before anything is made.
    rc, out = build(dict(params, keep_host=False, prefix="ws0/"))
    assert rc != 0 and "workspace workspace needs keep_host or keep_cluster" in out, out[-3000:]
    assert cloud.leftovers("e2e-ws") == {}

    rc, out = build(dict(params, source_dir=str(sources), prefix="ws1/"))
    assert rc == 0, out[-8000:]
    (host,) = _role_ids(cloud, "e2e-ws", "host")
    assert _role_ids(cloud, "e2e-ws", "builder") == []  # terminated; the host stays
    assert "cluster: host kept (keep_host), builders terminated" in out, out[-3000:]
    assert re.search(r"workspace: workspace \(vol-[0-9a-f]+\) on the host at /srv/workspace", out), out[-3000:]
    first = cloud.objects("buildfarm-e2e", "ws1/")
    report = json.loads(first["ws1/report.json"])
    assert report["build_host"]["role"] == "builder", report["build_host"]
    host_name = _on(host, "hostname").strip()
    assert first["ws1/built-on"].decode().strip() != host_name
    assert first["ws1/message"] == b"first\n" and first["ws1/greet.o"].startswith(b"\x7fELF")
    assert _workspace_attachments(cloud, "e2e-ws") == [host]
    # Mounted on the host again, with what the build wrote in it, the source directory the user's
    assert _on(host, "findmnt -n -o TARGET /srv/workspace").strip() == "/srv/workspace"
    assert _on(host, "cat /srv/workspace/src/runs.log").count("/srv/workspace/src") == 1
    assert _on(host, "stat -c %U /srv/workspace/src").strip() == "admin"
    # and what the build (as root) wrote in it is the user's, who may rebuild it by hand on the host
    assert _on(host, "stat -c %U /srv/workspace/src/greet.o /srv/workspace/src/runs.log").split() == ["admin"] * 2
    # The host has no lease watch: it outlives the controller (max_lifetime guards it).
    assert _on(host, "test -e %s && echo watch || echo none" % bf_lease.WATCH_PATH).strip() == "none"

    # The user edits on the host, between runs.
    _on(host, "echo second > /srv/workspace/src/message")
    rc, out = build(dict(params, prefix="ws2/"))
    assert rc == 0, out[-8000:]
    assert _role_ids(cloud, "e2e-ws", "host") == [host] and _role_ids(cloud, "e2e-ws", "builder") == []
    second = cloud.objects("buildfarm-e2e", "ws2/")
    assert second["ws2/message"] == b"second\n"  # built from the workspace, with the edit
    assert second["ws2/runs.log"].decode().count("/srv/workspace/src") == 2  # the first run's line is still there
    again = json.loads(second["ws2/report.json"])["build_host"]
    assert again["role"] == "builder" and again["node"] != report["build_host"]["node"], again  # a new builder
    assert host_name not in [line.split()[0] for line in second["ws2/runs.log"].decode().splitlines()]
    assert _workspace_attachments(cloud, "e2e-ws") == [host]
    assert _on(host, "cat /srv/workspace/src/message") == "second\n"

    # The user still has a shell in the workspace on the host: the run refuses to take the volume away from it, names
    # the process and ends nothing on the host; the workspace stays mounted there, the builder goes.
    _on(host, "cd /srv/workspace/src && { sleep 300 > /dev/null 2>&1 & echo $! > /tmp/users-shell; }")
    user_pid = _on(host, "cat /tmp/users-shell").strip()
    rc, out = build(dict(params, prefix="ws2b/"))
    assert rc != 0, out[-4000:]
    refusal = "workspace workspace is in use on the host by %s (sleep): leave /srv/workspace there" % user_pid
    assert refusal in out, out[-4000:]
    assert _on(host, "kill -0 %s && findmnt -n -o TARGET /srv/workspace" % user_pid).strip() == "/srv/workspace"
    assert _role_ids(cloud, "e2e-ws", "builder") == [] and _workspace_attachments(cloud, "e2e-ws") == [host]
    _on(host, "kill %s" % user_pid)

    # A failing build that leaves a job running in the workspace: the run fails and says why, the job is ended, the
    # workspace comes back all the same, with what the script wrote before it failed, and the builder goes.
    script = 'echo "$(hostname) broke" >> runs.log\nsleep 600 > /dev/null 2>&1 &\nexit 3\n'
    rc, out = build(dict(params, prefix="ws3/", build_script_content=script))
    assert rc != 0 and "build failed: build script exited with status 3" in out, out[-4000:]
    assert _role_ids(cloud, "e2e-ws", "host") == [host] and _role_ids(cloud, "e2e-ws", "builder") == []
    assert _workspace_attachments(cloud, "e2e-ws") == [host]
    assert _on(host, "tail -n 1 /srv/workspace/src/runs.log").endswith(" broke\n")
    assert re.search(r"ending [0-9]+ \(sleep\)", out), out[-4000:]

    # The controller dies mid-build (ansible-playbook SIGKILLed): the workspace stays mounted on that run's builder,
    # whose build still runs in it. The next run takes the builder over (its fleet), ends what the dead run left
    # running in the workspace, builds there and puts the workspace back on the host.
    marker = "/srv/workspace/src/dead-run"
    log = runner.tmp_path / "ws4.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(
            runner.command(
                "build.yml", dict(params, prefix="ws4/", build_script_content="touch dead-run\nsleep 900\n")
            ),
            env=runner.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    workers = {}
    try:
        deadline = time.monotonic() + 600
        dead_builder = None
        while dead_builder is None:
            assert proc.poll() is None, "the run ended before its build ran:\n" + log.read_text()[-6000:]
            assert time.monotonic() < deadline, "the build did not start:\n" + log.read_text()[-6000:]
            for builder in _role_ids(cloud, "e2e-ws", "builder"):
                probe = ["docker", "exec", "bf-lc-" + builder, "test", "-e", marker]
                if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
                    dead_builder = builder
            time.sleep(2)
        workers = processes.descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        processes.kill(workers)
    assert _workspace_attachments(cloud, "e2e-ws") == [dead_builder]
    rc, out = build(dict(params, prefix="ws5/"))
    assert rc == 0, out[-8000:]
    # the dead run's build, in the workspace (its runner, timeout(1) and script: whichever the scan finds first)
    assert re.search(r"left running in the workspace: ending [0-9]+ \((run-build|timeout|bash|sleep)\)", out), out[
        -4000:
    ]
    fifth = cloud.objects("buildfarm-e2e", "ws5/")
    assert json.loads(fifth["ws5/report.json"])["build_host"]["node"] == dead_builder  # taken over, not a new one
    assert _role_ids(cloud, "e2e-ws", "host") == [host] and _role_ids(cloud, "e2e-ws", "builder") == []
    assert _workspace_attachments(cloud, "e2e-ws") == [host]
    assert _on(host, "test -e %s && findmnt -n -o TARGET /srv/workspace" % marker).strip() == "/srv/workspace"

    rc, out = runner.run("sweep.yml", {"cluster": "e2e-ws", "region": cloud.env["AWS_REGION"]})
    assert rc == 0, out[-4000:]
    assert cloud.leftovers("e2e-ws") == {}
