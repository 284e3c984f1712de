# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prices and billed time: what a cluster costs, before it starts (estimate) and while or after it ran (report).

Prices come from AWS and each one says where it came from (``source``):

- ``price-list``: on-demand, from the Price List API (``pricing:GetProducts``, service AmazonEC2) for the region,
  Linux, shared tenancy, no pre-installed software, capacity status Used: instances per hour, EBS per GB-month
  by volume type, the NAT gateway per hour and per GB processed;
- ``spot-price-history``: the newest ``DescribeSpotPriceHistory`` price of the type in the instance's zone
  (before launch, when the zone is not known yet: the highest over the region's zones);
- ``published``: the public IPv4 address at USD 0.005 per hour (the same in every region);
- ``table``: the offline fallback when the API does not answer (or knows no price): the caller's table
  (build.yml: default_prices combined with prices) for instances, the spot price falls back to on-demand
  (spot never costs more), EBS and the NAT gateway to the us-east-1 prices below;
- ``unknown``: no price anywhere; the item costs 0 and is listed in ``missing``.

Answers of the API are cached on the controller for a day (``CACHE_TTL``) in a JSON file, by endpoint, region
and item (``$XDG_CACHE_HOME/buildfarm.ec2/prices.json``, else ``~/.cache/buildfarm.ec2/prices.json``, or the
given path); ``cached: true`` marks a price read from it. Fallback prices are never cached.

Billing as EC2's for Linux: per second from ``LaunchTime`` to the termination (or stop, or ``until`` while it
runs) with a one-minute minimum; EBS per GB-month (730 hours) from the volume's creation; a public IPv4 address
while its instance has it; a NAT gateway per hour from its creation to its deletion, and per GB it processed:
the sum of CloudWatch's ``BytesOutToDestination`` and ``BytesOutToSource`` (namespace ``AWS/NATGateway``), the
bytes it sent either way, over the billed time (``nat_processed_bytes``). The collection's own network has no NAT
gateway (a public IPv4 per node is cheaper for a short-lived cluster, docs/guide.md); a NAT gateway tagged with the
cluster is billed all the same.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from datetime import datetime, timezone

from ansible_collections.buildfarm.ec2.plugins.module_utils import fleet as bf_fleet
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from ansible_collections.buildfarm.ec2.plugins.module_utils.aws import RETRY, paginate

CACHE_TTL = 86400
HOURS_PER_MONTH = 730
MINIMUM_SECONDS = 60
PUBLIC_IPV4_USD_PER_HOUR = 0.005
# Offline fallback for EBS (USD per GB-month) and the NAT gateway (USD per hour): us-east-1's published prices.
VOLUME_TABLE = {"gp3": 0.08, "gp2": 0.10, "io1": 0.125, "io2": 0.125, "st1": 0.045, "sc1": 0.015, "standard": 0.05}
NAT_GATEWAY_TABLE = 0.045
NAT_GATEWAY_GB_TABLE = 0.045
# What a NAT gateway processed: the bytes it sent to the destinations and back to the clients in the VPC.
NAT_BYTES_METRICS = ("BytesOutToDestination", "BytesOutToSource")
# AWS bills data per GB of 2^30 bytes.
BYTES_PER_GB = 2**30
# GetMetricStatistics returns at most 1,440 data points a call.
MAX_DATAPOINTS = 1440
LINUX = dict(
    operatingSystem="Linux",
    tenancy="Shared",
    preInstalledSw="NA",
    capacitystatus="Used",
    licenseModel="No License required",
)
REASON_TIME = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?:GMT|UTC)\)")


def default_cache_path():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "buildfarm.ec2", "prices.json")


def price(usd, unit, source, **extra):
    return dict(extra, usd=None if usd is None else float(usd), unit=unit, source=source)


def on_demand_usd(price_list, unit):
    """The USD price per ``unit`` in GetProducts' ``PriceList`` (JSON strings); None when there is none. Of
    several products (should the filters match more), the highest price: an estimate errs on the safe side."""
    found = []
    for text in price_list:
        product = json.loads(text)
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                usd = dimension.get("pricePerUnit", {}).get("USD")
                if dimension.get("unit") == unit and usd is not None and float(usd) > 0:
                    found.append(float(usd))
    return max(found) if found else None


def newest_spot_usd(history, zone=None):
    """The newest SpotPrice per zone in DescribeSpotPriceHistory's list; of ``zone``, or the highest of all."""
    newest = {}
    for entry in history:
        az = entry["AvailabilityZone"]
        if az not in newest or entry["Timestamp"] > newest[az]["Timestamp"]:
            newest[az] = entry
    if zone is not None:
        return float(newest[zone]["SpotPrice"]) if zone in newest else None
    return max((float(e["SpotPrice"]) for e in newest.values()), default=None)


