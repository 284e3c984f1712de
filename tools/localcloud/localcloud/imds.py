"""The instance metadata service (IMDS) of the local cloud, as EC2's at http://169.254.169.254 (docs/localcloud.md).

One HTTP server in the endpoint process answers every instance: the host DNATs each instance's packets to
169.254.169.254:80 to this server (network.py), and the server knows the caller by its source address (private IPs
are unique: the local cloud's subnets never overlap). IMDSv2 as on EC2: ``PUT /latest/api/token`` with
``X-aws-ec2-metadata-token-ttl-seconds`` (1-21600) gives a token bound to the instance; with ``HttpTokens:
required`` a request without a valid token gets 401; ``HttpEndpoint: disabled`` removes the DNAT (nothing
answers). Instance-profile credentials come from STS AssumeRole of the profile's role in this moto, rotated before
they expire. Spot interruption notices come from the spot control (control.py).
"""

from __future__ import annotations

import datetime
import json
import logging
import secrets
import threading
import time

log = logging.getLogger("localcloud")

IMDS_ADDRESS = "169.254.169.254"
TOKEN_HEADER = "HTTP_X_AWS_EC2_METADATA_TOKEN"
TTL_HEADER = "HTTP_X_AWS_EC2_METADATA_TOKEN_TTL_SECONDS"
MAX_TTL = 21600
CREDENTIAL_SECONDS = 3600  # lifetime of instance-profile credentials (EC2: hours; tests set it shorter)
NOT_FOUND = (
    b'<?xml version="1.0" encoding="iso-8859-1"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
    b'\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n<html xmlns="http://www.w3.org/1999/xhtml" '
    b'xml:lang="en" lang="en">\n <head>\n  <title>%s</title>\n </head>\n <body>\n  <h1>%s</h1>\n </body>\n</html>\n'
)
STATUS = {
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
}


def iso(when):
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


