"""The baked image's recipe hash: read from the roles' real defaults, it changes when a package list or the base
image changes, and not when only the order does."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ansible_collections.buildfarm.ec2.plugins.module_utils.images import ImageError, recipe

ROOT = Path(__file__).resolve().parents[3]
RECIPE = yaml.safe_load((ROOT / "playbooks" / "vars" / "image_recipe.yml").read_text())


def _defaults():
    return {
        role: yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
        for role in RECIPE["image_recipe_roles"]
    }


def test_the_hash_follows_the_package_lists_and_the_base_image():
    defaults = _defaults()
    base = recipe(defaults, RECIPE["image_recipe_variables"], "ami-12c6146b")
    assert "gcc" in base["install"] and "nginx" in base["install"] and "slurmd" in base["install"]
    changed = copy.deepcopy(defaults)
    changed["distcc"]["distcc_packages"].append("clang")
    assert recipe(changed, RECIPE["image_recipe_variables"], "ami-12c6146b")["hash"] != base["hash"]
    assert recipe(defaults, RECIPE["image_recipe_variables"], "ami-0123456789abcdef0")["hash"] != base["hash"]
    reordered = copy.deepcopy(defaults)
    reordered["distcc"]["distcc_packages"].reverse()
    assert recipe(reordered, list(reversed(RECIPE["image_recipe_variables"])), "ami-12c6146b")["hash"] == base["hash"]


def test_a_missing_list_is_an_error():
    with pytest.raises(ImageError, match="no role defaults nope_packages"):
        recipe(_defaults(), ["nope_packages"], "ami-12c6146b")
