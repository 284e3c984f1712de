"""Host side helpers: the docker CLI, loop devices and sparse files. Every call has a timeout."""

from __future__ import annotations

import io
import ipaddress
import json
import os
import re
import subprocess
import tarfile
import time

from localcloud import LABEL, LABEL_DIR, LABEL_INSTANCE


class HostError(Exception):
    """A docker or losetup command failed; the message is meant for the API caller."""


def run(argv, timeout=60, input_bytes=None, check=True):
    """Run a command; returns stdout as text. Raises HostError with stderr on failure or timeout."""
    try:
        proc = subprocess.run(argv, input=input_bytes, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise HostError("%s timed out after %d s" % (" ".join(argv[:3]), timeout)) from None
    except OSError as exc:
        raise HostError("%s: %s" % (argv[0], exc)) from None
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip() or proc.stdout.decode(errors="replace").strip()
        raise HostError("%s failed (rc %d): %s" % (" ".join(argv[:3]), proc.returncode, err))
    return proc.stdout.decode(errors="replace")


def docker(*args, timeout=60, input_bytes=None, check=True):
    return run(["docker", *args], timeout=timeout, input_bytes=input_bytes, check=check)


def engine_answers():
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=15)
        return True
    except HostError:
        return False


def labels_filter(cloud_dir=None):
    """docker --filter arguments selecting what a local cloud made (all local clouds when cloud_dir is None)."""
    args = ["--filter", "label=%s=1" % LABEL]
    if cloud_dir:
        args += ["--filter", "label=%s=%s" % (LABEL_DIR, cloud_dir)]
    return args


def containers(cloud_dir=None):
    """{container name: {"id", "name", "state", "instance", "labels"}} of the local cloud's containers."""
    out = docker("ps", "-a", "--no-trunc", *labels_filter(cloud_dir), "--format", "{{json .}}", timeout=30)
    found = {}
    for line in out.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        labels = dict(kv.split("=", 1) for kv in row.get("Labels", "").split(",") if "=" in kv)
        exited = re.match(r"Exited \((\d+)\)", row.get("Status", ""))
        found[row["Names"]] = {
            "id": row["ID"],
            "name": row["Names"],
            "state": row["State"],
            "exit_code": int(exited.group(1)) if exited else None,
            "instance": labels.get(LABEL_INSTANCE),
            "labels": labels,
        }
    return found


def images(cloud_dir=None):
    """Ids of the docker images the local cloud's CreateImage committed (labelled like its containers)."""
    out = docker("image", "ls", "-q", "--no-trunc", *labels_filter(cloud_dir), timeout=30)
    return sorted(set(out.split()))


def networks(cloud_dir=None):
    """{network name: cidr} of the local cloud's networks."""
    out = docker("network", "ls", *labels_filter(cloud_dir), "--format", "{{.Name}}", timeout=30)
    result = {}
    for name in out.split():
        cidrs = network_cidrs(name)
        result[name] = cidrs[0] if cidrs else ""
    return result


def cloud_dirs():
    """State directories of every local cloud with something on this host: named by the labels of containers,
    networks and committed images, or holding the backing file of a loop device (``<dir>/volumes/<volume>.img``
    next to loops.json)."""
    fmt = '{{.Label "%s"}}' % LABEL_DIR
    dirs = set(docker("ps", "-a", *labels_filter(), "--format", fmt, timeout=30).split())
    dirs.update(docker("network", "ls", *labels_filter(), "--format", fmt, timeout=30).split())
    committed = images()
    if committed:
        fmt_image = '{{index .Config.Labels "%s"}}' % LABEL_DIR
        dirs.update(docker("image", "inspect", "--format", fmt_image, *committed, timeout=30, check=False).split())
    for _dev, back in loops_backed_by("/"):
        volumes = os.path.dirname(back)
        if os.path.basename(volumes) == "volumes" and os.path.exists(os.path.join(volumes, "..", "loops.json")):
            dirs.add(os.path.dirname(volumes))
    return dirs


def network_cidrs(name):
    try:
        out = docker("network", "inspect", name, "--format", "{{json .IPAM.Config}}", timeout=30)
    except HostError:
        return []
    return [c["Subnet"] for c in json.loads(out) or [] if c.get("Subnet")]


def overlapping_network(cidr):
    """(name, cidr) of an existing docker network whose address range overlaps ``cidr``, else None."""
    wanted = ipaddress.ip_network(cidr, strict=False)
    for name in docker("network", "ls", "--format", "{{.Name}}", timeout=30).split():
        for other in network_cidrs(name):
            try:
                if ipaddress.ip_network(other, strict=False).overlaps(wanted):
                    return name, other
            except ValueError:
                continue
    return None


def tar_bytes(files):
    """A tar archive of ``files``: [(path, content bytes or None for a symlink, mode, uid, target)]."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, content, mode, uid, target in files:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.mtime = int(time.time())
            info.uid = info.gid = uid
            if target is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = target
                tar.addfile(info)
            else:
                info.mode = mode
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def copy_into(container, files):
    """Write files into a (created, running or stopped) container's filesystem."""
    docker("cp", "-", "%s:/" % container, input_bytes=tar_bytes(files), timeout=60)


def loop_attach(path):
    """Attach ``path`` to a free loop device; returns (device, major, minor)."""
    dev = run(["losetup", "--find", "--show", path], timeout=30).strip()
    st = os.stat(dev)
    return dev, os.major(st.st_rdev), os.minor(st.st_rdev)


def loop_detach(dev):
    """Detach a loop device (the kernel frees it once its last user, e.g. a lazy unmount, lets go)."""
    run(["losetup", "--detach", dev], timeout=30, check=False)


def loops_backed_by(directory):
    """Loop devices whose backing file lies under ``directory``: [(device, backing file)]."""
    try:
        out = run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"], timeout=30)
    except HostError:
        return []
    prefix = os.path.realpath(directory).rstrip("/") + "/"
    found = []
    for dev in (json.loads(out) if out.strip() else {}).get("loopdevices", []):
        back = (dev.get("back-file") or "").replace(" (deleted)", "")
        if back.startswith(prefix):
            found.append((dev["name"], back))
    return found


def bridge_gateway():
    """The host's address on docker's default bridge: containers on any network reach the host there."""
    try:
        out = run(["ip", "-4", "-o", "addr", "show", "docker0"], timeout=10)
        for word in out.split():
            if "/" in word and word[0].isdigit():
                return word.split("/")[0]
    except HostError:
        pass
    cidrs = network_cidrs("bridge")
    if cidrs:
        return str(next(ipaddress.ip_network(cidrs[0], strict=False).hosts()))
    raise HostError("cannot find the address of docker's default bridge (docker0)")


def cloud_label_value(cloud_dir):
    return os.path.realpath(cloud_dir)


def container_pids(ids):
    """{container id: pid of its init process} of running containers (the pid names its network namespace)."""
    if not ids:
        return {}
    out = docker("inspect", "--format", "{{.Id}} {{.State.Pid}}", *ids, timeout=30, check=False)
    found = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) == 2 and words[1].isdigit() and int(words[1]) > 0:
            for wanted in ids:
                if words[0].startswith(wanted):
                    found[wanted] = int(words[1])
    return found
