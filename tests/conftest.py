"""Shared fixtures: a moto server (real HTTP on loopback, one per session, reset per test) and a playbook runner.

The collection is importable as ``ansible_collections.buildfarm.ec2`` through build/collections (made by
``make collection``); amazon.aws comes from the ``ansible`` package in the project virtualenv.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / "build" / "collections"
if not (COLLECTIONS / "ansible_collections" / "buildfarm" / "ec2").exists():
    (COLLECTIONS / "ansible_collections" / "buildfarm").mkdir(parents=True, exist_ok=True)
    (COLLECTIONS / "ansible_collections" / "buildfarm" / "ec2").symlink_to(ROOT)
sys.path.insert(0, str(COLLECTIONS))

REGION = "eu-west-1"
# The head of every integration test play: localhost, with the collection's AWS modules (action group
# buildfarm.ec2.aws) pointed at the moto server, or at ``endpoint`` when the test passes one (a proxy).
AWS_PLAY = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/buildfarm.ec2.aws:
      endpoint_url: "{{ endpoint | default(lookup('env', 'AWS_ENDPOINT_URL')) }}"
      region: %s
  tasks:
""" % REGION
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


LOCALCLOUD = ROOT / "tools" / "localcloud" / "localcloud.sh"


def localcloud_cli(state_dir, *args, timeout=600):
    """Run tools/localcloud/localcloud.sh on the local cloud whose state is in ``state_dir``."""
    env = dict(os.environ, BUILDFARM_LOCALCLOUD_DIR=str(state_dir))
    return subprocess.run(
        [str(LOCALCLOUD), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@contextlib.contextmanager
def local_cloud(state_dir, *up_args):
    """A local cloud of its own (``localcloud.sh up *up_args``): yields its exports; always down, and a failed down
    fails the test (a leaked container or network is a failure)."""
    up = localcloud_cli(state_dir, "up", *up_args)
    try:
        if up.returncode:
            pytest.fail("localcloud up failed:\n%s" % up.stderr)
        exports = dict(
            line[len("export ") :].split("=", 1) for line in up.stdout.splitlines() if line.startswith("export ")
        )
        yield {k: v.strip("'\"") for k, v in exports.items()}
    finally:
        down = localcloud_cli(state_dir, "down")
        if not up.returncode:
            assert down.returncode == 0, down.stderr


def local_client(exports, service):
    """A boto3 client of ``service`` on the local cloud of ``exports`` (see local_cloud)."""
    return boto3.client(
        service,
        endpoint_url=exports["AWS_ENDPOINT_URL"],
        region_name=exports["AWS_REGION"],
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
    )


def _get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback only)
        return response.read()


def _post(url, data=b"", timeout=10):
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback only)
        return response.read()


def child_env(aws, *layers):
    """The environment of a child process: this one's, the moto server's, then each layer of ``layers`` (None
    skipped); a value of None in a layer removes that variable."""
    env = dict(os.environ, **aws.env)
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
    return env


def iam_user(aws, name, actions):
    """A moto IAM user allowed ``actions`` on every resource; returns the environment of its access key."""
    iam = aws.client("iam")
    iam.create_user(UserName=name)
    statement = {"Effect": "Allow", "Action": sorted(actions), "Resource": "*"}
    iam.put_user_policy(
        UserName=name,
        PolicyName="buildfarm-test",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_SESSION_TOKEN": None,
    }


def shipped_policy_actions(service=None):
    """The IAM actions of docs/iam-policy.json (of one service, e.g. ``s3``)."""
    policy = json.loads((ROOT / "docs" / "iam-policy.json").read_text())
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    return {a for a in actions if service is None or a.startswith(service + ":")}


@contextlib.contextmanager
def enforced_auth(endpoint):
    """The moto server checks every request's credentials and IAM policies (as AWS does) inside the block."""
    _post(endpoint + "/moto-api/reset-auth", b"0")
    try:
        yield
    finally:
        _post(endpoint + "/moto-api/reset-auth", b"inf")


def serve_moto(argv, log, env=None, what="moto server"):
    """Start a moto server process (``argv`` without its port) on a free loopback port, logging to ``log``; wait
    until it answers and yield its URL; stop it afterwards. Shared by the plain and the priced server."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([*argv, str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 30
    while True:
        try:
            _get(url + "/moto-api/data.json")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("%s did not start: %s" % (what, log.read_text())) from None
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """A moto server process on a free loopback port; yields its URL."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    # the request recorder (/moto-api/recorder/...) writes next to the log, not into the working directory
    env = dict(os.environ, MOTO_RECORDER_FILEPATH=str(log.parent / "recording.jsonl"))
    yield from serve_moto([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p"], log, env)


@pytest.fixture
def aws(moto_server, monkeypatch):
    """A freshly reset moto server: ``endpoint``, ``region``, ``env`` (for subprocesses) and ``client(name)``."""
    import boto3

    _post(moto_server + "/moto-api/reset")
    env = dict(CREDENTIALS, AWS_DEFAULT_REGION=REGION, AWS_REGION=REGION, AWS_ENDPOINT_URL=moto_server)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def client(service, region=REGION):
        return boto3.client(service, region_name=region, endpoint_url=moto_server)

    return SimpleNamespace(endpoint=moto_server, region=REGION, env=env, client=client)


class PlayResult(SimpleNamespace):
    def task(self, name, host="localhost"):
        """The result of the task called ``name`` on ``host`` (the last one when it ran several times)."""
        found = [
            t["hosts"][host]
            for play in self.json.get("plays", [])
            for t in play["tasks"]
            if t["task"]["name"] == name and host in t["hosts"]
        ]
        if not found:
            raise KeyError("no task %r on %s in:\n%s" % (name, host, self.stdout[-4000:]))
        return found[-1]


@pytest.fixture
def proxy(aws):
    """The request-counting reverse proxy of tests/s3proxy.py in front of the moto server (``url``, ``writes()``)."""
    from tests.s3proxy import CountingProxy

    counting = CountingProxy(aws.endpoint)
    yield counting
    counting.close()


@pytest.fixture
def run_play(aws, tmp_path):
    """Run a playbook (text or path) with ansible-playbook against the moto server; returns a PlayResult."""

    def run(playbook, extra_vars=None, check=False, inventory="localhost,", env=None, expect_rc=0):
        if isinstance(playbook, str) and "\n" in playbook:
            path = tmp_path / ("play-%d.yml" % time.monotonic_ns())
            path.write_text(playbook)
        else:
            path = Path(playbook)
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, str(path)]
        if inventory == "localhost,":
            cmd.append("--connection=local")
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        if check:
            cmd.append("--check")
        full_env = child_env(
            aws,
            dict(
                ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
                ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                ANSIBLE_LOCALHOST_WARNING="false",
                ANSIBLE_PYTHON_INTERPRETER=sys.executable,
            ),
            env,
        )
        proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=900, check=False)
        try:
            parsed = json.loads(proc.stdout)
        except ValueError:
            parsed = {}
        result = PlayResult(rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr, json=parsed)
        if expect_rc is not None and proc.returncode != expect_rc:
            raise AssertionError(
                "ansible-playbook rc=%d (wanted %d)\n%s\n%s"
                % (proc.returncode, expect_rc, proc.stdout[-6000:], proc.stderr[-3000:])
            )
        return result

    return run
