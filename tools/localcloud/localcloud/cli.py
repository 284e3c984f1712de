"""localcloud up | status | down | env | spot | serve (see docs/localcloud.md)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from localcloud import DEFAULT_IMAGE, DEFAULT_REGION, LABEL, LABEL_DIR, host, network
from localcloud.host import HostError

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(PACKAGE_DIR))
ENGINE = os.path.join(ROOT, "tools", "engine", "engine.sh")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
FILES = ("env", "endpoint.pid", "endpoint.log", "loops.json", "loops.json.tmp", "images.json", "images.json.tmp")


def say(message):
    print("localcloud: %s" % message, file=sys.stderr, flush=True)


def die(message):
    say("error: " + message)
    sys.exit(1)


def default_dir():
    return os.environ.get("BUILDFARM_LOCALCLOUD_DIR") or os.path.join(ROOT, "build", "localcloud")


def free_port():
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


def read_env(state_dir):
    env = {}
    try:
        with open(os.path.join(state_dir, "env")) as src:
            for line in src:
                if "=" in line and not line.startswith("#"):
                    key, value = line.rstrip("\n").split("=", 1)
                    env[key] = value
    except OSError:
        pass
    return env


def read_pid(state_dir):
    try:
        with open(os.path.join(state_dir, "endpoint.pid")) as src:
            return int(src.read().strip())
    except (OSError, ValueError):
        return None


def our_process(pid):
    """True when ``pid`` is a running local cloud endpoint (guards against a reused PID)."""
    if not pid:
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as src:
            argv = src.read().split(b"\0")
    except OSError:
        return False
    return b"localcloud" in argv and b"serve" in argv


def answers(url, timeout=5):
    """True when an HTTP server answers at ``url`` (any status)."""
    try:
        with urllib.request.urlopen(url + "/moto-api/", timeout=timeout):  # noqa: S310 (loopback)
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def print_exports(env):
    for key, value in env.items():
        print("export %s=%s" % (key, value))


# --------------------------------------------------------------------------------------------- up
def cmd_up(args):
    state_dir = os.path.realpath(args.dir)
    env = read_env(state_dir)
    pid = read_pid(state_dir)
    if our_process(pid) and env.get("AWS_ENDPOINT_URL") and answers(env["AWS_ENDPOINT_URL"]):
        say("already up (pid %d), env file %s" % (pid, os.path.join(state_dir, "env")))
        print_exports(env)
        return 0
    if not args.no_engine:
        subprocess.run([ENGINE, "up"], check=True)
    if not host.engine_answers():
        die("the docker engine does not answer (tools/engine/engine.sh up)")
    label = host.cloud_label_value(state_dir)
    if (
        pid
        or host.containers(label)
        or host.networks(label)
        or host.loops_backed_by(state_dir)
        or network.host_rules(network.cloud_hash(state_dir))
    ):
        say("leftovers of an earlier run in %s: cleaning them first" % state_dir)
        cleanup(state_dir, everything=False)
    reap_orphans(state_dir)
    os.makedirs(state_dir, exist_ok=True)
    port = args.port or free_port()
    s3_port = args.s3_port or free_port()
    while s3_port == port:
        s3_port = free_port()
    gateway = host.bridge_gateway()
    instance_url = "http://%s:%d" % (gateway, port)
    instance_s3_url = "http://%s:%d" % (gateway, s3_port)
    internet, internet_cidr = network.create_internet_network(
        state_dir, ["%s=1" % LABEL, "%s=%s" % (LABEL_DIR, label), "%s.internet=1" % LABEL]
    )
    controller, _probes, _pool = network.internet_layout(internet_cidr)
    url = "http://127.0.0.1:%d" % port
    logfile = os.path.join(state_dir, "endpoint.log")
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = PACKAGE_DIR + (
        os.pathsep + child_env["PYTHONPATH"] if child_env.get("PYTHONPATH") else ""
    )
    argv = [
        sys.executable,
        "-m",
        "localcloud",
        "--dir",
        state_dir,
        "serve",
        "--port",
        str(port),
        "--bind",
        args.bind,
        "--image",
        args.image,
        "--region",
        args.region,
        "--instance-endpoint",
        instance_url,
        "--s3-port",
        str(s3_port),
        "--instance-s3-endpoint",
        instance_s3_url,
        "--internet-network",
        internet,
    ]
    if args.no_limits:
        argv.append("--no-limits")
    if args.credential_seconds:
        argv += ["--credential-seconds", str(args.credential_seconds)]
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env, start_new_session=True
        )
    with open(os.path.join(state_dir, "endpoint.pid"), "w") as out:
        out.write("%d\n" % proc.pid)
    deadline = time.monotonic() + 60
    while not answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            with open(logfile, errors="replace") as src:
                tail = src.read()[-3000:]
            if proc.poll() is None:
                proc.kill()
            die("the endpoint did not start (log %s):\n%s" % (logfile, tail))
        time.sleep(0.2)
    env = {
        "AWS_ENDPOINT_URL": url,
        "AWS_REGION": args.region,
        "AWS_DEFAULT_REGION": args.region,
        **CREDENTIALS,
        "BUILDFARM_INSTANCE_ENDPOINT_URL": instance_url,
        "BUILDFARM_LOCALCLOUD_DIR": state_dir,
        "BUILDFARM_INSTANCE_S3_ENDPOINT_URL": instance_s3_url,
        "BUILDFARM_LOCALCLOUD_INTERNET_CIDR": internet_cidr,
        "BUILDFARM_LOCALCLOUD_CONTROLLER_CIDR": controller + "/32",
    }
    with open(os.path.join(state_dir, "env"), "w") as out:
        out.write("".join("%s=%s\n" % kv for kv in env.items()))
    say("up: endpoint %s (instances use %s), pid %d, env file %s" % (url, instance_url, proc.pid, state_dir + "/env"))
    print_exports(env)
    return 0


# --------------------------------------------------------------------------------------------- status
def collect(state_dir):
    state_dir = os.path.realpath(state_dir)
    env = read_env(state_dir)
    pid = read_pid(state_dir)
    url = env.get("AWS_ENDPOINT_URL")
    info = {
        "dir": state_dir,
        "endpoint": {"url": url, "pid": pid, "running": our_process(pid), "answers": bool(url) and answers(url)},
        "instance_endpoint": env.get("BUILDFARM_INSTANCE_ENDPOINT_URL"),
        "instances": [],
        "volumes": [],
        "containers": [],
        "networks": [],
        "loop_devices": [],
        "host_rules": network.host_rules(network.cloud_hash(state_dir)),
        "public_addresses": [],
    }
    label = host.cloud_label_value(state_dir)
    bridge = network.internet_bridge_name(state_dir)
    if os.path.exists("/sys/class/net/" + bridge):
        info["public_addresses"] = sorted(network.bridge_addresses(bridge))
    try:
        info["containers"] = sorted(
            (
                {"name": c["name"], "state": c["state"], "instance": c["instance"]}
                for c in host.containers(label).values()
            ),
            key=lambda c: c["name"],
        )
        info["networks"] = [{"name": n, "cidr": c} for n, c in sorted(host.networks(label).items())]
    except HostError as exc:
        info["engine_error"] = str(exc)
    info["loop_devices"] = [{"device": d, "file": f} for d, f in host.loops_backed_by(state_dir)]
    if info["endpoint"]["answers"]:
        import boto3

        ec2 = boto3.client("ec2", endpoint_url=url, region_name=env.get("AWS_REGION", DEFAULT_REGION), **_creds())
        for res in ec2.describe_instances()["Reservations"]:
            for inst in res["Instances"]:
                info["instances"].append(
                    {
                        "id": inst["InstanceId"],
                        "state": inst["State"]["Name"],
                        "private_ip": inst.get("PrivateIpAddress"),
                        "public_ip": inst.get("PublicIpAddress"),
                        "subnet": inst.get("SubnetId"),
                        "key_name": inst.get("KeyName"),
                        "reason": inst.get("StateReason", {}).get("Message"),
                    }
                )
        for vol in ec2.describe_volumes()["Volumes"]:
            att = vol.get("Attachments") or [{}]
            info["volumes"].append(
                {
                    "id": vol["VolumeId"],
                    "size": vol["Size"],
                    "state": vol["State"],
                    "instance": att[0].get("InstanceId"),
                    "device": att[0].get("Device"),
                }
            )
    return info


def _creds():
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


def cmd_status(args):
    info = collect(args.dir)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    ep = info["endpoint"]
    print("state dir   %s" % info["dir"])
    print(
        "endpoint    %s  pid %s  %s"
        % (
            ep["url"] or "-",
            ep["pid"] or "-",
            "up" if ep["answers"] else ("running, not answering" if ep["running"] else "down"),
        )
    )
    print("instances   use %s" % (info["instance_endpoint"] or "-"))
    for i in info["instances"]:
        print(
            "  %-20s %-13s %-15s %-15s %s %s"
            % (
                i["id"],
                i["state"],
                i["private_ip"] or "-",
                i["public_ip"] or "-",
                i["subnet"] or "-",
                i["reason"] or "",
            )
        )
    print("volumes")
    for v in info["volumes"]:
        print("  %-22s %4d GiB %-10s %s %s" % (v["id"], v["size"], v["state"], v["instance"] or "", v["device"] or ""))
    print("containers")
    for c in info["containers"]:
        print("  %-26s %-10s %s" % (c["name"], c["state"], c["instance"] or ""))
    print("networks")
    for n in info["networks"]:
        print("  %-30s %s" % (n["name"], n["cidr"]))
    print("loop devices")
    for d in info["loop_devices"]:
        print("  %-12s %s" % (d["device"], d["file"]))
    print("host rules")
    for rule in info["host_rules"]:
        print("  " + rule)
    print("public addresses on the internet bridge")
    for addr in info["public_addresses"]:
        print("  " + addr)
    return 0


# --------------------------------------------------------------------------------------------- down
def stop_endpoint(state_dir):
    pid = read_pid(state_dir)
    if not our_process(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while our_process(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if our_process(pid):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    say("stopped the endpoint (pid %d)" % pid)


def cleanup(state_dir, everything):
    """Remove what the local cloud of ``state_dir`` made (with ``everything``: every local cloud's containers and
    networks). Returns a list of what is still there."""
    state_dir = os.path.realpath(state_dir)
    label = None if everything else host.cloud_label_value(state_dir)
    stop_endpoint(state_dir)
    found = host.containers(label)
    if found:
        host.docker("rm", "-f", *[c["id"] for c in found.values()], timeout=300, check=False)
        say("removed %d container(s)" % len(found))
    committed = host.images(label)
    if committed:
        host.docker("image", "rm", "-f", *committed, timeout=300, check=False)
        say("removed %d image(s) made by CreateImage" % len(committed))
    hashes = {network.cloud_hash(state_dir)}
    if everything:
        hashes |= set(network.host_rule_owners())
    for h in sorted(hashes):
        removed = network.remove_host_rules(h)
        if removed:
            say("removed %d host rule chain(s)/jump(s) of %s" % (len(removed), h))
    nets = host.networks(label)
    for name in nets:
        host.docker("network", "rm", name, timeout=60, check=False)
    if nets:
        say("removed %d network(s)" % len(nets))
    loops = {entry[0] for entry in host.loops_backed_by(state_dir)}
    try:
        with open(os.path.join(state_dir, "loops.json")) as src:
            recorded = json.load(src)
        for entry in recorded.values():
            if os.path.realpath(entry.get("file", "")).startswith(state_dir + "/"):
                loops.add(entry["device"])
    except (OSError, ValueError):
        pass
    for dev in sorted(loops):
        host.loop_detach(dev)
    if loops:
        say("detached %d loop device(s)" % len(loops))
    shutil.rmtree(os.path.join(state_dir, "volumes"), ignore_errors=True)
    for name in FILES:
        try:
            os.unlink(os.path.join(state_dir, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(state_dir)
    except OSError:
        pass
    left = ["container " + c for c in host.containers(label)]
    left += ["image " + i for i in host.images(label)]
    left += ["network " + n for n in host.networks(label)]
    for h in sorted(hashes):
        left += ["host rule " + r for r in network.host_rules(h)]
    left += ["loop device %s (%s)" % lf for lf in host.loops_backed_by(state_dir)]
    return left


def reap_orphans(state_dir):
    """Remove what local clouds whose endpoint is gone (killed, machine restarted) left on the engine: their
    containers would hold loop devices and their networks would refuse any subnet that overlaps them."""
    owners = network.host_rule_owners()
    dirs = host.cloud_dirs() | {d for d in owners.values() if d}
    for other in sorted(dirs - {state_dir}):
        if our_process(read_pid(other)):
            continue
        say("leftovers of a local cloud that is no longer running (%s): removing them" % other)
        left = cleanup(other, everything=False)
        if left:
            say("could not remove: " + ", ".join(left))
    mine = network.cloud_hash(state_dir)
    for h, owner in sorted(owners.items()):
        if owner is None and h != mine:  # chains whose jump rules (and owner) are gone
            say("host rule chains of an unknown local cloud (%s): removing them" % h)
            network.remove_host_rules(h)


def cmd_down(args):
    if not host.engine_answers():
        say("the docker engine does not answer: only the endpoint and files are handled")
        stop_endpoint(os.path.realpath(args.dir))
        return 1
    left = cleanup(args.dir, everything=args.all)
    if left:
        die("still there after down: " + ", ".join(left))
    say("down: nothing left of %s" % os.path.realpath(args.dir))
    return 0


def cmd_env(args):
    env = read_env(os.path.realpath(args.dir))
    if not env:
        die("not up: no env file in %s" % os.path.realpath(args.dir))
    print_exports(env)
    return 0


def cmd_serve(args):
    from localcloud.cloud import serve

    serve(
        args.dir,
        args.port,
        args.bind,
        args.image,
        args.instance_endpoint,
        args.region,
        limits=not args.no_limits,
        internet_network=args.internet_network,
        s3_port=args.s3_port,
        instance_s3_endpoint=args.instance_s3_endpoint,
        credential_seconds=args.credential_seconds,
    )
    return 0


def control(state_dir, method, path, body=None):
    """A call to the running endpoint's control API (localcloud/control.py); returns the JSON answer."""
    env = read_env(os.path.realpath(state_dir))
    if not env.get("AWS_ENDPOINT_URL"):
        die("not up: no env file in %s" % os.path.realpath(state_dir))
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(env["AWS_ENDPOINT_URL"] + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        die("%s %s: %s" % (method, path, exc.read().decode(errors="replace")))


def cmd_spot(args):
    if args.action == "status":
        result = control(args.dir, "GET", "/localcloud/spot")
    elif args.action in ("refuse", "allow"):
        if not args.targets:
            die("spot %s needs instance types (or '*')" % args.action)
        body = {"instance_types": args.targets, "available": args.action == "allow"}
        result = control(args.dir, "POST", "/localcloud/spot/capacity", body)
    else:
        if len(args.targets) != 1:
            die("spot interrupt needs one instance id")
        body = {"instance_id": args.targets[0], "delay": args.delay}
        result = control(args.dir, "POST", "/localcloud/spot/interrupt", body)
    print(json.dumps(result, indent=1))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="localcloud", description="EC2 + S3 endpoint whose instances are containers")
    parser.add_argument(
        "--dir", default=default_dir(), help="state directory (default $BUILDFARM_LOCALCLOUD_DIR or build/localcloud)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the endpoint in the background; print export lines")
    up.add_argument(
        "--port", type=int, default=int(os.environ.get("BUILDFARM_LOCALCLOUD_PORT", "0")), help="0: a free port"
    )
    up.add_argument("--s3-port", type=int, default=0, help="the instances' S3-only port (0: a free port)")
    up.add_argument("--bind", default="0.0.0.0")
    up.add_argument("--region", default=os.environ.get("BUILDFARM_LOCALCLOUD_REGION", DEFAULT_REGION))
    up.add_argument("--image", default=os.environ.get("BUILDFARM_BASE_IMAGE", DEFAULT_IMAGE))
    up.add_argument("--no-engine", action="store_true", help="do not run tools/engine/engine.sh up")
    up.add_argument("--no-limits", action="store_true", help="no CPU/memory limits from the instance type")
    up.add_argument(
        "--credential-seconds", type=int, default=0, help="lifetime of instance-profile credentials (default 3600)"
    )
    up.set_defaults(func=cmd_up)
    status = sub.add_parser("status", help="endpoint, instances, volumes, containers, networks, loop devices")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    down = sub.add_parser("down", help="stop the endpoint and remove everything it made")
    down.add_argument("--all", action="store_true", help="also every other local cloud's containers and networks")
    down.set_defaults(func=cmd_down)
    sub.add_parser("env", help="print the env file as export lines").set_defaults(func=cmd_env)
    spot = sub.add_parser("spot", help="spot faults: refuse/allow capacity per instance type, interrupt an instance")
    spot.add_argument("action", choices=("status", "refuse", "allow", "interrupt"))
    spot.add_argument("targets", nargs="*", help="instance types (refuse/allow, '*' for all) or one instance id")
    spot.add_argument("--delay", type=float, default=120, help="interrupt: seconds from the notice (EC2: 120)")
    spot.set_defaults(func=cmd_spot)
    serve = sub.add_parser("serve", help="run the endpoint in the foreground (what up starts)")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--bind", default="0.0.0.0")
    serve.add_argument("--image", default=DEFAULT_IMAGE)
    serve.add_argument("--region", default=DEFAULT_REGION)
    serve.add_argument("--instance-endpoint", required=True)
    serve.add_argument("--s3-port", type=int)
    serve.add_argument("--instance-s3-endpoint")
    serve.add_argument("--internet-network", help="the docker network of the local internet (up creates it)")
    serve.add_argument("--no-limits", action="store_true")
    serve.add_argument("--credential-seconds", type=int, default=0)
    serve.set_defaults(func=cmd_serve)
    args = parser.parse_args(argv)
    try:
        sys.exit(args.func(args))
    except HostError as exc:
        die(str(exc))
