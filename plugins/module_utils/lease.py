# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The heartbeat lease, the dead man's switch of a run (issue #20; docs/faults.md).

The ``buildfarm:lease`` tag of a cluster's instances is the UTC time until which the controller vouches for the
run. The fleet sets the first lease at launch (with tags in the instance metadata) and a watch in the user-data
(:func:`watch_script`) powers the node off once the lease is in the past. While the controller runs, a detached
renewer process (:func:`serve`, started by the ``buildfarm.ec2.lease`` action) sets it to now + heartbeat_timeout
every heartbeat_timeout / 4; it stops renewing as soon as its owner (the ``ansible-playbook`` process) is gone, so
a controller killed outright lets the lease lapse and the nodes power themselves off.

Run as ``python -m ansible_collections.buildfarm.ec2.plugins.module_utils.lease '<json>'`` it is the renewer.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import datetime, timedelta, timezone

from ansible_collections.buildfarm.ec2.plugins.module_utils import instances as bf_instances
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags

WATCH_PATH = "/usr/local/sbin/buildfarm-lease-watch"
# Where the node's watch puts a spot interruption notice: the status page's root (roles/status_page,
# status_page_root), so that it is http://NODE/interruption.json.
NOTICE_PATH = "/var/lib/buildfarm/status/interruption.json"
# EC2 advises reading spot/instance-action every 5 seconds.
SPOT_CHECK_INTERVAL = 5


def lease_until(minutes, now=None):
    """The ``buildfarm:lease`` value that vouches for ``minutes`` from ``now``."""
    return bf_tags.format_time((now or datetime.now(timezone.utc)) + timedelta(minutes=int(minutes)))


