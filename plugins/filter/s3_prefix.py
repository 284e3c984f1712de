# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filter ``buildfarm.ec2.s3_prefix``: the artifacts module's key prefix rule, for playbooks' messages."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.buildfarm.ec2.plugins.module_utils.artifacts import ArtifactError, normalise_prefix


def s3_prefix(prefix, cluster, run_id):
    try:
        return normalise_prefix(prefix or None, cluster, run_id)
    except ArtifactError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {"s3_prefix": s3_prefix}
