#!/usr/bin/python
# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: lease
short_description: Renew a cluster's heartbeat lease while this ansible-playbook runs
version_added: 1.1.0
description:
  - An action plugin (it runs on the controller). The dead man's switch of a run - the C(buildfarm:lease) tag of the
    cluster's instances is the UTC time until which the controller vouches; the nodes launched by
    M(buildfarm.ec2.fleet) with O(buildfarm.ec2.fleet#module:heartbeat_timeout) read it from their instance
    metadata and power themselves off (shutdown behaviour terminate) once it is past.
  - O(state=started) sets the lease of the cluster's pending and running instances to now + O(heartbeat_timeout)
    once (a failure, for example missing credentials, fails the task) and starts a detached renewer process that
    does the same every O(interval) seconds while its owner, the C(ansible-playbook) process, lives. When the
    owner is gone (SIGKILL, a lost laptop) it stops without renewing again, so the lease lapses and the nodes
    power off within O(heartbeat_timeout). Its pid is recorded in O(state_file), its log next to it (C(.log)).
  - O(state=stopped) ends the renewer recorded in O(state_file) (SIGTERM). The lease is left as it is.
  - Credentials come from the environment (or O(profile)) as botocore finds them, as the renewer runs outside
    any module.
author:
  - buildfarm.ec2 developers (@buildfarm-ec2)
options:
  cluster:
    description: The cluster (its C(buildfarm:cluster) tag).
    type: str
    required: true
  state:
    description: V(started) renews now and starts the renewer (unless one runs), V(stopped) ends it.
    type: str
    choices: [started, stopped]
    default: started
  heartbeat_timeout:
    description: Minutes each renewal vouches for, 1-1440; the nodes' O(buildfarm.ec2.fleet#module:heartbeat_timeout).
    type: int
    default: 10
  interval:
    description: Seconds between renewals; a quarter of O(heartbeat_timeout) when omitted.
    type: int
  state_file:
    description: Where the renewer's pid is recorded (a file on the controller, in a directory that exists).
    type: path
    required: true
  owner_pid:
    description: The process whose end stops the renewals; the C(ansible-playbook) process when omitted.
    type: int
  region:
    description: AWS region; C(AWS_REGION) when omitted.
    type: str
  endpoint_url:
    description: EC2 endpoint; AWS itself when omitted.
    type: str
  profile:
    description: A named AWS profile for the credentials.
    type: str
attributes:
  action:
    description: Runs on the controller as an action plugin.
    support: full
  async:
    description: It starts a background process itself; it cannot be async.
    support: none
  check_mode:
    description: Can run in check mode.
    support: full
    details: In check mode nothing is renewed, started or stopped.
notes:
  - The renewer notices its owner's end within a second (on Linux by its start time in /proc, so a reused pid does
    not count). Node and controller clocks must agree within a small part of O(heartbeat_timeout) (NTP).
seealso:
  - module: buildfarm.ec2.fleet
  - module: buildfarm.ec2.sweep
"""

EXAMPLES = r"""
- name: Keep the cluster's lease while this playbook runs
  buildfarm.ec2.lease:
    cluster: demo
    heartbeat_timeout: 10
    region: eu-west-1
    state_file: /home/me/.buildfarm/demo/lease.json

- name: Stop renewing (the teardown follows)
  buildfarm.ec2.lease:
    cluster: demo
    state: stopped
    state_file: /home/me/.buildfarm/demo/lease.json
"""

RETURN = r"""
pid:
  description: The renewer's process id.
  returned: when a renewer runs
  type: int
lease:
  description: The lease set by the first renewal (UTC, C(%Y-%m-%dT%H:%M:%SZ)).
  returned: when started
  type: str
instances:
  description: The instance ids whose lease was renewed first.
  returned: when started
  type: list
  elements: str
interval:
  description: Seconds between renewals.
  returned: when started
  type: int
owner:
  description: The pid whose end stops the renewals.
  returned: when started
  type: int
"""
