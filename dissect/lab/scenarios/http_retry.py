"""http-retry and http-retry-post: a flaky server and a client retrying with backoff.

Server: for each logical request (the path for GET, the ``Idempotency-Key`` for POST)
the first ``len(fail_codes)`` attempts are answered with those codes in order (503s,
500s; attempt numbers listed in ``retry_after`` carry ``Retry-After: N``), later ones
with 200 (GET) or 201 (POST). A POST whose key already succeeded gets the stored 201
again with ``Idempotent-Replayed: true`` and is not executed twice.

Client: exponential backoff with full jitter - after failed attempt n it sleeps
``uniform(0, min(cap, base * factor ** (n - 1)))`` seconds, or the server's Retry-After
if that is longer. ``base`` and ``factor`` are drawn from the seed, the jitter from a
second stream of the same seed, so a seed fixes every delay. Each attempt uses a new TCP
connection. Retryable: 429, 500, 502, 503, 504 and connection errors. The POST variant
sends one Idempotency-Key (from the seed) on every attempt and, after success, repeats
the request once with the same key to show the server's replay.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import uuid

from dissect.lab.scenarios.web import USER_AGENT, QuietHandler, bind

RETRYABLE = frozenset({429, 500, 502, 503, 504})
BACKOFF_CAP_S = 2.0       # keeps a run short; real clients cap at tens of seconds
CLIENT_TIMEOUT_S = 10.0


def serve(params, ctx):
    fail_codes = [int(c) for c in params["fail_codes"]]
    retry_after = {int(k): int(v) for k, v in params.get("retry_after", {}).items()}
    attempts: dict[str, int] = {}
    done: dict[str, bytes] = {}
    lock = threading.Lock()

    class Flaky(QuietHandler):
        def _handle(self, key: str, ok_status: int, body: bytes):
            with lock:
                if key in done:
                    self.answer(ok_status, done[key], "application/json",
                                {"Idempotent-Replayed": "true"})
                    self.note(ok_status, key=key, replayed=True)
                    return
                n = attempts[key] = attempts.get(key, 0) + 1
            if n <= len(fail_codes):
                code = fail_codes[n - 1]
                headers = {"Retry-After": str(retry_after[n])} if n in retry_after else {}
                self.answer(code, f"attempt {n}: try again later\n".encode(), headers=headers)
                self.note(code, key=key, attempt=n, retry_after=retry_after.get(n))
                return
            reply = json.dumps({"attempt": n, "ok": True, "received": len(body)}).encode() + b"\n"
            if self.command == "POST":
                with lock:
                    done[key] = reply
            self.answer(ok_status, reply, "application/json")
            self.note(ok_status, key=key, attempt=n)

        def do_GET(self):  # noqa: N802
            self._handle(self.path, 200, b"")

        def do_POST(self):  # noqa: N802
            body = self.read_body()
            self._handle(self.headers.get("Idempotency-Key") or self.path, 201, body)

    httpd = bind(Flaky, params["port"], ctx.rec)
    ctx.rec.policy = {"fail_codes": fail_codes, "retry_after": retry_after}
    ctx.ready(port=params["port"])
    try:
        httpd.serve_forever(poll_interval=0.1)
    finally:
        httpd.server_close()


def policy_from_seed(seed: int) -> dict:
    rng = random.Random(f"retry-policy:{seed}")
    return {"base_s": round(rng.uniform(0.05, 0.2), 3), "factor": rng.choice([1.5, 2.0, 2.5, 3.0]),
            "cap_s": BACKOFF_CAP_S, "jitter": "full", "retryable": sorted(RETRYABLE)}


def _once(port: int, method: str, path: str, body: bytes | None, headers: dict):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.getheader("Retry-After"), resp.getheader("Idempotent-Replayed"), \
            data, conn.sock.getsockname()[1]
    finally:
        conn.close()


# The policies of AWS's "Exponential Backoff And Jitter" (n = the attempt that failed)
POLICY_DOC = {
    "constant": "base",
    "linear": "base * n",
    "exponential": "min(cap, base * factor ** (n - 1))",
    "full": "uniform(0, min(cap, base * factor ** (n - 1)))",
    "equal": "c / 2 + uniform(0, c / 2) with c = min(cap, base * factor ** (n - 1))",
    "decorrelated": "min(cap, uniform(base, previous delay * 3))",
}


def backoff_delay(policy: dict, n: int, ceiling: float, rng, prev: float):
    """(delay, new previous delay) for the policy named in policy["jitter"]."""
    kind = policy["jitter"]
    if kind == "constant":
        d = policy["base_s"]
    elif kind == "linear":
        d = policy["base_s"] * n
    elif kind == "exponential":
        d = ceiling
    elif kind == "equal":
        d = ceiling / 2 + rng.uniform(0, ceiling / 2)
    elif kind == "decorrelated":
        d = min(policy["cap_s"], rng.uniform(policy["base_s"], prev * 3))
    else:
        d = rng.uniform(0, ceiling)
    return d, d


def client(params, rec):
    seed = params.get("seed", 0)
    method = params["method"]
    max_attempts = int(params["max_attempts"])
    policy = policy_from_seed(seed)
    policy["jitter"] = params.get("policy", "full")
    jitter = random.Random(f"retry-jitter:{seed}")
    path = "/orders" if method == "POST" else "/resource"
    headers = {"User-Agent": USER_AGENT, "Connection": "close"}
    body = None
    if method == "POST":
        key = str(uuid.UUID(int=random.Random(f"idem:{seed}").getrandbits(128), version=4))
        headers.update({"Idempotency-Key": key, "Content-Type": "application/json"})
        body = json.dumps({"item": "lab-widget", "quantity": 2}).encode()
        policy["idempotency_key"] = key
    rec.policy = {**policy, "max_attempts": max_attempts, "method": method, "path": path,
                  "connection": "new TCP connection per attempt",
                  "delay": POLICY_DOC[policy["jitter"]] + ", or Retry-After if longer"}
    chain = f"{method} {path}"
    prev = policy["base_s"]
    for n in range(1, max_attempts + 1):
        start = rec.now()
        try:
            status, retry_after, replayed, _data, lport = _once(params["port"], method, path, body,
                                                                 headers)
            error = None
        except OSError as exc:
            status, retry_after, replayed, lport, error = None, None, None, None, str(exc)
        end = rec.now()
        entry = rec.record("attempt", start, end, chain=chain, attempt=n, method=method, path=path,
                           status=status, error=error, retry_after=retry_after, local_port=lport)
        if status is not None and status not in RETRYABLE:
            entry["decision"] = "success" if status < 400 else "give-up (not retryable)"
            rec.outcome = f"{entry['decision']} after {n} attempt(s)"
            break
        if n == max_attempts:
            entry["decision"] = "give-up (max attempts)"
            rec.outcome = f"gave up after {n} attempts"
            break
        ceiling = min(policy["cap_s"], policy["base_s"] * policy["factor"] ** (n - 1))
        drawn, prev = backoff_delay(policy, n, ceiling, jitter, prev)
        delay = max(drawn, float(retry_after)) if retry_after else drawn
        entry.update(decision="retry", backoff_ceiling_s=round(ceiling, 6),
                     jitter_drawn_s=round(drawn, 6), delay_s=round(delay, 6),
                     delay_source="Retry-After" if retry_after and float(retry_after) > drawn
                     else "jitter")
        time.sleep(delay)
    if method == "POST" and params.get("replay_check") and rec.outcome.startswith("success"):
        start = rec.now()
        status, _ra, replayed, _data, lport = _once(params["port"], method, path, body, headers)
        rec.record("duplicate", start, rec.now(), method=method, path=path, status=status,
                   idempotent_replayed=replayed == "true", local_port=lport,
                   why="same Idempotency-Key sent again after success: the server must not "
                       "execute it twice")
