"""Retry chains, their backoff model, and circuit breakers, from an analysed capture
(sans-I/O: it reads the engine's Result and the SYN segments collected while streaming).

Chains (``{"type": "retry", ...}``):

* ``syn``: the same connection's SYN sent again (same 4-tuple and ISN: the kernel's own
  retransmission).
* ``rto``: the same data segment retransmitted at least twice (intervals show the RTO
  backoff).
* ``tcp-reconnect``: new connections from one client to one server after refused (REJ) or
  unanswered (S0) ones.
* ``http``: the same method, host, target and request-body digest sent again after a
  failure (5xx, 429, 408, no response), on the same or a new connection.
* ``dns``: the same question from the same client sent again before it was answered.

Each chain's intervals are classified by :func:`classify` (constant, linear, exponential,
linear-then-exponential as this kernel's SYN retries do, exponential with full or equal
jitter, or irregular) with a confidence that says how much a short chain can prove.

Breakers (``{"type": "breaker", ...}``): per client and server, a run of failed calls, then
silence much longer than the client's call interval (open), one probe (half-open), and then
success (closed) or failure (open again).
"""

from __future__ import annotations

import math
import statistics

# A request repeated later than this after a failure is a new request, not a retry.
RETRY_WINDOW_S = 120.0
# A gap this many times the client's usual call interval, after failures, is a breaker open.
BREAKER_GAP_FACTOR = 3.0
# Retransmissions closer than this to the previous copy are capture duplicates.
CAPTURE_DUPLICATE_S = 0.001
# Chains in lockstep needed to call it a storm.
STORM_MIN_CLIENTS = 3
# Fewer calls than this cannot tell a breaker (periodic calls, silence, probe) from backoff.
MIN_BREAKER_CALLS = 5
RETRYABLE = {408, 429, 500, 502, 503, 504}
NON_IDEMPOTENT = {"POST", "PATCH"}
IDEMPOTENCY_HEADERS = {"idempotency-key", "x-idempotency-key", "x-request-id"}


# ----------------------------------------------------------------------------- models

def _pstdev(xs: list) -> float:
    """Population standard deviation in floats (``statistics.pstdev`` computes it exactly
    with fractions: a fifth of the report's time on a capture with 30,000 chains); the
    exact one where floats overflow."""
    n = len(xs)
    m = math.fsum(xs) / n
    v = math.sqrt(math.fsum([(x - m) * (x - m) for x in xs]) / n)
    return v if math.isfinite(v) and math.isfinite(m) else statistics.pstdev(xs)


