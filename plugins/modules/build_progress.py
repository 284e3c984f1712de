#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: build_progress
short_description: Read a running build's progress on the build host and publish it for the dashboard
version_added: 1.1.0
description:
  - Runs on the build host. Counts the compiles the builders ran (their distccd stats port, C(dcc_compile_ok) plus
    C(dcc_compile_error), minus O(baseline)), the local fallbacks distcc reported in the build log (its warning
    C(running locally instead)), and reads the log's last line.
  - With O(dest), writes the same document atomically (the dashboard reads it as C(progress.json)).
  - Used by the M(buildfarm.ec2.build_wait) action every few seconds while the build runs; no AWS API is called.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  log:
    description: The build log.
    type: path
    required: true
  servers:
    description: Addresses of the builders whose distccd stats port is read.
    type: list
    elements: str
    default: []
  stats_port:
    description: distccd's stats port (C(--stats-port)).
    type: int
    default: 3633
  baseline:
    description:
      - Compiles per server address when the build started (the RV(baseline) of an earlier call); counted from zero
        without it.
    type: dict
    default: {}
  elapsed:
    description: Seconds the build has run, recorded in the document as given.
    type: int
  dest:
    description: Where to write the document (JSON); nothing is written without it.
    type: path
  mode:
    description: File mode of O(dest).
    type: str
    default: "0644"
  ccache_config:
    description:
      - ccache's configuration file of the build (C(CCACHE_CONFIGPATH)); the document then has C(cache) - ccache's
        hits and misses since the runner zeroed them (C(ccache --print-stats)). None - no C(cache).
    type: path
notes:
  - Check mode is supported; nothing is written, the document is returned.
seealso:
  - module: buildfarm.ec2.build_wait
"""

EXAMPLES = r"""
- name: Read the progress of the running build
  buildfarm.ec2.build_progress:
    log: /srv/buildfarm/build.log
    servers: [10.0.1.11, 10.0.1.12]
    dest: /var/lib/buildfarm/status/progress.json
  register: progress

- name: Show it
  ansible.builtin.debug:
    msg: "{{ progress.line }}"
"""

RETURN = r"""
progress:
  description: The progress document.
  returned: always
  type: dict
  contains:
    elapsed:
      description: O(elapsed) as given (null without it).
      type: int
    remote:
      description: Compiles the builders ran since the baseline.
      type: int
    local:
      description: distcc's local fallbacks in the build log.
      type: int
    unreachable:
      description: Server addresses whose stats port did not answer.
      type: list
      elements: str
    builders:
      description: Per server - address, reachable, total (the daemon's counter), compiles (since the baseline).
      type: list
      elements: dict
    last_line:
      description: The log's last non-empty line (at most 200 characters).
      type: str
    cache:
      description: With O(ccache_config) - hits and misses of ccache in this build; null when ccache did not answer.
      type: dict
line:
  description: The one-line summary the controller prints.
  returned: always
  type: str
  sample: "2m30s elapsed, compiles 412 remote / 3 local fallback | log: CC lvm.o"
baseline:
  description: Per server address its compile counter now; pass it as O(baseline) to count from here.
  returned: always
  type: dict
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.buildfarm.ec2.plugins.module_utils import compile_cache, progress


def write(path, doc, mode):
    """Atomically replace path with doc; True when its content changed."""
    text = json.dumps(doc, sort_keys=True) + "\n"
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return False
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".progress.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, int(mode, 8))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            log=dict(type="path", required=True),
            servers=dict(type="list", elements="str", default=[]),
            stats_port=dict(type="int", default=3633),
            baseline=dict(type="dict", default={}),
            elapsed=dict(type="int"),
            dest=dict(type="path"),
            mode=dict(type="str", default="0644"),
            ccache_config=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not 1 <= params["stats_port"] <= 65535:
        module.fail_json(msg="stats_port must be 1-65535, got %d" % params["stats_port"])
    try:
        int(params["mode"], 8)
    except ValueError:
        module.fail_json(msg="mode must be an octal file mode such as 0644, got %r" % params["mode"])
    bad = {k: v for k, v in params["baseline"].items() if not str(v).isdigit()}
    if bad:
        module.fail_json(msg="baseline values must be compile counts, got %s" % bad)
    doc = progress.collect(
        params["log"], params["servers"], params["stats_port"], params["baseline"], params["elapsed"]
    )
    if params["ccache_config"]:
        rc, out, err = module.run_command(
            ["ccache", "--print-stats"], environ_update={"CCACHE_CONFIGPATH": params["ccache_config"]}
        )
        counters = compile_cache.parse_stats(out) if rc == 0 else None
        doc["cache"] = {"hits": counters["hits"], "misses": counters["misses"]} if counters else None
    changed = False
    if params["dest"] and not module.check_mode:
        try:
            changed = write(params["dest"], doc, params["mode"])
        except OSError as exc:
            module.fail_json(msg="cannot write %s: %s" % (params["dest"], exc), progress=doc)
    module.exit_json(changed=changed, progress=doc, line=progress.line(doc), baseline=progress.baseline_of(doc))


if __name__ == "__main__":
    main()
