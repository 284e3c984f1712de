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

# Deletes retry throttling and the dependencies AWS releases a little after an instance is gone (ENIs), but
# not NotFound: RETRY treats NotFound as eventual consistency, which would make an already-gone resource slow.
DELETE_RETRY = AWSRetry.jittered_backoff(
    retries=10, delay=2, max_delay=30, catch_extra_error_codes=["DependencyViolation", "VolumeInUse"]
)

# Plugins (inventory) run on the controller inside ``ansible-inventory``/``ansible-playbook``: botocore's own
# standard retries and short timeouts, so an unreachable endpoint fails in seconds, not after RETRY's backoff.
PLUGIN_CLIENT_CONFIG = dict(connect_timeout=10, read_timeout=300, retries={"mode": "standard", "max_attempts": 3})

CLUSTER_SPEC = dict(cluster=dict(type="str", required=True))


def new_module(argument_spec, **kwargs):
    """An ``AnsibleAWSModule`` with the common cluster option; fails on a bad cluster name before any call."""
    spec = dict(CLUSTER_SPEC)
    spec.update(argument_spec)
    kwargs.setdefault("supports_check_mode", True)
    module = AnsibleAWSModule(argument_spec=spec, **kwargs)
    error = bf_tags.validate_cluster_name(module.params["cluster"])
    if error:
        module.fail_json(msg=error)
    return module


def client(module, service):
    """A boto3 client for ``service`` with the shared retry decorator (call methods with ``aws_retry=True``)."""
    return module.client(service, retry_decorator=RETRY)


def plugin_client(api, service, region):
    """A boto3 client for a plugin built on amazon.aws's ``AWSInventoryBase`` (``api``) with
    :data:`PLUGIN_CLIENT_CONFIG`; call it plainly (no ``aws_retry``), list with :func:`paginate`."""
    from botocore.config import Config

    return api.client(service, region=region, aws_config=Config(**PLUGIN_CLIENT_CONFIG))


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