def classify(iv: list[float]) -> dict:
    """The backoff model of a list of intervals (seconds)."""
    n = len(iv)
    out = {"model": "none", "base_s": None, "factor": None, "cap_s": None, "jitter": None,
           "confidence": 0.0}
    if n == 0:
        return out
    conf = round(min(1.0, 0.05 + 0.15 * n), 2)     # 2 intervals prove little; 6+ a lot
    mean = statistics.fmean(iv)
    if n == 1:
        return out | {"model": "single", "base_s": iv[0], "confidence": 0.2}
    cv = _pstdev(iv) / mean if mean > 0 else 0.0
    if cv < 0.1:
        return out | {"model": "constant", "base_s": mean, "factor": 1.0, "confidence": conf}
    # linear-then-exponential (Linux tcp_syn_linear_timeouts): a run of equal intervals,
    # then doubling
    k = 1
    while k < n and abs(iv[k] - iv[0]) <= 0.1 * iv[0]:
        k += 1
    if 2 <= k < n and iv[0] > 0 and all(iv[i - 1] > 0 and abs(iv[i] / iv[i - 1] - 2) < 0.3
                                        for i in range(k, n)):
        return out | {"model": "linear-then-exponential", "base_s": iv[0], "factor": 2.0,
                      "linear_steps": k, "confidence": conf}
    # (a gap too small to divide by, e.g. a denormal, gives no finite ratio: left out)
    ratios = [r for r in (iv[i] / iv[i - 1] for i in range(1, n) if iv[i - 1] > 0)
              if math.isfinite(r)]
    if ratios and all(r > 1.3 for r in ratios):
        f = math.exp(statistics.fmean(math.log(r) for r in ratios))
        spread = _pstdev(ratios) / f if len(ratios) > 1 else 0.0
        if spread < 0.25:
            return out | {"model": "exponential", "base_s": iv[0], "factor": round(f, 3),
                          "confidence": conf}
    # exponential with a cap: ratios > 1.3 then flat
    j = 0
    while j < len(ratios) and ratios[j] > 1.3:
        j += 1
    if j >= 2 and all(abs(r - 1) < 0.1 for r in ratios[j:]) and j < len(ratios):
        f = math.exp(statistics.fmean(math.log(r) for r in ratios[:j]))
        return out | {"model": "exponential", "base_s": iv[0], "factor": round(f, 3),
                      "cap_s": iv[-1], "confidence": conf}
    diffs = [iv[i] - iv[i - 1] for i in range(1, n)]
    if n >= 3 and all(d > 0 for d in diffs):
        dm = statistics.fmean(diffs)
        if _pstdev(diffs) / dm < 0.15:
            return out | {"model": "linear", "base_s": iv[0], "step_s": dm, "confidence": conf}
    # jittered exponential: the values spread under an envelope min(cap, base * f^i); the
    # factor is the one whose envelope fits tightest (equal jitter keeps every value in the
    # upper half of it, full jitter anywhere below it)
    if n >= 2 and min(iv) >= 0:
        cap = max(iv)
        best = None
        for f in (1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5, 4.0):
            bb = max(v / f ** i for i, v in enumerate(iv))
            env = [min(cap, bb * f ** i) for i in range(n)]
            if env[-1] < 1.5 * env[0]:
                continue
            score = min(v / e for v, e in zip(iv, env) if e > 0)
            if best is None or score > best[0] + 1e-9:
                best = (score, f, bb)
        decorrelated = (min(iv) > 0 and
                        all(iv[i] <= 3.05 * iv[i - 1] for i in range(1, n)) and
                        any(iv[i] < iv[i - 1] for i in range(1, n)))
        if best is not None and best[0] >= 0.45:
            return out | {"model": "exponential-equal-jitter", "base_s": round(best[2], 6),
                          "factor": best[1], "cap_s": cap, "jitter": round(1 - best[0], 2),
                          "confidence": round(conf * 0.7, 2)}
        if decorrelated:
            return out | {"model": "decorrelated-jitter", "base_s": min(iv), "factor": 3.0,
                          "cap_s": cap, "jitter": 1.0, "confidence": round(conf * 0.6, 2)}
        if best is not None:
            return out | {"model": "exponential-full-jitter", "base_s": round(best[2], 6),
                          "factor": best[1], "cap_s": cap, "jitter": 1.0,
                          "confidence": round(conf * 0.6, 2)}
    return out | {"model": "irregular", "confidence": conf}


# ----------------------------------------------------------------------------- chains

def _intervals(attempts):
    return [round(b["ts"] - a["ts"], 6) for a, b in zip(attempts, attempts[1:])]


def _chain(kind, client, server, key, attempts, succeeded, **extra) -> dict:
    iv = _intervals(attempts)
    rec = {"type": "retry", "kind": kind, "client": client, "server": server, "key": key,
           "attempts": attempts, "intervals_s": iv, "backoff": classify(iv),
           "succeeded": succeeded, "gave_up": not succeeded, "idempotency_key": None,
           "retry_after_s": None, "retry_after_honoured": None, "timeout_s": None,
           "warnings": []}
    rec.update(extra)
    b = rec["backoff"]
    if len(iv) >= 3 and b["model"] in ("constant", "linear", "exponential") and kind != "syn":
        rec["warnings"].append("no-jitter")
    return rec


def syn_chains(syns: list, conns: list) -> list:
    """``syns``: (frame, ts, src, sport, dst, dport, seq) of SYNs without ACK."""
    groups: dict = {}
    for s in syns:
        groups.setdefault(s[2:], []).append(s)
    # the answered connections of the 4-tuples that sent a SYN more than once (the last
    # of each 4-tuple, as in conns order)
    again = {k[:4] for k, g in groups.items() if len(g) >= 2}
    answered = {}
    if again:
        for c in conns:
            if c["proto"] != "tcp":
                continue
            cl, sv = c["client"], c["server"]
            k = (cl["ip"], cl["port"], sv["ip"], sv["port"])
            if k in again and (c.get("handshake") or {}).get("syn_ack"):
                answered[k] = c
    out = []
    for (src, sport, dst, dport, _seq), g in groups.items():
        if len(g) < 2:
            continue
        c = answered.get((src, sport, dst, dport))
        attempts = [{"frame": f, "ts": ts, "outcome": "no answer"} for f, ts, *_ in g]
        if c is not None:
            attempts[-1]["outcome"] = "answered"
        out.append(_chain("syn", f"{src}:{sport}", f"{dst}:{dport}", "SYN", attempts,
                          c is not None))
    return out


_OUTCOMES = {"REJ": "refused", "S0": "unanswered", "RSTOS0": "unanswered",
             "SH": "unanswered"}


