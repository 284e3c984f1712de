"""Pure helpers of the volume module: NVMe serial, validation, keep tag, attachment."""

from __future__ import annotations

from ansible_collections.buildfarm.ec2.plugins.module_utils import volumes


def test_serial_and_nvme_path_are_the_id_without_its_dash():
    assert volumes.serial("vol-0123456789abcdef0") == "vol0123456789abcdef0"
    assert volumes.nvme_path("vol-0abc") == "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc"
    assert volumes.serial(None) is None and volumes.nvme_path(None) is None


def test_validation():
    good = {"name": "workspace", "size": 10, "device_name": "/dev/sdf", "wait_timeout": 300}
    assert volumes.validate(good) == []
    assert volumes.validate(dict(good, device_name="/dev/xvdz")) == []
    errors = volumes.validate({"name": "a b", "size": 0, "device_name": "/dev/sda", "wait_timeout": 0})
    assert len(errors) == 4
    assert "device_name '/dev/sda' is invalid" in errors[2]


def test_keep_tag_changes_and_current_attachment():
    tagged = {"Tags": [{"Key": "buildfarm:keep", "Value": "true"}]}
    assert volumes.keep_changes(tagged, True) is None
    assert volumes.keep_changes(tagged, False) == "unset"
    assert volumes.keep_changes({}, True) == "set"
    volume = {
        "Attachments": [
            {"InstanceId": "i-1", "Device": "/dev/sdf", "State": "detached"},
            {"InstanceId": "i-2", "Device": "/dev/sdg", "State": "attached"},
        ]
    }
    assert volumes.attachment(volume) == {"instance_id": "i-2", "device": "/dev/sdg", "state": "attached"}
    assert volumes.attachment({"Attachments": []}) is None
