# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The instances of a build cluster, per role: validation, user-data, planning (pure), and the EC2 calls.

One RunInstances per role (MinCount=MaxCount=missing count), so the number of calls does not grow with the
number of instances beyond pagination; a spot role over several instance types makes one per type (and one more
per type that must cover another's shortage). Spot launches fall back to on-demand when capacity is refused.
"""

from __future__ import annotations

import hashlib
import re
import socket
import time

from ansible_collections.buildfarm.ec2.plugins.module_utils import instances as bf_instances
from ansible_collections.buildfarm.ec2.plugins.module_utils import lease as bf_lease
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from ansible_collections.buildfarm.ec2.plugins.module_utils.aws import error_code, paginate, profile_retry

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

USER_DATA_LIMIT = 16384
MAX_VOLUME_GIB = 16384
USER_DATA_LOG = "/var/log/buildfarm-user-data.log"
USER_DATA_PATH = "/var/lib/buildfarm/user-data"

# Error codes of a spot launch that an on-demand launch of the same type may not hit.
SPOT_FALLBACK_CODES = frozenset(
    [
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "UnfulfillableCapacity",
        "InsufficientHostCapacity",
    ]
)

SECRET_PATTERNS = [
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"(?i)aws_secret_access_key\s*[=:]"), "an AWS secret access key"),
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"), "a GitHub token"),
    (
        re.compile(r"(?i)\b\w*(?:password|passwd|secret)\w*\s*[=:]\s*['\"]?[^\s'\"$]{4,}"),
        "a literal password or secret assignment",
    ),
]


def key_pair_name(cluster):
    return "buildfarm-%s" % cluster


def should_fall_back(error_code):
    """True when a spot launch failed for a reason an on-demand launch can avoid (capacity or price)."""
    return error_code in SPOT_FALLBACK_CODES


def find_secrets(text):
    """What in ``text`` looks like a secret (descriptions, no values): user-data is readable on the instance."""
    return [what for pattern, what in SECRET_PATTERNS if pattern.search(text or "")]


def validate_roles(roles):
    """Error messages for a bad ``roles`` list (empty when fine); pure, runs before any call."""
    errors = []
    seen = set()
    for index, role in enumerate(roles or []):
        name = role.get("name")
        error = bf_tags.validate_role_name(name)
        if error:
            errors.append("roles[%d]: %s" % (index, error))
        elif name in seen:
            errors.append("roles[%d]: role name %r appears twice: give every role one entry" % (index, name))
        seen.add(name)
        if role.get("count") is not None and role["count"] < 0:
            errors.append("roles[%d] (%s): count must be 0 or more, got %d" % (index, name, role["count"]))
        types = instance_types(role)
        if role.get("type") is not None and (not types or len(types) != len(set(types))):
            errors.append(
                "roles[%d] (%s): type must be an instance type, or several comma-separated without repeats, got %r"
                % (index, name, role["type"])
            )
        size = role.get("volume_size")
        if size is not None and not 1 <= size <= MAX_VOLUME_GIB:
            errors.append("roles[%d] (%s): volume_size must be 1-%d GiB, got %d" % (index, name, MAX_VOLUME_GIB, size))
    return errors


def role_heartbeat(role, default):
    """The heartbeat lease minutes of a role's new instances: its own ``heartbeat_timeout``, else ``default``."""
    own = role.get("heartbeat_timeout")
    return default if own is None else own


def build_user_data(user_data, max_lifetime, heartbeat_timeout=0):
    """The instance user-data: a power-off timer (the cost guard when the controller is gone), with a
    ``heartbeat_timeout`` the lease watch (module_utils/lease.py), and then the user's script, saved to a file and
    run with its output logged on the instance."""
    minutes = int(max_lifetime)
    lines = [
        "#!/bin/sh",
        "# buildfarm.ec2 bootstrap: power off after %d minutes (shutdown behaviour is terminate)," % minutes,
        "# then run the user's script with its output in %s." % USER_DATA_LOG,
        "systemd-run --on-active=%dm --unit=buildfarm-max-lifetime /bin/systemctl poweroff "
        "|| (shutdown -h +%d 'buildfarm.ec2 max lifetime reached' &)" % (minutes, minutes),
    ]
    if heartbeat_timeout:
        lines += [
            "mkdir -p %s" % bf_lease.WATCH_PATH.rsplit("/", 1)[0],
            "cat > %s <<'BUILDFARM_LEASE_EOF'" % bf_lease.WATCH_PATH,
            bf_lease.watch_script(heartbeat_timeout).rstrip("\n"),
            "BUILDFARM_LEASE_EOF",
            "chmod 0755 %s" % bf_lease.WATCH_PATH,
            "systemd-run --unit=buildfarm-lease %s || (nohup %s >/var/log/buildfarm-lease.log 2>&1 &)"
            % (bf_lease.WATCH_PATH, bf_lease.WATCH_PATH),
        ]
    script = user_data or ""
    if script.strip():
        if not script.startswith("#!"):
            script = "#!/bin/sh\n" + script
        marker = "BUILDFARM_USER_DATA_EOF"
        while marker in script:
            marker += "_"
        lines += [
            "mkdir -p %s" % USER_DATA_PATH.rsplit("/", 1)[0],
            "cat > %s <<'%s'" % (USER_DATA_PATH, marker),
            script.rstrip("\n"),
            marker,
            "chmod 0700 %s" % USER_DATA_PATH,
            "exec %s >>%s 2>&1" % (USER_DATA_PATH, USER_DATA_LOG),
        ]
    return "\n".join(lines) + "\n"


def validate_user_data(user_data, max_lifetime, heartbeat_timeout=0):
    """Error messages for user-data that cannot or must not be sent."""
    errors = []
    if user_data and user_data.lstrip().startswith("#cloud-config"):
        errors.append("user_data must be a shell script: cloud-config is not supported (the module wraps it)")
    found = find_secrets(user_data)
    if found:
        errors.append(
            "user_data looks like it contains %s: user-data is readable by anything on the instance and kept by "
            "EC2; pass secrets another way (e.g. SSM Parameter Store)" % ", ".join(found)
        )
    size = len(build_user_data(user_data, max_lifetime, heartbeat_timeout).encode("utf-8"))
    if size > USER_DATA_LIMIT:
        errors.append("user_data is %d bytes with the bootstrap, over the EC2 limit of %d" % (size, USER_DATA_LIMIT))
    return errors


def plan(roles, existing):
    """Per role: how many to launch and which instance ids to terminate (the newest go first).

    ``existing`` maps a role name to its live instance summaries (with ``id`` and ``launch_time``).
    """
    result = {}
    for role in roles:
        have = sorted(existing.get(role["name"], []), key=lambda i: (i["launch_time"] or "", i["id"]))
        want = role["count"]
        result[role["name"]] = {
            "launch": max(0, want - len(have)),
            "terminate": [i["id"] for i in have[want:]][::-1] if len(have) > want else [],
        }
    return result


def free_addresses(ec2, subnet_id):
    subnets = paginate(ec2, "describe_subnets", "Subnets", Filters=[{"Name": "subnet-id", "Values": [subnet_id]}])
    if not subnets:
        raise FleetError("subnet_id %s was not found: give the subnet_id returned by buildfarm.ec2.network" % subnet_id)
    return subnets[0]["AvailableIpAddressCount"]


def root_device_name(ec2, image_id):
    try:
        images = ec2.describe_images(aws_retry=True, ImageIds=[image_id]).get("Images", [])
    except botocore.exceptions.ClientError as e:
        if not error_code(e).startswith("InvalidAMIID"):
            raise
        images = []
    if not images:
        raise FleetError("image_id %s was not found in this region: give an AMI id that exists here" % image_id)
    return images[0].get("RootDeviceName") or "/dev/xvda"


class FleetError(Exception):
    """Input or account state the module cannot work with (the message says what to do)."""


def find_key_pair(ec2, name):
    """The key pair called ``name`` (dict with KeyName, KeyPairId, Tags) or None."""
    try:
        pairs = ec2.describe_key_pairs(KeyNames=[name]).get("KeyPairs", [])
    except botocore.exceptions.ClientError as e:
        if error_code(e) == "InvalidKeyPair.NotFound":
            return None
        raise
    return pairs[0] if pairs else None


def create_key_pair(ec2, cluster, tags):
    created = ec2.create_key_pair(
        aws_retry=True,
        KeyName=key_pair_name(cluster),
        KeyType="ed25519",
        TagSpecifications=bf_tags.tag_specifications("key-pair", tags),
    )
    return created["KeyName"], created["KeyMaterial"]


def network_interface(launch):
    """Where an instance attaches: the subnet and groups, and a public IPv4 when ``launch['public_ip']`` (EC2
    takes AssociatePublicIpAddress only on a network interface, with the subnet and groups given there)."""
    if not launch.get("public_ip"):
        placement = {"SubnetId": launch["subnet_id"]}
        if launch.get("security_group_ids"):
            placement["SecurityGroupIds"] = launch["security_group_ids"]
        return placement
    interface = {
        "DeviceIndex": 0,
        "SubnetId": launch["subnet_id"],
        "AssociatePublicIpAddress": True,
        "DeleteOnTermination": True,
    }
    if launch.get("security_group_ids"):
        interface["Groups"] = launch["security_group_ids"]
    return {"NetworkInterfaces": [interface]}


def instance_types(role):
    """The role's instance types in order of preference: its ``type`` names one, or several comma-separated."""
    return [t.strip() for t in str(role.get("type") or "").split(",") if t.strip()]


def spread(count, types):
    """The first ask of each of ``types`` for ``count`` spot instances: an even split, the earlier types taking the
    remainder (3 over 2 types: 2 and 1; 1 over 3: 1, 0, 0)."""
    base, extra = divmod(count, len(types))
    return [base + (1 if index < extra else 0) for index in range(len(types))]


def client_token(launch, role, market, instance_type="", step=0):
    """The RunInstances idempotency token of one launch, derived from the run: cluster, run id, role, how many of
    the role were live before it (``launch['first']``), the market, the instance type and the step of the launch
    (:func:`run_instances`). A retried call (throttling, a lost response) returns the
    instances of the first call instead of launching again; another run or a later scale-up gets another token.
    64 ASCII characters at most (EC2's limit)."""
    tags = launch["tags"][role["name"]]
    parts = [
        tags[bf_tags.TAG_CLUSTER],
        tags.get(bf_tags.TAG_RUN, ""),
        role["name"],
        str(launch.get("first", {}).get(role["name"], 0)),
        market,
        instance_type,
        str(step),
    ]
    return "buildfarm-" + hashlib.sha256("/".join(parts).encode("utf-8")).hexdigest()[:48]


def _launch_kwargs(role, launch):
    """RunInstances parameters of ``role`` but the instance type and the counts."""
    metadata = {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1}
    instance_tags = dict(launch["tags"][role["name"]])
    if launch.get("lease"):
        metadata["InstanceMetadataTags"] = "enabled"
        instance_tags[bf_tags.TAG_LEASE] = launch["lease"]
    kwargs = dict(
        ImageId=launch["image_id"],
        UserData=launch["user_data"],
        InstanceInitiatedShutdownBehavior="terminate",
        MetadataOptions=metadata,
        TagSpecifications=bf_tags.tag_specifications("instance", instance_tags)
        + bf_tags.tag_specifications("volume", launch["tags"][role["name"]])
        + bf_tags.tag_specifications("network-interface", launch["tags"][role["name"]]),
    )
    if launch.get("key_name"):
        kwargs["KeyName"] = launch["key_name"]
    if launch.get("instance_profile"):
        kwargs["IamInstanceProfile"] = {"Name": launch["instance_profile"]}
    kwargs.update(network_interface(launch))
    if role.get("volume_size"):
        kwargs["BlockDeviceMappings"] = [
            {
                "DeviceName": launch["root_device"],
                "Ebs": {
                    "VolumeSize": role["volume_size"],
                    "VolumeType": "gp3",
                    "DeleteOnTermination": True,
                    "Encrypted": True,
                },
            }
        ]
    return kwargs


def run_instances(ec2, role, count, launch):
    """Launch ``count`` instances of ``role``; returns (instance ids, fallbacks: [{type, reason}] of the spot
    launches EC2 refused). With ``launch['lease']`` the instances carry that first lease and their tags are in the
    instance metadata.

    Spot, over the role's instance types (:func:`instance_types`): each type is first asked for its share of the
    count (:func:`spread`), then each type that did not refuse is asked, in order, for what is still missing; every
    call takes what EC2 has (MinCount 1). This is EC2 Fleet's diversified strategy done with RunInstances: a
    reclaimed spot pool takes only its share of the builders (interruptions come per pool), one type's shortage
    does not stop the run, and the calls and error codes are the same on EC2 and the local cloud. What spot could
    not launch goes on-demand on the first type, unless ``spot_fallback`` is false: then the spot instances of this
    call are terminated and the error names each refused type with EC2's code. On-demand roles launch on the
    first type."""
    types = instance_types(role)
    kwargs = _launch_kwargs(role, launch)
    # A profile made just before may not be visible to EC2 yet: RunInstances is retried while it is refused.
    run = profile_retry(ec2.run_instances)
    ids, refused = [], {}
    if role.get("spot"):
        spot = dict(kwargs)
        spot["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
        }
        shares = spread(count, types)
        asks = [(types[i], shares[i]) for i in range(len(types)) if shares[i]] + [(t, None) for t in types]
        for step, (itype, ask) in enumerate(asks):
            missing = count - len(ids)
            if missing <= 0:
                break
            if itype in refused:
                continue
            ask = missing if ask is None else min(ask, missing)
            try:
                # ClientToken: a retried call (throttling) cannot launch twice.
                response = run(
                    aws_retry=True,
                    ClientToken=client_token(launch, role, "spot", itype, step),
                    InstanceType=itype,
                    MinCount=1,
                    MaxCount=ask,
                    **spot,
                )
            except botocore.exceptions.ClientError as e:
                code = error_code(e)
                if not should_fall_back(code):
                    raise
                refused[itype] = "%s: %s" % (code, e.response.get("Error", {}).get("Message", ""))
                continue
            ids.extend(i["InstanceId"] for i in response["Instances"])
        fallbacks = [{"type": t, "reason": r} for t, r in refused.items()]
        missing = count - len(ids)
        if not missing:
            return ids, fallbacks
        if role.get("spot_fallback") is False:
            if ids:
                bf_instances.terminate(ec2, ids, wait=False)
            raise FleetError(
                "role %s: EC2 refused the spot launch of %d %s and spot_fallback is false: nothing was launched "
                "on-demand%s; try other builder types, later, or allow the fallback"
                % (
                    role["name"],
                    missing,
                    ", ".join("%s (%s)" % (t, r) for t, r in refused.items()),
                    " and the %d spot instances of the other types were terminated" % len(ids) if ids else "",
                )
            ) from None
        count = missing
    else:
        fallbacks = []
    response = run(
        aws_retry=True,
        ClientToken=client_token(launch, role, "on-demand", types[0]),
        InstanceType=types[0],
        MinCount=count,
        MaxCount=count,
        **kwargs,
    )
    return ids + [i["InstanceId"] for i in response["Instances"]], fallbacks


def wait_for_port(host, port, timeout, interval=2.0):
    """True once a TCP connection to ``host:port`` succeeds, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(5.0, remaining))):
                return True
        except OSError:
            if time.monotonic() + interval > deadline:
                return False
            time.sleep(interval)
