"""The endpoint: moto's server app in this process, with hooks on moto's EC2 backend model that make every
instance a systemd container, every subnet a docker network with the same CIDR and every attached EBS volume a
loop device over a sparse file.

moto keeps the API state; this module keeps the containers in step with it and makes DescribeInstances report
what the containers really do. Container work runs in one thread per operation, chained per instance, so the
API answers at once with ``pending`` / ``stopping`` / ``shutting-down`` as AWS does.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import os
import re
import signal
import threading
import time

from localcloud import LABEL, LABEL_DIR, LABEL_IMAGE, LABEL_INSTANCE, LABEL_SUBNET, PREFIX, host, network, pricing
from localcloud import iam as localiam
from localcloud.host import HostError

log = logging.getLogger("localcloud")

STATES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}
CONTAINER_FLAGS = [
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/tmp",
    "--device-cgroup-rule",
    "b 7:* rmw",
]
ADMIN_UID = 1000
BOOT_SCRIPT = r"""#!/bin/sh
# localcloud: runs at every boot of a local-cloud instance (and on attach): key ownership, EBS device nodes.
chown -R admin:admin /home/admin/.ssh 2>/dev/null || true
# SSH host keys a baked image was cleaned of (cloud-init makes them at an EC2 instance's first boot)
ssh-keygen -A >/dev/null 2>&1 || true
mkdir -p /dev/disk/by-id
[ -f /etc/localcloud/devices ] || exit 0
while read -r name major minor vol; do
    [ -n "$name" ] || continue
    mkdir -p "$(dirname "$name")"
    rm -f "$name"
    mknod -m 0660 "$name" b "$major" "$minor" && chgrp disk "$name"
    ln -sfn "$name" "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_$(echo "$vol" | tr -d -)"
done < /etc/localcloud/devices
"""
BOOT_UNIT = """[Unit]
Description=localcloud instance setup (SSH key ownership, EBS device nodes)
DefaultDependencies=no
After=local-fs.target
Before=ssh.service sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/localcloud-boot

