"""Pure helpers of the fleet: spot fallback classification, user-data, secrets, role validation, scaling plan."""

from __future__ import annotations

import socket
import subprocess

import pytest

from ansible_collections.buildfarm.ec2.plugins.module_utils import fleet, lease


@pytest.mark.parametrize(
    "code",
    ["InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded", "InsufficientCapacity"],
)
def test_capacity_and_price_refusals_fall_back_to_on_demand(code):
    assert fleet.should_fall_back(code) is True


@pytest.mark.parametrize(
    "code", ["InvalidParameterValue", "UnauthorizedOperation", "InvalidAMIID.NotFound", "RequestLimitExceeded", ""]
)
def test_other_errors_do_not_fall_back(code):
    assert fleet.should_fall_back(code) is False


@pytest.mark.parametrize(
    "text, what",
    [
        ("export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "an AWS access key id"),
        ("aws_secret_access_key = abc", "an AWS secret access key"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nxyz", "a private key"),
        ("git clone https://ghp_" + "a" * 36 + "@example.invalid/x", "a GitHub token"),
        ("MYSQL_PASSWORD='hunter22'", "a literal password or secret assignment"),
    ],
)
def test_secrets_are_found(text, what):
    assert what in fleet.find_secrets(text)


@pytest.mark.parametrize(
    "text",
    [
        'TOKEN=$(curl -sX PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 60")',
        'PASSWORD="$(cat /run/secret)"',
        "apt-get install -y distcc\nsystemctl enable --now distcc",
        "",
        None,
    ],
)
def test_ordinary_scripts_are_not_secrets(text):
    assert fleet.find_secrets(text) == []


def _sh_syntax_ok(script):
    return subprocess.run(["sh", "-n"], input=script, text=True, check=False).returncode == 0


def test_user_data_sets_the_power_off_timer_then_runs_the_script_logged():
    script = fleet.build_user_data("#!/bin/bash\necho hi\n", 90)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/sh"
    guard = next(i for i, line in enumerate(lines) if "systemd-run --on-active=90m" in line)
    assert "shutdown -h +90" in lines[guard]
    body = lines.index("#!/bin/bash")
    assert guard < body and lines[body + 1] == "echo hi"
    assert lines[-1] == "exec %s >>%s 2>&1" % (fleet.USER_DATA_PATH, fleet.USER_DATA_LOG)
    assert _sh_syntax_ok(script)


def test_user_data_without_a_script_is_only_the_guard_and_a_plain_script_gets_a_shebang():
    assert "cat >" not in fleet.build_user_data("", 30)
    assert "#!/bin/sh\necho plain" in fleet.build_user_data("echo plain", 30)


def test_user_data_heredoc_marker_cannot_be_closed_by_the_script():
    tricky = "echo start\nBUILDFARM_USER_DATA_EOF\necho still inside"
    script = fleet.build_user_data(tricky, 10)
    assert "\nBUILDFARM_USER_DATA_EOF_\n" in script
    assert _sh_syntax_ok(script)


def test_user_data_with_a_heartbeat_writes_and_starts_the_lease_watch(tmp_path):
    plain = fleet.build_user_data("echo hi", 30)
    script = fleet.build_user_data("echo hi", 30, heartbeat_timeout=10)
    assert "buildfarm-lease" not in plain and "buildfarm:lease" not in plain
    watch = script.split("<<'BUILDFARM_LEASE_EOF'\n", 1)[1].split("\nBUILDFARM_LEASE_EOF\n", 1)[0]
    assert watch == lease.watch_script(10).rstrip("\n")
    assert "meta-data/tags/instance/buildfarm:lease" in watch and "while sleep 5; do" in watch
    assert "next=$(( $(date +%s) + 60 ))" in watch and "meta-data/spot/instance-action" in watch
    assert "systemd-run --unit=buildfarm-lease %s" % lease.WATCH_PATH in script
    assert script.index("buildfarm-lease") < script.index("echo hi")  # the guard first, then the user's script
    for text in (script, watch):
        path = tmp_path / "check.sh"
        path.write_text(text)
        assert subprocess.run(["sh", "-n", str(path)], check=False).returncode == 0
    assert lease.check_interval(1) == 10 and lease.renew_interval(1) == 15 and lease.renew_interval(10) == 150


def test_user_data_validation():
    assert fleet.validate_user_data("echo ok", 60) == []
    assert "cloud-config" in fleet.validate_user_data("#cloud-config\n{}", 60)[0]
    assert "over the EC2 limit" in fleet.validate_user_data("x" * 16384, 60)[0]


def test_role_validation_names_the_role_and_the_fix():
    errors = fleet.validate_roles(
        [
            {"name": "builder", "count": 2},
            {"name": "builder", "count": 1},
            {"name": "host", "count": -1},
            {"name": "Big", "count": 1},
            {"name": "disk", "count": 1, "volume_size": 0},
        ]
    )
    assert errors == [
        "roles[1]: role name 'builder' appears twice: give every role one entry",
        "roles[2] (host): count must be 0 or more, got -1",
        "roles[3]: role name 'Big' is invalid: use 1-32 lowercase letters, digits and '_', starting with a letter",
        "roles[4] (disk): volume_size must be 1-16384 GiB, got 0",
    ]
    assert fleet.validate_roles([{"name": "host", "count": 0, "volume_size": 8}]) == []


def _instances(*times):
    return [{"id": "i-%d" % n, "launch_time": t} for n, t in enumerate(times)]


def test_plan_launches_the_missing_and_terminates_the_newest():
    existing = {"builder": _instances("2026-01-01T00:00:00", "2026-01-01T00:05:00", "2026-01-01T00:01:00")}
    roles = [{"name": "builder", "count": 1}, {"name": "host", "count": 2}]
    assert fleet.plan(roles, existing) == {
        "builder": {"launch": 0, "terminate": ["i-1", "i-2"]},
        "host": {"launch": 2, "terminate": []},
    }
    assert fleet.plan([{"name": "builder", "count": 3}], existing) == {"builder": {"launch": 0, "terminate": []}}


def test_wait_for_port_sees_a_listener_and_gives_up_on_a_closed_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert fleet.wait_for_port("127.0.0.1", port, timeout=5) is True
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert fleet.wait_for_port("127.0.0.1", port, timeout=0.5, interval=0.1) is False


def test_client_token_is_derived_from_the_run_and_the_launch():
    def launch(run="r1", first=0, cluster="demo"):
        return {"tags": {"builder": {"buildfarm:cluster": cluster, "buildfarm:run": run}}, "first": {"builder": first}}

    role = {"name": "builder"}
    token = fleet.client_token(launch(), role, "on-demand")
    assert token == fleet.client_token(launch(), role, "on-demand")  # a retry sends the same token
    assert len(token) <= 64 and token.isascii()
    others = [
        fleet.client_token(launch(run="r2"), role, "on-demand"),
        fleet.client_token(launch(first=2), role, "on-demand"),
        fleet.client_token(launch(cluster="other"), role, "on-demand"),
        fleet.client_token(launch(), role, "spot"),
    ]
    assert token not in others and len(set(others)) == len(others)
    # With several instance types each type and step of a spot launch has a token of its own.
    several = {"name": "builder", "type": "c6i.large,c5.large"}
    tokens = {
        fleet.client_token(launch(), several, "spot", t, step) for t in ("c6i.large", "c5.large") for step in (0, 2)
    }
    assert len(tokens) == 4 and token not in tokens


@pytest.mark.parametrize(
    "count,types,expected",
    [(3, ["a", "b"], [2, 1]), (1, ["a", "b", "c"], [1, 0, 0]), (4, ["a"], [4]), (6, ["a", "b", "c"], [2, 2, 2])],
)
def test_spot_count_is_spread_over_the_types(count, types, expected):
    assert fleet.spread(count, types) == expected and sum(fleet.spread(count, types)) == count


@pytest.mark.parametrize(
    "value,types,error",
    [
        ("c6i.large", ["c6i.large"], False),
        (" c6i.large , c5.large ", ["c6i.large", "c5.large"], False),
        ("c6i.large,c6i.large", ["c6i.large", "c6i.large"], True),
        (",", [], True),
    ],
)
def test_instance_types_of_a_role(value, types, error):
    role = {"name": "builder", "count": 1, "type": value}
    assert fleet.instance_types(role) == types
    assert bool([e for e in fleet.validate_roles([role]) if "type must be" in e]) is error
