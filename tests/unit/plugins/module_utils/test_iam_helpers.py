"""The cluster's artifacts policy (module_utils/iam.py) as the local cloud's S3 check reads it
(tools/localcloud/localcloud/iam.py ``decide``): what it allows, what it does not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ansible_collections.buildfarm.ec2.plugins.module_utils import iam

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "tools" / "localcloud"))
from localcloud.iam import decide  # noqa: E402

POLICY = [iam.artifacts_policy("outputs", "demo/r1/")]


@pytest.mark.parametrize(
    "action, resource, context, verdict",
    [
        ("s3:PutObject", "arn:aws:s3:::outputs/demo/r1/bin/app", {}, "allow"),
        ("s3:GetObject", "arn:aws:s3:::outputs/demo/r1/manifest.json", {}, "allow"),
        ("s3:ListBucket", "arn:aws:s3:::outputs", {"s3:prefix": "demo/r1/"}, "allow"),
        ("s3:ListBucket", "arn:aws:s3:::outputs", {"s3:prefix": "demo/r1/bin/"}, "allow"),
        ("s3:PutObject", "arn:aws:s3:::outputs/demo/r2/bin/app", {}, "implicit"),
        ("s3:PutObject", "arn:aws:s3:::outputs/demo/r1", {}, "implicit"),
        ("s3:PutObject", "arn:aws:s3:::other/demo/r1/bin/app", {}, "implicit"),
        ("s3:DeleteObject", "arn:aws:s3:::outputs/demo/r1/bin/app", {}, "implicit"),
        ("s3:ListBucket", "arn:aws:s3:::outputs", {"s3:prefix": "demo/"}, "implicit"),
        ("s3:ListBucket", "arn:aws:s3:::outputs", {}, "implicit"),
        ("s3:ListBucket", "arn:aws:s3:::other", {"s3:prefix": "demo/r1/"}, "implicit"),
    ],
)
def test_the_artifacts_policy_allows_only_the_run_prefix(action, resource, context, verdict):
    assert decide(POLICY, action, resource, context) == verdict


def test_an_explicit_deny_wins_and_unknown_conditions_never_allow():
    deny = {"Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::outputs/demo/r1/secret*"}]}
    assert decide(POLICY + [deny], "s3:GetObject", "arn:aws:s3:::outputs/demo/r1/secret.txt", {}) == "deny"
    odd = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "*",
                "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            }
        ]
    }
    assert decide([odd], "s3:ListBucket", "arn:aws:s3:::outputs", {"s3:prefix": "x"}) == "implicit"


def test_the_profile_name_fits_iam_limits():
    assert iam.profile_name("a" * 40) == "buildfarm-" + "a" * 40 and len(iam.profile_name("a" * 40)) <= 64


READ_CACHE = [iam.artifacts_policy("outputs", "demo/r1/", cache_prefix="compile-cache/")]
WRITE_CACHE = [iam.artifacts_policy("outputs", "demo/r1/", cache_prefix="compile-cache/", cache_write=True)]
CACHE_KEY = "arn:aws:s3:::outputs/compile-cache/%s/ccache.tar" % ("ab" * 32)


@pytest.mark.parametrize(
    "policy, action, resource, verdict",
    [
        (POLICY, "s3:GetObject", CACHE_KEY, "implicit"),  # no cache_prefix: no cache
        (READ_CACHE, "s3:GetObject", CACHE_KEY, "allow"),
        (READ_CACHE, "s3:PutObject", CACHE_KEY, "implicit"),  # compile_cache: read cannot fill the cache
        (WRITE_CACHE, "s3:PutObject", CACHE_KEY, "allow"),
        (WRITE_CACHE, "s3:DeleteObject", CACHE_KEY, "implicit"),
        (WRITE_CACHE, "s3:PutObject", "arn:aws:s3:::outputs/compile-cachex/k", "implicit"),
        (WRITE_CACHE, "s3:PutObject", "arn:aws:s3:::other/compile-cache/k", "implicit"),
        (WRITE_CACHE, "s3:PutObject", "arn:aws:s3:::outputs/demo/r2/bin/app", "implicit"),
    ],
)
def test_the_compile_cache_statement_reads_or_writes_only_its_prefix(policy, action, resource, verdict):
    assert decide(policy, action, resource, {}) == verdict
