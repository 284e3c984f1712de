"""The node contract (playbooks/vars/node_contract.yml) and the inventory plugin agree: the hosts that build.yml and
handoff.yml add with add_host (playbooks/tasks/add_nodes.yml) get the plugin's groups and host variables, and the
plugin's example configurations reach the nodes with the contract's key path and SSH settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.inventory.data import InventoryData

from ansible_collections.buildfarm.ec2.plugins.inventory import instances
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags

ROOT = Path(__file__).resolve().parents[3]
CONTRACT = yaml.safe_load((ROOT / "playbooks" / "vars" / "node_contract.yml").read_text())
CONNECTION = {"ansible_become", "ansible_python_interpreter", "ansible_ssh_common_args", "ansible_pipelining"}


def _add_host_args():
    (task,) = yaml.safe_load((ROOT / "playbooks" / "tasks" / "add_nodes.yml").read_text())
    return task["ansible.builtin.add_host"]


def _plugin_host(cluster, role):
    """Groups and host variables the plugin gives one instance of ``cluster`` with ``role``."""
    plugin = instances.InventoryModule()
    plugin.inventory = InventoryData()
    options = {"ansible_user": "admin", "private_key_file": "/keys/{cluster}", "role_group_prefix": ""}
    plugin.get_option = options.get
    record = {
        "instance_id": "i-0123456789abcdef0",
        "instance_type": "c6i.large",
        "state": "running",
        "region": "eu-west-1",
        "availability_zone": "eu-west-1a",
        "private_ip_address": "10.0.0.10",
        "public_ip_address": None,
        "private_dns_name": "ip-10-0-0-10.eu-west-1.compute.internal",
        "public_dns_name": None,
        "tags": tags.cluster_tags(cluster, role=role, run_id="r1"),
    }
    plugin._populate([record], ["private-ip-address"])
    host = plugin.inventory.get_host("10.0.0.10")
    return {g.name for g in host.get_groups()} - {"all"}, dict(host.vars)


def test_add_host_gives_the_plugins_host_variables():
    args = _add_host_args()
    plugin_vars = _plugin_host("demo", CONTRACT["node_role_builder"])[1]
    added = set(args) - {"name", "groups"}
    # tags is a reserved name as a host variable, ansible_host is the host's name there; the other two are
    # set by Ansible for every host of an inventory source.
    assert set(plugin_vars) - {"tags", "ansible_host", "inventory_file", "inventory_dir"} <= added
    assert added - set(plugin_vars) == CONNECTION


@pytest.mark.parametrize("cluster", ["demo", "other-1"])
def test_add_host_gives_the_plugins_groups(cluster):
    groups = _plugin_host(cluster, CONTRACT["node_role_builder"])[0]
    expected = CONTRACT["node_group_cluster"].replace("{{ cluster | replace('-', '_') }}", cluster.replace("-", "_"))
    assert groups == {expected, CONTRACT["node_role_builder"]}
    assert _add_host_args()["groups"].startswith("{{ [node_group_cluster, item.role]")


def _plugin_configs():
    configs = {
        "inventories/aws/demo.buildfarm.yml": yaml.safe_load((ROOT / "inventories/aws/demo.buildfarm.yml").read_text()),
        "inventories/local/local.buildfarm.yml": yaml.safe_load(
            (ROOT / "inventories/local/local.buildfarm.yml").read_text()
        ),
    }
    configs["EXAMPLES"] = next(yaml.safe_load_all(instances.EXAMPLES))
    return configs


def test_examples_use_the_contracts_key_path_and_ssh_settings():
    assert CONTRACT["work_dir"] == "{{ lookup('env', 'HOME') }}/.buildfarm"
    key = CONTRACT["node_key_file"].replace("{{ work_dir }}", "~/.buildfarm").replace("{{ cluster }}", "{cluster}")
    assert key == "~/.buildfarm/{cluster}/id_cluster"
    for name, config in _plugin_configs().items():
        assert config["private_key_file"] == key, name
        if name == "EXAMPLES":
            continue
        assert config["ansible_user"] == CONTRACT["ssh_user"], name
        compose = config["compose"]
        assert compose["ansible_become"] == str(CONTRACT["node_ssh_become"]).lower(), name
        assert compose["ansible_python_interpreter"] == "'%s'" % CONTRACT["node_python_interpreter"], name
        assert compose["ansible_ssh_common_args"] == "'%s'" % CONTRACT["node_ssh_common_args"], name
        assert compose["ansible_pipelining"] == str(CONTRACT["node_ssh_pipelining"]).lower(), name
    assert "private_key_file: %s" % key in (ROOT / "docs" / "inventory.md").read_text()


def test_the_plain_ssh_options_are_the_common_args_without_controlpersist():
    common = CONTRACT["node_ssh_common_args"].split()
    assert common[: len(CONTRACT["node_ssh_options"])] == CONTRACT["node_ssh_options"]
    assert common[len(CONTRACT["node_ssh_options"]) :] == ["-o", "ControlPersist=300s"]
