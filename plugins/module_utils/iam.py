# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's instance profile: an IAM role (trusted by EC2) whose one inline policy lets the instances read and
write only under the run's S3 prefix, in an instance profile of the same name.

Both carry the cluster's tags and live under the path ``/buildfarm/``, where :func:`describe` finds them for the
sweep (IAM has no server-side tag filter); :func:`delete` removes them in dependency order. IAM is global: the
names are per account, ``buildfarm-<cluster>``.
"""

from __future__ import annotations

import json

from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags
from ansible_collections.buildfarm.ec2.plugins.module_utils.aws import delete_call, error_code, paginate

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

PATH = "/buildfarm/"
POLICY_NAME = "buildfarm-artifacts"
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"},
    ],
}


class ProfileError(Exception):
    """Account state the module cannot work with (the message says what to do)."""


def profile_name(cluster):
    """The name of the cluster's role and instance profile (64 characters at most: IAM's role name limit)."""
    return "buildfarm-%s" % cluster


def artifacts_policy(bucket, prefix, partition="aws", cache_prefix=None, cache_write=False):
    """The role's inline policy: list the bucket only below ``prefix``, get and put objects only under it; with
    ``cache_prefix`` (the compile cache, shared by the runs of every cluster) also get objects under that one, and
    put them with ``cache_write`` (compile_cache: readwrite, for trusted runs only)."""
    prefix = prefix.lstrip("/")
    bucket_arn = "arn:%s:s3:::%s" % (partition, bucket)
    statements = [
        {
            "Sid": "ListTheRunPrefix",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket_arn],
            "Condition": {"StringLike": {"s3:prefix": [prefix + "*"]}},
        },
        {
            "Sid": "ReadWriteTheRunPrefix",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": ["%s/%s*" % (bucket_arn, prefix)],
        },
    ]
    if cache_prefix:
        cache_prefix = cache_prefix.lstrip("/")
        statements.append(
            {
                "Sid": "ReadWriteTheCompileCache" if cache_write else "ReadTheCompileCache",
                "Effect": "Allow",
                # (an archive above s3transfer's threshold goes up in parts: a failed one is aborted)
                "Action": (
                    ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"] if cache_write else ["s3:GetObject"]
                ),
                "Resource": ["%s/%s*" % (bucket_arn, cache_prefix)],
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _document(value):
    """A policy document as a dict (boto3 decodes IAM's URL-encoded JSON; a string is parsed)."""
    return json.loads(value) if isinstance(value, str) else value


def _get(method, **kwargs):
    """The answer of an IAM get call, or None on NoSuchEntity."""
    try:
        return method(aws_retry=True, **kwargs)
    except botocore.exceptions.ClientError as e:
        if error_code(e) == "NoSuchEntity":
            return None
        raise


def ensure(iam, cluster, tags, bucket, prefix, check_mode=False, cache_prefix=None, cache_write=False):
    """Make the cluster's role, its inline policy (for ``bucket``/``prefix`` and the compile cache's
    ``cache_prefix``, see :func:`artifacts_policy`) and its instance profile what they should be. Returns a dict:
    changed, name, arn (None in check mode before creation), role_arn, actions (what was or would be done). A role
    or profile of that name without the cluster's tag is refused."""
    name = profile_name(cluster)
    policy = artifacts_policy(bucket, prefix, cache_prefix=cache_prefix, cache_write=cache_write)
    actions = []
    role = _get(iam.get_role, RoleName=name)
    role = role["Role"] if role else None
    profile = _get(iam.get_instance_profile, InstanceProfileName=name)
    profile = profile["InstanceProfile"] if profile else None
    for kind, found in (("role", role), ("instance profile", profile)):
        if found is not None and not _owned(iam, kind, name, cluster):
            raise ProfileError(
                "IAM %s %s exists but is not tagged for cluster %s: give instance_profile the name of a profile to "
                "use, or delete that %s" % (kind, name, cluster, kind)
            )
    current = None
    if role is not None:
        got = _get(iam.get_role_policy, RoleName=name, PolicyName=POLICY_NAME)
        current = _document(got["PolicyDocument"]) if got else None
    if role is None:
        actions.append("create role")
    if current != policy:
        actions.append("put policy")
    if profile is None:
        actions.append("create instance profile")
    if profile is None or name not in [r["RoleName"] for r in profile.get("Roles", [])]:
        actions.append("add role to instance profile")
    result = dict(
        changed=bool(actions),
        name=name,
        arn=profile["Arn"] if profile else None,
        role_arn=role["Arn"] if role else None,
        actions=actions,
        policy=policy,
    )
    if check_mode or not actions:
        return result
    tag_list = bf_tags.to_list(tags)
    if role is None:
        role = iam.create_role(
            aws_retry=True,
            Path=PATH,
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
            Description="buildfarm.ec2 cluster %s: outputs to s3://%s/%s" % (cluster, bucket, prefix),
            Tags=tag_list,
        )["Role"]
    if "put policy" in actions:
        iam.put_role_policy(aws_retry=True, RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy))
    if profile is None:
        profile = iam.create_instance_profile(aws_retry=True, Path=PATH, InstanceProfileName=name, Tags=tag_list)[
            "InstanceProfile"
        ]
    if "add role to instance profile" in actions:
        iam.add_role_to_instance_profile(aws_retry=True, InstanceProfileName=name, RoleName=name)
    result.update(arn=profile["Arn"], role_arn=role["Arn"])
    return result


