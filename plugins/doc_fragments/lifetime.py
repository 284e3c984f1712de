# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The run id and expiry tags of resources a module creates.
    DOCUMENTATION = r"""
options:
  run_id:
    description:
      - Id of the run that creates the resources, stored in the C(buildfarm:run) tag.
      - 1-64 letters, digits, C(.), C(_) or C(-).
      - Existing resources are found by the cluster tag alone; the run id only labels what this run creates.
    type: str
  lifetime:
    description:
      - Minutes after creation at which new resources count as expired (the C(buildfarm:expires) tag), so
        that C(buildfarm.ec2.sweep) with O(buildfarm.ec2.sweep#module:expired_only=true) may delete them.
    type: int
    default: 240
    aliases: [expires, max_lifetime]
"""
