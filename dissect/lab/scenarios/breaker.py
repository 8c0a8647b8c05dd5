"""circuit-breaker: a client with a circuit breaker against a server that is down, then
unavailable, then healthy.

Server timeline, from the moment it reports ready: for ``down_s`` nothing listens (each
connection attempt is refused with a RST), then for ``unavailable_s`` it answers every
request with 503, then with 200. It records the timeline's absolute times.

Client: calls GET /status every ``interval_s`` (fixed cadence, one TCP connection per
call) for ``run_s`` seconds through a breaker. The breaker is the table ``TRANSITIONS``:
closed counts consecutive failures and opens at ``failure_threshold``; open lets no call
through (short-circuited calls are recorded but send nothing) until ``open_s`` has
passed; then the next call is a single half-open probe whose success closes the breaker
and whose failure opens it again for another ``open_s``. A failure is a refused or
timed-out connection or a 5xx status.
"""

from __future__ import annotations

import http.client
import socketserver
import time

from dissect.lab.scenarios.web import USER_AGENT, QuietHandler, bind

CALL_TIMEOUT_S = 2.0  # a loopback call answers in milliseconds; this only bounds a hang

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
# (state, event) -> next state; any pair not listed is a bug (KeyError).
TRANSITIONS = {
    (CLOSED, "success"): CLOSED,
    (CLOSED, "failure"): CLOSED,
    (CLOSED, "threshold-reached"): OPEN,
    (OPEN, "open-timer-expired"): HALF_OPEN,
    (HALF_OPEN, "success"): CLOSED,
    (HALF_OPEN, "failure"): OPEN,
}


def serve(params, ctx):
    rec = ctx.rec
    ready_at = rec.now()
    up_at = ready_at + float(params["down_s"])
    healthy_at = up_at + float(params["unavailable_s"])
    rec.policy = {"ready_at": round(ready_at, 6), "listening_from": round(up_at, 6),
                  "healthy_from": round(healthy_at, 6),
                  "timeline": "refused until listening_from, 503 until healthy_from, then 200"}

    class Status(QuietHandler):
        def do_GET(self):  # noqa: N802
            if rec.now() < healthy_at:
                self.answer(503, b"service unavailable\n", headers={"Connection": "close"})
                self.note(503)
            else:
                self.answer(200, b"ok\n")
                self.note(200)

    ctx.ready(port=params["port"], listening_from=up_at, healthy_from=healthy_at)
    time.sleep(max(0.0, up_at - rec.now()))
    httpd = bind(Status, params["port"], rec)
    rec.record("listening", rec.now())
    try:
        httpd.serve_forever(poll_interval=0.05)
    finally:
        socketserver.TCPServer.server_close(httpd)


class Breaker:
    def __init__(self, rec, threshold: int, open_s: float):
        self.rec, self.threshold, self.open_s = rec, threshold, open_s
        self.state = CLOSED
        self.failures = 0
        self.opened_at: float | None = None

    def fire(self, event: str, t: float) -> None:
        new = TRANSITIONS[(self.state, event)]
        if new != self.state:
            self.rec.transition(t, self.state, new, event)
        if new == OPEN:
            self.opened_at = t
        if new == CLOSED and event == "success":
            self.failures = 0
        self.state = new

    def admit(self, t: float) -> str:
        """What to do with a call at time t: 'call', 'probe' or 'short-circuit'."""
        if self.state == OPEN:
            if t - self.opened_at < self.open_s:
                return "short-circuit"
            self.fire("open-timer-expired", t)
        return "probe" if self.state == HALF_OPEN else "call"

    def result(self, ok: bool, t: float) -> None:
        if ok:
            self.fire("success", t)
            return
        if self.state == CLOSED:
            self.failures += 1
            if self.failures >= self.threshold:
                self.failures = 0
                self.fire("threshold-reached", t)
            else:
                self.fire("failure", t)
        else:
            self.fire("failure", t)


def _call(port: int):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CALL_TIMEOUT_S)
    try:
        conn.request("GET", "/status", headers={"User-Agent": USER_AGENT, "Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, None, conn.sock.getsockname()[1] if conn.sock else None
    except ConnectionRefusedError:
        return None, "connection refused", None
    except OSError as exc:
        return None, f"{type(exc).__name__}: {exc}", None
    finally:
        conn.close()


def client(params, rec):
    interval, run_s = float(params["interval_s"]), float(params["run_s"])
    breaker = Breaker(rec, int(params["failure_threshold"]), float(params["open_s"]))
    rec.policy = {"failure_threshold": breaker.threshold, "open_s": breaker.open_s,
                  "half_open_probes": 1, "interval_s": interval, "run_s": run_s,
                  "failure": "refused/timed-out connection or 5xx",
                  "call_timeout_s": CALL_TIMEOUT_S,
                  "transitions": [f"{s} --{e}--> {n}" for (s, e), n in TRANSITIONS.items()]}
    t0 = rec.now()
    k = 0
    while True:
        tick = t0 + k * interval
        if tick - t0 > run_s:
            break
        time.sleep(max(0.0, tick - rec.now()))
        k += 1
        start = rec.now()
        action = breaker.admit(start)
        before = breaker.state  # after a due open -> half-open transition
        if action == "short-circuit":
            rec.record("call", start, action=action, state_before=before, state_after=breaker.state,
                       outcome="not sent (breaker open)")
            continue
        status, error, lport = _call(params["port"])
        end = rec.now()
        ok = status is not None and status < 500
        breaker.result(ok, end)
        rec.record("call", start, end, action=action, state_before=before,
                   state_after=breaker.state, status=status, error=error, local_port=lport,
                   outcome="success" if ok else "failure")
    rec.info["final_state"] = breaker.state
