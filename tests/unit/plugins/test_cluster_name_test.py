"""The Jinja test buildfarm.ec2.cluster_name applies the modules' rule (module_utils/tags.py)."""

from __future__ import annotations

import pytest

from ansible_collections.buildfarm.ec2.plugins.test.cluster_name import TestModule as JinjaTests


@pytest.mark.parametrize(
    ("value", "valid"), [("demo", True), ("a-1", True), ("Bad_Name", False), ("x-", False), (7, False)]
)
def test_cluster_name(value, valid):
    assert JinjaTests().tests()["cluster_name"](value) is valid
