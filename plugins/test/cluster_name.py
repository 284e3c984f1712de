# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja test ``buildfarm.ec2.cluster_name``: the modules' cluster name rule, for playbooks' own checks."""

from __future__ import annotations

from ansible_collections.buildfarm.ec2.plugins.module_utils.tags import validate_cluster_name


def cluster_name(value):
    return validate_cluster_name(value) is None


class TestModule:
    def tests(self):
        return {"cluster_name": cluster_name}