class Imds:
    """Tokens, credentials and the metadata tree of every instance of ``cloud``."""

    def __init__(self, cloud, credential_seconds=CREDENTIAL_SECONDS):
        self.cloud = cloud
        self.credential_seconds = int(credential_seconds)
        self.lock = threading.Lock()
        self.tokens = {}  # token -> (instance id, monotonic expiry)
        self.credentials = {}  # instance id -> {"role_arn", "profile_arn", "issued", "expires", "data"}
        self.port = None

    # ------------------------------------------------------------------ who is asking
    def instance_at(self, address):
        with self.cloud.lock:
            for record in self.cloud.records.values():
                inst = record.instance
                if inst.private_ip == address and inst.state not in ("terminated", "shutting-down"):
                    return record
        return None

    # ------------------------------------------------------------------ tokens
    def new_token(self, instance_id, ttl):
        token = secrets.token_urlsafe(42)
        now = time.monotonic()
        with self.lock:
            self.tokens = {t: v for t, v in self.tokens.items() if v[1] > now}
            self.tokens[token] = (instance_id, now + ttl)
        return token

    def token_valid(self, token, instance_id):
        with self.lock:
            found = self.tokens.get(token)
        return found is not None and found[0] == instance_id and found[1] > time.monotonic()

    # ------------------------------------------------------------------ instance profile
    def profile_of(self, inst):
        assoc = inst.ec2_backend.iam_instance_profile_associations.get(inst.id)
        if assoc is None or assoc.state != "associated":
            return None
        return assoc.iam_instance_profile

    def role_credentials(self, inst, profile):
        """The instance's current credentials for the profile's role; new ones when a fifth of the lifetime is
        left (EC2 makes new credentials available well before the old ones expire)."""
        from moto.sts.models import sts_backends
        from moto.utilities.utils import get_partition

        role = profile.roles[0]
        now = utcnow()
        with self.lock:
            held = self.credentials.get(inst.id)
            lifetime = datetime.timedelta(seconds=self.credential_seconds)
            if held and held["role_arn"] == role.arn and held["expires"] - now > lifetime / 5:
                return held
            backend = sts_backends[inst.ec2_backend.account_id][get_partition(inst.region_name)]
            assumed = backend.assume_role(
                region_name=inst.region_name,
                role_session_name=inst.id,
                role_arn=role.arn,
                policy=None,
                duration=self.credential_seconds,
                external_id=None,
            )
            held = {
                "role_arn": role.arn,
                "issued": now,
                "expires": assumed.expiration.replace(tzinfo=datetime.timezone.utc),
                "data": {
                    "Code": "Success",
                    "LastUpdated": iso(now),
                    "Type": "AWS-HMAC",
                    "AccessKeyId": assumed.access_key_id,
                    "SecretAccessKey": assumed.secret_access_key,
                    "Token": assumed.session_token,
                    "Expiration": iso(assumed.expiration.replace(tzinfo=datetime.timezone.utc)),
                },
            }
            self.credentials[inst.id] = held
            log.info("imds: new credentials for %s (%s) until %s", inst.id, role.arn, held["data"]["Expiration"])
            return held

    # ------------------------------------------------------------------ the tree
    def tree(self, record):
        """{"meta-data": {...}, "dynamic": {...}, "user-data": bytes} of one instance (dicts are directories)."""
        inst = record.instance
        backend = inst.ec2_backend
        nic = inst.nics[0] if inst.nics else None
        subnet = backend.get_subnet(inst.subnet_id)
        vpc = backend.get_vpc(subnet.vpc_id)
        public = nic.public_ip if nic is not None else None
        groups = list(inst.security_groups or [])
        mac = nic.mac_address if nic is not None else "02:00:00:00:00:00"
        hostname = inst.private_dns_name
        interface = {
            "device-number": "0",
            "interface-id": nic.id if nic is not None else "",
            "local-hostname": hostname,
            "local-ipv4s": inst.private_ip,
            "mac": mac,
            "owner-id": backend.account_id,
            "security-group-ids": "\n".join(g.id for g in groups),
            "security-groups": "\n".join(g.name for g in groups),
            "subnet-id": subnet.id,
            "subnet-ipv4-cidr-block": str(subnet.cidr_block),
            "vpc-id": subnet.vpc_id,
            "vpc-ipv4-cidr-block": str(vpc.cidr_block),
            "vpc-ipv4-cidr-blocks": str(vpc.cidr_block),
        }
        if public:
            interface["public-ipv4s"] = public
        meta = {
            "ami-id": inst.image_id,
            "ami-launch-index": str(inst.ami_launch_index),
            "block-device-mapping": {"ami": inst.root_device_name, "root": inst.root_device_name},
            "hostname": hostname,
            "instance-id": inst.id,
            "instance-life-cycle": "spot" if inst.lifecycle == "spot" else "on-demand",
            "instance-type": inst.instance_type,
            "local-hostname": hostname,
            "local-ipv4": inst.private_ip,
            "mac": mac,
            "network": {"interfaces": {"macs": {mac: interface}}},
            "placement": {
                "availability-zone": inst.availability_zone,
                "region": inst.region_name,
            },
            "reservation-id": next((r.id for r in list(backend.reservations.values()) if inst in r.instances), ""),
            "security-groups": "\n".join(g.name for g in groups),
            "events": {"maintenance": {"history": "[]", "scheduled": "[]"}},
        }
        if public:
            meta["public-ipv4"] = public
        profile = self.profile_of(inst)
        if profile is not None and profile.roles:
            creds = self.role_credentials(inst, profile)
            meta["iam"] = {
                "info": json.dumps(
                    {
                        "Code": "Success",
                        "LastUpdated": creds["data"]["LastUpdated"],
                        "InstanceProfileArn": profile.arn,
                        "InstanceProfileId": profile.id,
                    },
                    indent=2,
                ),
                "security-credentials": {profile.roles[0].name: json.dumps(creds["data"], indent=2)},
            }
        spot = getattr(record, "spot", None)
        if spot is not None:
            meta["spot"] = {"instance-action": json.dumps({"action": spot["action"], "time": spot["time"]})}
            meta["events"]["recommendations"] = {"rebalance": json.dumps({"noticeTime": spot["notice"]})}
        if inst.metadata_options.instance_metadata_tags == "enabled":
            meta["tags"] = {"instance": {t["key"]: t["value"] for t in inst.get_tags()}}
        document = {
            "accountId": backend.account_id,
            "architecture": inst.architecture or "x86_64",
            "availabilityZone": inst.availability_zone,
            "billingProducts": None,
            "devpayProductCodes": None,
            "marketplaceProductCodes": None,
            "imageId": inst.image_id,
            "instanceId": inst.id,
            "instanceType": inst.instance_type,
            "kernelId": None,
            "pendingTime": iso(_launch_time(inst)),
            "privateIp": inst.private_ip,
            "ramdiskId": None,
            "region": inst.region_name,
            "version": "2017-09-30",
        }
        tree = {
            "meta-data": meta,
            "dynamic": {"instance-identity": {"document": json.dumps(document, indent=2)}},
        }
        data = self.cloud._user_data(inst)
        if data is not None:
            tree["user-data"] = data
        return tree

    # ------------------------------------------------------------------ HTTP
    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        record = self.instance_at(environ.get("REMOTE_ADDR"))
        if record is None or record.instance.metadata_options.http_endpoint != "enabled":
            return _answer(start_response, 403)
        inst = record.instance
        if path.rstrip("/") == "/latest/api/token":
            if method != "PUT":
                return _answer(start_response, 405)
            if environ.get("HTTP_X_FORWARDED_FOR"):  # EC2 refuses token requests that went through a proxy
                return _answer(start_response, 403)
            raw = environ.get(TTL_HEADER, "")
            if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_TTL:
                return _answer(start_response, 400)
            token = self.new_token(inst.id, int(raw))
            return _answer(start_response, 200, token.encode(), [("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", raw.strip())])
        if method not in ("GET", "HEAD"):
            return _answer(start_response, 405)
        token = environ.get(TOKEN_HEADER)
        if token is not None and not self.token_valid(token, inst.id):
            return _answer(start_response, 401)
        if token is None and inst.metadata_options.http_tokens == "required":
            return _answer(start_response, 401)
        parts = [p for p in path.split("/") if p]
        if not parts:
            return _answer(start_response, 200, b"latest")
        if parts[0] != "latest":
            return _answer(start_response, 404)
        try:
            node = self.tree(record)
        except Exception:  # a half-made instance (no subnet yet): as EC2 before boot, nothing to say
            log.exception("imds %s %s", inst.id, path)
            return _answer(start_response, 404)
        for part in parts[1:]:
            if not isinstance(node, dict) or part not in node:
                return _answer(start_response, 404)
            node = node[part]
        if isinstance(node, dict):
            body = "\n".join(k + "/" if isinstance(v, dict) else k for k, v in node.items()).encode()
        elif isinstance(node, bytes):
            body = node
        else:
            body = str(node).encode()
        return _answer(start_response, 200, body, head=method == "HEAD")


def _launch_time(inst):
    raw = inst.launch_time
    if isinstance(raw, str):
        return datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return raw if raw.tzinfo else raw.replace(tzinfo=datetime.timezone.utc)


def _answer(start_response, status, body=None, headers=(), head=False):
    if status != 200:
        title = STATUS[status].split(" ", 1)[0] + " - " + STATUS[status].split(" ", 1)[1]
        body = NOT_FOUND % (title.encode(), title.encode())
        start_response(STATUS[status], [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), *headers])
    return [] if head else [body]


def serve(imds, bind, port):
    """Start the IMDS HTTP server in a thread; returns the server (its port in ``imds.port``)."""
    from werkzeug.serving import make_server

    server = make_server(bind, port, imds, threaded=True)
    imds.port = server.server_port
    threading.Thread(target=server.serve_forever, name="imds", daemon=True).start()
    return server
