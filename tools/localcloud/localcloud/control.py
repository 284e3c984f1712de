"""The local cloud's fault control: spot capacity and spot interruptions (docs/localcloud.md, "Spot control").

HTTP on the endpoint's own port, from the host only (127.0.0.1), under ``/localcloud/``:

- ``GET  /localcloud/spot``: ``{"refused_types": [...], "interruptions": {instance id: {...}}}``
- ``POST /localcloud/spot/capacity`` ``{"instance_types": [...], "available": false}``: spot RunInstances of those
  types fail with ``InsufficientInstanceCapacity`` as on EC2 (``"available": true`` gives the capacity back;
  ``"instance_types": ["*"]`` means every type).
- ``POST /localcloud/spot/interrupt`` ``{"instance_id": "i-...", "delay": 120}``: the spot instance gets EC2's
  interruption notice in IMDS (``spot/instance-action``, ``events/recommendations/rebalance``) and is stopped or
  terminated (its ``InstanceInterruptionBehavior``) ``delay`` seconds later, with EC2's state reason.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import uuid

log = logging.getLogger("localcloud")

DEFAULT_DELAY = 120  # EC2's two-minute warning
CAPACITY_MESSAGE = "There is no Spot capacity available that matches your request."
REASONS = {
    "terminate": (
        "Server.SpotInstanceTermination",
        "Server.SpotInstanceTermination: The instance was terminated because the number of Spot requests with a "
        "maximum price equal to or higher than the Spot price exceeded available capacity or because of an increase "
        "in the Spot price.",
    ),
    "stop": (
        "Server.SpotInstanceShutdown",
        "Server.SpotInstanceShutdown: The instance was stopped because the number of Spot requests with a maximum "
        "price equal to or higher than the Spot price exceeded available capacity or because of an increase in the "
        "Spot price.",
    ),
}


def capacity_error(instance_type):
    """EC2's answer to a spot RunInstances without capacity: a server error (HTTP 500, which SDKs retry), in EC2's
    error document (moto would answer 400 for an error its model does not know)."""
    from werkzeug.exceptions import HTTPException

    class InsufficientInstanceCapacity(HTTPException):
        code = 500

        def get_headers(self, *args, **kwargs):
            return [("Content-Type", "text/xml;charset=UTF-8")]

    log.info("spot capacity refused for %s", instance_type)
    error = InsufficientInstanceCapacity()
    error.description = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code>'
        "<Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>" % (CAPACITY_MESSAGE, uuid.uuid4())
    )
    return error


class Control:
    def __init__(self, cloud):
        self.cloud = cloud
        self.refused = set()
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ capacity
    def check_capacity(self, instance_type, market):
        with self.lock:
            refused = instance_type in self.refused or "*" in self.refused
        if market == "spot" and refused:
            raise capacity_error(instance_type)

    def set_capacity(self, types, available):
        with self.lock:
            if available:
                self.refused -= set(types)
            else:
                self.refused |= set(types)
            return sorted(self.refused)

    # ------------------------------------------------------------------ interruptions
    def interrupt(self, instance_id, delay=DEFAULT_DELAY):
        from localcloud.imds import iso, utcnow

        cloud = self.cloud
        with cloud.lock:
            record = cloud.records.get(instance_id)
            if record is None:
                raise ValueError("no instance %s in this local cloud" % instance_id)
            inst = record.instance
            if inst.lifecycle != "spot":
                raise ValueError("%s is not a spot instance: EC2 interrupts only spot instances" % instance_id)
            if inst.state != "running":
                raise ValueError("%s is %s, not running" % (instance_id, inst.state))
            action = "stop" if getattr(record, "interruption_behavior", "terminate") == "stop" else "terminate"
            now = utcnow()
            record.spot = {
                "action": action,
                "time": iso(now + datetime.timedelta(seconds=delay)),
                "notice": iso(now),
            }
            notice = dict(record.spot)
        log.info("spot interruption of %s: %s in %s s", instance_id, action, delay)
        timer = threading.Timer(delay, self._interrupt_now, args=(record, action))
        timer.daemon = True
        timer.start()
        return notice

    def _interrupt_now(self, record, action):
        from localcloud.cloud import _set_state

        cloud = self.cloud
        with cloud.lock:
            inst = record.instance
            if inst.state != "running" or record.spot is None:
                return
            backend = inst.ec2_backend
            code, message = REASONS[action]
            log.info("spot interruption of %s now: %s", inst.id, action)
            if action == "terminate":
                record.terminating = True
                pairs = backend.terminate_instances.__wrapped__(backend, [inst.id])
                cloud.on_terminate(pairs, reason=(code, message))
            else:
                pairs = backend.stop_instances.__wrapped__(backend, [inst.id])
                _set_state(inst, inst.state, code, message)
                cloud.on_stop(pairs)
        cloud.wake.set()

    def status(self):
        with self.cloud.lock:
            interruptions = {iid: r.spot for iid, r in self.cloud.records.items() if getattr(r, "spot", None)}
        with self.lock:
            return {"refused_types": sorted(self.refused), "interruptions": interruptions}

    # ------------------------------------------------------------------ HTTP
    def handles(self, environ):
        return environ.get("PATH_INFO", "").startswith("/localcloud/")

    def __call__(self, environ, start_response):
        if environ.get("REMOTE_ADDR") not in ("127.0.0.1", "::1"):
            return _json(start_response, 403, {"error": "the local cloud control answers the host only"})
        path = environ.get("PATH_INFO", "").rstrip("/")
        method = environ.get("REQUEST_METHOD")
        try:
            body = {}
            if method == "POST":
                size = int(environ.get("CONTENT_LENGTH") or 0)
                body = json.loads(environ["wsgi.input"].read(size) or b"{}")
            if path == "/localcloud/spot" and method == "GET":
                return _json(start_response, 200, self.status())
            if path == "/localcloud/spot/capacity" and method == "POST":
                types = body.get("instance_types")
                if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                    raise ValueError("instance_types must be a list of instance types")
                refused = self.set_capacity(types, bool(body.get("available", False)))
                return _json(start_response, 200, {"refused_types": refused})
            if path == "/localcloud/spot/interrupt" and method == "POST":
                delay = float(body.get("delay", DEFAULT_DELAY))
                if delay < 0:
                    raise ValueError("delay must be 0 or more seconds")
                notice = self.interrupt(str(body.get("instance_id")), delay)
                return _json(start_response, 200, {"instance_id": body.get("instance_id"), "notice": notice})
        except (ValueError, TypeError, KeyError) as exc:
            return _json(start_response, 400, {"error": str(exc)})
        return _json(start_response, 404, {"error": "no such control: %s %s" % (method, path)})


def _json(start_response, status, data):
    body = json.dumps(data, indent=1).encode()
    reasons = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}
    start_response("%d %s" % (status, reasons[status]), [("Content-Type", "application/json")])
    return [body]