def renew_interval(minutes):
    """Seconds between renewals: a quarter of the timeout, so three renewals in a row may fail before it lapses."""
    return max(1, int(minutes) * 60 // 4)


def check_interval(minutes):
    """Seconds between the node's reads of its lease: a sixth of the timeout, 5-60 s."""
    return max(5, min(60, int(minutes) * 60 // 6))


def watch_script(minutes):
    """The node's watch (plain sh + curl, IMDSv2): it powers the node off when the lease it reads is past, and
    publishes a spot interruption notice.

    Every SPOT_CHECK_INTERVAL s (EC2's advice for the notice) it reads ``spot/instance-action``; the first notice
    goes, as EC2 gives it ({"action", "time"}), to NOTICE_PATH, which the node's status page serves
    (``/interruption.json``) and the build host's runner watches (roles/build, run-build), so distcc stops sending
    the node compiles during its two minutes.

    The lease is read every :func:`check_interval` s. A read that fails (IMDS down, the tag or tags in metadata
    gone, curl failing) does not power the node off: the node keeps the last lease it did read (before the first
    read: boot + timeout, the launch's lease) and powers off only when that one is ``minutes`` more in the past. A
    flaky metadata service cannot end a run the controller still vouches for, and a node that can never read its
    lease is still off two timeouts after the controller's last word (max_lifetime stays the last guard). Without
    curl the watch does nothing (it says so).
    """
    seconds = int(minutes) * 60
    return """#!/bin/sh
# buildfarm.ec2 node watch: power off (shutdown behaviour terminate) once this instance's %(tag)s tag (UTC, from
# the instance metadata) is past; a failed read keeps the last lease read, and the node powers off only when that
# one is %(seconds)d s (heartbeat_timeout) past as well. A spot interruption notice goes to %(notice)s.
command -v curl >/dev/null || { echo "buildfarm lease: no curl, the watch is off (max_lifetime only)"; exit 0; }
imds=http://169.254.169.254/latest
known=$(( $(date +%%s) + %(seconds)d ))
next=0
while sleep %(spot)d; do
    token=$(curl -sf -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' $imds/api/token) || token=
    if [ -n "$token" ] && [ ! -e %(notice)s ] &&
        notice=$(curl -sf -m 5 -H "X-aws-ec2-metadata-token: $token" $imds/meta-data/spot/instance-action); then
        mkdir -p %(notice_dir)s && printf '%%s\\n' "$notice" > %(notice)s.tmp && mv %(notice)s.tmp %(notice)s
        echo "buildfarm spot: interruption notice $notice"
    fi
    [ "$(date +%%s)" -ge "$next" ] || continue
    next=$(( $(date +%%s) + %(interval)d ))
    if [ -n "$token" ] &&
        lease=$(curl -sf -m 5 -H "X-aws-ec2-metadata-token: $token" $imds/meta-data/tags/instance/%(tag)s) &&
        until=$(date -u -d "$lease" +%%s 2>/dev/null); then
        known=$until
        grace=0
    else
        grace=%(seconds)d
        echo "buildfarm lease: unreadable, keeping the last lease read ($(date -u -d @$known +%%FT%%TZ))"
    fi
    if [ "$(date +%%s)" -gt $((known + grace)) ]; then
        echo "buildfarm lease: lapsed at $(date -u -d @$known +%%FT%%TZ), powering off"
        systemctl poweroff || poweroff
        exit 0
    fi
done
""" % {
        "tag": bf_tags.TAG_LEASE,
        "seconds": seconds,
        "interval": check_interval(minutes),
        "spot": SPOT_CHECK_INTERVAL,
        "notice": NOTICE_PATH,
        "notice_dir": NOTICE_PATH.rsplit("/", 1)[0],
    }


def renew(ec2, cluster, minutes, now=None):
    """Set the lease of the cluster's pending and running instances to now + ``minutes``: one CreateTags call per
    chunk of ids. Returns (the lease value, the instance ids)."""
    until = lease_until(minutes, now)
    ids = [i["InstanceId"] for i in bf_instances.describe(ec2, cluster, states=bf_instances.SERVING)]
    for chunk in bf_instances.chunks(ids):
        ec2.create_tags(aws_retry=True, Resources=chunk, Tags=[{"Key": bf_tags.TAG_LEASE, "Value": until}])
    return until, ids


# ------------------------------------------------------------------ the renewer process
def process_start(pid):
    """The start time (clock ticks since boot) of a live process, None when there is none or only a zombie; on a
    system without /proc, 0 for any pid that answers signal 0."""
    try:
        with open("/proc/%d/stat" % int(pid)) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None
        try:
            os.kill(int(pid), 0)
        except OSError:
            return None
        return 0
    except (OSError, ValueError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def alive(pid, start):
    """True while the process ``pid`` that started at ``start`` (:func:`process_start`) lives (no pid reuse)."""
    return pid is not None and start is not None and process_start(pid) == start


def serve(owner, owner_start, interval, renew_once, log, clock=time.monotonic, sleep=time.sleep):
    """Renew every ``interval`` s while the owner lives; end, without renewing again, once it is gone. A failed
    renewal is logged and tried again at the next interval."""
    while alive(owner, owner_start):
        try:
            until, ids = renew_once()
            log("renewed until %s on %d instances" % (until, len(ids)))
        except Exception as e:  # keep renewing: the next interval may work (throttling, network)
            log("renewal failed: %s" % e)
        deadline = clock() + interval
        while clock() < deadline:
            if not alive(owner, owner_start):
                break
            sleep(1)
    log("owner %s is gone: no more renewals, the lease lapses" % owner)


def read_state(path):
    try:
        with open(path) as state:
            return json.load(state)
    except (OSError, ValueError):
        return None


def running(path):
    """The state of the renewer recorded in ``path`` when it still runs, else None."""
    state = read_state(path)
    return state if state and alive(state.get("pid"), state.get("start")) else None


def stop(path, timeout=10):
    """Stop the renewer recorded in ``path`` (SIGTERM) and forget it. True when one was running."""
    state = running(path)
    if state is not None:
        os.kill(state["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(state["pid"], state["start"]) and time.monotonic() < deadline:
            time.sleep(0.2)
    if os.path.exists(path):
        os.remove(path)
    return state is not None


def start(path, config, log_path):
    """Start a detached renewer (own session, no terminal) with ``config`` (see :func:`main`) and record it in
    ``path``; returns its state. The ``ansible_collections`` directory this file was loaded from goes first on its
    PYTHONPATH, so it runs the same collection."""
    import subprocess

    here = os.path.abspath(__file__)
    root = here[: here.rindex(os.sep + "ansible_collections" + os.sep)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    with open(log_path, "a") as log, open(os.devnull) as devnull:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", __name__, json.dumps(config)],
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    state = dict(config, pid=proc.pid, start=process_start(proc.pid), log=log_path)
    with open(path + ".tmp", "w") as out:
        json.dump(state, out)
    os.replace(path + ".tmp", path)
    return state


def main(argv=None):
    """The renewer: ``argv[0]`` is JSON with cluster, heartbeat_timeout, interval, owner, owner_start, region,
    endpoint_url and profile."""
    from ansible_collections.buildfarm.ec2.plugins.module_utils import aws

    config = json.loads((argv or sys.argv[1:])[0])

    def log(message):
        sys.stdout.write(
            "%s lease %s: %s\n" % (bf_tags.format_time(datetime.now(timezone.utc)), config["cluster"], message)
        )
        sys.stdout.flush()

    ec2 = aws.session_client("ec2", config["region"], config.get("endpoint_url"), config.get("profile"))
    serve(
        config["owner"],
        config["owner_start"],
        config["interval"],
        lambda: renew(ec2, config["cluster"], config["heartbeat_timeout"]),
        log,
    )


if __name__ == "__main__":
    main()
