# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: instances
short_description: Build cluster instances from EC2, grouped by cluster and role
version_added: 1.0.0
description:
  - Lists the EC2 instances of one or more build clusters (the C(buildfarm:cluster) tag) in one or more
    regions, and groups them as C(cluster_<name>) and by role (the C(buildfarm:role) tag, for example
    C(host) and C(builder)).
  - The playbooks C(buildfarm.ec2.build) and C(buildfarm.ec2.handoff) give the hosts they add with C(add_host)
    the same groups and host variables, so a play written for this inventory runs there unchanged.
  - The cluster and state filters are applied by the EC2 API (server side); C(DescribeInstances) is paginated.
    There is one call per region and page, and no per-instance call.
  - The regions must be given (O(regions), O(region) or the C(AWS_REGION)/C(AWS_DEFAULT_REGION) environment
    variables); the plugin never scans every region.
  - The configuration file name must end with C(.buildfarm.yml) or C(.buildfarm.yaml).
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
requirements:
  # Stated here rather than through the amazon.aws.boto3 fragment, which imports botocore to render them: a run
  # answered from the cache loads neither boto3 nor botocore.
  - boto3 >= 1.34.0
  - botocore >= 1.34.0
extends_documentation_fragment:
  - constructed
  - inventory_cache
  - amazon.aws.common.plugins
  - amazon.aws.region.plugins
  - amazon.aws.assume_role.plugins
options:
  plugin:
    description: The name of this plugin; it marks the file as a C(buildfarm.ec2.instances) source.
    type: str
    required: true
    choices: [buildfarm.ec2.instances]
  clusters:
    description:
      - Names of the clusters to list (values of the C(buildfarm:cluster) tag).
      - When empty, every instance that carries a C(buildfarm:cluster) tag is listed.
    type: list
    elements: str
    default: []
  regions:
    description:
      - Regions to query, one C(DescribeInstances) query per region.
      - When empty, the single region from O(region) (or C(AWS_REGION)/C(AWS_DEFAULT_REGION)) is used.
        When no region is known the source fails; all regions are never scanned.
    type: list
    elements: str
    default: []
  region:
    description:
      - The region to query when O(regions) is empty.
    type: str
    aliases: [aws_region]
    env:
      - name: AWS_REGION
      - name: AWS_DEFAULT_REGION
  endpoint_url:
    description:
      - URL of the EC2 API to use instead of the AWS endpoint (a local cloud or a test server).
    type: str
    aliases: [aws_endpoint_url]
    env:
      - name: AWS_URL
      - name: AWS_ENDPOINT_URL_EC2
      - name: AWS_ENDPOINT_URL
  session_token:
    description:
      - AWS STS session token for temporary credentials (AWX/Tower injects C(AWS_SECURITY_TOKEN)).
    type: str
    aliases: [aws_session_token]
    env:
      - name: AWS_SESSION_TOKEN
      - name: AWS_SECURITY_TOKEN
  instance_states:
    description:
      - Instance states to list. Stopped and terminated instances are left out by default.
    type: list
    elements: str
    default: [running]
    choices: [pending, running, shutting-down, stopping, stopped, terminated]
  hostnames:
    description:
      - Preference list for the inventory host name; the first entry the instance has a value for wins.
      - Each entry is one of V(private-ip-address), V(public-ip-address), V(private-dns-name),
        V(public-dns-name), V(instance-id) or V(tag:<key>) (for example V(tag:Name)).
      - C(ansible_host) is the first address (IP address or DNS name) in this list that the instance has,
        the private IP address when the list names no address. O(compose) may override it.
      - When two instances get the same name, the later one (by instance id) is named C(<name>_<instance id>).
    type: list
    elements: str
    default: [private-ip-address, public-ip-address, private-dns-name, public-dns-name, instance-id]
  ansible_user:
    description:
      - The C(ansible_user) of every host (Debian AMIs log in as V(admin)). An empty string leaves it unset.
    type: str
    default: admin
  private_key_file:
    description:
      - The C(ansible_ssh_private_key_file) of every host, unset by default.
      - C({cluster}) in the path is replaced with the host's cluster name, so each cluster can have its key.
        A leading C(~) is expanded.
    type: str
  role_group_prefix:
    description:
      - Prefix of the role groups, for example V(role_) for C(role_builder). Empty by default (C(builder)).
    type: str
    default: ""
  page_size:
    description:
      - Instances per C(DescribeInstances) page (5 to 1000). By default the service chooses.
    type: int
