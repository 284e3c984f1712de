# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filter ``buildfarm.ec2.environment_file``: the variables of an /etc/environment (pam_env) text as a dict."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# KEY=VALUE, optionally after "export " (as systemd's EnvironmentFile and a shell also read the file)
LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def _unquote(value):
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def environment_file(text):
    """Every ``KEY=VALUE`` line of ``text`` (comments, blank and other lines skipped, one pair of surrounding
    quotes stripped); a later line wins, as when the file is sourced."""
    if text is None:
        return {}
    if not isinstance(text, str):
        raise AnsibleFilterError("environment_file expects the file's text, got %s" % type(text).__name__)
    variables = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        found = LINE.match(line)
        if found:
            variables[found.group(1)] = _unquote(found.group(2))
    return variables


class FilterModule:
    def filters(self):
        return {"environment_file": environment_file}
