#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: build_wait
short_description: Wait for an async build job and print its progress while it runs
version_added: 1.1.0
description:
  - An action plugin (it runs on the controller and calls modules on the target). Waits for a job started with
    C(async) and C(poll=0), checking it every O(poll) seconds like C(poll) would, and every O(interval) seconds
    runs M(buildfarm.ec2.build_progress) on the same host with O(progress) and prints one line - elapsed time,
    remote compiles, local fallbacks, the log's last line - through Ansible's display, so the default callback and
    AWX's job output show it.
  - Returns the job's result (for example C(rc), C(stdout)) when it ends and removes the job's status file.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  jid:
    description: The job id (C(ansible_job_id)) of the async task.
    type: str
    required: true
  timeout:
    description: Seconds to wait before failing (the job itself is not killed; it should carry its own time-out).
    type: int
    required: true
  poll:
    description:
      - Most seconds between checks of the job, 1-60. The first checks come sooner - every second, then a second
        more for every four the job has run - so a short job is not waited on for a whole O(poll).
    type: int
    default: 5
  interval:
    description: Seconds between progress lines, 1-30.
    type: int
    default: 30
  progress:
    description:
      - Options of M(buildfarm.ec2.build_progress) (C(log), C(servers), C(stats_port), C(dest)); no progress lines
        without them. C(elapsed) and C(baseline) are set by this action (the baseline is taken when it starts).
    type: dict
    default: {}
  label:
    description: Name in the progress lines; the inventory host name by default.
    type: str
    default: ""
attributes:
  action:
    description: Runs on the controller as an action plugin.
    support: full
  async:
    description: It waits for an async job itself; it cannot be one.
    support: none
  check_mode:
    description: Can run in check mode.
    support: full
    details: In check mode nothing is waited for and the task is skipped.
notes:
  - The first progress call sets the baseline of the builders' counters, so a kept cluster's earlier builds do not
    count.
seealso:
  - module: buildfarm.ec2.build_progress
"""

EXAMPLES = r"""
- name: Start the build
  ansible.builtin.command: /usr/local/bin/build
  async: 3700
  poll: 0
  register: job

- name: Wait for it and show its progress every 30 s
  buildfarm.ec2.build_wait:
    jid: "{{ job.ansible_job_id }}"
    timeout: 3700
    progress:
      log: /srv/buildfarm/build.log
      servers: [10.0.1.11, 10.0.1.12]
      dest: /var/lib/buildfarm/status/progress.json
  register: build
"""

RETURN = r"""
rc:
  description: The job's exit status (for a command job).
  returned: when the job ran a command
  type: int
progress:
  description: The last progress document (see M(buildfarm.ec2.build_progress)); null without O(progress).
  returned: always
  type: dict
"""
