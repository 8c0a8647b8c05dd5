"""Three tiers on loopback: client (127.0.0.1) -> gateway (127.0.0.2:8081) -> backend
(127.0.0.3:8082), each a real server or client. The backend answers 503 to the first
``backend_failures`` requests from the gateway; the gateway tries the backend up to 3 times per request
(``gateway_backoff_s`` apart) and answers 502 when all fail; the client tries the gateway up
to 3 times for each of ``user_requests`` user requests. An unrelated client (127.0.0.4)
calls the backend directly at the same time: it must not be linked to any gateway request.
Every tier records what it really sent.

Variants (params):

* ``proto``: ``"http"`` (HTTP/1.1, one connection per request) or ``"tcp"`` (a plain TCP
  line protocol, ``CALL <path>`` answered by ``STATUS <code>``, one connection per call):
  the cascade is rebuilt from request/response turns alone.
* ``breaker``: ``{"failure_threshold": n, "open_s": s}`` puts a circuit breaker (the state
  table of the ``circuit-breaker`` scenario) in the gateway around its backend calls: while
  it is open the gateway answers 503 at once without calling the backend, so attempts
  below the gateway fall to zero. The gateway records every transition and every
  short-circuited request.
"""

from __future__ import annotations

import http.client
import socket
import socketserver
import threading
import time

from dissect.lab.scenarios.breaker import Breaker
from dissect.lab.scenarios.web import USER_AGENT, LabHTTPServer, QuietHandler

GATEWAY = ("127.0.0.2", 8081)
BACKEND = ("127.0.0.3", 8082)


def _get(host, port, path, source, timeout=5.0):
    c = http.client.HTTPConnection(host, port, timeout=timeout, source_address=(source, 0))
    try:
        c.request("GET", path, headers={"User-Agent": USER_AGENT, "Connection": "close"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def _call_tcp(host, port, path, source, timeout=5.0):
    """One call of the plain TCP line protocol: ``CALL path`` -> ``STATUS code``."""
    with socket.create_connection((host, port), timeout=timeout,
                                  source_address=(source, 0)) as s:
        s.sendall(f"CALL {path}\n".encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return int(data.split()[1])


def _call(proto, addr, path, source):
    return (_get if proto == "http" else _call_tcp)(*addr, path, source)


class _LineServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _line_handler(handle):
    class H(socketserver.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline().decode("ascii", "replace").split()
            if len(line) == 2 and line[0] == "CALL":
                code = handle(line[1], self.client_address)
                self.wfile.write(f"STATUS {code}\n".encode())
    return H


def serve(params, ctx):
    rec = ctx.rec
    failures = int(params["backend_failures"])
    gap = float(params["gateway_backoff_s"])
    seen = {"n": 0}
    lock = threading.Lock()

    proto = params.get("proto", "http")
    bp = params.get("breaker")
    breaker = Breaker(rec, int(bp["failure_threshold"]), float(bp["open_s"])) if bp else None
    blk = threading.Lock()

    def backend(path, client):
        n = 0
        if not path.startswith("/direct"):      # the unrelated client's call: always 200
            with lock:
                seen["n"] += 1
                n = seen["n"]
        code = 503 if 0 < n <= failures else 200
        time.sleep(0.02)                      # the backend's own work
        rec.record("backend", rec.now(), path=path, status=code,
                   client=f"{client[0]}:{client[1]}")
        return code

    def gateway(path, client):
        upstream = f"{client[0]}:{client[1]}"
        status = 502
        for attempt in range(1, 4):
            start = rec.now()
            if breaker is not None:
                with blk:
                    action = breaker.admit(start)
                if action == "short-circuit":
                    rec.record("gateway-short-circuit", start, upstream=upstream,
                               attempt=attempt, path=path)
                    status = 503
                    break
            code = _call(proto, BACKEND, "/item", GATEWAY[0])
            end = rec.now()
            rec.record("gateway-attempt", start, end, upstream=upstream,
                       attempt=attempt, status=code, path=path)
            if breaker is not None:
                with blk:
                    breaker.result(code == 200, end)
            if code == 200:
                status = 200
                break
            time.sleep(gap)
        return status

    class Backend(QuietHandler):
        def do_GET(self):  # noqa: N802
            code = backend(self.path, self.client_address)
            self.answer(code, f"backend {code}\n".encode())

    class Gateway(QuietHandler):
        def do_GET(self):  # noqa: N802
            status = gateway(self.path, self.client_address)
            self.answer(status, f"gateway {status}\n".encode())

    servers = []
    for addr, h, fn in ((BACKEND, Backend, backend), (GATEWAY, Gateway, gateway)):
        if proto == "http":
            cls = type(h.__name__, (h,), {"rec": rec})
            s = LabHTTPServer(addr, cls)
        else:
            s = _LineServer(addr, _line_handler(fn))
        servers.append(s)
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
    rec.policy = {"proto": proto, "backend_failures": failures, "gateway_attempts": 3,
                  "gateway_backoff_s": gap, "breaker": dict(bp) if bp else None}
    ctx.ready(port=GATEWAY[1])
    try:
        while True:
            time.sleep(1)
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def client(params, rec):
    gap = float(params["client_backoff_s"])
    proto = params.get("proto", "http")
    users = int(params.get("user_requests", 2))
    user_gap = float(params.get("user_gap_s", 0.2))
    rec.policy = {"client_attempts": 3, "client_backoff_s": gap, "user_requests": users,
                  "user_gap_s": user_gap}

    def unrelated():
        time.sleep(0.05)
        start = rec.now()
        code = _call(proto, BACKEND, "/direct", "127.0.0.4")
        rec.record("unrelated", start, rec.now(), status=code, source="127.0.0.4")
    t = threading.Thread(target=unrelated)
    t.start()
    for user_request in range(1, users + 1):
        for attempt in range(1, 4):
            start = rec.now()
            code = _call(proto, GATEWAY, f"/order/{user_request}", "127.0.0.1")
            rec.record("attempt", start, rec.now(), user_request=user_request,
                       attempt=attempt, status=code)
            if code == 200:
                break
            time.sleep(gap)
        time.sleep(user_gap)
    t.join()
    rec.outcome = "completed"
