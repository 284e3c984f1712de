#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: artifacts
short_description: Push a build's outputs, log and sha256 manifest to S3
version_added: 1.0.0
description:
  - Uploads the files of a directory (selected by include and exclude globs) plus extra files such as the
    build log and report to C(s3://bucket/prefix/), then writes C(manifest.json) under the same prefix with
    every object's key, size and sha256, the run metadata and timestamps.
  - Each file is hashed (sha256) in one read and the hash is stored in the object metadata
    (C(x-amz-meta-sha256)). A file whose object already carries the same sha256 is skipped, so an unchanged
    re-push sends no bytes and reports no change. Files below O(multipart_threshold) are uploaded from the
    bytes read for hashing, in one PUT that carries the sha256 as its S3 checksum (S3 rejects a corrupted
    body); larger ones are streamed again from disk in parallel parts, each with a CRC32 S3 verifies. As every
    body carries a checksum, payloads are not signed as well (this saves a hash of every byte on http endpoints).
  - Transfers use boto3's s3transfer (C(TransferConfig)) for multipart and parallel uploads.
  - Inputs, the bucket and access to the prefix are checked before any upload. The previous manifest is
    deleted before the first upload and the new one is written only after every upload succeeded, so a
    failed push never leaves a manifest claiming success.
  - In check mode the files are hashed and compared, and the module reports what it would upload, skip and
    delete without sending anything.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  src:
    description:
      - Directory whose files are pushed. Keys are C(prefix) plus the path relative to this directory.
      - One of O(src) and O(extra_files) is required.
    type: path
  include:
    description:
      - Globs (relative to O(src)) of files to push. C(*) and C(?) do not cross C(/), C(**) does and C(**/)
        also matches no directory. A glob without C(/) matches the name at any depth.
      - Unless O(allow_empty), a glob given here that matches no file is an error.
    type: list
    elements: str
    default: ['**/*']
  exclude:
    description:
      - Globs of files (or directories, which are then not entered) to leave out, matched like O(include).
    type: list
    elements: str
    default: []
  bucket:
    description:
      - The S3 bucket. It must exist.
    type: str
    required: true
  prefix:
    description:
      - Key prefix; a trailing C(/) is added. Defaults to C(<cluster>/<run_id>/).
    type: str
  run_id:
    description:
      - The run id (C(buildfarm:run)); part of the default prefix and recorded in the manifest.
      - Required when O(prefix) is not given.
    type: str
  storage_class:
    description:
      - Storage class of the uploaded objects.
    type: str
    default: STANDARD
    choices:
      - STANDARD
      - REDUCED_REDUNDANCY
      - STANDARD_IA
      - ONEZONE_IA
      - INTELLIGENT_TIERING
      - GLACIER
      - GLACIER_IR
      - DEEP_ARCHIVE
  encryption:
    description:
      - Server-side encryption of the uploaded objects; C(none) sends no encryption header (the bucket default applies).
    type: str
    default: AES256
    choices: [AES256, 'aws:kms', none]
  kms_key_id:
    description:
      - KMS key for O(encryption=aws:kms); the account's default S3 key when not given.
    type: str
  extra_files:
    description:
      - Files outside O(src) to push as well, such as the build log and report.
    type: list
    elements: dict
    suboptions:
      src:
        description: Local path of the file.
        type: path
        required: true
      dest:
        description: Name below the prefix; the file's base name when not given.
        type: str
  delete_extra:
    description:
      - Delete objects under the prefix that are not part of this push (after every upload succeeded).
    type: bool
    default: false
  allow_empty:
    description:
      - Push even when nothing is selected (an empty manifest), and accept include globs that match nothing.
    type: bool
    default: false
  presign:
    description:
      - Return presigned GET URLs for every object and the manifest.
    type: bool
    default: false
  presign_expiry:
    description:
      - Lifetime of the presigned URLs in seconds.
    type: int
    default: 3600
  metadata:
    description:
      - Run metadata merged into the top level of the manifest (for example the build status, durations,
        toolchain). Keys used by the manifest itself are refused.
    type: dict
    default: {}
  multipart_threshold:
    description:
      - Files of at least this many bytes are uploaded in parts (minimum 5 MiB).
    type: int
    default: 8388608
  multipart_chunksize:
    description:
      - Size of each part in bytes (minimum 5 MiB).
    type: int
    default: 8388608
  max_concurrency:
    description:
      - Parallel transfers (files and parts together).
    type: int
    default: 10
  compare:
    description:
      - How a file is found unchanged. V(sha256) reads and hashes every file and compares the hash with the
        object's.
      - V(size_mtime) trusts the previous manifest for a file whose size and modification time (in
        nanoseconds) are the ones it recorded and whose object still has the ETag it recorded; such a file
        is not read at all and keeps its recorded sha256. Every other file is hashed as with V(sha256). The
        manifest then records each file's modification time. Like C(aws s3 sync), this misses a change that
        keeps both the size and the modification time (C(touch -r), C(cp -p) over an equal-sized file).
    type: str
    default: sha256
    choices: [sha256, size_mtime]
notes:
  - Whether a file is skipped depends only on its sha256; a changed O(storage_class) or O(encryption) does
    not re-upload unchanged files.
  - The previous manifest (one GET) records each object's ETag, so an unchanged re-push needs one LIST, one
    GET and no HEAD per file; objects changed behind its back are detected by their ETag and checked by HEAD.
extends_documentation_fragment:
  - buildfarm.ec2.cluster
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Push the build outputs, the log and the report
  buildfarm.ec2.artifacts:
    cluster: demo
    run_id: "20261124-1"
    bucket: demo-artifacts
    src: /srv/build/out
    exclude: ["*.o", "tmp"]
    extra_files:
      - src: /srv/build/build.log
      - src: /srv/build/report.json
        dest: report/report.json
    metadata:
      status: success
      duration: 512
  register: pushed

- name: Push only archives, KMS-encrypted, under a fixed prefix, and hand out links for a day
  buildfarm.ec2.artifacts:
    cluster: demo
    bucket: releases
    prefix: nightly/latest
    src: /srv/build/out
    include: ["**/*.tar.gz"]
    encryption: "aws:kms"
    delete_extra: true
    presign: true
    presign_expiry: 86400
"""

RETURN = r"""
changed:
  description: Whether an object was uploaded or deleted or the manifest was (or would be) rewritten.
  returned: always
  type: bool
bucket:
  description: The bucket.
  returned: always
  type: str
  sample: demo-artifacts
prefix:
  description: The key prefix used.
  returned: always
  type: str
  sample: demo/20261124-1/
uploaded:
  description: Number of files uploaded (in check mode, that would be uploaded).
  returned: always
  type: int
  sample: 12
unchanged:
  description:
    - Number of files skipped because the object already has the same sha256 (C(skipped) is reserved by Ansible).
  returned: always
  type: int
  sample: 988
deleted:
  description: Number of extra objects deleted (O(delete_extra)).
  returned: always
  type: int
  sample: 0
deleted_keys:
  description: Keys deleted (or that would be deleted).
  returned: always
  type: list
  elements: str
bytes_uploaded:
  description: Bytes of file content sent (0 in check mode and for an unchanged push).
  returned: always
  type: int
  sample: 1048576
bytes_to_upload:
  description: Size of the files uploaded (or that would be uploaded).
  returned: always
  type: int
  sample: 1048576
duration:
  description: Seconds the push took.
  returned: always
  type: float
  sample: 3.21
objects:
  description: Every pushed file.
  returned: always
  type: list
  elements: dict
  contains:
    key:
      description: Object key.
      type: str
    size:
      description: Size in bytes.
      type: int
    sha256:
      description: Hex sha256 of the content.
      type: str
    status:
      description: C(uploaded) or C(unchanged) (skipped).
      type: str
    url:
      description: HTTPS URL of the object.
      type: str
  sample:
    - key: demo/20261124-1/bin/app
      size: 1048576
      sha256: 0a5f1e0e0f9e3a8d9d4b1f1c2f3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e
      status: uploaded
      url: https://demo-artifacts.s3.eu-west-1.amazonaws.com/demo/20261124-1/bin/app
manifest_key:
  description: Key of the manifest.
  returned: always
  type: str
  sample: demo/20261124-1/manifest.json
manifest_url:
  description: HTTPS URL of the manifest.
  returned: always
  type: str
manifest_written:
  description: Whether the manifest was written by this run (false when unchanged and in check mode).
  returned: always
  type: bool
presigned_urls:
  description: Presigned GET URL per key (objects and manifest).
  returned: when O(presign) and not in check mode
  type: dict
"""


from ansible_collections.buildfarm.ec2.plugins.module_utils import artifacts as bf_artifacts
from ansible_collections.buildfarm.ec2.plugins.module_utils import aws

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule


STORAGE_CLASSES = [
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "GLACIER_IR",
    "DEEP_ARCHIVE",
]


def main():
    argument_spec = dict(
        src=dict(type="path"),
        include=dict(type="list", elements="str", default=["**/*"]),
        exclude=dict(type="list", elements="str", default=[]),
        bucket=dict(type="str", required=True),
        prefix=dict(type="str"),
        storage_class=dict(type="str", default="STANDARD", choices=STORAGE_CLASSES),
        encryption=dict(type="str", default="AES256", choices=["AES256", "aws:kms", "none"]),
        kms_key_id=dict(type="str"),
        extra_files=dict(
            type="list",
            elements="dict",
            options=dict(src=dict(type="path", required=True), dest=dict(type="str")),
        ),
        delete_extra=dict(type="bool", default=False),
        allow_empty=dict(type="bool", default=False),
        presign=dict(type="bool", default=False),
        presign_expiry=dict(type="int", default=3600),
        metadata=dict(type="dict", default={}),
        multipart_threshold=dict(type="int", default=8 * 1024 * 1024),
        multipart_chunksize=dict(type="int", default=8 * 1024 * 1024),
        max_concurrency=dict(type="int", default=10),
        compare=dict(type="str", default="sha256", choices=["sha256", "size_mtime"]),
    )
    module = aws.new_module(
        argument_spec,
        required_one_of=[("src", "extra_files")],
    )
    params = module.params
    if params["kms_key_id"] and params["encryption"] != "aws:kms":
        module.fail_json(msg="kms_key_id needs encryption: aws:kms")
    s3 = aws.s3_client(module, params["max_concurrency"] + 2)
    try:
        result = bf_artifacts.push(s3, params, check_mode=module.check_mode)
    except bf_artifacts.ArtifactError as e:
        module.fail_json(msg=str(e))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg="Failed to push artifacts to s3://%s" % params["bucket"])
    except OSError as e:
        module.fail_json(msg="Failed to read a file to push: %s" % e)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
