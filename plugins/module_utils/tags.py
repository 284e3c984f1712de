# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster tag scheme: the only source of truth for what belongs to a build cluster.

Every resource a cluster makes carries ``buildfarm:cluster``, ``buildfarm:role``, ``buildfarm:run`` and
``buildfarm:expires``. This file builds, parses and filters those tags; it has no AWS calls of its own.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

PREFIX = "buildfarm:"
TAG_CLUSTER = PREFIX + "cluster"
TAG_ROLE = PREFIX + "role"
TAG_RUN = PREFIX + "run"
TAG_EXPIRES = PREFIX + "expires"
# "true" on a volume: the sweep leaves it alone unless told to delete kept volumes.
TAG_KEEP = PREFIX + "keep"
# On a baked image (playbooks/bake.yml): the hash of its recipe, by which build.yml's image_id auto finds it.
TAG_RECIPE = PREFIX + "recipe"
# On instances: the UTC time until which the controller vouches for the run (the heartbeat lease, module_utils/
# lease.py); the nodes read it from their instance metadata, so the key keeps to EC2's rule for tags there
# (letters, digits and + - = . , _ : @ only).
TAG_LEASE = PREFIX + "lease"
KEYS = {"cluster": TAG_CLUSTER, "role": TAG_ROLE, "run": TAG_RUN, "expires": TAG_EXPIRES}

CLUSTER_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$|^[a-z]$")
ROLE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def validate_cluster_name(name):
    """Return an error message for a bad cluster name, or None when it is valid."""
    if not isinstance(name, str) or not CLUSTER_NAME_RE.match(name):
        return (
            "cluster name %r is invalid: use 1-40 lowercase letters, digits and '-', starting with a letter "
            "and not ending with '-'" % (name,)
        )
    return None


def validate_role_name(name):
    """Return an error message for a bad role name, or None when it is valid."""
    if not isinstance(name, str) or not ROLE_NAME_RE.match(name):
        return "role name %r is invalid: use 1-32 lowercase letters, digits and '_', starting with a letter" % (name,)
    return None


def validate_run_id(run_id):
    """Return an error message for a bad run id, or None when it is valid."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        return "run id %r is invalid: use 1-64 letters, digits, '.', '_' or '-'" % (run_id,)
    return None


def validate_volume_name(name):
    """Return an error message for a bad volume name (its ``Name`` tag in the cluster), or None when valid."""
    if not isinstance(name, str) or not VOLUME_NAME_RE.match(name):
        return (
            "volume name %r is invalid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
            % (name,)
        )
    return None


def is_kept(tags):
    """True when a tag set carries ``buildfarm:keep`` = true/yes/1."""
    return str(to_dict(tags).get(TAG_KEEP, "")).lower() in ("true", "yes", "1")


def format_time(when):
    """UTC ISO 8601 with a Z suffix, second precision (the format of ``buildfarm:expires``)."""
    return when.astimezone(timezone.utc).strftime(ISO_FORMAT)


def parse_time(value):
    """Parse a ``buildfarm:expires`` value; None when it is missing or malformed."""
    if not value:
        return None
    try:
        return datetime.strptime(value, ISO_FORMAT).replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None


def expires_at(lifetime_minutes, now=None):
    """The ``buildfarm:expires`` value for a resource that may live ``lifetime_minutes`` from ``now``."""
    now = now or datetime.now(timezone.utc)
    return format_time(now + timedelta(minutes=int(lifetime_minutes)))


def cluster_tags(cluster, role=None, run_id=None, expires=None, extra=None):
    """The tag dict for a resource of ``cluster``; ``extra`` user tags may not use the ``buildfarm:`` prefix."""
    tags = {}
    for key, value in (extra or {}).items():
        if str(key).startswith(PREFIX):
            raise ValueError("tag %r uses the reserved prefix %r" % (key, PREFIX))
        tags[str(key)] = str(value)
    tags[TAG_CLUSTER] = cluster
    if role:
        tags[TAG_ROLE] = role
    if run_id:
        tags[TAG_RUN] = run_id
    if expires:
        tags[TAG_EXPIRES] = expires
    tags.setdefault("Name", "%s-%s" % (cluster, role) if role else cluster)
    return tags


def to_dict(tags):
    """Tags as a dict, from a boto3 list (``[{'Key': k, 'Value': v}]``) or a dict."""
    if tags is None:
        return {}
    if isinstance(tags, dict):
        return dict(tags)
    return {t["Key"]: t.get("Value", "") for t in tags}


def to_list(tags):
    """Tags as a boto3 list, sorted by key for stable requests."""
    return [{"Key": k, "Value": v} for k, v in sorted(to_dict(tags).items())]


def tag_specifications(resource_type, tags):
    """A ``TagSpecifications`` entry so a resource is tagged in the call that creates it."""
    return [{"ResourceType": resource_type, "Tags": to_list(tags)}]


def parse(tags):
    """The buildfarm fields of a tag set: cluster, role, run, expires (datetime or None) and extra tags."""
    tags = to_dict(tags)
    return {
        "cluster": tags.get(TAG_CLUSTER),
        "role": tags.get(TAG_ROLE),
        "run": tags.get(TAG_RUN),
        "expires": parse_time(tags.get(TAG_EXPIRES)),
        "extra": {k: v for k, v in tags.items() if not k.startswith(PREFIX)},
    }


def filters(cluster=None, role=None, run_id=None, extra=None):
    """EC2 ``Filters`` that select a cluster's resources server side (tag-key when only presence matters)."""
    result = []
    wanted = {TAG_CLUSTER: cluster, TAG_ROLE: role, TAG_RUN: run_id}
    for key, value in wanted.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        result.append({"Name": "tag:%s" % key, "Values": [str(v) for v in values]})
    if cluster is None:
        result.append({"Name": "tag-key", "Values": [TAG_CLUSTER]})
    result.extend(extra or [])
    return result


def matches(tags, cluster=None, role=None, run_id=None):
    """True when a tag set belongs to ``cluster`` (and ``role``/``run_id`` when given)."""
    fields = parse(tags)
    if fields["cluster"] is None:
        return False
    return all(
        want is None or fields[name] == want for name, want in (("cluster", cluster), ("role", role), ("run", run_id))
    )


def is_expired(tags, now=None):
    """True when the tag set has a ``buildfarm:expires`` time in the past."""
    expires = parse(tags)["expires"]
    return expires is not None and expires <= (now or datetime.now(timezone.utc))
