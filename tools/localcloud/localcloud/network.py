"""EC2's network on this host: public IPv4 on a local "internet" network, egress by route table, security groups.

Host rules live in chains of this local cloud only (``BFLC-<hash>-*``, hash of the state dir) and the jump rules
into them (comment ``buildfarm.localcloud.dir=<dir>``); security groups are rules inside each instance container's
network namespace (chains ``BFLC-SG-IN`` / ``BFLC-SG-OUT``), set from the host with ``nsenter``. The desired state is
computed from moto's model and only what changed is applied (see docs/localcloud.md, "Network").
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import threading

from localcloud import host
from localcloud.host import HostError

log = logging.getLogger("localcloud")

CHAIN_PREFIX = "BFLC-"
COMMENT_PREFIX = "buildfarm.localcloud.dir="
SG_IN = "BFLC-SG-IN"
SG_OUT = "BFLC-SG-OUT"
# (table, parent chain, our chain's suffix)
JUMPS = (
    ("filter", "DOCKER-USER", "FWD"),
    ("filter", "INPUT", "IN"),
    ("nat", "PREROUTING", "PRE"),
    ("nat", "OUTPUT", "OUT"),
    ("nat", "POSTROUTING", "POST"),
)
IMDS_ADDRESS = "169.254.169.254"  # the instance metadata service (imds.py), not filtered by security groups
INTERNET_RANGE = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544 benchmarking range: never routed on the internet
ALL_TCP_UDP = (0, 65535)


def cloud_hash(state_dir):
    return hashlib.sha1(os.path.realpath(state_dir).encode()).hexdigest()[:8]


def chain(h, suffix):
    return "%s%s-%s" % (CHAIN_PREFIX, h, suffix)


def iptables(*args, table="filter", check=True, timeout=30):
    return host.run(["iptables", "-w", "5", "-t", table, *args], timeout=timeout, check=check)


def restore(text, pid=None, timeout=30):
    """iptables-restore --noflush (declared user chains are flushed and refilled atomically per table)."""
    argv = ["iptables-restore", "-w", "5", "--noflush"]
    if pid:
        argv = ["nsenter", "-t", str(pid), "-n", *argv]
    host.run(argv, input_bytes=text.encode(), timeout=timeout)


def nameservers():
    """The upstream resolvers docker's embedded DNS (127.0.0.11) forwards to from inside each container's namespace:
    the host's non-loopback IPv4 nameservers, else docker's fallback (Google's)."""
    found = []
    try:
        with open("/etc/resolv.conf") as src:
            for line in src:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    try:
                        addr = ipaddress.ip_address(words[1])
                    except ValueError:
                        continue
                    if addr.version == 4 and not addr.is_loopback:
                        found.append(str(addr))
    except OSError:
        pass
    return found or ["8.8.8.8", "8.8.4.4"]


# --------------------------------------------------------------------------------------------- the internet network
def internet_network_name(state_dir):
    return "bf-lc-internet-" + cloud_hash(state_dir)


def internet_bridge_name(state_dir):
    return "bflc" + cloud_hash(state_dir)  # 12 characters: Linux allows 15


def internet_layout(cidr):
    """(gateway, probe range, public address pool) of an internet /24: .1 is the host (the controller's public
    address), .2-.127 are for containers docker places there (probes), .128-.254 are public IPv4 addresses."""
    net = ipaddress.ip_network(cidr)
    low, high = net.subnets(new_prefix=net.prefixlen + 1)
    return str(net.network_address + 1), str(low), str(high)


def create_internet_network(state_dir, labels):
    """Create this local cloud's internet network on a free /24 of 198.18.0.0/15; returns (name, cidr)."""
    name = internet_network_name(state_dir)
    existing = host.network_cidrs(name)
    if existing:
        return name, existing[0]
    taken = []
    for other in host.docker("network", "ls", "--format", "{{.Name}}", timeout=30).split():
        for cidr in host.network_cidrs(other):
            try:
                taken.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                pass
    last = None
    for candidate in INTERNET_RANGE.subnets(new_prefix=24):
        if any(candidate.overlaps(t) for t in taken if t.version == 4):
            continue
        gateway, probes, _pool = internet_layout(candidate)
        try:
            host.docker(
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                str(candidate),
                "--gateway",
                gateway,
                "--ip-range",
                probes,
                "-o",
                "com.docker.network.bridge.name=" + internet_bridge_name(state_dir),
                "-o",
                "com.docker.network.bridge.enable_ip_masquerade=false",
                *[arg for label in labels for arg in ("--label", label)],
                name,
                timeout=60,
            )
            return name, str(candidate)
        except HostError as exc:  # taken meanwhile by another engine user: try the next one
            last = exc
            continue
    raise HostError("no free /24 for the internet network in %s: %s" % (INTERNET_RANGE, last))


def bridge_of(network_name):
    """The Linux bridge of a docker bridge network."""
    out = host.docker(
        "network",
        "inspect",
        network_name,
        "--format",
        '{{.Id}} {{index .Options "com.docker.network.bridge.name"}}',
        timeout=30,
    ).split()
    if len(out) > 1 and out[1] != "<no":
        return out[1]
    return "br-" + out[0][:12]


def bridge_addresses(bridge):
    """IPv4 /32 addresses on ``bridge`` (the public addresses the host answers ARP for)."""
    out = host.run(["ip", "-4", "-o", "addr", "show", "dev", bridge], timeout=10, check=False)
    return {m.group(1) for m in re.finditer(r"inet (\S+)/32 ", out)}


# --------------------------------------------------------------------------------------------- host rules
def host_rule_owners():
    """{hash: state dir or None} of every local cloud's host chains and jump rules on this host."""
    owners = {}
    for table in ("filter", "nat"):
        try:
            out = host.run(["iptables-save", "-t", table], timeout=30)
        except HostError:
            continue
        for line in out.splitlines():
            m = re.match(r"^:%s([0-9a-f]{8})-" % CHAIN_PREFIX, line)
            if m:
                owners.setdefault(m.group(1), None)
            m = re.search(r"-j %s([0-9a-f]{8})-" % CHAIN_PREFIX, line)
            if m:
                c = re.search(r'--comment "?%s([^" ]+)' % re.escape(COMMENT_PREFIX), line)
                owners[m.group(1)] = c.group(1) if c else owners.get(m.group(1))
    return owners


def host_rules(h):
    """What exists of the host rules of the local cloud ``h``: ["table chain (N rules)", "table parent -> chain"]."""
    found = []
    for table in ("filter", "nat"):
        try:
            out = host.run(["iptables-save", "-t", table], timeout=30)
        except HostError:
            continue
        counts = {}
        for line in out.splitlines():
            m = re.match(r"^-A (%s%s-\S+) " % (CHAIN_PREFIX, h), line)
            if m:
                counts[m.group(1)] = counts.get(m.group(1), 0) + 1
        for line in out.splitlines():
            m = re.match(r"^:(%s%s-\S+) " % (CHAIN_PREFIX, h), line)
            if m:
                found.append("%s %s (%d rules)" % (table, m.group(1), counts.get(m.group(1), 0)))
            m = re.match(r"^-A (\S+) .*-j (%s%s-\S+)" % (CHAIN_PREFIX, h), line)
            if m and not m.group(1).startswith(CHAIN_PREFIX):
                found.append("%s %s -> %s" % (table, m.group(1), m.group(2)))
    return found


def remove_host_rules(h):
    """Delete the jump rules into the chains of local cloud ``h``, then the chains. Returns what was removed."""
    removed = []
    for table in ("filter", "nat"):
        try:
            out = host.run(["iptables-save", "-t", table], timeout=30)
        except HostError:
            continue
        ours = []
        for line in out.splitlines():
            m = re.match(r"^-A (\S+) (.*-j (%s%s-\S+).*)$" % (CHAIN_PREFIX, h), line)
            if m and not m.group(1).startswith(CHAIN_PREFIX):
                # iptables-save quotes comments; the argv form must not carry the quotes
                args = [a.strip('"') for a in re.findall(r'"[^"]*"|\S+', m.group(2))]
                iptables("-D", m.group(1), *args, table=table, check=False)
                removed.append("%s %s -> %s" % (table, m.group(1), m.group(3)))
            m = re.match(r"^:(%s%s-\S+) " % (CHAIN_PREFIX, h), line)
            if m:
                ours.append(m.group(1))
        for name in ours:
            iptables("-F", name, table=table, check=False)
        for name in ours:
            iptables("-X", name, table=table, check=False)
            removed.append("%s %s" % (table, name))
    return removed


def ensure_jumps(h, state_dir):
    comment = COMMENT_PREFIX + os.path.realpath(state_dir)
    for table, parent, suffix in JUMPS:
        name = chain(h, suffix)
        iptables("-N", name, table=table, check=False)
        rule = ["-m", "comment", "--comment", comment, "-j", name]
        try:
            iptables("-C", parent, *rule, table=table)
        except HostError:  # not there (or the parent chain is missing: then -I says so)
            iptables("-I", parent, "1", *rule, table=table)


# --------------------------------------------------------------------------------------------- security groups
def _ports(rule):
    lo, hi = rule.from_port, rule.to_port
    if lo is None or hi is None or int(lo) < 0 or (int(lo), int(hi)) == ALL_TCP_UDP:
        return ""
    lo, hi = int(lo), int(hi)
    if hi < lo:
        return None
    return " --dport %d" % lo if lo == hi else " --dport %d:%d" % (lo, hi)


def rule_match(rule):
    """The protocol/port part of an iptables rule for a moto SecurityGroupRule; None when it cannot apply (IPv6)."""
    proto = (rule.ip_protocol or "-1").lower()
    if proto in ("-1", "all"):
        return ""
    if proto in ("tcp", "udp"):
        ports = _ports(rule)
        if ports is None:
            return None
        return "-p %s -m %s%s" % (proto, proto, ports)
    if proto == "icmp":
        kind, code = rule.from_port, rule.to_port
        if kind is None or int(kind) < 0:
            return "-p icmp"
        if code is None or int(code) < 0:
            return "-p icmp -m icmp --icmp-type %d" % int(kind)
        return "-p icmp -m icmp --icmp-type %d/%d" % (int(kind), int(code))
    if proto in ("icmpv6", "58"):
        return None
    if proto.isdigit() and 0 <= int(proto) <= 255:
        return "-p %s" % proto
    return None


def rule_peers(rule, members):
    """The IPv4 networks a rule names: its CIDR, or the private IPs of the referenced group's members."""
    peers = []
    cidr = (rule.ip_range or {}).get("CidrIp")
    if cidr:
        try:
            peers.append(str(ipaddress.ip_network(cidr, strict=False)))
        except ValueError:
            pass
    group = (rule.source_group or {}).get("GroupId")
    if group:
        peers += ["%s/32" % ip for ip in sorted(members.get(group, ()))]
    return peers


def render_instance(groups, members, dns):
    """iptables-restore input for one instance's namespace: stateful, loopback and the VPC resolver first."""
    lines = ["*filter", ":%s - [0:0]" % SG_IN, ":%s - [0:0]" % SG_OUT]
    lines.append("-A %s -i lo -j ACCEPT" % SG_IN)
    lines.append("-A %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" % SG_IN)
    lines.append("-A %s -o lo -j ACCEPT" % SG_OUT)
    lines.append("-A %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" % SG_OUT)
    for server in dns:  # the Amazon DNS server is not filtered by security groups
        for proto in ("udp", "tcp"):
            lines.append("-A %s -d %s/32 -p %s -m %s --dport 53 -j ACCEPT" % (SG_OUT, server, proto, proto))
    lines.append("-A %s -d %s/32 -p tcp -m tcp --dport 80 -j ACCEPT" % (SG_OUT, IMDS_ADDRESS))  # nor is IMDS
    seen = set()
    for group in groups:
        for chain_name, rules, flag in ((SG_IN, group.ingress_rules, "-s"), (SG_OUT, group.egress_rules, "-d")):
            for rule in list(rules):
                match = rule_match(rule)
                if match is None:
                    continue
                for peer in rule_peers(rule, members):
                    line = "-A %s %s %s%s -j ACCEPT" % (chain_name, flag, peer, (" " + match) if match else "")
                    if line not in seen:
                        seen.add(line)
                        lines.append(line)
    lines.append("-A %s -j DROP" % SG_IN)
    lines.append("-A %s -j DROP" % SG_OUT)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- the public address pool
class AddressPool:
    """Public IPv4 addresses of the internet network, handed out round robin (a restarted instance gets a new one)."""

    def __init__(self, pool_cidr):
        net = ipaddress.ip_network(pool_cidr)
        self.network = net
        self.addresses = [str(a) for a in net if not str(a).endswith(".255")]  # .255: the /24's broadcast
        self.used = set()
        self.cursor = 0
        self.lock = threading.Lock()

    def allocate(self):
        with self.lock:
            for step in range(len(self.addresses)):
                addr = self.addresses[(self.cursor + step) % len(self.addresses)]
                if addr not in self.used:
                    self.used.add(addr)
                    self.cursor = (self.cursor + step + 1) % len(self.addresses)
                    return addr
        from moto.ec2.exceptions import EC2ClientError

        raise EC2ClientError(
            "AddressLimitExceeded", "localcloud: all %d public addresses are in use" % len(self.addresses)
        )

    def release(self, addr):
        with self.lock:
            self.used.discard(addr)

    def __contains__(self, addr):
        try:
            return ipaddress.ip_address(addr) in self.network
        except ValueError:
            return False


# --------------------------------------------------------------------------------------------- the model
def route_table_of(backend, subnet):
    """The subnet's route table: its explicit association, else the VPC's main table."""
    tables = list(backend.route_tables.values())
    for table in tables:
        if subnet.id in list(table._associations.values()):
            return table
    for table in tables:
        if table.vpc_id == subnet.vpc_id and table.main_association_id is not None:
            return table
    return None


def default_route(table):
    if table is None:
        return None
    for route in table.routes:
        if route.destination_cidr_block == "0.0.0.0/0":
            return route
    return None


def igw_route(backend, subnet):
    """True when the subnet's 0.0.0.0/0 route goes to an internet gateway attached to its VPC."""
    route = default_route(route_table_of(backend, subnet))
    gateway = getattr(route, "gateway", None) if route is not None else None
    if gateway is None or not str(getattr(gateway, "id", "")).startswith("igw-"):
        return False
    vpc = getattr(gateway, "vpc", None)
    return vpc is not None and vpc.id == subnet.vpc_id


def nat_route(backend, subnet):
    """True when the subnet's 0.0.0.0/0 route goes to an available NAT gateway in a public subnet."""
    route = default_route(route_table_of(backend, subnet))
    nat = getattr(route, "nat_gateway", None) if route is not None else None
    if nat is None or nat.state != "available" or (getattr(nat, "connectivity_type", None) or "public") != "public":
        return False
    try:
        nat_subnet = backend.get_subnet(nat.subnet_id)
    except Exception:  # the subnet is gone
        return False
    return igw_route(backend, nat_subnet)


def s3_endpoint(backend, subnet, region):
    table = route_table_of(backend, subnet)
    if table is None:
        return False
    service = "com.amazonaws.%s.s3" % region
    for endpoint in list(backend.vpc_end_points.values()):
        if (
            endpoint.service_name == service
            and str(endpoint.vpc_endpoint_type or "").lower() == "gateway"
            and endpoint.state == "available"
            and endpoint.vpc_id == subnet.vpc_id
            and table.id in (endpoint.route_table_ids or [])
        ):
            return True
    return False


def instance_groups(inst):
    groups = list(inst.security_groups or [])
    if not groups and inst.nics:
        groups = list(inst.nics[0].group_set or [])
    return groups


class Network:
    """Computes the desired rules from moto's model and applies what changed."""

    def __init__(self, cloud, internet_network, instance_endpoint_ip, ec2_port, s3_port):
        self.cloud = cloud
        self.hash = cloud_hash(cloud.dir)
        self.internet_network = internet_network
        self.internet_cidr = host.network_cidrs(internet_network)[0]
        self.gateway, self.probe_range, pool = internet_layout(self.internet_cidr)
        self.internet_bridge = bridge_of(internet_network)
        self.pool = AddressPool(pool)
        self.pool_cidr = pool
        self.endpoint_ip = instance_endpoint_ip
        self.ec2_port = ec2_port
        self.s3_port = s3_port
        self.imds_port = cloud.imds.port if getattr(cloud, "imds", None) is not None else None
        self.dns = nameservers()
        self.lock = threading.Lock()  # one apply at a time
        self.applied_host = None
        self.applied_addrs = None
        self.applied = {}  # instance id -> (pid, rules text)
        self.imds = []

    # ------------------------------------------------------------------ desired state
    def _plan(self):
        cloud = self.cloud
        with cloud.lock:
            records = [r for r in cloud.records.values() if r.instance.state != "terminated"]
            bridges = dict(cloud.bridges)
        members = {}
        for r in records:
            for group in instance_groups(r.instance):
                members.setdefault(group.id, set()).add(r.instance.private_ip)
        subnets = {}  # bridge -> {"egress": set, "s3": set}
        dnat = {}
        addrs = set()
        rules = {}
        imds = []  # (bridge, private ip, subnet gateway) of the instances whose metadata endpoint is enabled
        for r in records:
            inst = r.instance
            backend = inst.ec2_backend
            try:
                subnet = backend.get_subnet(inst.subnet_id)
            except Exception:
                continue
            bridge = bridges.get(subnet.id)
            plan = subnets.setdefault(bridge, {"egress": set(), "s3": set()}) if bridge else None
            public = inst.nics[0].public_ip if inst.nics else None
            igw = igw_route(backend, subnet)
            if public and public in self.pool:
                addrs.add(public)
                if igw:
                    dnat[public] = inst.private_ip
            egress = bool(public and public in self.pool and igw) or nat_route(backend, subnet)
            if plan is not None:
                if egress:
                    plan["egress"].add(inst.private_ip)
                if egress or s3_endpoint(backend, subnet, inst.region_name):
                    plan["s3"].add(inst.private_ip)
            rules[inst.id] = render_instance(instance_groups(inst), members, self.dns)
            if bridge and inst.metadata_options.http_endpoint == "enabled":
                imds.append((bridge, inst.private_ip, str(subnet.cidr.network_address + 1)))
        self.imds = sorted(imds)
        return subnets, dnat, addrs, rules

    def render_host(self, subnets, dnat):
        h = self.hash
        fwd, inp, pre, out, post = (chain(h, s) for s in ("FWD", "IN", "PRE", "OUT", "POST"))
        inet = self.internet_bridge
        f = ["*filter", ":%s - [0:0]" % fwd, ":%s - [0:0]" % inp]
        f.append("-A %s -d %s/32 -j DROP" % (fwd, IMDS_ADDRESS))  # link-local: never routed anywhere
        # public traffic translated by an internet gateway (both directions) passes docker's bridge isolation
        f.append("-A %s -m conntrack --ctstate DNAT --ctorigdst %s -j ACCEPT" % (fwd, self.internet_cidr))
        f.append("-A %s -i %s -o %s -j RETURN" % (fwd, inet, inet))
        f.append("-A %s -i %s -j DROP" % (fwd, inet))  # the internet network leads nowhere else
        f.append("-A %s -o %s -j DROP" % (fwd, inet))
        f.append("-A %s -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN" % inp)
        if self.imds_port:  # an instance's metadata requests, translated below, reach the IMDS server
            f.append(
                "-A %s -p tcp -m conntrack --ctstate DNAT --ctorigdst %s/32 --ctorigdstport 80 -j RETURN"
                % (inp, IMDS_ADDRESS)
            )
        f.append("-A %s -d %s -j DROP" % (inp, self.pool_cidr))  # a public address without a path: nothing answers
        f.append("-A %s -i %s -j DROP" % (inp, inet))
        for bridge in sorted(subnets):
            plan = subnets[bridge]
            f.append("-A %s -i %s -o %s -j RETURN" % (fwd, bridge, bridge))
            f.append("-A %s -i %s -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN" % (fwd, bridge))
            for server in self.dns:  # docker's embedded DNS forwards from the container's namespace
                for proto in ("udp", "tcp"):
                    f.append(
                        "-A %s -i %s -d %s/32 -p %s -m %s --dport 53 -j RETURN" % (fwd, bridge, server, proto, proto)
                    )
            for ip in sorted(plan["egress"]):
                f.append("-A %s -i %s -s %s/32 -j RETURN" % (fwd, bridge, ip))
            f.append("-A %s -i %s -j DROP" % (fwd, bridge))
            for ip in sorted(plan["egress"]):
                f.append(
                    "-A %s -i %s -s %s/32 -d %s/32 -p tcp -m tcp --dport %d -j RETURN"
                    % (inp, bridge, ip, self.endpoint_ip, self.ec2_port)
                )
            for ip in sorted(plan["s3"]):
                f.append(
                    "-A %s -i %s -s %s/32 -d %s/32 -p tcp -m tcp --dport %d -j RETURN"
                    % (inp, bridge, ip, self.endpoint_ip, self.s3_port)
                )
            f.append("-A %s -i %s -j DROP" % (inp, bridge))  # the VPC router is not a way to the host
        f.append("COMMIT")
        n = ["*nat", ":%s - [0:0]" % pre, ":%s - [0:0]" % out, ":%s - [0:0]" % post]
        for bridge, ip, gateway in self.imds if self.imds_port else ():
            n.append(
                "-A %s -i %s -s %s/32 -d %s/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination %s:%d"
                % (pre, bridge, ip, IMDS_ADDRESS, gateway, self.imds_port)
            )
        for public in sorted(dnat):  # from the internet network and from the controller (no hairpin for instances)
            n.append("-A %s -i %s -d %s/32 -j DNAT --to-destination %s" % (pre, inet, public, dnat[public]))
            n.append("-A %s -d %s/32 -j DNAT --to-destination %s" % (out, public, dnat[public]))
        # the controller reaching a public address comes from its own public address (the internet gateway, .1)
        n.append(
            "-A %s -m conntrack --ctstate DNAT --ctorigdst %s -m addrtype --src-type LOCAL -j SNAT --to-source %s"
            % (post, self.internet_cidr, self.gateway)
        )
        n.append("COMMIT")
        return "\n".join(f + n) + "\n"

    # ------------------------------------------------------------------ apply
    def apply(self, only=None):
        """Bring the host and the instances' namespaces in line with the model; ``only``: instance ids to do now."""
        with self.lock:
            try:
                subnets, dnat, addrs, rules = self._plan()
            except RuntimeError:  # moto's dicts changed while we read them: next round
                return False
            text = self.render_host(subnets, dnat)
            if text != self.applied_host:
                ensure_jumps(self.hash, self.cloud.dir)
                restore(text)
                self.applied_host = text
            if addrs != self.applied_addrs:
                present = bridge_addresses(self.internet_bridge)
                for addr in sorted(addrs - present):
                    host.run(["ip", "addr", "add", addr + "/32", "dev", self.internet_bridge], timeout=10, check=False)
                for addr in sorted(present - addrs):
                    if addr in self.pool:
                        host.run(
                            ["ip", "addr", "del", addr + "/32", "dev", self.internet_bridge], timeout=10, check=False
                        )
                self.applied_addrs = addrs
            with self.cloud.lock:
                pids = {iid: r.pid for iid, r in self.cloud.records.items() if r.pid and r.created}
            for iid in list(self.applied):
                if iid not in pids:
                    del self.applied[iid]
            for iid, pid in pids.items():
                if only is not None and iid not in only:
                    continue
                want = rules.get(iid)
                if want is None or self.applied.get(iid) == (pid, want):
                    continue
                try:
                    self._apply_instance(pid, want, fresh=self.applied.get(iid, (None,))[0] != pid)
                    self.applied[iid] = (pid, want)
                except HostError as exc:  # the container may just have stopped
                    log.warning("security groups of %s: %s", iid, exc)
            return True

    @staticmethod
    def _apply_instance(pid, text, fresh):
        if fresh:
            current = host.run(["nsenter", "-t", str(pid), "-n", "iptables-save", "-t", "filter"], timeout=30)
            jumps = []
            if "-A INPUT -j %s" % SG_IN not in current:
                jumps.append("-I INPUT 1 -j %s" % SG_IN)
            if "-A OUTPUT -j %s" % SG_OUT not in current:
                jumps.append("-I OUTPUT 1 -j %s" % SG_OUT)
            if jumps:
                text = text.replace("COMMIT\n", "\n".join(jumps) + "\nCOMMIT\n")
        restore(text, pid=pid)
