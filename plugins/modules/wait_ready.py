#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: wait_ready
short_description: Wait until every peer's status page is ready with the same toolchain
version_added: 1.0.0
description:
  - Polls the status documents of the cluster's nodes (C(http://<private-ip>/status.json), served by the
    C(buildfarm.ec2.status_page) role) until every one is in the wanted phase (C(ready)) and all report the
    same toolchain sha256 (optionally one given hash).
  - On timeout it fails with a message that lists each laggard with its last phase and error, or why it was
    unreachable or invalid.
  - A node that is already in the wanted phase with a different toolchain hash ends the wait at once; the
    message names the node and both compiler versions and hashes.
  - Runs on the build host; it only reads over HTTP and never changes anything (C(changed) is always false).
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  urls:
    description:
      - Status document URLs, one per node, for example C(http://10.0.0.11/status.json).
    type: list
    elements: str
    required: true
  phase:
    description:
      - The phase every node must reach.
    type: str
    choices: [booting, configuring, ready, building, done, failed]
    default: ready
  expected_sha256:
    description:
      - Every node must report this toolchain sha256. Without it, all nodes must agree with the first ready one.
    type: str
  expected_version:
    description:
      - Version text of the expected toolchain, used in the mismatch message.
    type: str
  expected_node:
    description:
      - Name of the node the expected toolchain comes from, used in the mismatch message.
    type: str
  timeout:
    description:
      - Seconds to wait in total. C(0) checks once.
    type: int
    default: 300
  interval:
    description:
      - Seconds between two polls.
    type: float
    default: 2.0
  request_timeout:
    description:
      - Seconds to wait for one HTTP answer.
    type: int
    default: 5
notes:
  - Check mode is supported and polls as usual (nothing is changed either way).
seealso:
  - module: buildfarm.ec2.node_status
"""

EXAMPLES = r"""
- name: Wait until every builder is ready with one toolchain
  buildfarm.ec2.wait_ready:
    urls: "{{ groups['builder'] | map('extract', hostvars, ['ansible_default_ipv4', 'address'])
              | map('regex_replace', '^(.*)$', 'http://\\1/status.json') | list }}"
    timeout: 600

- name: Refuse builders whose compiler differs from this host's
  buildfarm.ec2.wait_ready:
    urls: [http://10.0.0.11/status.json, http://10.0.0.12/status.json]
    expected_sha256: "{{ me.status.toolchain.sha256 }}"
    expected_version: "gcc {{ me.status.toolchain.version }}"
    expected_node: "{{ inventory_hostname }}"
    timeout: 120
"""

RETURN = r"""
nodes:
  description: The last status document of each URL (null when unreachable or invalid), in the order of O(urls).
  returned: always
  type: list
  elements: dict
  contains:
    url:
      description: The URL polled.
      type: str
    status:
      description: The status document, or null.
      type: dict
laggards:
  description: Nodes not in the wanted phase at the end - url, node, phase, error, reason.
  returned: always
  type: list
  elements: dict
mismatches:
  description: Nodes whose toolchain differs - url, node, version, sha256, expected_version, expected_sha256,
    reference_node.
  returned: always
  type: list
  elements: dict
toolchain_sha256:
  description: The toolchain hash all nodes agree on (the reference hash), or null.
  returned: always
  type: str
  sample: 3f1c0e9d5b7a4c2e8f6d1b0a9c8e7f6d5c4b3a291807f6e5d4c3b2a190817263
elapsed:
  description: Seconds spent waiting.
  returned: always
  type: float
  sample: 4.2
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.buildfarm.ec2.plugins.module_utils import status as bf_status


def main():
    module = AnsibleModule(
        argument_spec=dict(
            urls=dict(type="list", elements="str", required=True),
            phase=dict(type="str", choices=list(bf_status.PHASES), default="ready"),
            expected_sha256=dict(type="str", no_log=False),
            expected_version=dict(type="str"),
            expected_node=dict(type="str"),
            timeout=dict(type="int", default=300),
            interval=dict(type="float", default=2.0),
            request_timeout=dict(type="int", default=5),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not p["urls"]:
        module.fail_json(msg="urls must name at least one status document")
    if p["timeout"] < 0 or p["interval"] <= 0 or p["request_timeout"] <= 0:
        module.fail_json(msg="timeout must be >= 0, interval and request_timeout > 0")
    bad = [u for u in p["urls"] if not u.startswith(("http://", "https://"))]
    if bad:
        module.fail_json(msg="not an http(s) URL: %s" % ", ".join(bad))

    waited = bf_status.wait(
        p["urls"],
        phase=p["phase"],
        expected_sha256=p["expected_sha256"],
        expected_version=p["expected_version"],
        expected_node=p["expected_node"],
        timeout=p["timeout"],
        interval=p["interval"],
        request_timeout=p["request_timeout"],
    )
    result = dict(
        changed=False,
        nodes=[{"url": url, "status": waited.docs.get(url)} for url in p["urls"]],
        laggards=waited.laggards,
        mismatches=waited.mismatches,
        toolchain_sha256=waited.reference["sha256"] if waited.reference else None,
        elapsed=round(waited.elapsed, 1),
    )
    if not waited.ok:
        if waited.mismatches:
            head = "Toolchain differs between nodes"
        else:
            head = "Timed out after %d s waiting for %d of %d nodes to be %s" % (
                p["timeout"],
                len(waited.laggards),
                len(p["urls"]),
                p["phase"],
            )
        module.fail_json(
            msg="%s: %s" % (head, bf_status.describe(waited.laggards, waited.mismatches, p["phase"])), **result
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
