# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep a cluster's heartbeat lease while this ansible-playbook runs (docs: plugins/modules/lease.py).

``state=started`` renews once here (so missing credentials fail the task) and starts the detached renewer of
module_utils/lease.py, owned by the ansible-playbook process; ``state=stopped`` ends it. The logic is in
module_utils/lease.py.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.buildfarm.ec2.plugins.module_utils import aws
from ansible_collections.buildfarm.ec2.plugins.module_utils import lease as bf_lease
from ansible_collections.buildfarm.ec2.plugins.module_utils import tags as bf_tags

ARGUMENT_SPEC = {
    "cluster": {"type": "str", "required": True},
    "state": {"type": "str", "default": "started", "choices": ["started", "stopped"]},
    "heartbeat_timeout": {"type": "int", "default": 10},
    "interval": {"type": "int"},
    "state_file": {"type": "path", "required": True},
    "owner_pid": {"type": "int"},
    "region": {"type": "str"},
    "endpoint_url": {"type": "str"},
    "profile": {"type": "str"},
}


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        error = bf_tags.validate_cluster_name(args["cluster"])
        if error:
            raise AnsibleActionFail(error)
        path = args["state_file"]
        current = bf_lease.running(path)
        if args["state"] == "stopped":
            result["changed"] = current is not None
            if current is not None and not self._task.check_mode:
                bf_lease.stop(path)
            result["msg"] = "renewer %s stopped" % current["pid"] if current else "no renewer was running"
            return result
        if not 1 <= args["heartbeat_timeout"] <= 1440:
            raise AnsibleActionFail("heartbeat_timeout must be 1-1440 minutes, got %d" % args["heartbeat_timeout"])
        interval = args["interval"] or bf_lease.renew_interval(args["heartbeat_timeout"])
        if not 1 <= interval < args["heartbeat_timeout"] * 60:
            raise AnsibleActionFail("interval must be 1 s or more, shorter than heartbeat_timeout; got %d" % interval)
        region = args["region"] or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise AnsibleActionFail("region is required (or AWS_REGION)")
        if current is not None:
            result.update(changed=False, pid=current["pid"], msg="the renewer %s runs already" % current["pid"])
            return result
        if self._task.check_mode:
            result.update(changed=True, msg="check mode: the lease was not renewed, no renewer started")
            return result
        owner = args["owner_pid"] or os.getppid()  # a task runs in a worker forked by ansible-playbook
        ec2 = aws.session_client("ec2", region, args["endpoint_url"], args["profile"])
        try:
            until, ids = bf_lease.renew(ec2, args["cluster"], args["heartbeat_timeout"])
        except Exception as e:  # botocore errors, missing credentials: the task says what failed
            raise AnsibleActionFail("renewing the lease of cluster %s failed: %s" % (args["cluster"], e)) from e
        config = {
            "cluster": args["cluster"],
            "heartbeat_timeout": args["heartbeat_timeout"],
            "interval": interval,
            "owner": owner,
            "owner_start": bf_lease.process_start(owner),
            "region": region,
            "endpoint_url": args["endpoint_url"],
            "profile": args["profile"],
        }
        state = bf_lease.start(path, config, os.path.splitext(path)[0] + ".log")
        result.update(changed=True, pid=state["pid"], lease=until, instances=ids, interval=interval, owner=owner)
        return result
