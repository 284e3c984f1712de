#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: node_status
short_description: Write this node's status document (status.json)
version_added: 1.0.0
description:
  - Writes the node status document that the C(buildfarm.ec2.status_page) role serves at
    C(http://<private-ip>/status.json), on the node itself (no AWS API is called).
  - Fields that are not given keep their current value, so several roles can each report their part
    (for example C(status_page) sets node and role, C(distcc) sets phase, toolchain and distcc).
  - The file is written atomically (temporary file in the same directory, then rename), so a reader never
    sees a half-written document.
  - Idempotent - C(changed) is true only when a field other than C(updated) changes; C(updated) is set to
    the current UTC time whenever the document is written.
  - The document format is described in the README of the C(buildfarm.ec2.status_page) role.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  path:
    description:
      - The status document. Its directory must exist.
    type: path
    default: /var/lib/buildfarm/status/status.json
  state:
    description:
      - C(present) writes the document, C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  node:
    description:
      - Node name. When the document does not exist yet and this is not given, the host name is used.
    type: str
  role:
    description:
      - Cluster role of the node (for example C(host) or C(builder)).
    type: str
  phase:
    description:
      - Life cycle phase. A new document starts as C(booting).
    type: str
    choices: [booting, configuring, ready, building, done, failed]
  error:
    description:
      - Error text to publish (typically with O(phase=failed)).
    type: str
  clear_error:
    description:
      - Set the error to null. Ignored when O(error) is given.
    type: bool
    default: false
  toolchain:
    description:
      - The compiler toolchain, as given. Mutually exclusive with O(compiler).
    type: dict
    suboptions:
      cc:
        description: Compiler name.
        type: str
        required: true
      version:
        description: Compiler version.
        type: str
        required: true
      sha256:
        description: Hash that identifies the compiler binaries.
        type: str
        required: true
  compiler:
    description:
      - Detect the toolchain from this gcc-style compiler (name on the PATH or absolute path) - its version
        (C(-dumpfullversion)) and one sha256 over the sha256 of the driver, C(cc1) and C(cc1plus) binaries.
      - Mutually exclusive with O(toolchain).
    type: str
  distcc:
    description:
      - The distcc server of this node.
    type: dict
    suboptions:
      port:
        description: TCP port of distccd.
        type: int
        required: true
      jobs:
        description: Number of parallel jobs distccd accepts.
        type: int
        required: true
  mode:
    description:
      - File mode of the document.
    type: str
    default: "0644"
notes:
  - Check mode is supported; the document that would be written is returned.
seealso:
  - module: buildfarm.ec2.wait_ready
"""

EXAMPLES = r"""
- name: Report that this node is being configured
  buildfarm.ec2.node_status:
    role: builder
    phase: configuring

- name: Report ready with the detected gcc toolchain and distccd
  buildfarm.ec2.node_status:
    phase: ready
    compiler: gcc
    distcc:
      port: 3632
      jobs: "{{ ansible_facts['processor_vcpus'] }}"
    clear_error: true
  register: node

- name: Show the toolchain hash
  ansible.builtin.debug:
    msg: "{{ node.status.toolchain.sha256 }}"

- name: Report a failure
  buildfarm.ec2.node_status:
    phase: failed
    error: distccd did not start
"""

RETURN = r"""
status:
  description: The status document as written (or as it would be written in check mode); null when absent.
  returned: always
  type: dict
  sample:
    schema: 1
    node: builder-1
    role: builder
    phase: ready
    updated: "2026-11-24T20:00:00Z"
    toolchain: {cc: gcc, version: 12.2.0, sha256: 3f1c0e9d5b7a4c2e8f6d1b0a9c8e7f6d5c4b3a291807f6e5d4c3b2a190817263}
    distcc: {port: 3632, jobs: 8}
    error: null
previous:
  description: The document before the change; null when there was none.
  returned: always
  type: dict
binaries:
  description: With O(compiler), each hashed compiler binary (real path) and its own sha256.
  returned: when compiler is given
  type: dict
  sample: {"/usr/lib/gcc/x86_64-linux-gnu/12/cc1": "0c2b..."}
path:
  description: Path of the document.
  returned: always
  type: str
  sample: /var/lib/buildfarm/status/status.json
"""

import os
import socket

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.buildfarm.ec2.plugins.module_utils import status as bf_status


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/var/lib/buildfarm/status/status.json"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            node=dict(type="str"),
            role=dict(type="str"),
            phase=dict(type="str", choices=list(bf_status.PHASES)),
            error=dict(type="str"),
            clear_error=dict(type="bool", default=False),
            toolchain=dict(
                type="dict",
                options=dict(
                    cc=dict(type="str", required=True),
                    version=dict(type="str", required=True),
                    sha256=dict(type="str", required=True, no_log=False),
                ),
            ),
            compiler=dict(type="str"),
            distcc=dict(
                type="dict",
                options=dict(port=dict(type="int", required=True), jobs=dict(type="int", required=True)),
            ),
            mode=dict(type="str", default="0644"),
        ),
        mutually_exclusive=[["toolchain", "compiler"]],
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    current = bf_status.read_file(path)
    result = dict(changed=False, path=path, previous=current, status=None)

    if params["state"] == "absent":
        result["changed"] = os.path.lexists(path)
        if result["changed"] and not module.check_mode:
            try:
                os.unlink(path)
            except OSError as e:
                module.fail_json(msg="Cannot remove %s: %s" % (path, to_native(e)), **result)
        module.exit_json(**result)

    try:
        mode = int(params["mode"], 8)
    except ValueError:
        module.fail_json(msg="mode %r is not an octal file mode" % params["mode"], **result)

    toolchain = params["toolchain"]
    if params["compiler"]:
        try:
            toolchain, binaries = bf_status.detect_toolchain(
                params["compiler"], lambda name: module.get_bin_path(name, required=False), module.run_command
            )
        except (OSError, RuntimeError) as e:
            module.fail_json(msg="Cannot identify compiler %s: %s" % (params["compiler"], to_native(e)), **result)
        result["binaries"] = binaries

    node = params["node"]
    if node is None and not (isinstance(current, dict) and current.get("node")):
        node = socket.gethostname()
    desired = bf_status.build(
        current,
        node=node,
        role=params["role"],
        phase=params["phase"],
        toolchain=toolchain,
        distcc=params["distcc"],
        error=params["error"],
        clear_error=params["clear_error"] and params["error"] is None,
    )
    content_changed = not bf_status.same_content(current, dict(desired, updated=None))
    try:
        mode_changed = os.path.exists(path) and (os.stat(path).st_mode & 0o7777) != mode
    except OSError:
        mode_changed = False

    if content_changed:
        desired["updated"] = bf_status.now_iso()
    else:
        desired["updated"] = current["updated"]
    result["changed"] = content_changed or mode_changed
    result["status"] = desired

    if result["changed"] and not module.check_mode:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            module.fail_json(msg="Directory %s does not exist" % directory, **result)
        try:
            bf_status.write_atomic(path, desired, mode=mode)
        except OSError as e:
            module.fail_json(msg="Cannot write %s: %s" % (path, to_native(e)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