class Prices:
    """Prices of one region, from ``pricing`` (a Price List API client) and ``ec2`` (for spot), with the cache
    and the fallback ``table`` ({instance type: USD per hour})."""

    def __init__(self, pricing, ec2, region, table=None, cache_path=None, ttl=CACHE_TTL, now=time.time):
        self.pricing, self.ec2, self.region = pricing, ec2, region
        self.table = {k: float(v) for k, v in (table or {}).items()}
        self.cache_path = cache_path
        self.endpoint = pricing.meta.endpoint_url  # the cache keeps each endpoint's (AWS's, a local cloud's) apart
        self.ttl, self.now = ttl, now
        self.errors = []  # why the API was not used, once per reason
        self._cache = None

    # ------------------------------------------------------------------ cache
    def _load(self):
        if self._cache is None:
            self._cache = {}
            if self.cache_path and self.ttl > 0:
                try:
                    with open(self.cache_path) as source:
                        self._cache = json.load(source)
                except (OSError, ValueError):
                    self._cache = {}
        return self._cache

    def _cached(self, key, fetch, unit, source):
        entry = self._load().get(key)
        if entry and self.now() - entry.get("at", 0) < self.ttl:
            return price(entry["usd"], unit, source, cached=True)
        usd = fetch()
        if usd is None:
            return None
        if self.cache_path and self.ttl > 0:
            self._cache[key] = {"usd": usd, "at": self.now()}
            try:
                os.makedirs(os.path.dirname(self.cache_path) or ".", exist_ok=True)
                tmp = "%s.%d.tmp" % (self.cache_path, os.getpid())
                with open(tmp, "w") as out:
                    json.dump(self._cache, out, indent=1, sort_keys=True)
                os.replace(tmp, self.cache_path)
            except OSError as e:
                self._note("price cache %s not written: %s" % (self.cache_path, e))
        return price(usd, unit, source, cached=False)

    def _note(self, message):
        if message not in self.errors:
            self.errors.append(message)

    def api(self, call):
        """``call()``; None (and a note) when the API fails: the caller falls back to its table."""
        import botocore

        try:
            return call()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            self._note("%s: %s" % (type(e).__name__, (str(e).splitlines() or [""])[0][:200]))
            return None

    def _products(self, unit, family, **attributes):
        filters = [{"Type": "TERM_MATCH", "Field": "productFamily", "Value": family}]
        filters += [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in sorted(attributes.items())]
        filters.append({"Type": "TERM_MATCH", "Field": "regionCode", "Value": self.region})

        def call():
            return on_demand_usd(
                paginate(self.pricing, "get_products", "PriceList", ServiceCode="AmazonEC2", Filters=filters), unit
            )

        return lambda: self.api(call)

    def _key(self, *parts):
        return "|".join((self.endpoint, self.region) + parts)

    # ------------------------------------------------------------------ prices
    def instance(self, instance_type):
        """On-demand USD per hour of an instance type."""
        fetch = self._products("Hrs", "Compute Instance", instanceType=instance_type, **LINUX)
        found = self._cached(self._key("instance", instance_type), fetch, "hour", "price-list")
        if found is None and instance_type in self.table:
            found = price(self.table[instance_type], "hour", "table")
        return found or price(None, "hour", "unknown")

    def spot(self, instance_type, zone=None):
        """Spot USD per hour of a type in ``zone`` (None: the highest of the region's zones)."""

        def fetch():
            history = self.api(
                lambda: RETRY(self.ec2.describe_spot_price_history)(
                    InstanceTypes=[instance_type],
                    ProductDescriptions=["Linux/UNIX (Amazon VPC)", "Linux/UNIX"],
                    StartTime=datetime.fromtimestamp(self.now(), timezone.utc),
                )["SpotPriceHistory"]
            )
            return newest_spot_usd(history or [], zone)

        found = self._cached(self._key("spot", instance_type, zone or "*"), fetch, "hour", "spot-price-history")
        if found is None:
            on_demand = self.instance(instance_type)
            found = dict(on_demand, source="table" if on_demand["source"] != "unknown" else "unknown")
            found["fallback"] = "on-demand price"
        if zone:
            found["zone"] = zone
        return found

    def volume(self, volume_type):
        """USD per GB-month of an EBS volume type."""
        fetch = self._products("GB-Mo", "Storage", volumeApiName=volume_type)
        found = self._cached(self._key("volume", volume_type), fetch, "GB-month", "price-list")
        if found is None:
            found = price(
                VOLUME_TABLE.get(volume_type), "GB-month", "table" if volume_type in VOLUME_TABLE else "unknown"
            )
        return found

    def nat_gateway(self):
        """USD per hour of a NAT gateway."""
        fetch = self._products("Hrs", "NAT Gateway")
        return self._cached(self._key("nat-gateway"), fetch, "hour", "price-list") or price(
            NAT_GATEWAY_TABLE, "hour", "table"
        )

    def nat_gateway_gb(self):
        """USD per GB a NAT gateway processes."""
        fetch = self._products("GB", "NAT Gateway")
        return self._cached(self._key("nat-gateway-gb"), fetch, "GB", "price-list") or price(
            NAT_GATEWAY_GB_TABLE, "GB", "table"
        )

    @staticmethod
    def public_ipv4():
        return price(PUBLIC_IPV4_USD_PER_HOUR, "hour", "published")


