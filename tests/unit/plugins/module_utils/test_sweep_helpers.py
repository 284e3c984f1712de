"""Pure helpers of the sweep: which clusters are expired, what is kept, what counts as already gone."""

from __future__ import annotations

from datetime import datetime, timezone

from botocore.exceptions import ClientError

from ansible_collections.buildfarm.ec2.plugins.module_utils import aws, sweep

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def _item(item_id, cluster, expires=None, **tags):
    all_tags = {"buildfarm:cluster": cluster, **tags}
    if expires:
        all_tags["buildfarm:expires"] = expires
    return {"id": item_id, "tags": all_tags}


def test_a_cluster_is_expired_when_all_its_expiry_tags_have_passed():
    resources = sweep.empty()
    resources["vpcs"] = [
        _item("vpc-old", "old", "2026-11-24T11:00:00Z"),
        _item("vpc-mixed-1", "mixed", "2026-11-24T11:00:00Z"),
        _item("vpc-forever", "forever"),
    ]
    resources["instances"] = [
        _item("i-old", "old"),  # no expiry of its own: goes with its cluster
        _item("i-mixed", "mixed", "2026-11-24T13:00:00Z"),
    ]
    assert sweep.expired_clusters(resources, now=NOW) == ["old"]
    chosen, kept = sweep.select(resources, clusters=["old"])
    assert [i["id"] for i in chosen["vpcs"]] == ["vpc-old"] and [i["id"] for i in chosen["instances"]] == ["i-old"]
    assert kept == []


def test_kept_volumes_stay_unless_asked():
    resources = sweep.empty()
    resources["volumes"] = [_item("vol-1", "demo", **{"buildfarm:keep": "true"}), _item("vol-2", "demo")]
    chosen, kept = sweep.select(resources)
    assert [v["id"] for v in chosen["volumes"]] == ["vol-2"] and kept == ["vol-1"]
    chosen, kept = sweep.select(resources, delete_kept=True)
    assert len(chosen["volumes"]) == 2 and kept == []


def test_not_found_counts_as_gone_but_other_errors_do_not():
    def error(code):
        return ClientError({"Error": {"Code": code, "Message": "x"}}, "DeleteVpc")

    assert aws.is_gone(error("InvalidVpcID.NotFound")) is True
    assert aws.is_gone(error("Gateway.NotAttached")) is True
    assert aws.is_gone(error("DependencyViolation")) is False
    assert aws.is_gone(error("UnauthorizedOperation")) is False


def test_check_mode_lists_everything_in_dependency_order_without_a_client():
    resources = sweep.empty()
    resources["vpcs"] = [_item("vpc-1", "demo")]
    resources["instances"] = [_item("i-1", "demo")]
    deleted = sweep.delete_resources(None, resources, check_mode=True)
    assert list(deleted) == sweep.KINDS
    assert deleted["vpcs"] == ["vpc-1"] and deleted["instances"] == ["i-1"] and sweep.count(deleted) == 2


def test_a_lapsed_lease_expires_a_cluster_only_once_its_instances_are_gone():
    def instance(item_id, cluster, state, lease):
        return dict(_item(item_id, cluster, "2026-11-24T16:00:00Z", **{"buildfarm:lease": lease}), state=state)

    resources = sweep.empty()
    resources["vpcs"] = [_item("vpc-%s" % c, c, "2026-11-24T16:00:00Z") for c in ("dead", "stuck", "live", "old")]
    resources["instances"] = [
        instance("i-dead-1", "dead", "terminated", "2026-11-24T11:50:00Z"),
        instance("i-dead-2", "dead", "shutting-down", "2026-11-24T11:55:00Z"),
        instance("i-stuck", "stuck", "running", "2026-11-24T11:50:00Z"),  # could not read its lease
        instance("i-live-1", "live", "terminated", "2026-11-24T11:00:00Z"),  # an early one, left behind
        instance("i-live-2", "live", "terminated", "2026-11-24T12:05:00Z"),  # the newest lease still runs
        instance("i-old", "old", "terminated", "2026-11-24T13:00:00Z"),
    ]
    assert sweep.expired_clusters(resources, now=NOW) == ["dead"]
    # a terminated instance's own buildfarm:expires does not hold its cluster back (only the lease counts)
    resources["vpcs"][3]["tags"]["buildfarm:expires"] = "2026-11-24T11:00:00Z"
    assert sweep.expired_clusters(resources, now=NOW) == ["dead", "old"]
