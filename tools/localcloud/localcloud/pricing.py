"""Prices in the local cloud: the Price List API (``pricing:GetProducts``) and EC2 ``DescribeSpotPriceHistory``
answered from a small fixture, so the collection's cost paths (plugins/module_utils/pricing.py) run in the tests.

moto has no Price List API, and its DescribeSpotPriceHistory says 0.00001 USD for every type, timestamped 2006.

Where the numbers come from: the on-demand prices are AWS's published Linux, shared-tenancy on-demand prices
(the Price List API's ``AmazonEC2`` offer, as GetProducts returns them and as the EC2 on-demand pricing page
lists them) for us-east-1 and eu-west-1, as they stood in 2024-2025; EBS per GB-month and the NAT gateway per
hour from the same offer. They are fixture values, not current prices. Spot prices vary by zone and time on
AWS; here each zone of a region has a fixed fraction of the on-demand price (SPOT_FRACTION, in the range spot
prices of these families sat in), rounded to 4 digits, stamped with the time of the request.

``priced(app)`` wraps the WSGI app of the endpoint (cloud.serve) and answers AWSPriceListService requests;
``install()`` makes moto's DescribeSpotPriceHistory report the fixture's spot prices. ``python -m
localcloud.pricing --port N`` serves plain moto with both (no containers; the unit tests use it).
"""

from __future__ import annotations

import json
import time

# USD per hour, Linux, shared tenancy, on-demand.
ON_DEMAND = {
    "us-east-1": {
        "t3.micro": "0.0104",
        "t3.small": "0.0208",
        "t3.medium": "0.0416",
        "t3.large": "0.0832",
        "c6i.large": "0.085",
        "c6i.xlarge": "0.17",
        "c6i.2xlarge": "0.34",
        "c6i.4xlarge": "0.68",
        "c6i.8xlarge": "1.36",
        "c7i.4xlarge": "0.714",
        "m6i.large": "0.096",
        "m6i.xlarge": "0.192",
    },
    "eu-west-1": {
        "t3.micro": "0.0114",
        "t3.small": "0.0228",
        "t3.medium": "0.0456",
        "t3.large": "0.0912",
        "c6i.large": "0.0912",
        "c6i.xlarge": "0.1824",
        "c6i.2xlarge": "0.3648",
        "c6i.4xlarge": "0.7296",
        "c6i.8xlarge": "1.4592",
        "c7i.4xlarge": "0.7661",
        "m6i.large": "0.107",
        "m6i.xlarge": "0.214",
    },
}
# USD per GB-month of EBS, by volume type.
STORAGE = {
    "us-east-1": {"gp3": "0.08", "gp2": "0.10", "io1": "0.125", "io2": "0.125", "st1": "0.045", "sc1": "0.015",
                  "standard": "0.05"},
    "eu-west-1": {"gp3": "0.088", "gp2": "0.11", "io1": "0.138", "io2": "0.138", "st1": "0.05", "sc1": "0.0168",
                  "standard": "0.055"},
}  # fmt: skip
# NAT gateway: USD per hour and per GB processed.
NAT_GATEWAY = {"us-east-1": ("0.045", "0.045"), "eu-west-1": ("0.048", "0.048")}
LOCATIONS = {"us-east-1": "US East (N. Virginia)", "eu-west-1": "EU (Ireland)"}
SPOT_FRACTION = {"a": 0.34, "b": 0.37, "c": 0.31}  # by the zone's last letter


def spot_price(region, instance_type, zone):
    """The fixture's spot price (a string, as the API gives it) of a type in a zone; None when it has none."""
    on_demand = ON_DEMAND.get(region, {}).get(instance_type)
    fraction = SPOT_FRACTION.get(zone[-1:]) if zone.startswith(region) else None
    if on_demand is None or fraction is None:
        return None
    return "%.4f" % (float(on_demand) * fraction)


def _product(sku, family, attributes, unit, usd, description):
    term = sku + ".JRTCKXETXF"
    return {
        "product": {"productFamily": family, "attributes": dict(attributes, servicecode="AmazonEC2"), "sku": sku},
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {
                term: {
                    "offerTermCode": "JRTCKXETXF",
                    "sku": sku,
                    "effectiveDate": "2025-01-01T00:00:00Z",
                    "priceDimensions": {
                        term
                        + ".6YS6EN2CT7": {
                            "rateCode": term + ".6YS6EN2CT7",
                            "unit": unit,
                            "description": description,
                            "beginRange": "0",
                            "endRange": "Inf",
                            "pricePerUnit": {"USD": "%.10f" % float(usd)},
                            "appliesTo": [],
                        }
                    },
                    "termAttributes": {},
                }
            }
        },
        "version": "20250101000000",
        "publicationDate": "2025-01-01T00:00:00Z",
    }


