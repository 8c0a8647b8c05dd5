"""Three tiers on loopback: client (127.0.0.1) -> gateway (127.0.0.2:8081) -> backend
(127.0.0.3:8082), each a real HTTP server or client. The backend answers 503 to its first
``backend_failures`` requests; the gateway tries the backend up to 3 times per request
(``gateway_backoff_s`` apart) and answers 502 when all fail; the client tries the gateway up
to 3 times. An unrelated client (127.0.0.4) calls the backend directly at the same time: it
must not be linked to any gateway request. Every tier records what it really sent."""

from __future__ import annotations

import http.client
import threading
import time

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


def serve(params, ctx):
    rec = ctx.rec
    failures = int(params["backend_failures"])
    gap = float(params["gateway_backoff_s"])
    seen = {"n": 0}
    lock = threading.Lock()

    class Backend(QuietHandler):
        def do_GET(self):  # noqa: N802
            with lock:
                seen["n"] += 1
                n = seen["n"]
            code = 503 if n <= failures and not self.path.startswith("/direct") else 200
            time.sleep(0.02)                      # the backend's own work
            self.answer(code, f"backend {code}\n".encode())
            rec.record("backend", rec.now(), path=self.path, status=code,
                       client=f"{self.client_address[0]}:{self.client_address[1]}")

    class Gateway(QuietHandler):
        def do_GET(self):  # noqa: N802
            upstream = f"{self.client_address[0]}:{self.client_address[1]}"
            status = 502
            for attempt in range(1, 4):
                start = rec.now()
                code = _get(*BACKEND, "/item", GATEWAY[0])
                rec.record("gateway-attempt", start, rec.now(), upstream=upstream,
                           attempt=attempt, status=code)
                if code == 200:
                    status = 200
                    break
                time.sleep(gap)
            self.answer(status, f"gateway {status}\n".encode())

    servers = []
    for addr, h in ((BACKEND, Backend), (GATEWAY, Gateway)):
        cls = type(h.__name__, (h,), {"rec": rec})
        s = LabHTTPServer(addr, cls)
        servers.append(s)
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
    rec.policy = {"backend_failures": failures, "gateway_attempts": 3,
                  "gateway_backoff_s": gap}
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
    rec.policy = {"client_attempts": 3, "client_backoff_s": gap}

    def unrelated():
        time.sleep(0.05)
        start = rec.now()
        code = _get(*BACKEND, "/direct", "127.0.0.4")
        rec.record("unrelated", start, rec.now(), status=code, source="127.0.0.4")
    t = threading.Thread(target=unrelated)
    t.start()
    for user_request in (1, 2):
        for attempt in range(1, 4):
            start = rec.now()
            code = _get(*GATEWAY, f"/order/{user_request}", "127.0.0.1")
            rec.record("attempt", start, rec.now(), user_request=user_request,
                       attempt=attempt, status=code)
            if code == 200:
                break
            time.sleep(gap)
        time.sleep(0.2)
    t.join()
    rec.outcome = "completed"
