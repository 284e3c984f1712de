# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja test ``buildfarm.ec2.volume_name``: the volume module's name rule, for playbooks' own checks."""

from __future__ import annotations

from ansible_collections.buildfarm.ec2.plugins.module_utils.tags import validate_volume_name


def volume_name(value):
    return validate_volume_name(value) is None


class TestModule:
    def tests(self):
        return {"volume_name": volume_name}