[Install]
WantedBy=sysinit.target
"""
USER_DATA_RUNNER = r"""#!/bin/sh
# localcloud: run the instance's user-data script once, at the instance's first boot (as cloud-init's scripts-user
# does: once per instance id, so an instance launched from an image made of another one runs its own).
touch /var/lib/localcloud/user-data.@INSTANCE@.done
{
    echo "localcloud: user-data started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    /var/lib/localcloud/user-data
    rc=$?
    echo "$rc" > /var/lib/localcloud/user-data.exit
    echo "localcloud: user-data finished with exit status $rc $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >>/var/log/user-data.log 2>&1 </dev/null
exit 0
"""
USER_DATA_UNIT = """[Unit]
Description=localcloud user-data (first boot only, output in /var/log/user-data.log)
After=network-online.target ssh.service localcloud-boot.service
ConditionPathExists=!/var/lib/localcloud/user-data.@INSTANCE@.done

[Service]
Type=oneshot
RemainAfterExit=yes
TimeoutStartSec=0
EnvironmentFile=-/etc/environment
ExecStart=/usr/local/sbin/localcloud-user-data

[Install]
WantedBy=multi-user.target
"""


def _set_state(instance, name, reason_code=None, reason_message=None):
    from moto.ec2.models.instances import StateReason

    instance._state.name = name
    instance._state.code = STATES[name]
    if reason_code is not None:
        instance.state_reason = StateReason(reason_message or reason_code, reason_code)
        instance._reason = reason_message or reason_code


def _ec2_error(code, message):
    from moto.ec2.exceptions import EC2ClientError

    return EC2ClientError(code, message)


# EC2's rule for instance tag keys once tags are in the instance metadata (InstanceMetadataTags=enabled): a key
# that breaks it fails RunInstances, ModifyInstanceMetadataOptions and CreateTags with this error, as on EC2.
IMDS_TAG_KEY = re.compile(r"^[0-9a-zA-Z\-_+=,.@:]{1,255}$")
IMDS_RESERVED_KEYS = (".", "..", "_index")


def check_imds_tag_keys(keys):
    for key in keys:
        if not IMDS_TAG_KEY.match(key) or key in IMDS_RESERVED_KEYS:
            raise _ec2_error(
                "InvalidParameterValue",
                "'%s' is not a valid tag key. Tag keys must match pattern ([0-9a-zA-Z\\-_+=,.@:]{1,255}), and must "
                "not be a reserved name ('.', '..', '_index')" % key,
            )


class Record:
    """What the local cloud knows about one instance besides moto's model."""

    def __init__(self, instance):
        self.instance = instance
        self.container = PREFIX + instance.id
        self.created = False  # the container exists
        self.busy = 0  # operations queued or running
        self.last = None  # the thread of the last queued operation
        self.terminating = False
        self.pid = None  # the container's init process while it runs (its network namespace)
        self.spot = None  # a pending spot interruption: {"action", "time", "notice"} (control.py)
        self.interruption_behavior = "terminate"  # a spot instance's InstanceInterruptionBehavior


class Cloud:
    def __init__(self, state_dir, image, instance_endpoint, region, limits=True, instance_s3_endpoint=None):
        self.dir = os.path.realpath(state_dir)
        self.label = host.cloud_label_value(self.dir)
        self.image = image
        self.instance_endpoint = instance_endpoint
        self.instance_s3_endpoint = instance_s3_endpoint
        self.net = None  # localcloud.network.Network once serve() has the internet network
        self.bridges = {}  # subnet id -> Linux bridge of its docker network
        self.wake = threading.Event()  # something changed: recompute the network rules now
        self.region = region
        self.limits = limits
        self.lock = threading.RLock()
        self.records = {}
        self.loops = {}  # volume id -> {"device", "major", "minor", "file"}
        self.volumes_dir = os.path.join(self.dir, "volumes")
        os.makedirs(self.volumes_dir, exist_ok=True)
        self.local = threading.local()
        self._last_sync = 0.0
        self.images = {}  # AMI id -> the docker image CreateImage committed for it (images.json)
        self.dropped = set()  # docker images of deregistered AMIs that an instance still ran on
        self.imds = None  # localcloud.imds.Imds once serve() runs it
        self.control = None  # localcloud.control.Control (spot capacity and interruptions)

    # ----------------------------------------------------------------- bookkeeping
    def _save_loops(self):
        path = os.path.join(self.dir, "loops.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as out:
            json.dump(self.loops, out, indent=1, sort_keys=True)
        os.replace(tmp, path)

    def _queue(self, record, what, fn):
        """Run ``fn`` in a thread after the instance's previous operation."""
        previous = record.last
        record.busy += 1

        def work():
            if previous is not None:
                previous.join()
            try:
                fn()
            except Exception as exc:  # a failing container operation must not kill the endpoint
                log.exception("%s %s failed", what, record.instance.id)
                with self.lock:
                    self._fail(record, "%s failed: %s" % (what, exc))
            finally:
                with self.lock:
                    record.busy -= 1

        thread = threading.Thread(target=work, name="%s-%s" % (what, record.instance.id), daemon=True)
        record.last = thread
        thread.start()

    def _fail(self, record, message):
        """A container could not be made or driven: the instance ends terminated with the reason (as AWS)."""
        inst = record.instance
        record.terminating = True
        host.docker("rm", "-f", record.container, timeout=60, check=False)
        record.created = False
        if inst.state != "terminated":
            inst.ec2_backend.terminate_instances.__wrapped__(inst.ec2_backend, [inst.id])
        for volume_id in list(self.loops):
            if volume_id in {bdt.volume_id for bdt in inst.block_device_mapping.values()}:
                self._release_loop(volume_id)
        _set_state(inst, "terminated", "Server.InternalError", "Server.InternalError: localcloud: %s" % message)

    # ----------------------------------------------------------------- networks
    def network_name(self, subnet):
        return PREFIX + subnet.id

    def ensure_network(self, subnet):
        """The docker network of ``subnet`` (same CIDR, gateway .1), created on first use."""
        name = self.network_name(subnet)
        if host.network_cidrs(name):
            if subnet.id not in self.bridges:
                self.bridges[subnet.id] = network.bridge_of(name)
            return name
        cidr = str(subnet.cidr)
        net = ipaddress.ip_network(cidr)
        clash = host.overlapping_network(cidr)
        if clash:
            raise _ec2_error(
                "InvalidSubnet.Conflict",
                "localcloud: subnet %s (%s) overlaps docker network %s (%s) on this engine; use another CIDR, "
                "or remove that network (localcloud down for another local cloud)" % (subnet.id, cidr, *clash),
            )
        try:
            host.docker(
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                cidr,
                "--gateway",
                str(net.network_address + 1),
                "--label",
                "%s=1" % LABEL,
                "--label",
                "%s=%s" % (LABEL_DIR, self.label),
                "--label",
                "%s=%s" % (LABEL_SUBNET, subnet.id),
                name,
                timeout=60,
            )
        except HostError as exc:
            raise _ec2_error(
                "InvalidSubnet.Conflict", "localcloud: cannot create the network of %s: %s" % (subnet.id, exc)
            ) from None
        self.bridges[subnet.id] = network.bridge_of(name)
        return name

    def remove_network(self, subnet_id):
        name = PREFIX + subnet_id
        if host.network_cidrs(name):
            host.docker("network", "rm", name, timeout=60, check=False)
        self.bridges.pop(subnet_id, None)
        self.wake.set()

    # ----------------------------------------------------------------- volumes
    def volume_file(self, volume_id):
        return os.path.join(self.volumes_dir, volume_id + ".img")

    def _ensure_loop(self, volume):
        known = self.loops.get(volume.id)
        if known and os.path.exists(known["device"]):
            return known
        path = self.volume_file(volume.id)
        if not os.path.exists(path):
            with open(path, "wb") as out:
                out.truncate(int(volume.size) * 1024**3)
        device, major, minor = host.loop_attach(path)
        self.loops[volume.id] = {"device": device, "major": major, "minor": minor, "file": path}
        self._save_loops()
        return self.loops[volume.id]

    def _release_loop(self, volume_id):
        known = self.loops.pop(volume_id, None)
        if known:
            host.loop_detach(known["device"])
            self._save_loops()

    def delete_volume_file(self, volume_id):
        self._release_loop(volume_id)
        path = self.volume_file(volume_id)
        if os.path.exists(path):
            os.unlink(path)

    def _data_devices(self, inst):
        """[(device name, volume)] of the instance's attached non-root volumes."""
        backend = inst.ec2_backend
        result = []
        for device, bdt in sorted(inst.block_device_mapping.items()):
            if device == inst.root_device_name:
                continue
            volume = backend.volumes.get(bdt.volume_id)
            if volume is not None:
                result.append((device, volume))
        return result

    def _devices_file(self, inst):
        lines = []
        for device, volume in self._data_devices(inst):
            loop = self._ensure_loop(volume)
            lines.append("%s %d %d %s\n" % (device, loop["major"], loop["minor"], volume.id))
        return "".join(lines).encode()

    def _container_state(self, record):
        out = host.docker("inspect", "--format", "{{.State.Status}}", record.container, timeout=30, check=False)
        return out.strip() or None

    def _push_devices(self, record, apply):
        """Write /etc/localcloud/devices into the container; make the nodes now when it runs."""
        host.copy_into(
            record.container, [("etc/localcloud/devices", self._devices_file(record.instance), 0o644, 0, None)]
        )
        if apply:
            host.docker("exec", record.container, "/usr/local/sbin/localcloud-boot", timeout=60)

    def _mounted_at(self, record, loop):
        """Where the loop device is mounted inside the running container (None when it is not)."""
        out = host.docker("exec", record.container, "cat", "/proc/self/mountinfo", timeout=30, check=False)
        wanted = "%d:%d" % (loop["major"], loop["minor"])
        for line in out.splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[2] == wanted:
                return fields[4]
        return None

    def on_attach(self, inst, volume, device):
        with self.lock:
            record = self.records.get(inst.id)
            if record is None or device == inst.root_device_name:
                return
            try:
                self._ensure_loop(volume)
                if record.created and not record.terminating:
                    running = self._container_state(record) == "running"
                    self._push_devices(record, apply=running)
            except HostError as exc:
                raise _ec2_error("IncorrectState", "localcloud: cannot attach %s: %s" % (volume.id, exc)) from None

    def before_detach(self, inst, volume_id):
        """Refuse to yank a volume mounted inside a running instance unless Force is set."""
        with self.lock:
            record = self.records.get(inst.id)
            loop = self.loops.get(volume_id)
            if record is None or loop is None or not record.created or record.terminating:
                return
            if self._container_state(record) != "running":
                return
            where = self._mounted_at(record, loop)
            if where and not getattr(self.local, "force", False):
                raise _ec2_error(
                    "VolumeInUse",
                    "localcloud: %s is mounted at %s inside %s: unmount it first or detach with Force"
                    % (volume_id, where, inst.id),
                )
            if where:
                host.docker("exec", record.container, "umount", "-l", where, timeout=60, check=False)

    def on_detach(self, inst, volume_id, device):
        with self.lock:
            record = self.records.get(inst.id)
            if record is None:
                self._release_loop(volume_id)
                return
            if record.created and not record.terminating:
                link = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_" + volume_id.replace("-", "")
                try:
                    running = self._container_state(record) == "running"
                    self._push_devices(record, apply=False)
                    if running:
                        host.docker("exec", record.container, "rm", "-f", device, link, timeout=60)
                except HostError as exc:
                    log.warning("detach %s from %s: %s", volume_id, inst.id, exc)
            self._release_loop(volume_id)

    # ----------------------------------------------------------------- instances
    def _files(self, inst):
        """The files a new instance container gets before its first boot."""
        files = [
            ("usr/local/sbin/localcloud-boot", BOOT_SCRIPT.encode(), 0o755, 0, None),
            ("etc/systemd/system/localcloud-boot.service", BOOT_UNIT.encode(), 0o644, 0, None),
            (
                "etc/systemd/system/sysinit.target.wants/localcloud-boot.service",
                None,
                0o777,
                0,
                "/etc/systemd/system/localcloud-boot.service",
            ),
            ("etc/localcloud/devices", self._devices_file(inst), 0o644, 0, None),
        ]
        env = {
            "AWS_ENDPOINT_URL": self.instance_endpoint,
            "AWS_REGION": inst.region_name,
            "AWS_DEFAULT_REGION": inst.region_name,
        }  # no keys: as on EC2, credentials come from the instance profile through IMDS
        if self.instance_s3_endpoint:
            env["AWS_ENDPOINT_URL_S3"] = self.instance_s3_endpoint
        meta = {"instance-id": inst.id, "region": inst.region_name, "local-ipv4": inst.private_ip}
        files.append(("etc/environment", "".join("%s=%s\n" % kv for kv in env.items()).encode(), 0o644, 0, None))
        files.append(("etc/localcloud/instance.json", json.dumps(meta, indent=1).encode(), 0o644, 0, None))
        key = self._public_key(inst)
        if key:
            files.append(("home/admin/.ssh/authorized_keys", key.encode() + b"\n", 0o600, ADMIN_UID, None))
        data = self._user_data(inst)
        if data is not None:
            files.append(("var/lib/localcloud/user-data", data, 0o755, 0, None))
            if data.startswith(b"#!"):
                runner = USER_DATA_RUNNER.replace("@INSTANCE@", inst.id).encode()
                unit = USER_DATA_UNIT.replace("@INSTANCE@", inst.id).encode()
                files += [
                    ("usr/local/sbin/localcloud-user-data", runner, 0o755, 0, None),
                    ("etc/systemd/system/localcloud-user-data.service", unit, 0o644, 0, None),
                    (
                        "etc/systemd/system/multi-user.target.wants/localcloud-user-data.service",
                        None,
                        0o777,
                        0,
                        "/etc/systemd/system/localcloud-user-data.service",
                    ),
                ]
            else:
                note = b"localcloud: user-data does not start with #! and was not run (no cloud-init here)\n"
                files.append(("var/log/user-data.log", note, 0o644, 0, None))
        return files

    @staticmethod
    def _public_key(inst):
        if not inst.key_name:
            return None
        pair = inst.ec2_backend.key_pairs.get(inst.key_name)
        return pair.public_key.strip() if pair is not None else None

    @staticmethod
    def _user_data(inst):
        raw = inst.user_data
        if not raw:
            return None
        if isinstance(raw, list):  # older moto kept a list
            raw = raw[0]
        if hasattr(raw, "as_bytes"):
            raw = raw.as_bytes()
        if isinstance(raw, str):
            raw = raw.encode()
        try:
            return base64.b64decode(raw, validate=True)
        except ValueError:
            return raw

    def _limits(self, inst):
        if not self.limits:
            return []
        try:
            from moto.ec2.models.instance_types import INSTANCE_TYPES

            spec = INSTANCE_TYPES.get(inst.instance_type) or {}
            cpus = int(spec.get("VCpuInfo", {}).get("DefaultVCpus") or 0)
            mem = int(spec.get("MemoryInfo", {}).get("SizeInMiB") or 0)
        except Exception:  # unknown type: no limits
            return []
        args = []
        if cpus:
            # The quota limits the time, the CPU set what the instance sees: nproc (and Ansible's processor_nproc)
            # inside is the type's vCPUs as on EC2, capped at the host's.
            cpus = min(cpus, os.cpu_count() or 1)
            args += ["--cpus", str(cpus), "--cpuset-cpus", "0-%d" % (cpus - 1)]
        if mem:
            args += ["--memory", "%dm" % max(mem, 256)]
        return args

    def _create_container(self, record):
        inst = record.instance
        network = self.network_name(inst.ec2_backend.get_subnet(inst.subnet_id))
        hostname = inst.private_dns_name.split(".")[0]
        host.docker("rm", "-f", record.container, timeout=60, check=False)
        host.docker(
            "create",
            "--name",
            record.container,
            "--hostname",
            hostname,
            "--network",
            network,
            "--ip",
            inst.private_ip,
            "--label",
            "%s=1" % LABEL,
            "--label",
            "%s=%s" % (LABEL_DIR, self.label),
            "--label",
            "%s=%s" % (LABEL_INSTANCE, inst.id),
            *CONTAINER_FLAGS,
            *self._limits(inst),
            self.images.get(inst.image_id, self.image),
            "/lib/systemd/systemd",
            timeout=120,
        )
        with self.lock:
            record.created = True
            files = self._files(inst)
        host.copy_into(record.container, files)
        self.apply_network()  # the subnet's host rules exist before the instance boots
        self._start_container(record)

    def _start_container(self, record):
        with self.lock:  # devices file and start together: an attach in between would be missed
            self._push_devices(record, apply=False)
            host.docker("start", record.container, timeout=120)
        deadline = time.monotonic() + 60
        while self._container_state(record) != "running":
            if time.monotonic() > deadline:
                raise HostError("container %s did not reach running" % record.container)
            time.sleep(0.2)
        self._refresh_pid(record)
        self.apply_network(only={record.instance.id})  # its security groups, before the state says running
        with self.lock:
            if record.instance.state == "pending":
                _set_state(record.instance, "running")
        self.wake.set()

    def _refresh_pid(self, record):
        out = host.docker("inspect", "--format", "{{.State.Pid}}", record.container, timeout=30, check=False).strip()
        with self.lock:
            record.pid = int(out) if out.isdigit() and int(out) > 0 else None

    def apply_network(self, only=None):
        if self.net is not None:
            try:
                self.net.apply(only=only)
            except HostError as exc:
                log.warning("network rules: %s", exc)

    def _restart_container(self, record):
        host.docker("restart", "-t", "30", record.container, timeout=90)
        self._refresh_pid(record)
        self.apply_network(only={record.instance.id})

    def on_launch(self, backend, instances):
        with self.lock:
            for inst in instances:
                # one list of groups for the instance and its primary interface (NetworkInterfaces[0].Groups only
                # reach moto's interface); as on EC2, no group at all means the VPC's default group
                groups = list(inst.security_groups or []) or list(inst.nics[0]._group_set or [])
                if not groups:
                    default = backend.get_default_security_group(inst.vpc_id)
                    groups = [default] if default is not None else []
                inst.security_groups = groups
                inst.nics[0]._group_set = list(groups)
            try:
                for inst in instances:
                    subnet = backend.get_subnet(inst.subnet_id)
                    ip = ipaddress.ip_address(inst.private_ip)
                    if ip == subnet.cidr.network_address + 1:
                        raise _ec2_error(
                            "InvalidParameterValue",
                            "localcloud: %s is the gateway address of %s (the host)" % (ip, subnet.id),
                        )
                    self.ensure_network(subnet)
            except Exception as exc:
                for inst in instances:
                    inst.terminate()
                    _set_state(inst, "terminated", "Server.InternalError", "Server.InternalError: %s" % exc)
                raise
            behavior = getattr(self.local, "interruption_behavior", None) or "terminate"
            for inst in instances:
                record = self.records[inst.id] = Record(inst)
                record.interruption_behavior = behavior
                _set_state(inst, "pending")
                self._queue(record, "launch", lambda r=record: self._create_container(r))

    def check_start(self, backend, instance_ids):
        for inst in backend.get_multi_instances_by_id(instance_ids):
            if inst.state in ("stopping", "shutting-down", "terminated"):
                raise _ec2_error(
                    "IncorrectInstanceState",
                    "The instance '%s' is not in a state from which it can be started." % inst.id,
                )

    def check_stop(self, backend, instance_ids):
        for inst in backend.get_multi_instances_by_id(instance_ids):
            if inst.state in ("shutting-down", "terminated"):
                raise _ec2_error(
                    "IncorrectInstanceState",
                    "The instance '%s' is not in a state from which it can be stopped." % inst.id,
                )

    def on_start(self, pairs):
        with self.lock:
            for inst, previous in pairs:
                record = self.records.get(inst.id)
                if record is None:
                    continue
                if previous.name in ("running", "pending"):
                    _set_state(inst, previous.name)
                    continue
                _set_state(inst, "pending")
                record.spot = None
                self._queue(record, "start", lambda r=record: self._start_container(r))

    def _stop_container(self, record, then):
        host.docker("stop", "-t", "30", record.container, timeout=90)
        with self.lock:
            record.pid = None
            if record.instance.state == "stopping":
                _set_state(record.instance, then)

    def on_stop(self, pairs):
        with self.lock:
            for inst, previous in pairs:
                record = self.records.get(inst.id)
                if record is None:
                    continue
                if previous.name == "stopped":
                    continue
                reason = inst.state_reason
                _set_state(inst, "stopping")
                inst.state_reason = reason
                self._queue(record, "stop", lambda r=record: self._stop_container(r, "stopped"))

    def on_reboot(self, instances):
        with self.lock:
            for inst in instances:
                record = self.records.get(inst.id)
                if record is not None and record.created:
                    self._queue(record, "reboot", lambda r=record: self._restart_container(r))

    def before_terminate(self, backend, instance_ids):
        with self.lock:
            for inst in backend.get_multi_instances_by_id(instance_ids):
                record = self.records.get(inst.id)
                if record is not None:
                    record.terminating = True

    def _remove_container(self, record):
        host.docker("rm", "-f", record.container, timeout=90)
        with self.lock:
            record.created = False
            record.pid = None
            for _device, bdt in list(record.instance.block_device_mapping.items()):
                self._release_loop(bdt.volume_id)
            if record.instance.state == "shutting-down":
                _set_state(record.instance, "terminated")
            for name in sorted(self.dropped):
                self._drop_image(name)

    def on_terminate(self, pairs, reason=None):
        with self.lock:
            for inst, previous in pairs:
                record = self.records.get(inst.id)
                if record is None or previous.name == "terminated":
                    continue
                saved = inst.state_reason, inst._reason
                _set_state(inst, "shutting-down")
                inst.state_reason, inst._reason = saved
                if reason:
                    _set_state(inst, "shutting-down", *reason)
                self._queue(record, "terminate", lambda r=record: self._remove_container(r))

    # ----------------------------------------------------------------- images
    def image_name(self, ami_id):
        """The docker image CreateImage commits for ``ami_id`` (the AMI id keeps it apart from other clouds')."""
        return "%s%s:image" % (PREFIX, ami_id)

    def _save_images(self):
        path = os.path.join(self.dir, "images.json")
        with open(path + ".tmp", "w") as out:
            json.dump(self.images, out, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)

    def check_image(self, backend, image_id):
        """As RunInstances on EC2: an image id that does not exist (or no longer) fails, so does one not available."""
        if not image_id:
            return
        ami = backend.amis.get(image_id)
        if ami is None:
            raise _ec2_error("InvalidAMIID.NotFound", "The image id '[%s]' does not exist" % image_id)
        if ami.state != "available":
            raise _ec2_error("InvalidAMIID.Unavailable", "AMI %s is %s, and cannot be run" % (image_id, ami.state))

    def check_create_image(self, backend, instance_id, name):
        inst = backend.get_instance(instance_id)
        with self.lock:
            record = self.records.get(inst.id)
        if record is None or not record.created or inst.state not in ("running", "stopped"):
            raise _ec2_error(
                "IncorrectInstanceState",
                "The instance '%s' is not in a state from which it can be imaged (%s)" % (inst.id, inst.state),
            )
        for ami in backend.amis.values():
            if ami.name == name and ami.owner_id == backend.account_id:
                raise _ec2_error("InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s" % (name, ami.id))

    def on_create_image(self, ami, inst, no_reboot):
        """The AMI is pending until its container is committed to a docker image (then available, else failed)."""
        with self.lock:
            ami.state = "pending"
            self.images[ami.id] = self.image_name(ami.id)
            self._save_images()
            record = self.records[inst.id]
            self._queue(record, "image", lambda: self._commit(record, ami, no_reboot))

    def _commit(self, record, ami, no_reboot):
        name = self.images.get(ami.id) or self.image_name(ami.id)
        state, stopped = "failed", False
        try:
            if not no_reboot and self._container_state(record) == "running":
                host.docker("stop", "-t", "30", record.container, timeout=90)  # EC2 shuts down, images, reboots
                stopped = True
            host.docker(
                "commit",
                *("--change", 'LABEL %s="1"' % LABEL),
                *("--change", 'LABEL %s="%s"' % (LABEL_DIR, self.label)),
                *("--change", 'LABEL %s="%s"' % (LABEL_IMAGE, ami.id)),
                record.container,
                name,
                timeout=900,
            )
            state = "available"
        except HostError as exc:
            log.warning("image %s of %s failed: %s", ami.id, record.instance.id, exc)
        finally:
            if stopped:
                self._start_container(record)
        with self.lock:
            ami.state = state
            if state != "available" or ami.id not in self.images:  # failed, or deregistered while pending
                self.images.pop(ami.id, None)
                self._save_images()
                self._drop_image(name)

    def on_deregister(self, ami_id):
        with self.lock:
            name = self.images.pop(ami_id, None)
            if name:
                self._save_images()
                self._drop_image(name)

    def _drop_image(self, name):
        """Remove a deregistered AMI's docker image; one that an instance still runs on goes with that instance."""
        try:
            host.docker("image", "rm", name, timeout=120)
            self.dropped.discard(name)
        except HostError:
            self.dropped.add(name)

    # ----------------------------------------------------------------- real state
    def sync(self, force=False):
        """Bring moto's instance states in line with the containers (an instance may power itself off)."""
        now = time.monotonic()
        with self.lock:
            if not force and now - self._last_sync < 0.5:
                return
            self._last_sync = now
            try:
                seen = {c["instance"]: c for c in host.containers(self.label).values()}
                pids = host.container_pids([c["id"] for c in seen.values() if c["state"] == "running"])
            except HostError as exc:
                log.warning("sync: %s", exc)
                return
            for record in self.records.values():
                container = seen.get(record.instance.id)
                if not record.busy and record.created:
                    record.pid = pids.get(container["id"]) if container else None
            for record in list(self.records.values()):
                inst = record.instance
                if record.busy or not record.created or record.terminating:
                    continue
                container = seen.get(inst.id)
                state = container["state"] if container else None
                if inst.state == "running" and state != "running":
                    if state is None:
                        record.created = False
                        _set_state(
                            inst,
                            "terminated",
                            "Server.InternalError",
                            "Server.InternalError: localcloud: the container was removed outside the local cloud",
                        )
                        continue
                    if container["exit_code"] == 128 + signal.SIGHUP:  # systemd asked for a reboot: boot again
                        log.info("%s rebooted itself", inst.id)
                        self._queue(record, "reboot", lambda r=record: self._start_container(r))
                        continue
                    self._powered_off(record)
                elif inst.state == "stopped" and state == "running":
                    inst.start()
                    _set_state(inst, "running")

    def _powered_off(self, record):
        inst = record.instance
        code = "Client.InstanceInitiatedShutdown"
        message = "Client.InstanceInitiatedShutdown: Instance initiated shutdown"
        log.info("%s powered itself off (behaviour %s)", inst.id, inst.instance_initiated_shutdown_behavior)
        if inst.instance_initiated_shutdown_behavior == "terminate":
            record.terminating = True
            pairs = inst.ec2_backend.terminate_instances.__wrapped__(inst.ec2_backend, [inst.id])
            self.on_terminate(pairs, reason=(code, message))
        else:
            inst.stop()
            _set_state(inst, "stopped", code, message)

    def poll_forever(self, interval=2.0):
        """Every ``interval`` s: states from the containers; after every API request (``wake``) and at least as
        often: the network rules (only what changed is applied)."""
        next_sync = time.monotonic() + interval
        while True:
            self.wake.wait(interval)
            self.wake.clear()
            try:
                if time.monotonic() >= next_sync:
                    next_sync = time.monotonic() + interval
                    self.sync(force=True)
                self.apply_network()
            except Exception:  # keep polling whatever happens
                log.exception("sync failed")


# --------------------------------------------------------------------- hooks on moto's model
def install(cloud):
    """Wrap moto's EC2 backend model methods (class level: every account and region)."""
    import functools

    from moto.ec2.models import EC2Backend
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    def wrap(name, before=None, after=None):
        original = getattr(EC2Backend, name)

        @functools.wraps(original)
        def method(self, *args, **kwargs):
            if before is not None:
                before(self, *args, **kwargs)
            result = original(self, *args, **kwargs)
            if after is not None:
                after(self, result, *args, **kwargs)
            return result

        method.__wrapped__ = original
        setattr(EC2Backend, name, method)

    def launch_before(self, image_id, count, user_data, security_group_names, **kwargs):
        cloud.check_image(self, image_id)
        localiam.check_launch_profile(self, kwargs)  # EC2 refuses an unknown or not yet visible profile
        if cloud.control is not None:
            cloud.control.check_capacity(kwargs.get("instance_type"), kwargs.get("instance_market_options"))
        if (kwargs.get("metadata_options") or {}).get("InstanceMetadataTags") == "enabled":
            check_imds_tag_keys((kwargs.get("tags") or {}).get("instance", {}))

    def launch_after(self, res, image_id, count, user_data, security_group_names, **kwargs):
        # EC2 gives every instance of the call the profile (moto's response associates the first one only)
        name, arn = kwargs.get("iam_instance_profile_name"), kwargs.get("iam_instance_profile_arn")
        for inst in res.instances[1:] if (name or arn) else ():
            self.associate_iam_instance_profile(
                instance_id=inst.id, iam_instance_profile_name=name, iam_instance_profile_arn=arn
            )
        cloud.on_launch(self, res.instances)

    wrap("run_instances", before=launch_before, after=launch_after)
    localiam.install_s3_enforcement()  # instance credentials: the role's policy decides (localcloud/iam.py)
    install_client_token()  # outside the launch hooks: a replayed token returns the first reservation, nothing more
    from moto.ec2.responses.instances import InstanceResponse

    original_run_response = InstanceResponse.run_instances

    @functools.wraps(original_run_response)
    def run_response(self):
        # EC2's refusal of an unknown or not yet usable profile, before moto's own check (IAM's NoSuchEntity)
        profile = {
            "iam_instance_profile_name": self._get_param("IamInstanceProfile.Name"),
            "iam_instance_profile_arn": self._get_param("IamInstanceProfile.Arn"),
        }
        localiam.check_launch_profile(self.ec2_backend, profile)
        cloud.local.interruption_behavior = self._get_param(
            "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"
        )
        try:
            return original_run_response(self)
        finally:
            cloud.local.interruption_behavior = None

    InstanceResponse.run_instances = run_response

    install_images(cloud, wrap)

    original_metadata_options = EC2Backend.modify_instance_metadata_options

    @functools.wraps(original_metadata_options)
    def metadata_options(self, instance_id, **kwargs):
        """As EC2: options not given keep their value (moto resets them to None); tags in the metadata only when
        every tag key of the instance is one IMDS can serve."""
        old = self.get_instance(instance_id).metadata_options
        if kwargs.get("metadata_tags") == "enabled":
            check_imds_tag_keys(t["key"] for t in self.get_instance(instance_id).get_tags())
        kept = {
            "http_tokens": old.http_tokens,
            "hop_limit": old.http_put_response_hop_limit,
            "http_endpoint": old.http_endpoint,
            "http_protocol": old.http_protocol_ipv6,
            "metadata_tags": old.instance_metadata_tags,
        }
        kwargs = {k: (kwargs.get(k) if kwargs.get(k) is not None else v) for k, v in kept.items()} | {
            k: v for k, v in kwargs.items() if k not in kept
        }
        result = original_metadata_options(self, instance_id, **kwargs)
        cloud.wake.set()
        return result

    EC2Backend.modify_instance_metadata_options = metadata_options
    wrap(
        "start_instances",
        before=cloud.check_start,
        after=lambda self, res, ids: cloud.on_start(res),
    )
    wrap(
        "stop_instances",
        before=cloud.check_stop,
        after=lambda self, res, ids: cloud.on_stop(res),
    )
    wrap("reboot_instances", after=lambda self, res, ids: cloud.on_reboot(res))

    def tags_before(self, resource_ids, tags):
        ids = {r for r in resource_ids if str(r).startswith("i-")}
        if any(i.metadata_options.instance_metadata_tags == "enabled" for i in self.all_instances() if i.id in ids):
            check_imds_tag_keys(tags)

    wrap("create_tags", before=tags_before)
    wrap(
        "terminate_instances",
        before=cloud.before_terminate,
        after=lambda self, res, ids: cloud.on_terminate(res),
    )

    def attach_after(self, res, volume_id, instance_id, device_path, *a, **k):
        if res is not None:
            cloud.on_attach(self.get_instance(instance_id), self.get_volume(volume_id), device_path)

    original_detach_volume = EC2Backend.detach_volume

    @functools.wraps(original_detach_volume)
    def detach_volume(self, volume_id, instance_id=None, device_path=None):
        volume = self.get_volume(volume_id)
        if volume.attachment is not None:
            instance_id = instance_id or volume.attachment.instance.id  # AWS allows leaving it out, moto does not
            cloud.before_detach(volume.attachment.instance, volume_id)
        result = original_detach_volume(self, volume_id, instance_id, device_path)
        cloud.on_detach(result.instance, volume_id, result.device)
        return result

    detach_volume.__wrapped__ = original_detach_volume
    EC2Backend.detach_volume = detach_volume

    wrap("attach_volume", after=attach_after)
    wrap("delete_volume", after=lambda self, res, volume_id: cloud.delete_volume_file(volume_id))
    wrap("delete_subnet", after=lambda self, res, subnet_id: cloud.remove_network(subnet_id))
    for name in ("describe_instances", "describe_instance_status", "all_reservations"):
        wrap(name, before=lambda self, *a, **k: cloud.sync())

    original_detach = ElasticBlockStore.detach_volume

    @functools.wraps(original_detach)
    def detach_response(self):
        cloud.local.force = bool(self._get_bool_param("Force", False))
        try:
            return original_detach(self)
        finally:
            cloud.local.force = False

    ElasticBlockStore.detach_volume = detach_response
    install_network(cloud, wrap)


def install_images(cloud, wrap):
    """CreateImage commits the instance's container (pending, then available); DeregisterImage removes it again.
    Tags for the image's snapshot (TagSpecifications of type snapshot, which moto refuses) go on its snapshot."""
    import functools

    from moto.ec2.models import EC2Backend
    from moto.ec2.responses.amis import AmisResponse

    original = EC2Backend.create_image

    @functools.wraps(original)
    def create_image(self, instance_id, name, description, tag_specifications):
        cloud.check_create_image(self, instance_id, name)
        specs = tag_specifications or []
        snapshot_tags = [t for s in specs if s.get("ResourceType") == "snapshot" for t in s.get("Tags", [])]
        ami = original(self, instance_id, name, description, [s for s in specs if s.get("ResourceType") != "snapshot"])
        for tag in snapshot_tags:
            ami.ebs_snapshot.add_tag(tag["Key"], tag["Value"])
        cloud.on_create_image(ami, self.get_instance(instance_id), getattr(cloud.local, "no_reboot", False))
        return ami

    EC2Backend.create_image = create_image
    original_response = AmisResponse.create_image

    @functools.wraps(original_response)
    def create_image_response(self):
        cloud.local.no_reboot = bool(self._get_bool_param("NoReboot", False))
        try:
            return original_response(self)
        finally:
            cloud.local.no_reboot = False

    AmisResponse.create_image = create_image_response
    wrap("deregister_image", after=lambda self, res, ami_id: cloud.on_deregister(ami_id))


def install_client_token():
    """RunInstances honours ClientToken as on EC2 (moto keeps the token but launches again): the same token
    returns the reservation of the first call, with other parameters it is IdempotentParameterMismatch. Moto's
    stand-in for a missing token (ABCDE) launches every time."""
    import functools

    from moto.ec2.models import EC2Backend

    original = EC2Backend.run_instances

    @functools.wraps(original)
    def run_instances(self, image_id, count, user_data, security_group_names, **kwargs):
        token = kwargs.get("client_token")
        for reservation in list(self.reservations.values()) if token and token != "ABCDE" else []:
            first = reservation.instances[0] if reservation.instances else None
            if first is None or first.client_token != token:
                continue
            if (len(reservation.instances), first.image_id, first.instance_type) != (
                count,
                image_id,
                kwargs.get("instance_type") or first.instance_type,
            ):
                raise _ec2_error(
                    "IdempotentParameterMismatch",
                    "The client token %s was used with other parameters by %s" % (token, reservation.id),
                )
            return reservation
        return original(self, image_id, count, user_data, security_group_names, **kwargs)

    run_instances.__wrapped__ = original
    EC2Backend.run_instances = run_instances


def install_network(cloud, wrap):
    """Public addresses from the local internet network's pool (never moto's invented ones), released when moto
    releases them; group changes mirrored on the primary interface; AWS's default group rule."""
    from moto.ec2.models import EC2Backend, elastic_ip_addresses
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface
    from moto.ec2.models.security_groups import SecurityGroupRule

    def pool():
        return cloud.net.pool if cloud.net is not None else None

    def eip_of(backend, address):
        found = backend.address_by_ip([address], fail_if_not_found=False)
        return found[0] if found else None

    def check_auto_public_ip(self):
        if self.public_ip_auto_assign and str(self.public_ip_auto_assign).lower() == "true":
            self.public_ip = pool().allocate() if pool() is not None else None

    original_stop = NetworkInterface.stop

    def nic_stop(self):
        before = self.public_ip
        original_stop(self)
        if not before:
            return
        eip = eip_of(self.ec2_backend, before)
        if eip is not None and eip.eni is self:
            self.public_ip = before  # an Elastic IP stays associated across stop/start (moto drops it)
        elif self.public_ip is None and eip is None and pool() is not None:
            pool().release(before)

    NetworkInterface.check_auto_public_ip = check_auto_public_ip
    NetworkInterface.stop = nic_stop
    original_random_ip = elastic_ip_addresses.random_ip
    elastic_ip_addresses.random_ip = lambda: pool().allocate() if pool() is not None else original_random_ip()

    original_associate = EC2Backend.associate_address

    def associate_address(self, *args, **kwargs):
        nics = [i.nics[0] for i in (kwargs.get("instance"),) if i is not None and i.nics] + [
            n for n in (kwargs.get("eni"),) if n is not None
        ]
        before = {id(n): n.public_ip for n in nics}
        result = original_associate(self, *args, **kwargs)
        for nic in nics + [getattr(result, "eni", None)]:
            old = before.get(id(nic)) if nic is not None else None
            if old and old != nic.public_ip and eip_of(self, old) is None and pool() is not None:
                pool().release(old)  # the automatic address an Elastic IP replaced
        cloud.wake.set()
        return result

    EC2Backend.associate_address = associate_address

    def release_before(self, address=None, allocation_id=None):
        eips = self.address_by_ip([address]) if address else self.address_by_allocation([allocation_id])
        cloud.local.released = eips[0].public_ip if eips else None

    def release_after(self, result, *args, **kwargs):
        released = getattr(cloud.local, "released", None)
        if released and pool() is not None and eip_of(self, released) is None:
            pool().release(released)

    wrap("release_address", before=release_before, after=release_after)

    def groups_after(self, instance, instance_id, new_group_id_list):
        if instance.nics:
            instance.nics[0]._group_set = list(instance.security_groups)
        cloud.wake.set()

    wrap("modify_instance_security_groups", after=groups_after)

    def eni_groups_after(self, result, eni_id, group_ids, *args, **kwargs):
        eni = self.get_network_interface(eni_id)
        if group_ids and eni.instance is not None and eni.device_index == 0:
            eni.instance.security_groups = list(eni._group_set)
        cloud.wake.set()

    wrap("modify_network_interface_attribute", after=eni_groups_after)

    def default_group_after(self, group, *args, **kwargs):
        if kwargs.get("is_default") and group is not None and not group.ingress_rules:
            group.ingress_rules.append(  # EC2's default group: inbound from members of the same group
                SecurityGroupRule(
                    self,
                    "-1",
                    group.id,
                    None,
                    None,
                    None,
                    source_group={"GroupId": group.id, "UserId": self.account_id},
                    is_egress=False,
                )
            )

    wrap("create_security_group", after=default_group_after)


def s3_only(app):
    """The WSGI app for the instances' S3 port: S3 requests only (EC2 and moto's API are refused)."""
    import re

    def wsgi(environ, start_response):
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scope = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", auth)
        if (
            environ.get("PATH_INFO", "").startswith("/moto-api")
            or environ.get("HTTP_X_AMZ_TARGET")
            or (scope and scope.group(1).lower() != "s3")
        ):
            start_response("403 Forbidden", [("Content-Type", "text/xml")])
            return [
                b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>AccessDenied</Code>'
                b"<Message>localcloud: this port serves S3 only (the S3 gateway endpoint)</Message></Error></Errors>"
                b"</Response>"
            ]
        return app(environ, start_response)

    return wsgi


def waking(app, cloud):
    """The WSGI app, telling the network applier after every request that something may have changed; the local
    cloud's own control under /localcloud/ (control.py)."""

    def wsgi(environ, start_response):
        if cloud.control is not None and cloud.control.handles(environ):
            return cloud.control(environ, start_response)
        try:
            return app(environ, start_response)
        finally:
            cloud.wake.set()

    return wsgi


def serve(
    state_dir,
    port,
    bind,
    image,
    instance_endpoint,
    region,
    limits=True,
    internet_network=None,
    s3_port=None,
    instance_s3_endpoint=None,
    imds_port=0,
    credential_seconds=None,
):
    """Run the endpoint in the foreground until SIGTERM/SIGINT."""
    from urllib.parse import urlparse

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    from localcloud import control, imds

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    os.environ.setdefault("MOTO_PORT", str(port))
    cloud = Cloud(state_dir, image, instance_endpoint, region, limits=limits, instance_s3_endpoint=instance_s3_endpoint)
    install(cloud)
    cloud.control = control.Control(cloud)
    cloud.imds = imds.Imds(cloud, credential_seconds or imds.CREDENTIAL_SECONDS)
    imds_server = imds.serve(cloud.imds, "0.0.0.0", imds_port or 0)
    if internet_network:
        cloud.net = network.Network(cloud, internet_network, urlparse(instance_endpoint).hostname, port, s3_port)
        cloud.net.apply()
    pricing.install()  # the Price List API and spot prices from the fixture (localcloud/pricing.py)
    app = pricing.priced(DomainDispatcherApplication(create_backend_app))
    servers = [make_server(bind, port, waking(app, cloud), threaded=True, request_handler=MotoRequestHandler)]
    if s3_port:
        servers.append(
            make_server(bind, s3_port, waking(s3_only(app), cloud), threaded=True, request_handler=MotoRequestHandler)
        )

    def stop(signum, frame):
        for server in servers + [imds_server]:
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=cloud.poll_forever, name="poller", daemon=True).start()
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, name="s3-port", daemon=True).start()
    log.info(
        "localcloud endpoint on %s:%d (instances reach it at %s, S3 only at port %s, IMDS at port %s), internet %s, "
        "state in %s",
        bind,
        port,
        instance_endpoint,
        s3_port,
        cloud.imds.port,
        cloud.net.internet_cidr if cloud.net else None,
        state_dir,
    )
    servers[0].serve_forever()
    log.info("endpoint stopped")