def _conn_outcome(c) -> str:
    return _OUTCOMES.get(c.get("state"), "connected")


def rto_chains(retrans: list, conns: list) -> list:
    """The same data segment retransmitted again and again (at least twice)."""
    cmap = {c["id"]: c for c in conns}
    groups: dict = {}
    for conn, seq, plen, frame, ts, ofr, ots in retrans:
        groups.setdefault((conn, seq), []).append((frame, ts, ofr, ots, plen))
    out = []
    for (conn, seq), g in groups.items():
        if len(g) < 2:
            continue
        g.sort()
        first = g[0]
        attempts = []
        if first[2] is not None and first[3] is not None:
            attempts.append({"frame": first[2], "ts": first[3], "outcome": "sent"})
        for f, ts, *_ in g:
            # the same packet captured twice (both ends, or a mirror) is not another attempt
            if attempts and ts - attempts[-1]["ts"] < CAPTURE_DUPLICATE_S:
                continue
            attempts.append({"frame": f, "ts": ts, "outcome": "retransmission"})
        if len(attempts) < 3:
            continue
        c = cmap.get(conn) or {}
        cl, sv = c.get("client") or {}, c.get("server") or {}
        out.append(_chain("rto", f"{cl.get('ip')}:{cl.get('port')}",
                          f"{sv.get('ip')}:{sv.get('port')}", f"conn {conn} seq {seq} len {g[0][4]}",
                          attempts, True))
    return out


def reconnect_chains(conns: list) -> list:
    by: dict = {}
    for c in sorted((c for c in conns if c["proto"] == "tcp"), key=lambda c: c["start_ts"]):
        by.setdefault((c["client"]["ip"], c["server"]["ip"], c["server"]["port"]), []).append(c)
    out = []
    for (cip, sip, sport), cs in by.items():
        run = []
        for c in cs:
            o = _conn_outcome(c)
            if run and c["start_ts"] - run[-1]["ts"] > RETRY_WINDOW_S:
                run = []
            run.append({"frame": c["first_frame"], "ts": c["start_ts"], "outcome": o})
            if o == "connected":
                if len(run) >= 2:
                    out.append(_chain("tcp-reconnect", cip, f"{sip}:{sport}", "connect",
                                      run, True))
                run = []
        if len(run) >= 2:
            out.append(_chain("tcp-reconnect", cip, f"{sip}:{sport}", "connect", run, False))
    return out


def _hdr(r, name):
    for k, v in r.get("request_headers") or []:
        if k.lower() == name:
            return v
    return None


def http_chains(records: list, conns: list) -> list:
    cmap = {c["id"]: c for c in conns}
    groups: dict = {}
    for r in records:
        if r.get("type") != "http" or not r.get("method") or r.get("request_ts") is None:
            continue
        c = cmap.get(r.get("conn")) or {}
        client = (c.get("client") or {}).get("ip")
        server = f"{(c.get('server') or {}).get('ip')}:{(c.get('server') or {}).get('port')}"
        key = (client, server, r.get("method"), r.get("host"), r.get("target"),
               r.get("request_body_sha256"))
        groups.setdefault(key, []).append(r)
    out = []
    for (client, server, method, host, target, _digest), rs in groups.items():
        rs.sort(key=lambda r: r.get("request_ts") or 0)
        run: list = []
        for r in rs:
            st = r.get("status")
            failed = st is None or st in RETRYABLE
            if run and (r["request_ts"] - run[-1]["request_ts"] > RETRY_WINDOW_S):
                run = []
            run.append(r)
            if not failed:
                if len(run) >= 2:
                    out.append(_http_chain(client, server, method, host, target, run, True))
                run = []
        if len(run) >= 2:
            out.append(_http_chain(client, server, method, host, target, run, False))
    return out


