"""The processes of an ansible-playbook the tests SIGKILL, for cleaning up after it.

Killing ansible-playbook (or its process group) does not end its workers: each task's worker calls setsid(), so it
has a session of its own and lives on, orphaned, until its task ends. A test that kills the controller lists them
(with their start times, so a reused pid is never hit) before the kill and ends them itself afterwards."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def _stat(pid):
    """(parent pid, start time in clock ticks) of a live process, None for a zombie or no process."""
    try:
        fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else (int(fields[1]), int(fields[19]))


def descendants(pid):
    """{pid: start} of every live process below ``pid``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)] = stat
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, start) in parents.items():
            if ppid == parent and child not in found:
                found[child] = start
                todo.append(child)
    return found


def kill(processes):
    """SIGKILL those of ``processes`` ({pid: start}) that still run as the same process; their pids."""
    killed = []
    for pid, start in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(pid)
    return killed