def _tags_of(iam, kind, name):
    """The tags of a role or instance profile (its Get call returns them; the List calls do not)."""
    if kind == "role":
        got = _get(iam.get_role, RoleName=name)
        return bf_tags.to_dict(got["Role"].get("Tags")) if got else {}
    got = _get(iam.get_instance_profile, InstanceProfileName=name)
    return bf_tags.to_dict(got["InstanceProfile"].get("Tags")) if got else {}


def _owned(iam, kind, name, cluster):
    return bf_tags.matches(_tags_of(iam, kind, name), cluster=cluster)


def describe(iam, cluster=None, run_id=None):
    """The roles and instance profiles under :data:`PATH` that carry the cluster tag (of ``cluster`` and
    ``run_id`` when given): ``{"instance_profiles": [...], "roles": [...]}``, each item with id (the name), arn,
    role, run, expires and tags, as :func:`cluster.describe` gives other resources."""
    listed = {
        "instance_profiles": [
            ("instance profile", p["InstanceProfileName"], p["Arn"])
            for p in paginate(iam, "list_instance_profiles", "InstanceProfiles", PathPrefix=PATH)
        ],
        "roles": [("role", r["RoleName"], r["Arn"]) for r in paginate(iam, "list_roles", "Roles", PathPrefix=PATH)],
    }
    found = {key: [] for key in listed}
    for key, items in listed.items():
        for kind, name, arn in items:
            tags = _tags_of(iam, kind, name)
            if not bf_tags.matches(tags, cluster=cluster, run_id=run_id):
                continue
            fields = bf_tags.parse(tags)
            expires = bf_tags.format_time(fields["expires"]) if fields["expires"] else None
            found[key].append(
                dict(id=name, arn=arn, role=fields["role"], run=fields["run"], expires=expires, tags=tags)
            )
    return found


def delete(iam, profiles, roles):
    """Delete instance profiles and roles (names), in dependency order: the roles out of the profiles, the roles'
    inline policies, the roles, then the profiles. Already gone is success. Returns (deleted profile names,
    deleted role names)."""
    for name in profiles:
        got = _get(iam.get_instance_profile, InstanceProfileName=name)
        for role in got["InstanceProfile"].get("Roles", []) if got else []:
            delete_call(iam.remove_role_from_instance_profile, InstanceProfileName=name, RoleName=role["RoleName"])
    deleted_roles = []
    for name in roles:
        try:
            policies = paginate(iam, "list_role_policies", "PolicyNames", RoleName=name)
        except botocore.exceptions.ClientError as e:
            if error_code(e) != "NoSuchEntity":
                raise
            continue
        for policy in policies:
            delete_call(iam.delete_role_policy, RoleName=name, PolicyName=policy)
        if delete_call(iam.delete_role, RoleName=name):
            deleted_roles.append(name)
    deleted_profiles = [name for name in profiles if delete_call(iam.delete_instance_profile, InstanceProfileName=name)]
    return deleted_profiles, deleted_roles
