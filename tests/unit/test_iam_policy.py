"""docs/iam-policy.json is exactly the set of IAM actions the collection's code calls.

The code under plugins/module_utils, plugins/modules and plugins/inventory is scanned (at test time, so
modules added later are covered) for the boto3 calls it makes on EC2, S3, Price List API (pricing), IAM and
CloudWatch clients: ``.describe_instances(``, ``get_paginator("describe_instances")`` /
``paginate(conn, "describe_instances", ...)``,
``get_waiter("instance_running")``, plus the s3transfer methods and amazon.aws helpers in EXTRA_ACTIONS.
Operation names come from botocore's service models, so a name is only counted when it is an EC2, S3 or
pricing operation. The test fails on an action the code needs that the policy lacks, and on an action in the
policy that no code needs (the policy stays minimal).

After adding AWS calls, ``python tests/unit/test_iam_policy.py --write`` rewrites the policy from the code.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import botocore.session
from botocore import xform_name
from botocore.exceptions import DataNotFoundError

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "docs" / "iam-policy.json"
SCANNED = ("plugins/module_utils/*.py", "plugins/modules/*.py", "plugins/inventory/*.py")
# boto3 service name -> IAM prefix
SERVICES = {"ec2": "ec2", "s3": "s3", "pricing": "pricing", "iam": "iam", "cloudwatch": "cloudwatch"}

# Calls that are not API operations of their own, and what they need.
EXTRA_ACTIONS = {
    # s3transfer (multipart above the threshold)
    "upload_file": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
    "upload_fileobj": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
    "download_file": ["s3:GetObject"],
    "download_fileobj": ["s3:GetObject"],
    # amazon.aws module_utils helpers
    "ensure_ec2_tags": ["ec2:DescribeTags", "ec2:CreateTags", "ec2:DeleteTags"],
    "add_ec2_tags": ["ec2:CreateTags"],
    "remove_ec2_tags": ["ec2:DeleteTags"],
    "describe_ec2_tags": ["ec2:DescribeTags"],
}
# amazon.aws modules used directly in playbooks/ and roles/, and the actions they need. A module not listed
# here fails the test: add it with its actions (see the module's documentation / source).
AMAZON_AWS_MODULES = {
    "ec2_metadata_facts": [],
    "ec2_instance_info": ["ec2:DescribeInstances"],
    "ec2_key": [
        "ec2:DescribeKeyPairs",
        "ec2:CreateKeyPair",
        "ec2:ImportKeyPair",
        "ec2:DeleteKeyPair",
        "ec2:CreateTags",
    ],
}
YAML_SCANNED = ("playbooks/**/*.yml", "roles/**/*.yml", "roles/**/*.yaml")
AMAZON_AWS_USE = re.compile(r"^\s*-?\s*amazon\.aws\.([a-z0-9_]+)\s*:", re.M)
# Request parameters that need an action of their own, beyond the operation's.
PARAMETER_ACTIONS = {
    '"IamInstanceProfile"': ["iam:PassRole"],
    "create_role(": ["iam:TagRole"],
    "create_instance_profile(": ["iam:TagInstanceProfile"],
}
# IAM actions that differ from the operation's name.
ACTION_OF_OPERATION = {
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:ListObjectVersions": "s3:ListBucketVersions",
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
    "s3:ListParts": "s3:ListMultipartUploadParts",
    "s3:DeleteObjects": "s3:DeleteObject",
    "s3:GetObjectTagging": "s3:GetObjectTagging",
}

CALL = re.compile(r"\.([a-z][a-z0-9_]*)\s*[(,)]")  # calls, and methods passed as arguments (retry helpers)
NAMED = re.compile(r"""(?:get_paginator|paginate|get_waiter)\(\s*(?:[A-Za-z_][\w.]*\s*,\s*)?["']([a-z0-9_]+)["']""")
HELPER = re.compile(r"\b(%s)\(" % "|".join(EXTRA_ACTIONS))


def _models():
    session = botocore.session.get_session()
    operations, waiters = {}, {}
    for service, prefix in SERVICES.items():
        model = session.get_service_model(service)
        for op in model.operation_names:
            operations.setdefault(xform_name(op), set()).add("%s:%s" % (prefix, op))
        try:
            waiter_model = session.get_waiter_model(service)
        except DataNotFoundError:  # a service without waiters
            continue
        for name in waiter_model.waiter_names:
            op = waiter_model.get_waiter(name).operation
            waiters.setdefault(xform_name(name), set()).add("%s:%s" % (prefix, op))
    return operations, waiters


def _code(path):
    """The file's text with comments blanked (line numbers kept)."""
    return "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())


def scan():
    """{IAM action: list of 'file:line' that need it}"""
    operations, waiters = _models()
    found = {}
    tag_on_create = []

    def add(actions, path, text, pos):
        where = "%s:%d" % (path.relative_to(ROOT), text.count("\n", 0, pos) + 1)
        for action in actions:
            found.setdefault(ACTION_OF_OPERATION.get(action, action), []).append(where)

    for pattern in SCANNED:
        for path in sorted(ROOT.glob(pattern)):
            text = _code(path)
            for match in CALL.finditer(text):
                name = match.group(1)
                add(operations.get(name, set()) | set(EXTRA_ACTIONS.get(name, ())), path, text, match.start())
            for match in NAMED.finditer(text):
                name = match.group(1)
                add(operations.get(name, set()) | waiters.get(name, set()), path, text, match.start())
            for match in HELPER.finditer(text):
                add(EXTRA_ACTIONS[match.group(1)], path, text, match.start())
            if "TagSpecifications" in text:
                tag_on_create.append(str(path.relative_to(ROOT)))
            # Launching with an instance profile passes its role to EC2; IAM resources created with Tags need the
            # tagging action of their kind.
            for needle, actions in PARAMETER_ACTIONS.items():
                for match in re.finditer(re.escape(needle), text):
                    add(actions, path, text, match.start())
    for pattern in YAML_SCANNED:
        for path in sorted(ROOT.glob(pattern)):
            text = _code(path)
            for match in AMAZON_AWS_USE.finditer(text):
                module = match.group(1)
                assert module in AMAZON_AWS_MODULES, "%s uses amazon.aws.%s: add it to AMAZON_AWS_MODULES" % (
                    path.relative_to(ROOT),
                    module,
                )
                add(AMAZON_AWS_MODULES[module], path, text, match.start())
    # Tags given at creation (TagSpecifications) need ec2:CreateTags on top of the create action.
    creates = [a for a in found if a.startswith("ec2:Create") or a == "ec2:RunInstances"]
    if creates and tag_on_create:
        found.setdefault("ec2:CreateTags", []).extend(sorted(set(tag_on_create)))
    return found


def policy_actions():
    policy = json.loads(POLICY.read_text())
    actions = []
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions.extend([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    return actions


def test_policy_is_valid_iam_json():
    policy = json.loads(POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    for statement in policy["Statement"]:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert statement["Resource"] == "*"
    actions = policy_actions()
    assert len(actions) == len(set(actions)), "duplicate actions"
    assert not [a for a in actions if "*" in a], "no wildcards: the policy lists what the code calls"


def test_scanner_finds_the_calls_it_should(tmp_path):
    """The scan sees direct calls, paginators, the shared paginate helper, waiters and s3transfer."""
    operations, waiters = _models()
    assert operations["describe_instances"] == {"ec2:DescribeInstances"}
    assert operations["list_objects_v2"] == {"s3:ListObjectsV2"}
    assert operations["get_products"] == {"pricing:GetProducts"}
    assert operations["describe_spot_price_history"] == {"ec2:DescribeSpotPriceHistory"}
    assert NAMED.findall('paginate(self.pricing, "get_products", "PriceList")') == ["get_products"]
    assert CALL.findall("RETRY(self.ec2.describe_spot_price_history)(") == ["describe_spot_price_history"]
    assert waiters["instance_running"] == {"ec2:DescribeInstances"}
    assert NAMED.findall('paginate(ec2, "describe_volumes", "Volumes")') == ["describe_volumes"]
    assert NAMED.findall("conn.get_paginator('describe_vpcs')") == ["describe_vpcs"]
    assert CALL.findall("x = s3.upload_file(src, bucket, key)") == ["upload_file"]
    assert AMAZON_AWS_USE.findall("- name: Key\n  amazon.aws.ec2_key:\n    name: x\n") == ["ec2_key"]


def test_every_call_is_allowed_and_nothing_else():
    needed = scan()
    allowed = set(policy_actions())
    missing = {action: where for action, where in needed.items() if action not in allowed}
    assert not missing, "docs/iam-policy.json lacks (action: where it is called): %s" % json.dumps(missing, indent=1)
    unused = sorted(allowed - set(needed))
    assert not unused, "docs/iam-policy.json allows actions no code calls: %s" % unused


def render(needed):
    by_service = {}
    for action in sorted(needed):
        by_service.setdefault(action.split(":")[0], []).append(action)
    sids = {"ec2": "BuildfarmEc2", "s3": "BuildfarmS3", "pricing": "BuildfarmPricing", "iam": "BuildfarmIam"}
    statements = [
        {"Sid": sids.get(service, service), "Effect": "Allow", "Action": actions, "Resource": "*"}
        for service, actions in sorted(by_service.items())
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, indent=2) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        POLICY.write_text(render(scan()))
        print("wrote %s" % POLICY)
    else:
        print(render(scan()), end="")
