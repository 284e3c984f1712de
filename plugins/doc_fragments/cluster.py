# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The cluster a resource belongs to (the buildfarm:cluster tag).
    DOCUMENTATION = r"""
options:
  cluster:
    description:
      - Name of the build cluster. Every resource the collection makes carries it in the
        C(buildfarm:cluster) tag, next to C(buildfarm:role), C(buildfarm:run) and C(buildfarm:expires).
      - 1-40 lowercase letters, digits and C(-), starting with a letter and not ending with C(-).
    type: str
    required: true
notes:
  - The tags are the only record of what a cluster owns; resources without them are never touched.
"""
