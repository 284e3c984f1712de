# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for an async build job and print its progress while it runs (docs: plugins/modules/build_wait.py).

Ansible's own ``async``/``poll`` prints nothing a user can read while it waits. This action polls the job as
``poll`` would (ansible.builtin.async_status, every ``poll`` seconds) and, every ``interval`` seconds, runs
buildfarm.ec2.build_progress on the same host and prints its line through Ansible's display: the default callback
shows it, and so does AWX's job output (its callback turns displayed lines into events).
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

ARGUMENT_SPEC = {
    "jid": {"type": "str", "required": True},
    "timeout": {"type": "int", "required": True},
    "poll": {"type": "int", "default": 5},
    "interval": {"type": "int", "default": 30},
    "progress": {"type": "dict", "default": {}},
    "label": {"type": "str", "default": ""},
}


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def _job(self, jid, mode, task_vars):
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        return self._execute_module(
            module_name="ansible.legacy.async_status",
            module_args={"jid": jid, "mode": mode, "_async_dir": async_dir},
            task_vars=task_vars,
        )

    def _progress(self, args, elapsed, baseline, task_vars):
        module_args = dict(args, elapsed=int(elapsed), baseline=baseline)
        result = self._execute_module(
            module_name="buildfarm.ec2.build_progress", module_args=module_args, task_vars=task_vars
        )
        if result.get("failed"):
            display.warning("build progress unavailable: %s" % result.get("msg", result))
            return None
        return result

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        for name, low, high in (("poll", 1, 60), ("interval", 1, 30), ("timeout", 1, 7 * 86400)):
            if not low <= args[name] <= high:
                raise AnsibleActionFail("%s must be %d-%d seconds, got %d" % (name, low, high, args[name]))
        if self._task.check_mode:
            result.update(skipped=True, msg="check mode: the job was not started, nothing to wait for")
            return result
        label = args["label"] or task_vars.get("inventory_hostname", "")
        started = time.monotonic()
        baseline, last, doc = {}, None, None
        if args["progress"]:
            first = self._progress(args["progress"], 0, {}, task_vars)
            baseline = first["baseline"] if first else {}
            last = started
        while True:
            status = self._job(args["jid"], "status", task_vars)
            if status.get("failed") or status.get("finished"):
                break
            now = time.monotonic()
            if now - started > args["timeout"]:
                self._job(args["jid"], "cleanup", task_vars)
                raise AnsibleActionFail(
                    "the job %s did not end within %d s (it may still run on %s)"
                    % (args["jid"], args["timeout"], label)
                )
            if args["progress"] and now - last >= args["interval"]:
                last = now
                current = self._progress(args["progress"], now - started, baseline, task_vars)
                if current:
                    doc = current["progress"]
                    display.display("build progress [%s]: %s" % (label, current["line"]))
            # A short job (an empty script, a warm cache) is not waited on for a whole poll: every second at
            # first, a second more for every four the job has run, up to poll.
            time.sleep(min(args["poll"], 1 + int(now - started) // 4))
        if args["progress"]:
            current = self._progress(args["progress"], time.monotonic() - started, baseline, task_vars)
            if current:
                doc = current["progress"]
                display.display("build progress [%s]: finished, %s" % (label, current["line"]))
        self._job(args["jid"], "cleanup", task_vars)
        for key in ("ansible_job_id", "started", "finished", "results_file", "_ansible_suppress_tmpdir_delete"):
            status.pop(key, None)
        result.update(status)
        result["progress"] = doc
        result["changed"] = True
        return result
