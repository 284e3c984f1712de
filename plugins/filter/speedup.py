# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filter ``buildfarm.ec2.speedup``: module_utils/speedup.py's model of a run, for the report and summary."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.buildfarm.ec2.plugins.module_utils import speedup as bf_speedup

FIELDS = ("wall", "client_cpu", "client_cores", "server_cpu", "server_cores", "builders")
OPTIONAL = ("host_usd_per_hour", "builder_usd_per_hour", "other_seconds", "max_builders")


def _meters(pairs):
    """(server_cpu, builders) from [[before, after], ...] readings of the builders' CPU meters: the builders whose
    both readings are numbers count; a meter that went backwards (distccd restarted) counts as 0."""
    total, counted = 0.0, 0
    for pair in pairs or []:
        try:
            before, after = (float(str(value).strip()) for value in pair)
        except (TypeError, ValueError):
            continue
        total += max(0.0, after - before)
        counted += 1
    return total, counted


def speedup(measured):
    if not isinstance(measured, dict):
        raise AnsibleFilterError("speedup expects a dict of the run's measurements, got %s" % type(measured).__name__)
    measured = dict(measured)
    if "server_meters" in measured:
        measured["server_cpu"], measured["builders"] = _meters(measured.pop("server_meters"))
    unknown = sorted(set(measured) - set(FIELDS) - set(OPTIONAL))
    if unknown:
        raise AnsibleFilterError("speedup: unknown measurement(s) %s" % ", ".join(unknown))
    args = {k: measured.get(k) for k in FIELDS}
    args.update({k: measured[k] for k in OPTIONAL if measured.get(k) is not None})
    return bf_speedup.model(**args)


class FilterModule:
    def filters(self):
        return {"speedup": speedup}
