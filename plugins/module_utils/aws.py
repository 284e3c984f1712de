# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place where buildfarm.ec2 creates AWS clients, retries calls and paginates.

Modules build on amazon.aws's ``AnsibleAWSModule`` (credentials, region, endpoint_url, botocore errors);
every client comes from :func:`client` so retries are configured once.
"""

from __future__ import annotations

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags

# Throttling and eventual consistency (an id that is not visible yet) are retried with jittered backoff.
RETRY = AWSRetry.jittered_backoff(
    retries=10,
    delay=1,
    max_delay=30,
    catch_extra_error_codes=[
        "InvalidVpcID.NotFound",
        "InvalidSubnetID.NotFound",
        "InvalidGroup.NotFound",
        "InvalidInstanceID.NotFound",
        "InvalidVolume.NotFound",
        "IncorrectState",
    ],
)

# Deletes retry throttling and the dependencies AWS releases a little after an instance is gone (ENIs, an IAM
# role still in a profile), but not NotFound: RETRY treats NotFound as eventual consistency, which would make an
# already-gone resource slow.
DELETE_RETRY = AWSRetry.jittered_backoff(
    retries=10, delay=2, max_delay=30, catch_extra_error_codes=["DependencyViolation", "VolumeInUse", "DeleteConflict"]
)

# A delete whose target is already gone has done its job.
GONE_CODES = frozenset(
    [
        "InvalidInstanceID.NotFound",
        "InvalidVolume.NotFound",
        "InvalidKeyPair.NotFound",
        "InvalidGroup.NotFound",
        "InvalidSubnetID.NotFound",
        "InvalidRouteTableID.NotFound",
        "InvalidAssociationID.NotFound",
        "InvalidInternetGatewayID.NotFound",
        "InvalidVpcID.NotFound",
        "InvalidAttachment.NotFound",
        "Gateway.NotAttached",
        "InvalidPermission.NotFound",
        "InvalidAMIID.NotFound",
        "InvalidAMIID.Unavailable",
        "InvalidSnapshot.NotFound",
        "NoSuchEntity",  # IAM
    ]
)


def profile_not_visible(error):
    """True when EC2 refused an instance profile it does not see yet (IAM is eventually consistent: a new profile
    may be refused for some seconds with ``InvalidParameterValue`` naming ``iamInstanceProfile``)."""
    message = getattr(error, "response", {}).get("Error", {}).get("Message", "")
    return error_code(error) == "InvalidParameterValue" and "iaminstanceprofile" in message.lower()


def profile_retry(method, attempts=8, delay=2.0, max_delay=20.0):
    """``method`` retried with jittered backoff while :func:`profile_not_visible` (about a minute at most); any
    other error is raised at once."""
    import random
    import time

    import botocore

    def call(**kwargs):
        for attempt in range(attempts):
            try:
                return method(**kwargs)
            except botocore.exceptions.ClientError as e:
                if attempt == attempts - 1 or not profile_not_visible(e):
                    raise
            time.sleep(random.uniform(0.5, 1.0) * min(max_delay, delay * 2**attempt))  # noqa: S311 (jitter)
        return None

    return call


def error_code(error):
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    return getattr(error, "response", {}).get("Error", {}).get("Code", "")


def is_gone(error):
    """True when a botocore ClientError says the resource no longer exists."""
    return error_code(error) in GONE_CODES


def delete_call(method, **kwargs):
    """Run a deleting call with DELETE_RETRY; False when the target was already gone."""
    import botocore

    try:
        DELETE_RETRY(method)(**kwargs)
    except botocore.exceptions.ClientError as e:
        if is_gone(e):
            return False
        raise
    return True


# Plugins (inventory) run on the controller inside ``ansible-inventory``/``ansible-playbook``: botocore's own
# standard retries and short timeouts, so an unreachable endpoint fails in seconds, not after RETRY's backoff.
PLUGIN_CLIENT_CONFIG = dict(connect_timeout=10, read_timeout=300, retries={"mode": "standard", "max_attempts": 3})

# The options every module shares, validated once in new_module(): the cluster (its tag), the run id (the
# buildfarm:run tag, or the run whose resources to find) and, for modules that create resources, the lifetime
# (minutes until the buildfarm:expires tag says they may be swept; the fleet's instances also power off then).
CLUSTER_SPEC = dict(cluster=dict(type="str", required=True), run_id=dict(type="str"))
LIFETIME_SPEC = dict(lifetime=dict(type="int", default=240, aliases=["expires", "max_lifetime"]))


def contract_errors(params, cluster_required=True):
    """Error messages for the shared options in ``params`` (validated module params; empty when fine). An
    option given by an alias is named as the user wrote it."""
    errors = []
    if params.get("cluster") is not None or cluster_required:
        error = bf_tags.validate_cluster_name(params.get("cluster"))
        if error:
            errors.append(error)
    if params.get("run_id") is not None:
        error = bf_tags.validate_run_id(params["run_id"])
        if error:
            errors.append(error)
    if "lifetime" in params:
        given = [name for name in LIFETIME_SPEC["lifetime"]["aliases"] if name in params] or ["lifetime"]
        if params["lifetime"] is None or params["lifetime"] <= 0:
            errors.append("%s must be a positive number of minutes, got %s" % (given[0], params["lifetime"]))
    return errors


def new_module(argument_spec, lifetime=False, cluster_required=True, **kwargs):
    """An ``AnsibleAWSModule`` with the shared options (cluster, run_id and, with ``lifetime``, the lifetime);
    fails on a bad value of any of them before any call."""
    spec = dict(CLUSTER_SPEC)
    spec["cluster"] = dict(spec["cluster"], required=cluster_required)
    if lifetime:
        spec.update(LIFETIME_SPEC)
    spec.update(argument_spec)
    kwargs.setdefault("supports_check_mode", True)
    module = AnsibleAWSModule(argument_spec=spec, **kwargs)
    errors = contract_errors(module.params, cluster_required)
    if errors:
        module.fail_json(msg="; ".join(errors))
    return module


def client(module, service):
    """A boto3 client for ``service`` with the shared retry decorator (call methods with ``aws_retry=True``)."""
    return module.client(service, retry_decorator=RETRY)


def plugin_client(api, service, region):
    """A boto3 client for a plugin built on amazon.aws's ``AWSInventoryBase`` (``api``) with
    :data:`PLUGIN_CLIENT_CONFIG`; call it plainly (no ``aws_retry``), list with :func:`paginate`."""
    from botocore.config import Config

    return api.client(service, region=region, aws_config=Config(**PLUGIN_CLIENT_CONFIG))


def session_client(service, region, endpoint_url=None, profile=None):
    """A boto3 client outside any module or plugin (the lease renewer, a detached process): credentials from the
    environment or ``profile`` as botocore finds them, :data:`PLUGIN_CLIENT_CONFIG` and the shared :data:`RETRY`
    (call methods with ``aws_retry=True``)."""
    import boto3
    from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper
    from botocore.config import Config

    session = boto3.session.Session(profile_name=profile or None, region_name=region)
    conn = session.client(service, endpoint_url=endpoint_url or None, config=Config(**PLUGIN_CLIENT_CONFIG))
    return RetryingBotoClientWrapper(conn, RETRY)


@RETRY
def paginate(conn, operation, result_key, **kwargs):
    """All items of a paginated ``operation`` (``result_key`` is the list in each page)."""
    paginator = conn.get_paginator(operation)
    return paginator.paginate(**kwargs).build_full_result().get(result_key, [])


def s3_client(module, max_pool_connections=10):
    """An S3 client with the shared retries whose connection pool fits ``max_pool_connections`` parallel
    transfers; its ``.client`` attribute is the raw boto3 client that s3transfer drives.

    Payload signing is off: every request body this collection sends carries a checksum S3 verifies
    (``ChecksumSHA256``, or the CRC32 of each multipart part), so hashing each body once more for the
    signature would only cost CPU (botocore already skips it on https; this also skips it on an http endpoint).
    """
    return module.client(
        "s3",
        retry_decorator=RETRY,
        config=dict(max_pool_connections=max(10, int(max_pool_connections)), s3=dict(payload_signing_enabled=False)),
    )


# The Price List API answers in a few regions only (us-east-1, eu-central-1, ap-south-1), for every region's prices.
PRICE_LIST_REGION = "us-east-1"


def pricing_client(module):
    """A Price List API client (``pricing``, in :data:`PRICE_LIST_REGION` unless an endpoint_url is given) with
    the shared retries."""
    return module.client("pricing", retry_decorator=RETRY, region=PRICE_LIST_REGION)