"""

EXAMPLES = r"""
# inventories/aws/demo.buildfarm.yml: the running instances of cluster demo in one region, with the key that
# playbooks/build.yml keeps for each cluster (playbooks/vars/node_contract.yml).
plugin: buildfarm.ec2.instances
regions: [eu-west-1]
clusters: [demo]
private_key_file: ~/.buildfarm/{cluster}/id_cluster
---
# Two regions, public addresses first, a group per instance type, cached for ten minutes.
plugin: buildfarm.ec2.instances
regions: [eu-west-1, eu-central-1]
clusters: [demo, nightly]
hostnames: [public-ip-address, private-ip-address]
keyed_groups:
  - key: instance_type
    prefix: type
groups:
  big: instance_type.startswith('c7')
compose:
  distcc_jobs: 2 * 4
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/buildfarm-inventory
cache_timeout: 600
"""

import os
import re

# boto3, botocore and amazon.aws are imported only when the API is asked (see InventoryModule._api): a run
# answered from the cache does not pay for loading them.
from ansible import constants as C
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags

ADDRESS_KEYS = {
    "private-ip-address": "private_ip_address",
    "public-ip-address": "public_ip_address",
    "private-dns-name": "private_dns_name",
    "public-dns-name": "public_dns_name",
}
NAME_KEYS = dict(ADDRESS_KEYS, **{"instance-id": "instance_id"})
# Error codes of credentials that EC2 does not accept (unknown or wrong key, expired token, clock skew).
REFUSED_CREDENTIALS = (
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "ExpiredToken",
    "RequestExpired",
)


# Fewer retries and a long read timeout: an unreachable endpoint fails in seconds, a large listing is not cut off.
def instance_record(instance, region):
    """The lean, cacheable record of one ``DescribeInstances`` instance (plain strings and a tag dict)."""
    placement = instance.get("Placement") or {}
    return {
        "instance_id": instance["InstanceId"],
        "instance_type": instance.get("InstanceType"),
        "state": (instance.get("State") or {}).get("Name"),
        "region": region,
        "availability_zone": placement.get("AvailabilityZone"),
        "private_ip_address": instance.get("PrivateIpAddress") or None,
        "public_ip_address": instance.get("PublicIpAddress") or None,
        "private_dns_name": instance.get("PrivateDnsName") or None,
        "public_dns_name": instance.get("PublicDnsName") or None,
        "tags": bf_tags.to_dict(instance.get("Tags")),
    }


def preferred_name(record, hostnames):
    """The first value of ``hostnames`` (``private-ip-address``, ``tag:Name``, ...) that the record has."""
    for preference in hostnames:
        if preference.startswith("tag:"):
            value = record["tags"].get(preference[4:])
        else:
            value = record.get(NAME_KEYS[preference])
        if value:
            return value
    return None


def preferred_address(record, hostnames):
    """The first address named in ``hostnames`` that the record has, else its private then public IP address."""
    for preference in hostnames:
        key = ADDRESS_KEYS.get(preference)
        if key and record.get(key):
            return record[key]
    return record.get("private_ip_address") or record.get("public_ip_address")


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "buildfarm.ec2.instances"
    INVENTORY_FILE_SUFFIXES = (".buildfarm.yml", ".buildfarm.yaml")

    def _do_fail(self, message):
        raise AnsibleParserError("%s: %s" % (self.NAME, message))

    # Options -------------------------------------------------------------------------------------------------

    def _plain(self, value):
        """A configuration value as plain data: templated when it is a template, and without Ansible's data tags
        (origin, trust), which would otherwise travel into the cache and every host's variables."""
        if isinstance(value, str) and self.templar.is_template(value):
            value = self.templar.template(value)
        if isinstance(value, str):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [self._plain(v) for v in value]
        return value

    def _plain_list_option(self, name):
        """A list option with templated, untagged items (an item that renders to a list is spliced in); empty
        items dropped."""
        values = []
        for value in self._plain(self.get_option(name) or []):
            values.extend(value if isinstance(value, list) else [value])
        return [v for v in values if v]

    @staticmethod
    def _known_regions():
        """Region names botocore knows in any partition (from its endpoint data, not the large service model)."""
        import botocore.session

        known = set()
        for partition in botocore.session.get_session().get_data("endpoints").get("partitions", []):
            known.update(partition.get("regions", {}))
            endpoints = partition.get("services", {}).get("ec2", {}).get("endpoints", {})
            known.update(name for name in endpoints if "fips" not in name)
        return known

    def _regions(self):
        regions = self._plain_list_option("regions") or [r for r in [self._plain(self.get_option("region"))] if r]
        if not regions:
            self._do_fail(
                "no region given: set 'regions' in %s or AWS_REGION/AWS_DEFAULT_REGION in the environment "
                "(this plugin never scans every region)" % self._path
            )
        return list(dict.fromkeys(regions))

    def _check_regions(self, regions):
        """Fail on a region botocore does not know (checked before the API is asked, not on a cache hit)."""
        known = self._known_regions()
        unknown = [r for r in regions if r not in known]
        if unknown:
            self._do_fail(
                "unknown region %s in 'regions'; known EC2 regions are: %s"
                % (", ".join(repr(r) for r in unknown), ", ".join(sorted(known)))
            )

    def _hostnames(self):
        hostnames = self.get_option("hostnames") or []
        for preference in hostnames:
            if not isinstance(preference, str) or not (
                preference in NAME_KEYS or (preference.startswith("tag:") and len(preference) > 4)
            ):
                self._do_fail(
                    "bad 'hostnames' entry %r: use %s or tag:<key>" % (preference, ", ".join(sorted(NAME_KEYS)))
                )
        if not hostnames:
            self._do_fail("'hostnames' must name at least one of %s or tag:<key>" % ", ".join(sorted(NAME_KEYS)))
        return hostnames

    def _filters(self):
        clusters = self._plain_list_option("clusters")
        for cluster in clusters:
            error = bf_tags.validate_cluster_name(cluster)
            if error:
                self._do_fail("bad 'clusters' entry: %s" % error)
        page_size = self.get_option("page_size")
        if page_size is not None and not 5 <= page_size <= 1000:
            self._do_fail("'page_size' must be between 5 and 1000, got %d" % page_size)
        return bf_tags.filters(
            cluster=list(clusters) or None,
            extra=[{"Name": "instance-state-name", "Values": self._plain_list_option("instance_states")}],
        )

    # AWS -----------------------------------------------------------------------------------------------------

    def _api(self):
        """amazon.aws's credential handling (profiles, assume_role_arn, endpoint_url, templated credentials,
        missing-SDK errors) reading this source's options; imported here, when the API must be asked."""
        from ansible_collections.amazon.aws.plugins.plugin_utils.inventory import AWSInventoryBase

        class Api(AWSInventoryBase):
            plugin_type = "inventory"

        api = Api()
        api._load_name, api._options, api._origins = self._load_name, self._options, self._origins
        api.templar = self.templar
        api._do_fail = self._do_fail
        api.require_aws_sdk()  # a clear error when boto3/botocore are missing or too old
        return api

    def _describe(self, regions, filters):
        """Lean records of every matching instance in ``regions``, sorted by instance id."""
        api = self._api()
        import botocore

        from ansible_collections.buildfarm.ec2.plugins.module_utils import aws as bf_aws

        self._check_regions(regions)
        api._set_frozen_credentials()  # assume_role_arn: one STS call
        page_size = self.get_option("page_size")
        kwargs = {"Filters": filters}
        if page_size:
            kwargs["PaginationConfig"] = {"PageSize": page_size}
        records = []
        for region in regions:
            conn = bf_aws.plugin_client(api, "ec2", region)
            endpoint = conn.meta.endpoint_url
            try:
                reservations = bf_aws.paginate(conn, "describe_instances", "Reservations", **kwargs)
            except botocore.exceptions.NoCredentialsError:
                self._do_fail(
                    "no AWS credentials found: set access_key and secret_key (or profile) in %s, or "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment" % self._path
                )
            except (
                botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectTimeoutError,
                botocore.exceptions.ReadTimeoutError,
            ) as e:
                self._do_fail(
                    "cannot reach the EC2 endpoint %s for region %s (%s): check endpoint_url "
                    "(or AWS_ENDPOINT_URL) and the network" % (endpoint, region, to_native(e))
                )
            except botocore.exceptions.ClientError as e:
                error = e.response.get("Error", {})
                if error.get("Code") in REFUSED_CREDENTIALS:
                    self._do_fail(
                        "the EC2 endpoint %s refused the credentials in region %s (%s: %s): check access_key, "
                        "secret_key and session_token (or profile) in %s, or the AWS_* environment"
                        % (endpoint, region, error.get("Code"), error.get("Message"), self._path)
                    )
                if error.get("Code") in ("UnauthorizedOperation", "AccessDenied"):
                    self._do_fail(
                        "the credentials may not call ec2:DescribeInstances in region %s: allow it in their IAM "
                        "policy (docs/iam-policy.json lists what the collection needs)" % region
                    )
                self._do_fail(
                    "DescribeInstances failed in region %s at %s: %s (%s)"
                    % (region, endpoint, error.get("Message") or to_native(e), error.get("Code"))
                )
            except botocore.exceptions.BotoCoreError as e:
                self._do_fail("DescribeInstances failed in region %s at %s: %s" % (region, endpoint, to_native(e)))
            for reservation in reservations:
                records.extend(instance_record(i, region) for i in reservation.get("Instances", []))
        records.sort(key=lambda r: (r["instance_id"], r["region"]))
        return records

    # Inventory -----------------------------------------------------------------------------------------------

    def _populate(self, records, hostnames):
        user = self.get_option("ansible_user")
        key_file = os.path.expanduser(self.get_option("private_key_file") or "")
        role_prefix = self.get_option("role_group_prefix") or ""
        compose = self.get_option("compose")
        groups = self.get_option("groups")
        keyed_groups = self.get_option("keyed_groups")
        strict = self.get_option("strict")
        constructed = bool(compose or groups or keyed_groups)
        group_names = {}
        seen = set()

        def group(raw):
            if raw not in group_names:
                group_names[raw] = self.inventory.add_group(self._sanitize_group_name(raw))
            return group_names[raw]

        for record in records:
            fields = bf_tags.parse(record["tags"])
            name = preferred_name(record, hostnames)
            if not name:
                self.display.vvv("%s: %s has no %s, skipped" % (self.NAME, record["instance_id"], hostnames))
                continue
            if name in seen:
                name = "%s_%s" % (name, record["instance_id"])
            seen.add(name)
            hostvars = {
                "instance_id": record["instance_id"],
                "instance_type": record["instance_type"],
                "instance_state": record["state"],
                "region": record["region"],
                "availability_zone": record["availability_zone"],
                "private_ip_address": record["private_ip_address"],
                "public_ip_address": record["public_ip_address"],
                "private_dns_name": record["private_dns_name"],
                "public_dns_name": record["public_dns_name"],
                "buildfarm_cluster": fields["cluster"],
                "buildfarm_role": fields["role"],
                "buildfarm_run": fields["run"],
                "tags": record["tags"],
                "ansible_host": preferred_address(record, hostnames),
            }
            if user:
                hostvars["ansible_user"] = user
            if key_file:
                hostvars["ansible_ssh_private_key_file"] = key_file.replace("{cluster}", fields["cluster"] or "")
            self.inventory.add_host(name)
            # Straight onto the Host: the values are plain strings, None and a dict of strings that this plugin
            # made (from the API or its own cache), never templates. The InventoryManager's set_variable wrapper
            # would deep-copy and tag each one with this file's origin: 60% of a cached 5,000-host build.
            host = self.inventory.get_host(name)
            for key, value in hostvars.items():
                host.set_variable(key, value)
            if fields["cluster"]:
                self.inventory.add_child(group("cluster_%s" % fields["cluster"]), name)
            if fields["role"]:
                self.inventory.add_child(group(role_prefix + fields["role"]), name)
            if constructed:
                self._construct(name, hostvars, compose, groups, keyed_groups, strict)

    def _construct(self, name, hostvars, compose, groups, keyed_groups, strict):
        try:
            self._set_composite_vars(compose, hostvars, name, strict=strict)
            variables = self.inventory.get_host(name).get_vars()
            self._add_host_to_composed_groups(groups, variables, name, strict=strict, fetch_hostvars=False)
            self._add_host_to_keyed_groups(keyed_groups, variables, name, strict=strict, fetch_hostvars=False)
        except AnsibleError as e:
            self._do_fail("compose/groups/keyed_groups failed (strict: %s): %s" % (strict, to_native(e)))

    def _read_config_data(self, path):
        config = super()._read_config_data(path)
        known = set()
        for name, definition in C.config.get_configuration_definitions("inventory", self._load_name).items():
            known.add(name)
            known.update(definition.get("aliases") or [])
        unknown = sorted(str(k) for k in config if k not in known)
        if unknown:
            self._do_fail("unknown option%s %s in %s" % ("s" if len(unknown) > 1 else "", ", ".join(unknown), path))
        return config

    def verify_file(self, path):
        return super().verify_file(path) and bool(re.search(r"\.buildfarm\.ya?ml$", path))

    def parse(self, inventory, loader, path, cache=True):
        self._path = path
        try:
            super().parse(inventory, loader, path, cache=cache)
            self._read_config_data(path)
        except AnsibleParserError:
            raise
        except AnsibleError as e:
            self._do_fail("bad configuration in %s: %s" % (path, to_native(e)))
        hostnames = self._hostnames()
        regions = self._regions()
        filters = self._filters()

        # The cache entry remembers its query, so an edited file (other clusters, regions, states) is not
        # answered from an entry made for the old one.
        query = {"regions": regions, "filters": filters}
        use_cache = bool(self.get_option("cache"))
        records = None
        if use_cache and cache:
            try:
                entry = self._cache[self.get_cache_key(path)]
            except KeyError:
                entry = None
            if isinstance(entry, dict) and entry.get("query") == query:
                records = entry.get("records")
        if records is None:
            records = self._describe(regions, filters)
            if use_cache:
                self._cache[self.get_cache_key(path)] = {"query": query, "records": records}
        self._populate(records, hostnames)
