"""IAM as EC2 and S3 apply it to instances: instance profiles at launch, and the role's policy on S3 requests.

- ``RunInstances`` with ``IamInstanceProfile`` naming a profile that does not exist fails as on EC2
  (``InvalidParameterValue`` naming ``iamInstanceProfile``, nothing launched; moto alone launches and then fails).
  A profile younger than :data:`PROFILE_PROPAGATION_SECONDS` is refused the same way: EC2 documents that a new
  instance profile may not be usable at once (IAM is eventually consistent), and a caller must retry.
- S3 requests signed with STS credentials (what an instance gets from its profile through IMDS) are always checked
  against the role's policies, whatever moto's auth mode: the signature, then the statements' Action, Resource and
  the Condition operators ``StringEquals``/``StringLike`` (on ``s3:prefix`` of a listing), which moto's own
  evaluator ignores (it allows such a statement for any prefix). Other credentials are left to moto.
"""

from __future__ import annotations

import fnmatch
import functools
from urllib.parse import parse_qs, urlparse

PROFILE_PROPAGATION_SECONDS = 3.0


def _ec2_error(code, message):
    from moto.ec2.exceptions import EC2ClientError

    return EC2ClientError(code, message)


def check_launch_profile(backend, kwargs, now=None):
    """Raise EC2's error for an instance profile a launch may not use (yet)."""
    from moto.core.utils import utcnow
    from moto.iam.models import iam_backends

    name, arn = kwargs.get("iam_instance_profile_name"), kwargs.get("iam_instance_profile_arn")
    if not (name or arn):
        return
    profiles = iam_backends[backend.account_id][backend.partition].instance_profiles.values()
    found = [p for p in profiles if (name and p.name == name) or (arn and p.arn == arn)]
    field, value = ("name", name) if name else ("arn", arn)
    message = "Value (%s) for parameter iamInstanceProfile.%s is invalid. Invalid IAM Instance Profile %s" % (
        value,
        field,
        field,
    )
    if not found:
        raise _ec2_error("InvalidParameterValue", message)
    age = ((now or utcnow()) - found[0].create_date).total_seconds()
    if age < PROFILE_PROPAGATION_SECONDS or not found[0].roles:
        raise _ec2_error("InvalidParameterValue", message)


# ---------------------------------------------------------------------------------------------- S3 enforcement


def _values(value):
    return value if isinstance(value, list) else [value]


def _condition_holds(condition, context):
    """True when every operator and key of a statement's Condition holds for ``context`` (a missing key: false).
    An operator this evaluator does not know never holds (stricter than AWS, never kinder)."""
    for operator, pairs in (condition or {}).items():
        for key, expected in pairs.items():
            actual = context.get(key)
            if actual is None:
                return False
            if operator == "StringEquals":
                ok = actual in _values(expected)
            elif operator == "StringLike":
                ok = any(fnmatch.fnmatchcase(actual, pattern) for pattern in _values(expected))
            else:
                return False
            if not ok:
                return False
    return True


def decide(documents, action, resource, context):
    """'allow', 'deny' or 'implicit' (no statement allows) for ``action`` on ``resource``: explicit Deny wins."""
    allowed = False
    for document in documents:
        statements = document.get("Statement", [])
        for statement in statements if isinstance(statements, list) else [statements]:
            if "Action" not in statement or "Resource" not in statement:
                continue  # NotAction / NotResource are not evaluated: such a statement never allows
            if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _values(statement["Action"])):
                continue
            if not any(fnmatch.fnmatchcase(resource, r) for r in _values(statement["Resource"])):
                continue
            if not _condition_holds(statement.get("Condition"), context):
                continue
            if statement.get("Effect") == "Deny":
                return "deny"
            allowed = allowed or statement.get("Effect") == "Allow"
    return "allow" if allowed else "implicit"


def _documents(policies):
    from moto.iam.access_control import IAMPolicy

    return [IAMPolicy(policy)._policy_json for policy in policies]  # pylint: disable=protected-access


def _assumed_role_key(response):
    """The access key id of a request signed with STS credentials, else None."""
    from moto.sts.models import sts_backends
    from moto.utilities.utils import get_partition

    auth = response.headers.get("Authorization") or ""
    if "Credential=" not in auth:
        return None
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
    if len(scope) < 3:
        return None
    backend = sts_backends[response.current_account][get_partition(scope[2])]
    return scope[0] if any(r.access_key_id == scope[0] for r in backend.assumed_roles) else None


def install_s3_enforcement():
    """Check every S3 request signed with STS credentials against the role's policies (see the module doc)."""
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.access_control import S3IAMRequest

    original = ActionAuthenticatorMixin._authenticate_and_authorize_s3_action  # pylint: disable=protected-access

    @functools.wraps(original)
    def authorize(self, bucket_name=None, key_name=None):
        if _assumed_role_key(self) is None:
            return original(self, bucket_name=bucket_name, key_name=key_name)
        path = self.raw_path
        query = urlparse(self.uri).query
        request = S3IAMRequest(
            account_id=self.current_account,
            method=self.method,
            path=path + ("?" + query if query else ""),
            data=self.data,
            body=self.raw_body,
            headers=self.headers,
            action=self._get_action(),
        )
        request.check_signature()
        target = "%s/%s" % (bucket_name or "*", key_name) if key_name else (bucket_name or "*")
        context = {"s3:prefix": parse_qs(query).get("prefix", [""])[0]} if not key_name else {}
        documents = _documents(request._access_key.collect_policies())  # pylint: disable=protected-access
        # pylint: disable-next=protected-access
        if decide(documents, request._action, "arn:aws:s3:::" + target, context) != "allow":
            request._raise_access_denied()  # pylint: disable=protected-access
        return None

    authorize.__wrapped__ = original
    ActionAuthenticatorMixin._authenticate_and_authorize_s3_action = authorize  # pylint: disable=protected-access
