"""A reverse proxy on loopback in front of an S3 endpoint (moto) that records every request: used by the
artifacts tests (which requests, which headers, fault injection) and by bench/artifacts_bench.py (how many
requests and body bytes an unchanged re-push sends)."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class CountingProxy:
    """A reverse proxy on loopback that forwards every request to moto and records (method, path, bytes)."""

    def __init__(self, upstream):
        self.upstream = urlparse(upstream)
        self.requests = []
        self.deny = set()  # paths whose PUT is answered with 403 AccessDenied (fault injection)
        self.deny_all = False  # every request is answered with 403 AccessDenied
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _read_body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self):
                body = self._read_body()
                with proxy.lock:
                    proxy.requests.append(
                        (self.command, self.path, len(body), {k.lower(): v for k, v in self.headers.items()})
                    )
                if proxy.deny_all or (self.command == "PUT" and self.path.split("?")[0] in proxy.deny):
                    error = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
                    self.send_response(403)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(error)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(error)
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("expect", "transfer-encoding", "content-length", "connection")
                }
                headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                finally:
                    conn.close()
                self.send_response(response.status, response.reason)
                for k, v in response.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self):
        with self.lock:
            self.requests = []

    def writes(self):
        """Requests that send data (PUT/POST, not the multi-object delete)."""
        return [r for r in self.requests if r[0] in ("PUT", "POST") and "delete" not in r[1]]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
