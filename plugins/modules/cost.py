#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cost
short_description: Estimate what a build cluster will cost, or report what it cost
version_added: 1.0.0
description:
  - C(mode=estimate) prices the requested roles (instance type, count, spot, root volume) for O(seconds)
    each, before anything is launched.
  - C(mode=report) finds the cluster's instances, volumes and NAT gateways by their tags and bills them as EC2
    does for Linux, each item on its own line - instances per second from their launch time to their
    termination or stop (or O(until) while they run) with a one-minute minimum, EBS per GB-month by volume
    type, a public IPv4 address at USD 0.005 per hour while its instance has one, NAT gateway hours and the GB a
    NAT gateway processed (CloudWatch's C(BytesOutToDestination) plus C(BytesOutToSource), read with
    C(cloudwatch:GetMetricStatistics)).
  - On-demand prices come from the Price List API (C(pricing:GetProducts)) for the region, Linux and shared
    tenancy; spot prices from C(DescribeSpotPriceHistory) for the instance's availability zone (the highest of the
    region's zones for an estimate). Every price carries its source - C(price-list), C(spot-price-history),
    C(published), C(table) (the offline fallback O(prices)), or C(unknown).
  - Answers of the API are cached on the controller for O(cache_ttl) seconds (a day) in O(cache_path).
  - Read-only; never changes anything in AWS (C(changed) is always false) and runs the same in check mode.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  mode:
    description: C(estimate) the requested O(roles), or C(report) what the cluster's resources cost.
    type: str
    choices: [estimate, report]
    default: report
  cluster:
    description:
      - Name of the cluster (its C(buildfarm:cluster) tag). Required with C(mode=report).
    type: str
  run_id:
    description:
      - With C(mode=report), only the resources of this run (the C(buildfarm:run) tag).
    type: str
  since:
    description:
      - With C(mode=report), bill only from this UTC time on (ISO 8601, as C(buildfarm:expires)); resources that
        were gone by then are left out. A run's share of the cluster, kept nodes of an earlier run included.
    type: str
  roles:
    description: With C(mode=estimate), what would be launched.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The role's name (the line's label).
        type: str
        required: true
      type:
        description:
          - The instance type, or several comma-separated (as buildfarm.ec2.fleet takes them) - spot roles are
            priced at the dearest of them, on-demand roles at the first.
        type: str
        required: true
      count:
        description: How many instances.
        type: int
        default: 1
      spot:
        description: Spot instances (priced at the highest spot price of the region's zones).
        type: bool
        default: false
      volume_size:
        description: Root volume GiB of each instance; 0 leaves the volume out of the estimate.
        type: int
        default: 0
      volume_type:
        description: EBS volume type of the root volume.
        type: str
        default: gp3
  seconds:
    description: With C(mode=estimate), how long each instance runs (at least a minute is billed).
    type: int
    default: 3600
  public_ip:
    description: With C(mode=estimate), every instance has a public IPv4 address.
    type: bool
    default: false
  until:
    description:
      - With C(mode=report), the end of billing of what still runs, a UTC time C(YYYY-MM-DDTHH:MM:SSZ); default now.
    type: str
  prices:
    description:
      - The offline fallback, on-demand USD per hour by instance type, used when the Price List API does not answer.
    type: dict
    default: {}
  cache_path:
    description:
      - The controller's price cache file; default C($XDG_CACHE_HOME/buildfarm.ec2/prices.json) or
        C(~/.cache/buildfarm.ec2/prices.json).
    type: path
  cache_ttl:
    description: Seconds a cached price is used; 0 turns the cache off.
    type: int
    default: 86400
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: What would two c6i.4xlarge spot builders and a host cost for an hour?
  buildfarm.ec2.cost:
    mode: estimate
    region: eu-west-1
    seconds: 3600
    public_ip: true
    roles:
      - {name: host, type: t3.small}
      - {name: builder, type: c6i.4xlarge, count: 2, spot: true}
  register: estimate

- name: What has cluster demo cost so far?
  buildfarm.ec2.cost:
    cluster: demo
    region: eu-west-1
  register: spent

- name: Show the total and the biggest item
  ansible.builtin.debug:
    msg: "${{ spent.total_usd }}, most of it {{ spent.biggest.kind }} {{ spent.biggest.id }}"
"""

RETURN = r"""
items:
  description:
    - A line per item - kind (instance, volume, public_ipv4, nat_gateway, nat_gateway_data), quantity (instances,
      GiB of a volume, or GB a NAT gateway processed), seconds billed, price_usd, price_unit (hour, GB-month or
      GB), source, cached, cost_usd; instances also id, role, type, lifecycle (on-demand or spot) and zone; volumes
      id and volume_type; nat_gateway_data id and bytes (null when CloudWatch did not answer, then the source is
      unknown).
  returned: always
  type: list
  elements: dict
  sample:
    - {kind: instance, id: i-0123456789abcdef0, role: builder, type: c6i.large, lifecycle: spot,
       zone: eu-west-1b, quantity: 1, seconds: 1800, price_usd: 0.0337, price_unit: hour,
       source: spot-price-history, cached: false, cost_usd: 0.01685}
total_usd:
  description: The sum of the items' cost_usd.
  returned: always
  type: float
  sample: 0.01685
biggest:
  description: The most expensive item (null without items).
  returned: always
  type: dict
missing:
  description: Instance types (or item kinds) no price was found for; they count as 0.
  returned: always
  type: list
  elements: str
usd_per_hour:
  description: What the items cost per hour (report - of what still runs, the rate at which the total grows).
  returned: always
  type: float
seconds:
  description: The estimate's billed seconds per instance.
  returned: when mode is estimate
  type: int
until:
  description: The end of billing used for what still runs.
  returned: when mode is report
  type: str
price_errors:
  description: Why the API was not used for some prices (they came from the fallback table).
  returned: always
  type: list
  elements: str
"""

from ansible_collections.buildfarm.ec2.plugins.module_utils import aws, pricing
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

ROLE_SPEC = dict(
    name=dict(type="str", required=True),
    type=dict(type="str", required=True),
    count=dict(type="int", default=1),
    spot=dict(type="bool", default=False),
    volume_size=dict(type="int", default=0),
    volume_type=dict(type="str", default="gp3"),
)


def errors_of(params):
    """Messages for values the argument spec cannot check (empty when fine)."""
    errors = []
    if params["mode"] == "estimate" and params["seconds"] <= 0:
        errors.append("seconds must be positive, got %d" % params["seconds"])
    for name in ("until", "since"):
        if params[name] is not None and bf_tags.parse_time(params[name]) is None:
            errors.append("%s must be a UTC time such as 2026-11-24T22:00:00Z, got %s" % (name, params[name]))
    for role in params["roles"]:
        if role["count"] < 0 or role["volume_size"] < 0:
            errors.append("roles (%s): count and volume_size must not be negative" % role["name"])
    bad = sorted(str(k) for k, v in params["prices"].items() if not isinstance(v, (int, float)) or v < 0)
    if bad:
        errors.append("prices must be USD per hour (numbers), not for: %s" % ", ".join(bad))
    return errors


def main():
    argument_spec = dict(
        mode=dict(type="str", choices=["estimate", "report"], default="report"),
        roles=dict(type="list", elements="dict", options=ROLE_SPEC, default=[]),
        seconds=dict(type="int", default=3600),
        public_ip=dict(type="bool", default=False),
        until=dict(type="str"),
        since=dict(type="str"),
        prices=dict(type="dict", default={}),
        cache_path=dict(type="path"),
        cache_ttl=dict(type="int", default=pricing.CACHE_TTL),
    )
    module = aws.new_module(argument_spec, cluster_required=False, required_if=[("mode", "report", ["cluster"])])
    params = module.params
    errors = errors_of(params)
    if errors:
        module.fail_json(msg="; ".join(errors))
    ec2 = aws.client(module, "ec2")
    prices = pricing.Prices(
        aws.pricing_client(module),
        ec2,
        module.region,
        table=params["prices"],
        cache_path=params["cache_path"] or pricing.default_cache_path(),
        ttl=params["cache_ttl"],
    )
    try:
        if params["mode"] == "estimate":
            result = pricing.estimate(prices, params["roles"], params["seconds"], params["public_ip"])
        else:
            until = bf_tags.parse_time(params["until"]) if params["until"] else None
            since = bf_tags.parse_time(params["since"]) if params["since"] else None
            cloudwatch = aws.client(module, "cloudwatch")
            result = pricing.report(ec2, prices, params["cluster"], params["run_id"], until, since, cloudwatch)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg="Failed to price cluster %s" % (params["cluster"] or "(estimate)"))
    module.exit_json(changed=False, price_errors=prices.errors, **result)


if __name__ == "__main__":
    main()
