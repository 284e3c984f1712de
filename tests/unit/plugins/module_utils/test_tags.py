"""The cluster tag scheme: pure helpers, and their use against a real (moto) EC2 API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.buildfarm.ec2.plugins.module_utils import tags


@pytest.mark.parametrize("name", ["a", "demo", "my-cluster-01", "x" * 40])
def test_valid_cluster_names(name):
    assert tags.validate_cluster_name(name) is None


@pytest.mark.parametrize("name", ["", "Demo", "1abc", "a_b", "ends-", "x" * 41, None, "a b", "buildfarm:x"])
def test_invalid_cluster_names(name):
    error = tags.validate_cluster_name(name)
    assert error and "invalid" in error


def test_cluster_tags_carry_the_scheme_and_user_tags():
    result = tags.cluster_tags("demo", role="builder", run_id="r1", expires="2026-01-01T00:00:00Z", extra={"team": 7})
    assert result == {
        "buildfarm:cluster": "demo",
        "buildfarm:role": "builder",
        "buildfarm:run": "r1",
        "buildfarm:expires": "2026-01-01T00:00:00Z",
        "team": "7",
        "Name": "demo-builder",
    }


def test_user_tags_cannot_use_reserved_prefix():
    with pytest.raises(ValueError, match="reserved prefix"):
        tags.cluster_tags("demo", extra={"buildfarm:cluster": "other"})


def test_parse_round_trip_from_boto3_list():
    now = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    built = tags.cluster_tags("demo", role="host", run_id="r2", expires=tags.expires_at(90, now=now))
    fields = tags.parse(tags.to_list(built))
    assert fields["cluster"] == "demo"
    assert fields["role"] == "host"
    assert fields["run"] == "r2"
    assert fields["expires"] == now + timedelta(minutes=90)
    assert fields["extra"] == {"Name": "demo-host"}


def test_expiry():
    now = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    assert tags.is_expired({"buildfarm:expires": "2026-11-24T11:59:59Z"}, now=now)
    assert not tags.is_expired({"buildfarm:expires": "2026-11-24T12:00:01Z"}, now=now)
    assert not tags.is_expired({"buildfarm:expires": "garbage"}, now=now)
    assert not tags.is_expired({}, now=now)


def test_matches():
    t = tags.cluster_tags("demo", role="builder", run_id="r1")
    assert tags.matches(t, cluster="demo")
    assert tags.matches(t, cluster="demo", role="builder", run_id="r1")
    assert not tags.matches(t, cluster="other")
    assert not tags.matches(t, cluster="demo", role="host")
    assert not tags.matches({"Name": "x"})


def _vpc(ec2, cidr, tag_set):
    return ec2.create_vpc(CidrBlock=cidr, TagSpecifications=tags.tag_specifications("vpc", tag_set))["Vpc"]["VpcId"]


def test_filters_select_server_side(aws):
    ec2 = aws.client("ec2")
    mine = _vpc(ec2, "10.1.0.0/16", tags.cluster_tags("demo", role="net", run_id="r1"))
    other_run = _vpc(ec2, "10.2.0.0/16", tags.cluster_tags("demo", role="net", run_id="r2"))
    other_cluster = _vpc(ec2, "10.3.0.0/16", tags.cluster_tags("other", role="net", run_id="r1"))
    untagged = ec2.create_vpc(CidrBlock="10.4.0.0/16")["Vpc"]["VpcId"]

    def ids(**kwargs):
        return {v["VpcId"] for v in ec2.describe_vpcs(Filters=tags.filters(**kwargs))["Vpcs"]}

    assert ids(cluster="demo") == {mine, other_run}
    assert ids(cluster="demo", run_id="r1") == {mine}
    assert ids(cluster=["demo", "other"], run_id="r1") == {mine, other_cluster}
    everything = ids()
    assert {mine, other_run, other_cluster} <= everything
    assert untagged not in everything


def test_tags_round_trip_through_the_api(aws):
    ec2 = aws.client("ec2")
    wanted = tags.cluster_tags("demo", role="builder", run_id="r9", expires="2030-01-01T00:00:00Z")
    vpc_id = _vpc(ec2, "10.9.0.0/16", wanted)
    described = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    assert tags.to_dict(described["Tags"]) == wanted
    assert tags.parse(described["Tags"])["expires"] == datetime(2030, 1, 1, tzinfo=timezone.utc)
