"""Bytes of the controller's SSH connections to the nodes of one subnet, counted by the host's packet filter.

The controller reaches a node by its public address; the local cloud translates that to the node's private address
(nat OUTPUT) and the packets leave by the subnet's bridge, where they meet the node's own traffic to the endpoint
(the build host's S3 uploads). Interface counters cannot tell the two apart; conntrack can: a connection the
controller opened to port 22 whose reply comes from the subnet. The chain only counts (no verdict) and is jumped to
first from INPUT and OUTPUT; ``with SshTraffic(cidr) as traffic: ... traffic.read()`` gives
``{"to_nodes": bytes, "from_nodes": bytes}`` (IP packets, headers included). Needs root.
"""

from __future__ import annotations

import os
import re
import subprocess


class SshTraffic:
    def __init__(self, cidr):
        self.cidr = cidr
        self.chain = "BFSSH-%d-%s" % (os.getpid(), re.sub(r"[^0-9]", "", cidr)[-8:])

    def _iptables(self, *args, check=True):
        return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True, check=check)

    def _remove(self, chain):
        for parent in ("INPUT", "OUTPUT"):
            self._iptables("-D", parent, "-j", chain, check=False)
        self._iptables("-F", chain, check=False)
        self._iptables("-X", chain, check=False)

    def _remove_orphans(self):
        """The chains of processes that died before their ``__exit__`` (a crash, a SIGKILL): rules added to the
        host are removed also after a crash."""
        listed = self._iptables("-S", check=False).stdout
        for chain, pid in re.findall(r"^-N (BFSSH-(\d+)-\S*)$", listed, re.M):
            if not os.path.exists("/proc/%s" % pid):
                self._remove(chain)

    def __enter__(self):
        self._remove_orphans()
        self._iptables("-N", self.chain)
        for direction, name in (("ORIGINAL", "to_nodes"), ("REPLY", "from_nodes")):
            self._iptables(
                "-A",
                self.chain,
                "-m",
                "conntrack",
                "--ctproto",
                "tcp",
                "--ctorigdstport",
                "22",
                "--ctreplsrc",
                self.cidr,
                "--ctdir",
                direction,
                "-m",
                "comment",
                "--comment",
                name,
            )
        for parent in ("INPUT", "OUTPUT"):
            self._iptables("-I", parent, "1", "-j", self.chain)
        return self

    def read(self):
        listed = self._iptables("-n", "-v", "-x", "-L", self.chain).stdout
        counted = {}
        for line in listed.splitlines()[2:]:
            found = re.search(r"/\* (\w+) \*/", line)
            if found:
                counted[found.group(1)] = int(line.split()[1])
        return counted

    def __exit__(self, *exc_info):
        self._remove(self.chain)
