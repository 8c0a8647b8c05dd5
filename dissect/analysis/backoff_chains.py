"""Retry chains, their backoff model, and circuit breakers, from an analysed capture
(sans-I/O): :class:`RetryObserver` is shown the run's connection and application records
once (:mod:`dissect.analysis.observe`) and keeps a small tuple of what it reads of each;
the SYN segments and retransmissions collected while streaming come from the Result.

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
import sys
from array import array

from dissect.analysis.observe import Observer
from dissect.analysis.observe import run as run_observer
from dissect.columns.compact import Column, IdIndex, Sparse, is_sorted, order_by

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
# The first value of each of those headers is what a request keeps of its headers.
_IDEM_NAMES = tuple(sorted(IDEMPOTENCY_HEADERS))
_IDEM_INDEX = {h: i for i, h in enumerate(_IDEM_NAMES)}


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


# ----------------------------------------------------------------------------- projections
#
# The chains and breakers are computed from small tuples, not from the records: the
# observer (RetryObserver) takes each record's tuple as the pass shows it, and the list
# functions below (syn_chains, http_chains, ...) take the same tuples from their lists, so
# both share one implementation. Strings that repeat across records (addresses, methods,
# hosts, paths, rcodes) are interned so that the tuples do not keep one copy per record.

def _s(v):
    """``v`` interned when it is a string (addresses, names), else ``v`` itself."""
    return sys.intern(v) if type(v) is str else v


def _new_key(key: tuple) -> tuple:
    """A group key to keep: its strings interned (made once per group, not per record)."""
    return tuple([_s(v) for v in key])


def _group(groups: dict, key: tuple, item: tuple) -> None:
    g = groups.get(key)
    if g is None:
        groups[_new_key(key)] = [item]
    else:
        g.append(item)


# The endpoints of a record whose connection is not known: what `{}` gave as a connection.
_NO_ENDS = (None, "None:None")
_CONNECTED = "connected"
_OUTCOMES = {"REJ": "refused", "S0": "unanswered", "RSTOS0": "unanswered",
             "SH": "unanswered"}


def _ends(c) -> tuple:
    """(client ip, "server ip:port") of a connection record, as chains name them."""
    cl, sv = c.get("client") or {}, c.get("server") or {}
    return (cl.get("ip"), f"{sv.get('ip')}:{sv.get('port')}")


def _endpoint_map(conns: list) -> dict:
    return {c["id"]: _ends(c) for c in conns}


# a connection's outcome as _TcpTable keeps it (a byte): 0 is connected
_OUTCOME_NAMES = (_CONNECTED, "unanswered", "refused")
_OUTCOME_CODE = {o: i for i, o in enumerate(_OUTCOME_NAMES)}


class _TcpTable:
    """What chains and breakers keep of each TCP connection, as columns (about 30 bytes a
    connection): its endpoints (an index into ``ends``, the (client ip, "server
    ip:port") tuples, one per distinct pair), start ts, first frame, outcome, and whether
    HTTP records were seen on it; ``rows`` maps connection ids to rows."""

    def __init__(self):
        self.ends: list = []
        self._canon: dict = {}       # (client ip, server ip, server port) -> ends index
        self._index: dict = {}       # ends tuple -> its index
        self.rows = IdIndex()
        self.e = array("i")
        self.ts = Column("d")
        self.frame = Column("q")
        self.outcome = bytearray()
        self.has_http = bytearray()

    def add(self, c) -> None:
        cip, sv = c["client"]["ip"], c["server"]
        sip, sport = sv["ip"], sv["port"]
        k = (cip, sip, sport)
        ei = self._canon.get(k)
        if ei is None:
            cip, sip = _s(cip), _s(sip)
            e = (cip, sys.intern(f"{sip}:{sport}"))
            ei = self._index.get(e)
            if ei is None:
                ei = self._index[e] = len(self.ends)
                self.ends.append(e)
            self._canon[(cip, sip, sport)] = ei
        self.rows.set(c["id"], len(self.e))
        self.e.append(ei)
        self.ts.append(c["start_ts"])
        self.frame.append(c["first_frame"])
        self.outcome.append(_OUTCOME_CODE[_OUTCOMES.get(c.get("state"), _CONNECTED)])
        self.has_http.append(0)

    def ends_of(self, cid):
        """The endpoints tuple of connection ``cid``, None when it is not a TCP one."""
        row = self.rows.get(cid)
        return None if row < 0 else self.ends[self.e[row]]

    def reconnect_out(self) -> list:
        """tcp-reconnect chains: per client and server (in order of first connection), in
        start order, runs of failed connections ended by one that connected (or by the
        end), broken by a gap over RETRY_WINDOW_S."""
        n = len(self.e)
        e_, ts, fr, oc = self.e, self.ts, self.frame, self.outcome
        failing = {e_[i] for i in range(n) if oc[i]}
        if not failing:
            return []
        order = range(n) if is_sorted(ts) else order_by((ts,))
        runs: dict = {}
        outs: dict = {}
        for i in order:
            ei = e_[i]
            if ei not in failing:
                continue        # only connected ones: no chain
            run = runs.get(ei)
            if run is None:
                run = runs[ei] = []
                outs[ei] = []
            t = ts[i]
            if run and t - run[-1]["ts"] > RETRY_WINDOW_S:
                run = runs[ei] = []
            run.append({"frame": fr[i], "ts": t, "outcome": _OUTCOME_NAMES[oc[i]]})
            if not oc[i]:
                if len(run) >= 2:
                    cip, server = self.ends[ei]
                    outs[ei].append(_chain("tcp-reconnect", cip, server, "connect", run,
                                           True))
                runs[ei] = []
        for ei, run in runs.items():
            if len(run) >= 2:
                cip, server = self.ends[ei]
                outs[ei].append(_chain("tcp-reconnect", cip, server, "connect", run, False))
        return [c for lst in outs.values() for c in lst]


def _tcp_table(conns: list) -> _TcpTable:
    t = _TcpTable()
    for c in conns:
        if c["proto"] == "tcp":
            t.add(c)
    return t


class _Items:
    """HTTP requests of one chain group as columns: what _http_item gives of each."""

    __slots__ = ("ts", "frame", "status", "retry_after", "response_ts", "idem")

    def __init__(self):
        self.ts, self.frame, self.status = Column("d"), Column("q"), Column("q")
        self.retry_after, self.response_ts, self.idem = Sparse(), Column("d"), Sparse()

    def append(self, item: tuple) -> None:
        ts, frame, st, ra, rts, idem = item
        self.ts.append(ts)
        self.frame.append(frame)
        self.status.append(st)
        self.retry_after.append(ra)
        self.response_ts.append(rts)
        self.idem.append(idem)

    def __getitem__(self, i: int) -> tuple:
        return (self.ts[i], self.frame[i], self.status[i], self.retry_after[i],
                self.response_ts[i], self.idem[i])

    def __len__(self) -> int:
        return len(self.ts)


class _Calls:
    """A breaker's calls per client and server (an ends index): (ts, frame, ok) as
    columns."""

    def __init__(self):
        self.by: dict = {}

    def add(self, ei: int, ts, frame, ok: bool) -> None:
        c = self.by.get(ei)
        if c is None:
            c = self.by[ei] = (Column("d"), Column("q"), bytearray())
        c[0].append(ts)
        c[1].append(frame)
        c[2].append(ok)

    def out(self, tcp: _TcpTable) -> list:
        """The breakers, client and server pairs in order of their first connection
        that made a call: an HTTP call, or itself when it failed and carried none (those
        are added now)."""
        order: dict = {}
        e_, oc, hh = tcp.e, tcp.outcome, tcp.has_http
        for row in range(len(e_)):
            if hh[row] or oc[row]:
                ei = e_[row]
                if ei not in order:
                    order[ei] = None
                if not hh[row]:
                    self.add(ei, tcp.ts[row], tcp.frame[row], False)
        out = []
        for ei in order:
            ts, fr, ok = self.by[ei]
            rows = range(len(ts)) if not ts.irregular else \
                [j for j in range(len(ts)) if ts[j] is not None]
            if len(rows) < MIN_BREAKER_CALLS:
                continue
            idx = order_by((ts, fr, ok), rows)
            client, server = tcp.ends[ei]
            b = _breaker(client, server, [ts[j] for j in idx], lambda k: fr[idx[k]],
                         lambda k: bool(ok[idx[k]]))
            if b is not None:
                out.append(b)
        return out


def _syn_groups(syns: list) -> dict:
    groups: dict = {}
    for s in syns:
        groups.setdefault(s[2:], []).append(s)
    return groups


def _syn_again(groups: dict) -> set:
    """The 4-tuples that sent a SYN more than once (their connections are looked at)."""
    return {k[:4] for k, g in groups.items() if len(g) >= 2}


def _syn_answered(c, again: set):
    """The 4-tuple (strings interned) of a TCP connection record of ``again`` that was
    answered, else None."""
    cl, sv = c["client"], c["server"]
    k = (cl["ip"], cl["port"], sv["ip"], sv["port"])
    if k in again and (c.get("handshake") or {}).get("syn_ack"):
        return _new_key(k)
    return None


def _rto_groups(retrans: list) -> dict:
    groups: dict = {}
    for conn, seq, plen, frame, ts, ofr, ots in retrans:
        groups.setdefault((conn, seq), []).append((frame, ts, ofr, ots, plen))
    return groups


def _rto_need(groups: dict) -> set:
    """The connections of segments retransmitted twice or more (the ones chains name)."""
    return {conn for (conn, _seq), g in groups.items() if len(g) >= 2}


def _rto_ends(c) -> tuple:
    """("client ip:port", "server ip:port") of a connection record, for RTO chains."""
    cl, sv = c.get("client") or {}, c.get("server") or {}
    return (f"{cl.get('ip')}:{cl.get('port')}", f"{sv.get('ip')}:{sv.get('port')}")


def _http_item(r) -> tuple:
    """What chains and breakers read of an HTTP record: (request ts, request frame,
    status, retry-after, response ts, the first value of each idempotency header or
    None)."""
    idem = None
    for k, v in r.get("request_headers") or ():
        lk = k.lower()
        if lk in _IDEM_INDEX:
            if idem is None:
                idem = [None] * len(_IDEM_NAMES)
            i = _IDEM_INDEX[lk]
            if idem[i] is None:
                idem[i] = v
    return (r.get("request_ts"), r.get("request_frame"), r.get("status"), r.get("retry_after"),
            r.get("response_ts"), None if idem is None else tuple(idem))


def _add_http(groups: dict, r, e: tuple, item: tuple) -> None:
    """An HTTP request that can be retried (``item``: its _http_item), grouped by what a
    retry repeats (the groups' items as columns: _Items)."""
    if r.get("method") and item[0] is not None:
        key = (e, r.get("method"), r.get("host"), r.get("target"),
               r.get("request_body_sha256"))
        g = groups.get(key)
        if g is None:
            g = groups[_new_key(key)] = _Items()
        g.append(item)


def _http_run(items: list) -> list:
    """Request dicts of what _http_chain reads, rebuilt from the tuples of one chain."""
    out = []
    for ts, frame, st, ra, rts, idem in items:
        hs = [] if idem is None else [(h, v) for h, v in zip(_IDEM_NAMES, idem)
                                      if v is not None]
        out.append({"request_frame": frame, "request_ts": ts, "status": st,
                    "retry_after": ra, "response_ts": rts, "request_headers": hs})
    return out


def _add_dns(groups: dict, r) -> None:
    """A DNS query: (ts, frame, outcome, answered, retransmission) by connection, name, type
    and id."""
    if not r.get("query_frame") or r.get("query_ts") is None:
        return
    answered = bool(r.get("response_frame"))
    _group(groups, (r.get("conn"), r.get("qname"), r.get("qtype"), r.get("id")),
           (r.get("query_ts"), r["query_frame"], _s(r.get("rcode")) if answered else
            "no response", answered, bool(r.get("retransmission"))))


def _add_grpc(groups: dict, prev: list, r, e: tuple) -> None:
    """A gRPC call (ts, frame, outcome, failed) by endpoints and path; a call that
    announces earlier attempts is listed in ``prev`` too."""
    path, ts = r.get("path"), r.get("request_ts")
    frame = (r.get("frames") or [None])[0]
    outcome = _s(r.get("grpc_status_name") or r.get("grpc_status"))
    if ts is not None:
        _group(groups, (e, path), (ts, frame, outcome, r.get("grpc_status") in (None, 4, 8, 14)))
    n = r.get("previous_rpc_attempts")
    if n:
        prev.append((_s(path), frame, ts, outcome, n))


def _add_smtp(groups: dict, r, e: tuple) -> None:
    """An SMTP transaction (ts, frame, reply code, failed) by endpoints and envelope."""
    ts = r.get("reply_ts")
    if ts is None:
        return
    code = r.get("reply_code")
    key = f"MAIL FROM {r.get('mail_from')} TO {','.join(r.get('rcpt_to') or [])}"
    _group(groups, (e, key), (ts, (r.get("frames") or [None])[0], code,
                              code is None or 400 <= code < 500))


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


def _syn_out(groups: dict, answered) -> list:
    out = []
    for (src, sport, dst, dport, _seq), g in groups.items():
        if len(g) < 2:
            continue
        ok = (src, sport, dst, dport) in answered
        attempts = [{"frame": f, "ts": ts, "outcome": "no answer"} for f, ts, *_ in g]
        if ok:
            attempts[-1]["outcome"] = "answered"
        out.append(_chain("syn", f"{src}:{sport}", f"{dst}:{dport}", "SYN", attempts, ok))
    return out


def syn_chains(syns: list, conns: list) -> list:
    """``syns``: (frame, ts, src, sport, dst, dport, seq) of SYNs without ACK."""
    groups = _syn_groups(syns)
    # the 4-tuples that sent a SYN more than once and that a connection of conns answered
    again = _syn_again(groups)
    answered = set()
    if again:
        for c in conns:
            if c["proto"] == "tcp":
                k = _syn_answered(c, again)
                if k is not None:
                    answered.add(k)
    return _syn_out(groups, answered)


def _rto_out(groups: dict, ends: dict) -> list:
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
        client, server = ends.get(conn) or _rto_ends({})
        out.append(_chain("rto", client, server, f"conn {conn} seq {seq} len {g[0][4]}",
                          attempts, True))
    return out


def rto_chains(retrans: list, conns: list) -> list:
    """The same data segment retransmitted again and again (at least twice)."""
    groups = _rto_groups(retrans)
    need = _rto_need(groups)
    return _rto_out(groups, {c["id"]: _rto_ends(c) for c in conns if c["id"] in need})


def reconnect_chains(conns: list) -> list:
    return _tcp_table(conns).reconnect_out()


def _hdr(r, name):
    for k, v in r.get("request_headers") or []:
        if k.lower() == name:
            return v
    return None


def _http_out(groups: dict) -> list:
    """``groups``: _add_http's. Each group's requests in time order (ties in arrival
    order); a run of failures ended by a success (or by the end), broken by a gap over
    RETRY_WINDOW_S, is a chain when it has two attempts or more."""
    out = []
    for ((client, server), method, host, target, _digest), g in groups.items():
        ts, status = g.ts, g.status
        run: list = []      # row numbers
        for i in order_by((ts,)):
            st = status[i]
            failed = st is None or st in RETRYABLE
            if run and (ts[i] - ts[run[-1]] > RETRY_WINDOW_S):
                run = []
            run.append(i)
            if not failed:
                if len(run) >= 2:
                    out.append(_http_chain(client, server, method, host, target,
                                           _http_run([g[j] for j in run]), True))
                run = []
        if len(run) >= 2:
            out.append(_http_chain(client, server, method, host, target,
                                   _http_run([g[j] for j in run]), False))
    return out


def _ts_or_0(t: tuple):
    return t[0] or 0


def _ts(t: tuple):
    return t[0]


def http_chains(records: list, conns: list) -> list:
    ends = _endpoint_map(conns)
    groups: dict = {}
    for r in records:
        if r.get("type") == "http":
            _add_http(groups, r, ends.get(r.get("conn")) or _NO_ENDS, _http_item(r))
    return _http_out(groups)


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


def _dns_out(groups: dict) -> list:
    out = []
    for (conn, qname, qtype, _id), rs in groups.items():
        if len(rs) < 2 or not any(it[4] for it in rs):
            continue
        rs.sort(key=_ts_or_0)
        attempts = [{"frame": frame, "ts": ts, "outcome": o} for ts, frame, o, _a, _r in rs]
        ok = any(it[3] for it in rs)
        out.append(_chain("dns", str(conn), str(conn), f"{qname} {qtype}", attempts, ok))
    return out


def dns_chains(records: list) -> list:
    groups: dict = {}
    for r in records:
        if r.get("type") == "dns":
            _add_dns(groups, r)
    return _dns_out(groups)


def _generic(kind, groups: dict) -> list:
    """Chains of the same request repeated after failures (gRPC calls, SMTP transactions):
    ``groups``: ((client, server), key) -> [(ts, frame, outcome, failed)]."""
    out = []
    for ((client, server), key), rs in groups.items():
        rs.sort(key=_ts)
        run: list = []
        for it in rs:
            if run and it[0] - run[-1][0] > RETRY_WINDOW_S:
                run = []
            run.append(it)
            if not it[3]:
                if len(run) >= 2:
                    out.append((client, server, key, run, True))
                run = []
        if len(run) >= 2:
            out.append((client, server, key, run, False))
    return [_chain(kind, cl, sv, k, [{"frame": frame, "ts": ts, "outcome": o}
                                     for ts, frame, o, _f in run], ok)
            for cl, sv, k, run, ok in out]


def _grpc_out(groups: dict, prev: list) -> list:
    chains = _generic("grpc", groups)
    # a client that announces grpc-previous-rpc-attempts is retrying even without failures seen
    for path, frame, ts, outcome, n in prev:
        if not any(c["key"] == path for c in chains):
            chains.append(_chain("grpc", None, None, path, [
                {"frame": frame, "ts": ts, "outcome": outcome}], True,
                previous_rpc_attempts=n))
    return chains


def grpc_chains(records, conns) -> list:
    ends = _endpoint_map(conns)
    groups: dict = {}
    prev: list = []
    for r in records:
        if r.get("type") == "grpc":
            _add_grpc(groups, prev, r, ends.get(r.get("conn")) or _NO_ENDS)
    return _grpc_out(groups, prev)


def smtp_chains(records, conns) -> list:
    ends = _endpoint_map(conns)
    groups: dict = {}
    for r in records:
        if r.get("type") == "smtp-envelope":
            _add_smtp(groups, r, ends.get(r.get("conn")) or _NO_ENDS)
    return _generic("smtp", groups)


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

def _ok(st) -> bool:
    """An HTTP call a breaker counts as a success: answered, not 5xx nor 429."""
    return st is not None and st < 500 and st != 429


def _breaker(client, server, tss: list, frame_at, ok_at) -> dict | None:
    """The breaker of one client and server, from its calls in (ts, frame, ok) order:
    ``tss`` their timestamps, ``frame_at(k)`` and ``ok_at(k)`` the k-th call's frame and
    outcome; None when the calls show none."""
    n = len(tss)
    gaps = [tss[k + 1] - tss[k] for k in range(n - 1)]
    usual = statistics.median(sorted(gaps)[: max(1, len(gaps) // 2)])
    if usual <= 0:
        return None
    trans, fails, threshold, opens = [], 0, None, []
    state = "closed"
    for i in range(n):
        ts = tss[i]
        if state == "open":
            trans.append({"state": "half-open", "ts": ts, "frame": frame_at(i)})
            state = "half-open"
        if ok_at(i):
            fails = 0
            if state == "half-open":
                trans.append({"state": "closed", "ts": ts, "frame": frame_at(i)})
            state = "closed"
            continue
        fails += 1
        nxt = tss[i + 1] if i + 1 < n else None
        long_gap = nxt is not None and nxt - ts > BREAKER_GAP_FACTOR * usual
        if long_gap and (state == "half-open" or fails >= 2):
            if threshold is None:
                threshold = fails
            trans.append({"state": "open", "ts": ts, "frame": frame_at(i)})
            opens.append(nxt - ts)
            state = "open"
    if opens and any(t["state"] == "half-open" for t in trans):
        return {"type": "breaker", "client": client, "server": server,
                "transitions": trans, "failure_threshold": threshold,
                "open_s": round(statistics.median(opens), 6),
                "call_interval_s": round(usual, 6)}
    return None


def _add_call(tcp: _TcpTable, calls: _Calls, cid, item: tuple) -> bool:
    """An HTTP call (``item``: its _http_item) on connection ``cid``, for breakers; False
    when ``cid`` is not a TCP connection of ``tcp`` (then it is no breaker's call)."""
    row = tcp.rows.get(cid)
    if row < 0:
        return False
    tcp.has_http[row] = 1
    calls.add(tcp.e[row], item[0], item[1], _ok(item[2]))
    return True


def breakers(records: list, conns: list) -> list:
    tcp, calls = _tcp_table(conns), _Calls()
    for r in records:
        if r.get("type") == "http":
            _add_call(tcp, calls, r.get("conn"), _http_item(r))
    return calls.out(tcp)


# ----------------------------------------------------------------------------- observer

class RetryObserver(Observer):
    """Every retry chain, storm and breaker of a run (what :func:`detect` returns), from
    one pass over its records. ``syns``: the SYNs to chain, ``res.syns`` when None.

    Kept per TCP connection: a row of _TcpTable's columns (about 30 bytes); per HTTP
    request on a TCP connection a row of its chain group's columns (_Items, about 35
    bytes) and of its client and server's breaker calls (_Calls, 17 bytes); per DNS
    query, gRPC call and SMTP transaction a tuple of four or five scalars. Of UDP flows
    nothing: the records that HTTP, gRPC and SMTP chains name endpoints for come from TCP
    streams only (UDP carries DNS and the datagram protocols, whose chains name none)."""

    def __init__(self, syns: list | None = None):
        self.syns = syns

    def start(self, res) -> None:
        syns = self.syns if self.syns is not None else getattr(res, "syns", None)
        self._syn = _syn_groups(syns or [])
        self._again = _syn_again(self._syn)
        self._answered = set()
        # RTO chains name the connections of segments retransmitted twice or more: only
        # those connections' endpoints are kept (the segments are grouped again at the end)
        self._rto_need = _rto_need(_rto_groups(getattr(res, "retrans", [])))
        self._rto_ends = {}
        self._tcp = _TcpTable()
        self._http = {}           # _add_http groups
        self._calls = _Calls()
        self._dns = {}
        self._grpc = {}
        self._grpc_prev = []
        self._smtp = {}

    def conn(self, c: dict) -> None:
        cid = c["id"]
        if cid in self._rto_need:
            self._rto_ends[cid] = _rto_ends(c)
        if c["proto"] != "tcp":
            return
        if self._again:
            k = _syn_answered(c, self._again)
            if k is not None:
                self._answered.add(k)
        self._tcp.add(c)

    def record(self, r: dict) -> None:
        t = r.get("type")
        if t == "http":
            cid = r.get("conn")
            it = _http_item(r)
            # the same item serves the chains and the connection's breaker calls
            if _add_call(self._tcp, self._calls, cid, it):
                _add_http(self._http, r, self._tcp.ends_of(cid), it)
            else:
                _add_http(self._http, r, _NO_ENDS, it)
        elif t == "dns":
            _add_dns(self._dns, r)
        elif t == "grpc":
            e = self._tcp.ends_of(r.get("conn"))
            _add_grpc(self._grpc, self._grpc_prev, r, _NO_ENDS if e is None else e)
        elif t == "smtp-envelope":
            e = self._tcp.ends_of(r.get("conn"))
            _add_smtp(self._smtp, r, _NO_ENDS if e is None else e)

    def finish(self, res) -> list[dict]:
        rto = _rto_groups(getattr(res, "retrans", []))
        chains = _syn_out(self._syn, self._answered) + _rto_out(rto, self._rto_ends) + \
            self._tcp.reconnect_out() + _http_out(self._http) + _dns_out(self._dns) + \
            _grpc_out(self._grpc, self._grpc_prev) + _generic("smtp", self._smtp)
        chains.sort(key=_first_ts)
        return chains + storms(chains) + self._calls.out(self._tcp)


def _first_ts(c: dict):
    return c["attempts"][0]["ts"] or 0


def detect(res, syns: list | None = None) -> list[dict]:
    return run_observer(res, RetryObserver(syns))


def detect_path(path: str) -> list[dict]:
    from dissect.engine import Engine
    res = Engine(path).run()
    return detect(res), res
