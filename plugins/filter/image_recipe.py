# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filter ``buildfarm.ec2.image_recipe``: the recipe of a baked image and its hash (module_utils/images)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.buildfarm.ec2.plugins.module_utils.images import ImageError, recipe


def image_recipe(defaults_by_role, base_image, variables):
    try:
        return recipe(defaults_by_role or {}, variables or [], base_image)
    except ImageError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {"image_recipe": image_recipe}