# ---------------------------------------------------------------------- billing
def billed_seconds(start, end):
    """Whole seconds billed from ``start`` to ``end`` (datetimes): per second, at least one minute."""
    return max(MINIMUM_SECONDS, int(math.ceil((end - start).total_seconds())))


def _item(kind, usd_price, seconds, quantity=1, **extra):
    """A cost line: ``quantity`` (instances, or GiB for a volume) for ``seconds`` at ``usd_price``; a price per GB
    (data processed) is for ``quantity`` GB, whatever the time."""
    usd = usd_price["usd"]
    hours = seconds / 3600.0
    if usd is None:
        cost = 0.0
    elif usd_price["unit"] == "GB-month":
        cost = quantity * hours * usd / HOURS_PER_MONTH
    elif usd_price["unit"] == "GB":
        cost = quantity * usd
    else:
        cost = quantity * hours * usd
    return dict(
        extra,
        kind=kind,
        quantity=quantity,
        seconds=seconds,
        price_usd=usd,
        price_unit=usd_price["unit"],
        source=usd_price["source"],
        cached=usd_price.get("cached", False),
        cost_usd=round(cost, 6),
    )


def _totals(items):
    total = round(sum(i["cost_usd"] for i in items), 6)
    biggest = max(items, key=lambda i: i["cost_usd"]) if items else None
    missing = sorted({i.get("type") or i["kind"] for i in items if i["source"] == "unknown"})
    return dict(items=items, total_usd=total, biggest=biggest, missing=missing)


def estimate(prices, roles, seconds, public_ip=False):
    """The cost of ``roles`` ([{name, type, count, spot, volume_size, volume_type}]) running ``seconds`` each."""
    seconds = max(MINIMUM_SECONDS, int(seconds))
    items = []
    for role in roles:
        count = int(role.get("count", 1))
        if count <= 0:
            continue
        spot = bool(role.get("spot"))
        # Several types (spot builders spread over them): the dearest, an estimate errs on the safe side.
        types = bf_fleet.instance_types(role) if spot else bf_fleet.instance_types(role)[:1]
        quotes = [(prices.spot(t) if spot else prices.instance(t), t) for t in types]
        usd, itype = max(quotes, key=lambda q: -1.0 if q[0]["usd"] is None else q[0]["usd"])
        common = dict(role=role["name"], type=itype)
        items.append(_item("instance", usd, seconds, count, lifecycle="spot" if spot else "on-demand", **common))
        if role.get("volume_size"):
            volume_type = role.get("volume_type") or "gp3"
            usd = prices.volume(volume_type)
            items.append(
                _item("volume", usd, seconds, count * int(role["volume_size"]), volume_type=volume_type, **common)
            )
        if public_ip:
            items.append(_item("public_ipv4", prices.public_ipv4(), seconds, count, **common))
    result = _totals(items)
    result["seconds"] = seconds
    result["usd_per_hour"] = round(sum(i["cost_usd"] for i in items) * 3600.0 / seconds, 6)
    return result


def _end_of(instance, until):
    """When an instance stopped being billed: its stop or termination time (from StateTransitionReason), else
    ``until``."""
    state = instance["State"]["Name"]
    if state in ("stopped", "terminated"):
        found = REASON_TIME.search(instance.get("StateTransitionReason") or "")
        if found:
            return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc), False
    return until, state in ("pending", "running", "stopping", "shutting-down")


def _billed_from(start, since):
    """When billing starts for this report: the resource's own start, or ``since`` when it was there before."""
    return max(start, since) if since else start


def nat_processed_bytes(cloudwatch, gateway_id, start, end):
    """The bytes NAT gateway ``gateway_id`` processed from ``start`` to ``end`` (datetimes), from CloudWatch: the
    Sum of each of NAT_BYTES_METRICS, in periods (multiples of a minute) that keep a call under MAX_DATAPOINTS."""
    span = max(60.0, (end - start).total_seconds())
    period = 60 * int(math.ceil(span / MAX_DATAPOINTS / 60))
    total = 0
    for metric in NAT_BYTES_METRICS:
        points = RETRY(cloudwatch.get_metric_statistics)(
            Namespace="AWS/NATGateway",
            MetricName=metric,
            Dimensions=[{"Name": "NatGatewayId", "Value": gateway_id}],
            StartTime=start,
            EndTime=end,
            Period=period,
            Statistics=["Sum"],
        )["Datapoints"]
        total += sum(point["Sum"] for point in points)
    return int(total)


