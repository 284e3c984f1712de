"""module_utils/pricing.py against a moto server with the local cloud's price fixture: known prices and known times
give exact costs; the cache and the offline fallback say where each price came from."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest
from botocore.config import Config

from ansible_collections.buildfarm.ec2.plugins.module_utils import pricing
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from tests.conftest import free_port
from tests.pricing_server import fixture

pytest_plugins = ["tests.pricing_server"]  # the priced and priced_server fixtures

REGION = "us-east-1"


def _prices(priced, tmp_path, **kwargs):
    return pricing.Prices(
        priced.client("pricing"), priced.client("ec2"), REGION, cache_path=str(tmp_path / "prices.json"), **kwargs
    )


def _launch(ec2, itype, role, spot=False):
    extra = {"InstanceMarketOptions": {"MarketType": "spot"}} if spot else {}
    return ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        InstanceType=itype,
        Placement={"AvailabilityZone": "us-east-1b"},
        TagSpecifications=bf_tags.tag_specifications("instance", bf_tags.cluster_tags("c1", role=role, run_id="r1")),
        **extra,
    )["Instances"][0]


def test_on_demand_and_spot_prices_come_from_the_apis(priced, tmp_path):
    prices = _prices(priced, tmp_path)
    on_demand = prices.instance("c6i.large")
    assert on_demand == {"usd": 0.085, "unit": "hour", "source": "price-list", "cached": False}
    spot = prices.spot("c6i.large", "us-east-1b")
    assert spot["usd"] == float(fixture.spot_price(REGION, "c6i.large", "us-east-1b")) == 0.0314
    assert spot["source"] == "spot-price-history" and spot["zone"] == "us-east-1b"
    # Before launch the zone is not known: the dearest zone's price (b's fraction is the highest).
    assert prices.spot("c6i.large")["usd"] == 0.0314
    assert prices.volume("gp3")["usd"] == 0.08 and prices.volume("gp3")["unit"] == "GB-month"
    assert prices.nat_gateway()["usd"] == 0.045
    assert prices.errors == []
    # Another region's prices are that region's.
    other = pricing.Prices(priced.client("pricing"), priced.client("ec2", "eu-west-1"), "eu-west-1")
    assert other.instance("c6i.large")["usd"] == 0.0912
    assert other.spot("c6i.large", "eu-west-1a")["usd"] == float(
        fixture.spot_price("eu-west-1", "c6i.large", "eu-west-1a")
    )


def test_the_cache_answers_for_a_day(priced, tmp_path):
    clock = [1_000_000.0]
    prices = _prices(priced, tmp_path, now=lambda: clock[0])
    assert prices.instance("t3.small")["cached"] is False
    cache = json.loads((tmp_path / "prices.json").read_text())
    (key,) = [k for k in cache if k.endswith("|instance|t3.small")]
    assert key.startswith(priced.endpoint + "|us-east-1|") and cache[key]["usd"] == 0.0208
    # A changed cache entry is what a second run reads (it does not ask the API) until the day is over.
    cache[key]["usd"] = 9.99
    (tmp_path / "prices.json").write_text(json.dumps(cache))
    clock[0] += pricing.CACHE_TTL - 1
    again = _prices(priced, tmp_path, now=lambda: clock[0]).instance("t3.small")
    assert again == {"usd": 9.99, "unit": "hour", "source": "price-list", "cached": True}
    clock[0] += 2
    assert _prices(priced, tmp_path, now=lambda: clock[0]).instance("t3.small")["usd"] == 0.0208
    # ttl 0: no cache at all.
    assert _prices(priced, tmp_path, ttl=0).instance("t3.small")["cached"] is False


def test_without_the_api_the_table_answers_and_says_so(priced, tmp_path):
    dead = "http://127.0.0.1:%d" % free_port()
    config = Config(retries={"max_attempts": 1}, connect_timeout=2)
    prices = pricing.Prices(
        boto3.client("pricing", region_name=REGION, endpoint_url=dead, config=config),
        boto3.client("ec2", region_name=REGION, endpoint_url=dead, config=config),
        REGION,
        table={"c6i.large": 0.1},
        cache_path=str(tmp_path / "prices.json"),
    )
    assert prices.instance("c6i.large") == {"usd": 0.1, "unit": "hour", "source": "table"}
    assert prices.spot("c6i.large", "us-east-1a")["source"] == "table"  # spot never costs more than on-demand
    assert prices.spot("c6i.large", "us-east-1a")["usd"] == 0.1
    assert prices.instance("x9.huge") == {"usd": None, "unit": "hour", "source": "unknown"}
    assert prices.volume("gp3") == {"usd": 0.08, "unit": "GB-month", "source": "table"}
    assert prices.errors and "EndpointConnectionError" in prices.errors[0]
    assert not (tmp_path / "prices.json").exists()  # fallbacks are never cached


def test_billed_seconds_are_per_second_with_a_minute_minimum():
    start = bf_tags.parse_time("2026-01-01T00:00:00Z")
    assert pricing.billed_seconds(start, start) == 60
    assert pricing.billed_seconds(start, start + timedelta(seconds=59)) == 60
    assert pricing.billed_seconds(start, start + timedelta(seconds=61.2)) == 62
    assert pricing.billed_seconds(start, start + timedelta(hours=2)) == 7200


def test_estimate_of_a_requested_cluster(priced, tmp_path):
    roles = [
        {"name": "host", "type": "t3.small", "count": 1, "volume_size": 20},
        {"name": "builder", "type": "c6i.large", "count": 2, "spot": True},
        {"name": "none", "type": "c6i.large", "count": 0},
    ]
    result = pricing.estimate(_prices(priced, tmp_path), roles, 1800, public_ip=True)
    lines = [(i["kind"], i["role"], i["quantity"], i["price_usd"], i["source"], i["cost_usd"]) for i in result["items"]]
    assert lines == [
        ("instance", "host", 1, 0.0208, "price-list", 0.0104),
        ("volume", "host", 20, 0.08, "price-list", round(20 * 0.5 * 0.08 / 730, 6)),
        ("public_ipv4", "host", 1, 0.005, "published", 0.0025),
        ("instance", "builder", 2, 0.0314, "spot-price-history", 0.0314),
        ("public_ipv4", "builder", 2, 0.005, "published", 0.005),
    ]
    assert result["total_usd"] == round(0.0104 + round(20 * 0.5 * 0.08 / 730, 6) + 0.0025 + 0.0314 + 0.005, 6)
    assert result["biggest"]["role"] == "builder" and result["biggest"]["kind"] == "instance"
    assert result["usd_per_hour"] == round(result["total_usd"] * 2, 6)
    assert result["seconds"] == 1800 and result["missing"] == []


def test_estimate_of_spot_builders_over_several_types_takes_the_dearest(priced, tmp_path):
    prices = _prices(priced, tmp_path)
    roles = [{"name": "builder", "type": "t3.small,c6i.large", "count": 2, "spot": True}]
    (item,) = pricing.estimate(prices, roles, 3600)["items"]
    assert (item["type"], item["price_usd"], item["source"]) == ("c6i.large", 0.0314, "spot-price-history")
    assert prices.spot("t3.small")["usd"] < 0.0314
    # On-demand builders launch on the first type only: that is the price.
    on_demand = [dict(roles[0], spot=False)]
    (item,) = pricing.estimate(prices, on_demand, 3600)["items"]
    assert (item["type"], item["price_usd"]) == ("t3.small", 0.0208)


def test_report_bills_each_instance_from_launch_to_its_end(priced, tmp_path):
    ec2 = priced.client("ec2")
    builder = _launch(ec2, "c6i.large", "builder", spot=True)
    host = _launch(ec2, "t3.small", "host")
    gone = _launch(ec2, "c6i.4xlarge", "builder")
    ec2.terminate_instances(InstanceIds=[gone["InstanceId"]])
    other = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="c6i.8xlarge")
    assert other["Instances"]  # not the cluster's: not billed to it
    until = builder["LaunchTime"] + timedelta(seconds=1800)
    result = pricing.report(ec2, _prices(priced, tmp_path), "c1", until=until)

    instances = {i["id"]: i for i in result["items"] if i["kind"] == "instance"}
    assert set(instances) == {builder["InstanceId"], host["InstanceId"], gone["InstanceId"]}
    spot = instances[builder["InstanceId"]]
    assert (spot["lifecycle"], spot["zone"], spot["seconds"], spot["price_usd"], spot["source"]) == (
        "spot",
        "us-east-1b",
        1800,
        0.0314,
        "spot-price-history",
    )
    assert spot["cost_usd"] == 0.0157
    seconds = int((until - host["LaunchTime"]).total_seconds())
    assert instances[host["InstanceId"]]["cost_usd"] == round(seconds / 3600 * 0.0208, 6)
    # Terminated at once: the one-minute minimum at the on-demand price.
    assert instances[gone["InstanceId"]]["seconds"] == 60
    assert instances[gone["InstanceId"]]["cost_usd"] == round(60 / 3600 * 0.68, 6)

    addresses = [i for i in result["items"] if i["kind"] == "public_ipv4"]
    assert sorted(a["id"] for a in addresses) == sorted([builder["InstanceId"], host["InstanceId"]])
    assert [a["cost_usd"] for a in addresses if a["id"] == builder["InstanceId"]] == [0.0025]

    volumes = {v["VolumeId"]: v for v in ec2.describe_volumes()["Volumes"]}
    billed = [i for i in result["items"] if i["kind"] == "volume"]
    assert {v["id"] for v in billed} == {
        v["VolumeId"]
        for v in volumes.values()
        if v["Attachments"] and v["Attachments"][0]["InstanceId"] in (builder["InstanceId"], host["InstanceId"])
    }
    for item in billed:
        volume = volumes[item["id"]]
        seconds = pricing.billed_seconds(volume["CreateTime"], until)
        price = float(fixture.STORAGE[REGION][volume["VolumeType"]])
        assert item["cost_usd"] == round(volume["Size"] * seconds / 3600 * price / 730, 6)

    assert result["total_usd"] == round(sum(i["cost_usd"] for i in result["items"]), 6)
    assert result["biggest"]["id"] == builder["InstanceId"]
    running = 0.0314 + 0.0208 + 2 * 0.005 + sum(v["Size"] * 0.1 / 730 for v in billed_volumes(volumes, billed))
    assert result["usd_per_hour"] == round(running, 6)


def billed_volumes(volumes, billed):
    return [volumes[i["id"]] for i in billed]


def test_report_of_a_nat_gateway_and_of_nothing(priced, tmp_path):
    ec2 = priced.client("ec2")
    prices = _prices(priced, tmp_path)
    assert pricing.report(ec2, prices, "c1")["total_usd"] == 0.0
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.0.0/24")["Subnet"]["SubnetId"]
    eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    gateway = ec2.create_nat_gateway(
        SubnetId=subnet,
        AllocationId=eip,
        TagSpecifications=bf_tags.tag_specifications("natgateway", bf_tags.cluster_tags("c1")),
    )["NatGateway"]
    nat_id = gateway["NatGatewayId"]
    until = gateway["CreateTime"] + timedelta(hours=2)
    # What CloudWatch publishes for a gateway: 3 GiB out to the destinations, 1 GiB back to the clients, per
    # minute; a data point of another gateway and one after ``until`` do not count.
    cloudwatch = priced.client("cloudwatch")
    points = [
        ("BytesOutToDestination", nat_id, 10, 2 * 2**30),
        ("BytesOutToDestination", nat_id, 70, 2**30),
        ("BytesOutToSource", nat_id, 30, 2**30),
        ("BytesInFromSource", nat_id, 30, 5 * 2**30),
        ("BytesOutToDestination", "nat-0other", 30, 7 * 2**30),
        ("BytesOutToDestination", nat_id, 180, 9 * 2**30),
    ]
    for metric, gid, minute, value in points:
        cloudwatch.put_metric_data(
            Namespace="AWS/NATGateway",
            MetricData=[
                {
                    "MetricName": metric,
                    "Dimensions": [{"Name": "NatGatewayId", "Value": gid}],
                    "Timestamp": gateway["CreateTime"] + timedelta(minutes=minute),
                    "Value": value,
                    "Unit": "Bytes",
                }
            ],
        )
    result = pricing.report(ec2, prices, "c1", until=until, cloudwatch=cloudwatch)
    hours, data = result["items"]
    assert (hours["kind"], hours["id"], hours["seconds"], hours["cost_usd"]) == ("nat_gateway", nat_id, 7200, 0.09)
    assert (data["kind"], data["id"], data["bytes"], data["quantity"]) == ("nat_gateway_data", nat_id, 4 * 2**30, 4.0)
    assert (data["price_unit"], data["source"], data["cost_usd"]) == ("GB", "price-list", 0.18)
    assert result["total_usd"] == 0.27 and result["missing"] == [] and prices.errors == []
    # Without CloudWatch (or when it refuses) the data line is unknown, listed, and the reason is noted.
    blind = pricing.report(ec2, prices, "c1", until=until)
    assert blind["items"][1]["source"] == "unknown" and blind["missing"] == ["nat_gateway_data"]
    refused = boto3.client(
        "cloudwatch",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:%d" % free_port(),
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    noted = _prices(priced, tmp_path)
    down = pricing.report(ec2, noted, "c1", until=until, cloudwatch=refused)
    assert down["items"][1]["bytes"] is None and down["total_usd"] == 0.09
    assert any("EndpointConnectionError" in e for e in noted.errors), noted.errors


@pytest.mark.parametrize("text,expected", [("User initiated (2026-01-02 03:04:05 GMT)", 5), ("", None)])
def test_the_end_of_a_stopped_instance_is_its_reason_time(text, expected):
    until = bf_tags.parse_time("2026-01-02T05:00:00Z")
    end, running = pricing._end_of({"State": {"Name": "stopped"}, "StateTransitionReason": text}, until)
    assert running is False
    assert (end.second if expected is not None else end) == (expected if expected is not None else until)
