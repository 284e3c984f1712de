"""The pure parts of buildfarm.ec2.instances: records, host names and addresses."""

from __future__ import annotations

import pytest

from ansible_collections.buildfarm.ec2.plugins.inventory import instances

INSTANCE = {
    "InstanceId": "i-0123456789abcdef0",
    "InstanceType": "c5.large",
    "State": {"Code": 16, "Name": "running"},
    "Placement": {"AvailabilityZone": "eu-west-1b"},
    "PrivateIpAddress": "10.0.0.10",
    "PrivateDnsName": "ip-10-0-0-10.eu-west-1.compute.internal",
    "PublicDnsName": "",
    "Tags": [{"Key": "buildfarm:cluster", "Value": "demo"}, {"Key": "Name", "Value": "demo-host"}],
    "BlockDeviceMappings": [{"DeviceName": "/dev/xvda"}],
}


def test_record_is_lean_and_plain():
    record = instances.instance_record(INSTANCE, "eu-west-1")
    assert record == {
        "instance_id": "i-0123456789abcdef0",
        "instance_type": "c5.large",
        "state": "running",
        "region": "eu-west-1",
        "availability_zone": "eu-west-1b",
        "private_ip_address": "10.0.0.10",
        "public_ip_address": None,
        "private_dns_name": "ip-10-0-0-10.eu-west-1.compute.internal",
        "public_dns_name": None,
        "tags": {"buildfarm:cluster": "demo", "Name": "demo-host"},
    }


@pytest.mark.parametrize(
    "hostnames, name, address",
    [
        (["private-ip-address", "public-ip-address"], "10.0.0.10", "10.0.0.10"),
        (["public-ip-address", "private-dns-name"], "ip-10-0-0-10.eu-west-1.compute.internal", None),
        (["public-dns-name", "tag:Name"], "demo-host", "10.0.0.10"),
        (["tag:Missing", "instance-id"], "i-0123456789abcdef0", "10.0.0.10"),
        (["public-ip-address", "public-dns-name"], None, "10.0.0.10"),
    ],
)
def test_preferences(hostnames, name, address):
    record = instances.instance_record(INSTANCE, "eu-west-1")
    assert instances.preferred_name(record, hostnames) == name
    expected = address or record["private_dns_name"]
    assert instances.preferred_address(record, hostnames) == expected


def test_verify_file_suffix(tmp_path):
    plugin = instances.InventoryModule()
    for name, ok in (("a.buildfarm.yml", True), ("a.buildfarm.yaml", True), ("a.aws_ec2.yml", False), ("a.yml", False)):
        path = tmp_path / name
        path.write_text("plugin: buildfarm.ec2.instances\n")
        assert plugin.verify_file(str(path)) is ok, name
    assert plugin.verify_file(str(tmp_path / "missing.buildfarm.yml")) is False