def products():
    """Every product of the fixture, in the Price List API's shape."""
    found = []
    for region, types in ON_DEMAND.items():
        common = {"location": LOCATIONS[region], "locationType": "AWS Region", "regionCode": region}
        for instance_type, usd in types.items():
            attributes = dict(
                common,
                instanceType=instance_type,
                operatingSystem="Linux",
                tenancy="Shared",
                preInstalledSw="NA",
                capacitystatus="Used",
                licenseModel="No License required",
                operation="RunInstances",
                usagetype="BoxUsage:" + instance_type,
            )
            desc = "$%s per On Demand Linux %s Instance Hour" % (usd, instance_type)
            found.append(_product("LC%s%s" % (region, instance_type), "Compute Instance", attributes, "Hrs", usd, desc))
            # What a filter without tenancy would also match (and the client must not take).
            dedicated = dict(attributes, tenancy="Dedicated", usagetype="DedicatedUsage:" + instance_type)
            found.append(
                _product(
                    "LCD%s%s" % (region, instance_type), "Compute Instance", dedicated, "Hrs", float(usd) * 1.1, ""
                )
            )
        for volume_type, usd in STORAGE[region].items():
            attributes = dict(common, volumeApiName=volume_type, usagetype="EBS:VolumeUsage." + volume_type)
            desc = "$%s per GB-month of %s provisioned storage" % (usd, volume_type)
            found.append(_product("LCS%s%s" % (region, volume_type), "Storage", attributes, "GB-Mo", usd, desc))
        hours, gigabytes = NAT_GATEWAY[region]
        for kind, unit, usd in (("Hours", "Hrs", hours), ("Bytes", "GB", gigabytes)):
            attributes = dict(common, group="NGW:NatGateway", usagetype="NatGateway-" + kind, operation="NatGateway")
            desc = "$%s per NAT Gateway %s" % (usd, "Hour" if unit == "Hrs" else "GB processed")
            found.append(_product("LCN%s%s" % (region, kind), "NAT Gateway", attributes, unit, usd, desc))
    return found


def get_products(request):
    """The GetProducts answer to a request body (TERM_MATCH filters on the product's attributes)."""
    service = request.get("ServiceCode")
    filters = request.get("Filters", [])
    matches = []
    for product in products():
        if service != product["serviceCode"]:
            continue
        attributes = dict(product["product"]["attributes"], productFamily=product["product"]["productFamily"])
        if all(
            attributes.get(f["Field"]) == f["Value"] for f in filters if f.get("Type", "TERM_MATCH") == "TERM_MATCH"
        ):
            matches.append(json.dumps(product))
    start = int(request.get("NextToken") or 0)
    size = int(request.get("MaxResults") or 100)
    answer = {"FormatVersion": request.get("FormatVersion", "aws_v1"), "PriceList": matches[start : start + size]}
    if start + size < len(matches):
        answer["NextToken"] = str(start + size)
    return answer


def priced(app):
    """The WSGI app, with the Price List API (``X-Amz-Target: AWSPriceListService.*``) answered here."""

    def wsgi(environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("AWSPriceListService."):
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = json.loads(environ["wsgi.input"].read(length) or b"{}")
        if target == "AWSPriceListService.GetProducts":
            status, body = "200 OK", get_products(request)
        else:
            status, body = "400 Bad Request", {
                "__type": "InvalidParameterException",
                "Message": "localcloud: only GetProducts",
            }
        data = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))])
        return [data]

    return wsgi


def install():
    """moto's DescribeSpotPriceHistory answers the fixture's price of each offered type and zone, stamped now
    (types without a fixture price are left out, as AWS leaves out types without spot capacity)."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.spot_instances import SpotInstances

    if getattr(SpotInstances, "_localcloud_priced", False):
        return
    original = SpotInstances.describe_spot_price_history

    def describe_spot_price_history(self):
        result = original(self).result
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        history = []
        for entry in result["SpotPriceHistory"]:
            price = spot_price(self.region, entry["InstanceType"], entry["AvailabilityZone"])
            if price is not None:
                history.append(dict(entry, SpotPrice=price, Timestamp=now))
        return ActionResult({"SpotPriceHistory": history})

    SpotInstances.describe_spot_price_history = describe_spot_price_history
    SpotInstances._localcloud_priced = True


def main():
    import argparse

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description="moto server with the local cloud's prices (no containers)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    install()
    app = priced(DomainDispatcherApplication(create_backend_app))
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
