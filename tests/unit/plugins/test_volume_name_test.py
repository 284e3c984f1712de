"""The Jinja test buildfarm.ec2.volume_name applies the volume module's rule (module_utils/tags.py)."""

from __future__ import annotations

import pytest

from ansible_collections.buildfarm.ec2.plugins.test.volume_name import TestModule as JinjaTests


@pytest.mark.parametrize(
    ("value", "valid"),
    [("workspace", True), ("ws.v2_a-1", True), ("x" * 63, True), ("x" * 64, False), ("-ws", False), ("a b", False)],
)
def test_volume_name(value, valid):
    assert JinjaTests().tests()["volume_name"](value) is valid