def _http_chain(client, server, method, host, target, run, ok) -> dict:
    attempts = [{"frame": r.get("request_frame"), "ts": r.get("request_ts"),
                 "outcome": r.get("status") if r.get("status") is not None else "no response"}
                for r in run]
    key = f"{method} {host or ''}{target}"
    idem = next((_hdr(r, h) for r in run for h in IDEMPOTENCY_HEADERS if _hdr(r, h)), None)
    rec = _chain("http", client, server, key, attempts, ok, idempotency_key=idem)
    # Retry-After: the next attempt should come no sooner than the server asked
    for a, b, r in zip(run, run[1:], run):
        ra = r.get("retry_after")
        if ra is None:
            continue
        try:
            ra = float(ra)
        except (TypeError, ValueError):
            continue
        rec["retry_after_s"] = ra
        gap = b["request_ts"] - (a.get("response_ts") or a["request_ts"])
        rec["retry_after_honoured"] = gap >= 0.95 * ra
        if not rec["retry_after_honoured"]:
            rec["warnings"].append("retry-after-ignored")
    # a delay the server dictated (Retry-After) says nothing about the client's own policy:
    # fit the backoff model on the other intervals
    own = [iv for iv, r in zip(rec["intervals_s"], run) if r.get("retry_after") is None]
    if len(own) != len(rec["intervals_s"]):
        rec["backoff"] = classify(own) | {"excludes_retry_after": True}
    timeouts = [b["request_ts"] - a["request_ts"] for a, b in zip(run, run[1:])
                if a.get("status") is None]
    if timeouts:
        rec["timeout_s"] = round(min(timeouts), 6)
    if method in NON_IDEMPOTENT and not idem:
        rec["warnings"].append("unsafe-retry")
    if sum(1 for r in run if r.get("status") and 200 <= r["status"] < 300) >= 2:
        rec["warnings"].append("duplicated-side-effect")
    return rec


def dns_chains(records: list) -> list:
    groups: dict = {}
    for r in records:
        if r.get("type") != "dns" or not r.get("query_frame") or r.get("query_ts") is None:
            continue
        groups.setdefault((r.get("conn"), r.get("qname"), r.get("qtype"), r.get("id")),
                          []).append(r)
    out = []
    for (conn, qname, qtype, _id), rs in groups.items():
        if len(rs) < 2 or not any(r.get("retransmission") for r in rs):
            continue
        rs.sort(key=lambda r: r.get("query_ts") or 0)
        attempts = [{"frame": r["query_frame"], "ts": r.get("query_ts"),
                     "outcome": r.get("rcode") if r.get("response_frame") else "no response"}
                    for r in rs]
        ok = any(r.get("response_frame") for r in rs)
        out.append(_chain("dns", str(conn), str(conn), f"{qname} {qtype}", attempts, ok))
    return out


def _generic(kind, items, key_of, ts_of, frame_of, outcome_of, failed_of, conns) -> list:
    """Chains of the same request repeated after failures (gRPC calls, SMTP transactions)."""
    if not items:
        return []
    cmap = {c["id"]: c for c in conns}
    groups: dict = {}
    for r in items:
        if ts_of(r) is None:
            continue
        c = cmap.get(r.get("conn")) or {}
        client = (c.get("client") or {}).get("ip")
        server = f"{(c.get('server') or {}).get('ip')}:{(c.get('server') or {}).get('port')}"
        groups.setdefault((client, server, key_of(r)), []).append(r)
    out = []
    for (client, server, key), rs in groups.items():
        rs.sort(key=ts_of)
        run: list = []
        for r in rs:
            if run and ts_of(r) - ts_of(run[-1]) > RETRY_WINDOW_S:
                run = []
            run.append(r)
            if not failed_of(r):
                if len(run) >= 2:
                    out.append((client, server, key, run, True))
                run = []
        if len(run) >= 2:
            out.append((client, server, key, run, False))
    return [_chain(kind, cl, sv, k, [{"frame": frame_of(r), "ts": ts_of(r),
                                      "outcome": outcome_of(r)} for r in run], ok)
            for cl, sv, k, run, ok in out]


def grpc_chains(records, conns) -> list:
    calls = [r for r in records if r.get("type") == "grpc"]
    chains = _generic("grpc", calls, lambda r: r.get("path"), lambda r: r.get("request_ts"),
                      lambda r: (r.get("frames") or [None])[0],
                      lambda r: r.get("grpc_status_name") or r.get("grpc_status"),
                      lambda r: r.get("grpc_status") in (None, 4, 8, 14), conns)
    # a client that announces grpc-previous-rpc-attempts is retrying even without failures seen
    for r in calls:
        if (r.get("previous_rpc_attempts") or 0) and not any(
                c["key"] == r.get("path") for c in chains):
            chains.append(_chain("grpc", None, None, r.get("path"), [
                {"frame": (r.get("frames") or [None])[0], "ts": r.get("request_ts"),
                 "outcome": r.get("grpc_status_name") or r.get("grpc_status")}], True,
                previous_rpc_attempts=r.get("previous_rpc_attempts")))
    return chains


def smtp_chains(records, conns) -> list:
    envs = [r for r in records if r.get("type") == "smtp-envelope"]
    return _generic("smtp", envs,
                    lambda r: f"MAIL FROM {r.get('mail_from')} TO {','.join(r.get('rcpt_to') or [])}",
                    lambda r: r.get("reply_ts"), lambda r: (r.get("frames") or [None])[0],
                    lambda r: r.get("reply_code"),
                    lambda r: r.get("reply_code") is None or 400 <= r["reply_code"] < 500, conns)