def report(ec2, prices, cluster, run_id=None, until=None, since=None, cloudwatch=None):
    """What the cluster's instances, volumes, public addresses and NAT gateways cost up to ``until`` (a UTC
    datetime, default now), a line each, with the total and the current rate (``usd_per_hour``).

    ``since`` (a UTC datetime): only what was billed from then on - a run's share of a kept cluster that an earlier
    run launched; a resource that was gone by then is left out. ``cloudwatch``: a CloudWatch client for the GB a
    NAT gateway processed (without one, or when CloudWatch does not answer, that line is ``unknown``)."""
    until = until or datetime.now(timezone.utc)
    tag_filters = bf_tags.filters(cluster=cluster, run_id=run_id)
    reservations = paginate(ec2, "describe_instances", "Reservations", Filters=tag_filters)
    instances = sorted(
        (i for r in reservations for i in r["Instances"]), key=lambda i: (i["LaunchTime"], i["InstanceId"])
    )
    items, rate = [], 0.0
    for instance in instances:
        end, running = _end_of(instance, until)
        if since and end <= since:
            continue
        seconds = billed_seconds(_billed_from(instance["LaunchTime"], since), end)
        spot = instance.get("InstanceLifecycle") == "spot"
        zone = instance.get("Placement", {}).get("AvailabilityZone")
        itype = instance["InstanceType"]
        usd = prices.spot(itype, zone) if spot else prices.instance(itype)
        common = dict(id=instance["InstanceId"], role=bf_tags.to_dict(instance.get("Tags")).get(bf_tags.TAG_ROLE))
        items.append(
            _item("instance", usd, seconds, type=itype, lifecycle="spot" if spot else "on-demand", zone=zone, **common)
        )
        rate += (usd["usd"] or 0.0) if running else 0.0
        if instance.get("PublicIpAddress") or instance.get("PublicIp"):
            items.append(
                _item("public_ipv4", prices.public_ipv4(), seconds, address=instance.get("PublicIpAddress"), **common)
            )
            rate += PUBLIC_IPV4_USD_PER_HOUR if running else 0.0
    volumes = {v["VolumeId"]: v for v in paginate(ec2, "describe_volumes", "Volumes", Filters=tag_filters)}
    ids = [i["InstanceId"] for i in instances if i["State"]["Name"] != "terminated"]
    for start in range(0, len(ids), 200):
        attached = [{"Name": "attachment.instance-id", "Values": ids[start : start + 200]}]
        volumes.update({v["VolumeId"]: v for v in paginate(ec2, "describe_volumes", "Volumes", Filters=attached)})
    for volume in sorted(volumes.values(), key=lambda v: (v["CreateTime"], v["VolumeId"])):
        usd = prices.volume(volume["VolumeType"])
        seconds = billed_seconds(_billed_from(volume["CreateTime"], since), until)
        items.append(
            _item("volume", usd, seconds, volume["Size"], id=volume["VolumeId"], volume_type=volume["VolumeType"])
        )
        rate += volume["Size"] * (usd["usd"] or 0.0) / HOURS_PER_MONTH
    gateways = paginate(ec2, "describe_nat_gateways", "NatGateways", Filter=tag_filters)
    for gateway in gateways:
        deleted = gateway.get("DeleteTime") if gateway["State"] in ("deleting", "deleted") else None
        if since and deleted and deleted <= since:
            continue
        usd = prices.nat_gateway()
        start = _billed_from(gateway["CreateTime"], since)
        seconds = billed_seconds(start, deleted or until)
        items.append(_item("nat_gateway", usd, seconds, id=gateway["NatGatewayId"]))
        rate += 0.0 if deleted else usd["usd"]
        processed = None
        if cloudwatch is not None:
            window = (gateway["NatGatewayId"], start, deleted or until)
            processed = prices.api(lambda w=window: nat_processed_bytes(cloudwatch, *w))
        per_gb = prices.nat_gateway_gb() if processed is not None else price(None, "GB", "unknown")
        gigabytes = round((processed or 0) / BYTES_PER_GB, 6)
        items.append(_item("nat_gateway_data", per_gb, seconds, gigabytes, id=gateway["NatGatewayId"], bytes=processed))
    result = _totals(items)
    result["usd_per_hour"] = round(rate, 6)
    result["until"] = bf_tags.format_time(until)
    return result
