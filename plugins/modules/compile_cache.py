#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: compile_cache
short_description: Restore and save a ccache directory in S3, one archive per toolchain
version_added: 1.1.0
description:
  - Keeps a build host's ccache directory across clusters - C(s3://bucket/prefix/<toolchain>/ccache.tar), where
    C(<toolchain>) is the sha256 of the compiler binaries the distcc gate computes, so a cache filled by another
    compiler is never restored.
  - O(state=restore) replaces O(path) with the archive's contents; O(state=save) uploads O(path) unless the
    object already holds the same entries (names and sizes, kept in its metadata - ccache names its entries by
    their content hash), so a save that added nothing sends nothing and reports no change; O(state=stats) only
    reads ccache's counters.
  - Never fails on the cache itself - a missing, unreadable or corrupt archive, an unsafe member (a link, an
    absolute or C(..) path) or an S3 that does not answer leaves an empty cache directory and a warning, and the
    build runs uncached. Bad options fail.
  - With O(ccache_config), O(state=save) and O(state=stats) also return ccache's counters since the last zeroing
    (C(ccache --print-stats)).
  - In check mode nothing is downloaded, written or uploaded; the result says what would be.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  cluster:
    description:
      - Not used (the cache is shared by every cluster that builds with the toolchain); accepted as every module of
        the collection accepts it.
    type: str
  run_id:
    description:
      - Not used; accepted as every module of the collection accepts it.
    type: str
  state:
    description: What to do.
    type: str
    choices: [restore, save, stats]
    default: restore
  bucket:
    description: The S3 bucket of the cache. Required unless O(state=stats).
    type: str
  prefix:
    description: Key prefix of the caches (a trailing C(/) is added); one archive per toolchain below it.
    type: str
    default: compile-cache/
  toolchain:
    description: The toolchain's sha256 (64 hex digits), part of the key. Required unless O(state=stats).
    type: str
  path:
    description: The ccache directory (ccache's C(cache_dir)).
    type: path
    required: true
  ccache_config:
    description: ccache's configuration file (C(CCACHE_CONFIGPATH)) for the counters; none - no counters.
    type: path
  ccache:
    description: The ccache program.
    type: str
    default: ccache
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Restore the compile cache of this toolchain
  buildfarm.ec2.compile_cache:
    bucket: buildfarm-artifacts
    prefix: compile-cache/
    toolchain: "{{ buildfarm_ready.toolchain_sha256 }}"
    path: /var/cache/buildfarm/ccache

- name: Save it after a successful build
  buildfarm.ec2.compile_cache:
    state: save
    bucket: buildfarm-artifacts
    toolchain: "{{ buildfarm_ready.toolchain_sha256 }}"
    path: /var/cache/buildfarm/ccache
    ccache_config: /etc/buildfarm/ccache.conf
"""

RETURN = r"""
key:
  description: The archive's key.
  returned: unless O(state=stats)
  type: str
  sample: compile-cache/3f1c0e9d5b7a4c2e8f6d1b0a9c8e7f6d5c4b3a291807f6e5d4c3b2a190817263/ccache.tar
restored:
  description: Whether the archive was restored (O(state=restore)).
  returned: when O(state=restore)
  type: bool
saved:
  description: Whether the archive was uploaded (O(state=save)).
  returned: when O(state=save)
  type: bool
unchanged:
  description: The object already held these entries; nothing was uploaded.
  returned: when O(state=save)
  type: bool
bytes:
  description: Size of the archive restored, uploaded or found.
  returned: unless O(state=stats)
  type: int
files:
  description: Cache files restored or saved.
  returned: unless O(state=stats)
  type: int
cache_warnings:
  description: What made the cache unusable (each also a warning of the task); empty when it was fine.
  returned: unless O(state=stats)
  type: list
  elements: str
reason:
  description: What happened, in words (also the warning when the cache was not usable).
  returned: always
  type: str
stats:
  description: ccache's counters since the last zeroing - hits, misses, hit_rate (null without compiles),
    size_bytes, files; null when ccache did not answer.
  returned: when O(ccache_config) and O(state) is save or stats
  type: dict
  sample: {hits: 31, misses: 2, hit_rate: 0.9394, size_bytes: 1048576, files: 66}
"""

import re

from ansible_collections.buildfarm.ec2.plugins.module_utils import aws
from ansible_collections.buildfarm.ec2.plugins.module_utils import compile_cache as bf_cache


def main():
    argument_spec = dict(
        state=dict(type="str", choices=["restore", "save", "stats"], default="restore"),
        bucket=dict(type="str"),
        prefix=dict(type="str", default="compile-cache/"),
        toolchain=dict(type="str"),
        path=dict(type="path", required=True),
        ccache_config=dict(type="path"),
        ccache=dict(type="str", default="ccache"),
    )
    module = aws.new_module(
        argument_spec,
        cluster_required=False,
        required_if=[("state", "restore", ("bucket", "toolchain")), ("state", "save", ("bucket", "toolchain"))],
    )
    params = module.params
    if params["toolchain"] is not None and not re.fullmatch(r"[0-9a-f]{64}", params["toolchain"]):
        module.fail_json(msg="toolchain must be a sha256 (64 lowercase hex digits), got %r" % params["toolchain"])
    if params["prefix"].startswith("/") or ".." in params["prefix"].split("/"):
        module.fail_json(msg="prefix must be a relative key prefix without '..', got %r" % params["prefix"])

    result = dict(changed=False, reason="")
    if params["state"] != "stats":
        key = bf_cache.object_key(params["prefix"], params["toolchain"])
        s3 = aws.s3_client(module)
        action = bf_cache.restore if params["state"] == "restore" else bf_cache.save
        result = action(s3.client, params["bucket"], key, params["path"], check_mode=module.check_mode)
        result["cache_warnings"] = result.pop("warnings")
        for warning in result["cache_warnings"]:
            module.warn(warning)
    if params["ccache_config"] and params["state"] != "restore":
        rc, out, err = module.run_command(
            [params["ccache"], "--print-stats"], environ_update={"CCACHE_CONFIGPATH": params["ccache_config"]}
        )
        result["stats"] = bf_cache.parse_stats(out) if rc == 0 else None
        if rc != 0:
            module.warn("ccache --print-stats failed (%d): %s" % (rc, err.strip()))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