def storms(chains: list) -> list:
    """Several chains retrying one server in lockstep: the same number of attempts, the
    same intervals (within 5 %), no jitter, starting together."""
    by: dict = {}
    for c in chains:
        if c["kind"] in ("http", "tcp-reconnect", "syn", "grpc") and len(c["intervals_s"]) >= 2:
            by.setdefault((c["server"], c["kind"], len(c["attempts"])), []).append(c)
    out = []
    for (server, kind, n), cs in by.items():
        if len(cs) < STORM_MIN_CLIENTS:
            continue
        ref = cs[0]["intervals_s"]
        same = [c for c in cs if all(abs(a - b) <= 0.05 * max(b, 1e-3)
                                     for a, b in zip(c["intervals_s"], ref))]
        if len(same) < STORM_MIN_CLIENTS:
            continue
        starts = [c["attempts"][0]["ts"] for c in same]
        spread = max(starts) - min(starts)
        if spread > ref[0]:
            continue
        for c in same:
            c["warnings"].append("retry-storm")
        out.append({"type": "retry-storm", "server": server, "kind": kind, "clients": len(same),
                    "attempts_each": n, "intervals_s": ref, "spread_s": round(spread, 6),
                    "first_attempts": sorted(starts)})
    return out


# ----------------------------------------------------------------------------- breakers

def _calls(records, conns):
    """Per (client ip, server endpoint): calls in time order with success/failure."""
    http_by_conn: dict = {}
    for r in records:
        if r.get("type") == "http":
            http_by_conn.setdefault(r.get("conn"), []).append(r)
    calls: dict = {}
    for c in conns:
        if c["proto"] != "tcp":
            continue
        key = (c["client"]["ip"], f"{c['server']['ip']}:{c['server']['port']}")
        hs = http_by_conn.get(c["id"])
        if hs:
            for r in hs:
                st = r.get("status")
                calls.setdefault(key, []).append(
                    (r.get("request_ts"), r.get("request_frame"),
                     st is not None and st < 500 and st != 429))
        else:
            o = _conn_outcome(c)
            if o != "connected":
                calls.setdefault(key, []).append((c["start_ts"], c["first_frame"], False))
    return calls


def breakers(records: list, conns: list) -> list:
    out = []
    for (client, server), cs in _calls(records, conns).items():
        cs = sorted(x for x in cs if x[0] is not None)
        if len(cs) < MIN_BREAKER_CALLS:
            continue
        gaps = [b[0] - a[0] for a, b in zip(cs, cs[1:])]
        usual = statistics.median(sorted(gaps)[: max(1, len(gaps) // 2)])
        if usual <= 0:
            continue
        trans, fails, threshold, opens = [], 0, None, []
        state = "closed"
        for i, (ts, frame, ok) in enumerate(cs):
            if state == "open":
                trans.append({"state": "half-open", "ts": ts, "frame": frame})
                state = "half-open"
            if ok:
                fails = 0
                if state == "half-open":
                    trans.append({"state": "closed", "ts": ts, "frame": frame})
                state = "closed"
                continue
            fails += 1
            nxt = cs[i + 1][0] if i + 1 < len(cs) else None
            long_gap = nxt is not None and nxt - ts > BREAKER_GAP_FACTOR * usual
            if long_gap and (state == "half-open" or fails >= 2):
                if threshold is None:
                    threshold = fails
                trans.append({"state": "open", "ts": ts, "frame": frame})
                opens.append(nxt - ts)
                state = "open"
        if opens and any(t["state"] == "half-open" for t in trans):
            out.append({"type": "breaker", "client": client, "server": server,
                        "transitions": trans, "failure_threshold": threshold,
                        "open_s": round(statistics.median(opens), 6),
                        "call_interval_s": round(usual, 6)})
    return out


def detect(res, syns: list | None = None) -> list[dict]:
    conns, recs = res.connections, res.records
    if syns is None:
        syns = getattr(res, "syns", None)
    chains = syn_chains(syns or [], conns) + rto_chains(getattr(res, "retrans", []), conns) + \
        reconnect_chains(conns) + \
        http_chains(recs, conns) + dns_chains(recs) + grpc_chains(recs, conns) + \
        smtp_chains(recs, conns)
    chains.sort(key=lambda c: c["attempts"][0]["ts"] or 0)
    return chains + storms(chains) + breakers(recs, conns)


def detect_path(path: str) -> list[dict]:
    from dissect.engine import Engine
    res = Engine(path).run()
    return detect(res), res
