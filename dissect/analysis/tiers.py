"""Cascades: request trees across services, retry amplification, and where the time went.

A downstream request (B -> C) is linked to the upstream request (A -> B) that caused it when
B is the server of the upstream request and the client of the downstream one (same
address), and the downstream request starts after the upstream request reached B and ends
before B answered. When several upstream requests at B could have caused it, the link is
not guessed: the record says ``"ambiguous": true``.

Transactions come from HTTP/1.x records, HTTP/2 streams and gRPC calls (``response_end_ts``,
the server's END_STREAM, ends them), and ``tcp-exchange`` records (the request/response
turns of TCP connections of no known protocol).

A user request at the edge is the edge client's retries of one request (the same client,
server, method, target and body, repeated within the retry window after a failure) or a
single request. Plain TCP turns carry no outcome, so each is its own user request.

The analysis is an observer of the run's records (:class:`CascadeObserver`): during the
pass it keeps, per transaction, a tuple of the few fields it uses, and builds the
transactions, their links and the trees at the end.

A circuit breaker inside a tier shows from both sides of it: the tier answers failures
without any call below (short-circuited) after its calls below failed; its next call below
is the half-open probe, which closes the breaker or opens it again.

Records (JSON Lines)::

    {"type": "cascade", "root": {"client", "server", "proto", "method", "target", "frame",
                                 "ts", "status"},
     "tiers": [{"tier": 0, "server": "ip:port", "attempts": 3, "statuses": [502, 502, 200],
                "short_circuited": 0, "own_s": ..., "waiting_s": ...}, ...],
     "amplification": [1, 3, 7],      # the user's one request, then attempts per tier
     "delay_tier": 1,                 # the tier with the most time of its own
     "ambiguous": false,
     "confidence": 1.0,               # the weakest link of the tree (link_confidence)
     "tree": [{"server", "confidence" (of its link to its parent; null at the root),
               "proto", "method", "target", "frame", "ts",
                                   "duration_s", "status", "ambiguous", "short_circuited",
                                   "children": [...]}, ...]}
    {"type": "cascade-breaker", "service": "ip:port", "below": "ip:port",
     "transitions": [{"t", "to": "open|half-open|closed", "reason", "frame"}],
     "short_circuited": 4,            # requests answered without a call below
     "attempts_below_per_request_when_forwarded": 1.4,
     "open_periods": [{"from", "until", "requests"}]}
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from hashlib import sha256
from operator import attrgetter
from sys import intern

from dissect.analysis import observe
from dissect.columns.compact import IdIndex
from dissect.store import RecordStore

# a downstream request may start/end this much outside its upstream one (clock of one
# capture point: only the capture's own timestamps matter)
SLACK_S = 0.0005
# The confidence of a link that needed that slack (the call started before its parent
# request was complete in the capture, or ended after the answer left).
CLOCK_SLACK_CONFIDENCE = 0.8


class _Tx:
    __slots__ = ("body", "children", "client", "end", "failed", "frame", "host", "method",
                 "parents", "proto", "server", "start", "status", "target")

    def __init__(self, rec, client, server, proto="http", fields=None, host=None):
        """A transaction of record ``rec``, or (``rec`` None) of ``fields``, the projection
        :func:`_fields` made of its record during the pass. ``host`` is the server's
        address without the port (worked out from ``server`` when not given)."""
        if fields is None:
            fields = _fields(rec, proto)
        self.client = client
        self.server = server
        self.host = server.rsplit(":", 1)[0] if host is None else host
        self.proto = proto
        self.start, self.end, self.frame, a, b, c, self.body, _, _, _ = fields
        self.children: list = []
        self.parents: list = []
        if proto == "grpc":
            # a: path, b: grpc_status, c: grpc_status_name
            self.method, self.target = "gRPC", a
            self.status = c or b
            # OK, and errors of the caller's own making, are not failures of the callee
            self.failed = b is None or b not in (0, 3, 5, 6, 7, 9, 11, 12, 16)
        elif proto == "tcp":
            # a: request_bytes, b: response_bytes, c: whether there was a response
            self.method, self.target = "TCP", f"{a} B request"
            self.status = f"{b} B response" if c else None
            self.failed = not c
        else:
            # a: method, b: target (an HTTP/2 stream's path), c: status
            self.method, self.target, self.status = a, b, c
            self.failed = not isinstance(c, int) or c >= 500 or c == 429


def _i(s):
    """``s`` interned when it is a string: methods, targets, statuses repeat across records,
    and a projection must not keep one copy per record alive."""
    return intern(s) if type(s) is str else s


def _fields(r: dict, proto: str, conn=None, stream=None) -> tuple:
    """What a transaction keeps of its record: ``(start, end, frame, a, b, c, body, proto,
    conn, stream)``, scalars but for the last two, where ``a, b, c`` depend on ``proto`` (see
    :class:`_Tx`), ``body`` is what tells the same request's retries apart
    (:func:`_group_retries`), and ``conn``, ``stream`` are the pass' own (what it keeps
    of the record's connection; an HTTP/2 stream's ``(conn, stream_id)``)."""
    start = r.get("request_ts")
    end = r.get("response_end_ts") or r.get("response_ts") or start
    frame = r.get("request_frame") or (r.get("frames") or [None])[0]
    if proto == "grpc":
        # the request messages' data, hashed: each may be up to 64 KiB, and only equality
        # matters
        data = tuple(m.get("data") for m in r.get("messages") or ()
                     if m.get("direction") == "request")
        body = sha256(repr(data).encode()).digest() if data else None
        return (start, end, frame, _i(r.get("path")), r.get("grpc_status"),
                _i(r.get("grpc_status_name")), body, proto, conn, stream)
    if proto == "tcp":
        return (start, end, frame, r.get("request_bytes"), r.get("response_bytes"),
                r.get("response_frame") is not None, None, proto, conn, stream)
    # the bulk of the records: _i inlined
    method = r.get("method")
    if type(method) is str:
        method = intern(method)
    target = r.get("path") if proto == "http2" else r.get("target")
    if type(target) is str:
        target = intern(target)
    status = r.get("status")
    if type(status) is str:
        status = intern(status)
    body = r.get("request_body_sha256")
    if type(body) is str:
        body = intern(body)
    return (start, end, frame, method, target, status, body, proto, conn, stream)


# the application records that are transactions, and their ``proto``
_PROTOS = {"http": "http", "grpc": "grpc", "http2": "http2", "tcp-exchange": "tcp"}


class TransactionsObserver(observe.Observer):
    """Every request/response of the capture (see :func:`_transactions`), kept as
    projections during the pass and made :class:`_Tx` objects at the end.

    Per TCP connection: 4 bytes, the index of its ``(client address, server ip:port,
    server address)`` (interned, one tuple per distinct one). Per transaction record:
    :func:`_fields`' tuple of it (with that index), in a record store (dissect.store: on
    disk, but for the batch being filled); per gRPC record also its ``(conn,
    stream_id)``, because an HTTP/2 stream that carried a gRPC call is that call,
    whichever of the two records comes first. Which servers each address serves and
    calls is kept too (a few sets), so that :class:`CascadeObserver` reads nothing back
    when no transaction can be another's call below."""

    def __init__(self):
        self._ends: list = []        # distinct (client, server, host) tuples
        self._eindex: dict = {}      # such a tuple -> its index
        self._canon: dict = {}       # (client ip, server ip, server port) -> index
        self._rows = IdIndex()       # connection id -> index
        self._grpc: set = set()
        self._txs = RecordStore(prefix="dissect-tx-")
        self._seen = bytearray()     # per index: whether a transaction used it
        self._serves: dict = {}      # server address -> its server endpoints
        self._calls: dict = {}       # client address -> the server endpoints it called

    def conn(self, c):
        # the four record kinds ride on TCP only: UDP flows cannot be their connection
        if c.get("proto") == "udp":
            return
        s = c["server"]
        ip = s["ip"]
        cip = c["client"]["ip"]
        k = (cip, ip, s["port"])
        i = self._canon.get(k)
        if i is None:
            t = (intern(cip), intern(f"{ip}:{s['port']}"), intern(ip))
            i = self._eindex.get(t)
            if i is None:
                i = self._eindex[t] = len(self._ends)
                self._ends.append(t)
                self._seen.append(0)
            self._canon[k] = i
        self._rows.set(c["id"], i)

    def record(self, r):
        proto = _PROTOS.get(r.get("type"))
        if proto is None:
            return
        conn = r.get("conn")
        stream = None
        if proto == "grpc":
            self._grpc.add((conn, r.get("stream_id")))
        elif proto == "http2":
            stream = (conn, r.get("stream_id"))
        if r.get("request_ts") is None:
            return
        i = self._rows.get(conn)
        if i >= 0:
            self._txs.append_wrapped(_fields(r, proto, i, stream), "tx")
            if not self._seen[i]:
                self._seen[i] = 1
                client, server, host = self._ends[i]
                self._serves.setdefault(host, set()).add(server)
                self._calls.setdefault(client, set()).add(server)

    def finish(self, res):
        return self._build(False)

    def _may_link(self) -> bool:
        """Whether some transaction could be a call below another: sent by an address
        that serves transactions, to another server than the one it serves (what
        :func:`link` asks of a parent and a child, but for the times)."""
        for host, served in self._serves.items():
            called = self._calls.get(host)
            if called and (len(called) > 1 or len(served) > 1 or called != served):
                return True
        return False

    def _build(self, linked_only: bool) -> list[_Tx]:
        """The transactions; with ``linked_only``, none at all when none can be another's
        call below (then :func:`link` could link nothing)."""
        grpc, ends, store, out = self._grpc, self._ends, self._txs, []
        if not (linked_only and not self._may_link()):
            for p in store:
                if p[9] is None or p[9] not in grpc:
                    client, server, host = ends[p[8]]
                    out.append(_Tx(None, client, server, p[7], p, host))
        store.close()
        self.__init__()
        return out


def _transactions(res) -> list[_Tx]:
    """Every request/response of the capture: HTTP/1.x, HTTP/2 and gRPC streams, and the
    request/response turns of TCP connections of no known protocol."""
    return observe.run(res, TransactionsObserver())


_start = attrgetter("start")


def link(txs: list[_Tx]) -> int:
    """Parents of every transaction: upstream requests served on the host that sent it,
    to another service than the one it calls, that enclose it in time. Downstream
    candidates are looked up by start time (sorted, bisected), so a busy host costs
    O(n log n + links), not every pair. Returns how many calls were linked to their one
    parent (made its children)."""
    by_client: dict = {}
    for t in txs:
        lst = by_client.get(t.client)
        if lst is None:
            by_client[t.client] = [t]
        else:
            lst.append(t)
    starts: dict = {}
    for host, lst in by_client.items():
        lst.sort(key=_start)
        starts[host] = [x.start for x in lst]
    for up in txs:
        host = up.host
        lst = by_client.get(host)
        if not lst:
            continue
        st = starts[host]
        end = up.end + SLACK_S
        server = up.server
        i = bisect_left(st, up.start - SLACK_S)
        j = bisect_right(st, end)
        for down in lst[i:j]:
            # a request to the same service is a peer of the upstream one (another
            # client's), not a call it made
            if down is not up and down.server != server and down.end <= end:
                down.parents.append(up)
    n = 0
    for t in txs:
        if len(t.parents) == 1:
            t.parents[0].children.append(t)
            n += 1
    return n


def link_confidence(parent: _Tx, child: _Tx) -> float:
    """How cleanly a linked call nests in its one candidate parent: 1.0 when it starts
    after the parent's request and ends before its answer, CLOCK_SLACK_CONFIDENCE when
    it needed the clock slack at either edge. (A call that fits in more than one parent is
    not linked at all: ``ambiguous``.)"""
    if child.start >= parent.start and child.end <= parent.end:
        return 1.0
    return CLOCK_SLACK_CONFIDENCE


def _node(t: _Tx, short: set) -> dict:
    conf = link_confidence(t.parents[0], t) if len(t.parents) == 1 else None
    return {"server": t.server, "confidence": conf, "proto": t.proto, "method": t.method,
            "target": t.target, "frame": t.frame, "ts": t.start,
            "duration_s": round(t.end - t.start, 6), "status": t.status,
            "ambiguous": len(t.parents) > 1, "short_circuited": t in short,
            "children": [_node(c, short) for c in sorted(t.children, key=lambda x: x.start)]}


def _descendants(t: _Tx):
    for c in t.children:
        yield c
        yield from _descendants(c)


def _union(intervals) -> float:
    tot, cur = 0.0, None
    for a, b in sorted(intervals):
        if cur is None or a > cur[1]:
            if cur:
                tot += cur[1] - cur[0]
            cur = [a, b]
        else:
            cur[1] = max(cur[1], b)
    if cur:
        tot += cur[1] - cur[0]
    return tot


def _group_retries(roots: list[_Tx]) -> list[list[_Tx]]:
    """The edge client's retries of one user request as one group: the same request
    (client, server, method, target, body) repeated within the retry window after a
    failure. Plain TCP turns carry no outcome, so each is its own group."""
    from dissect.analysis.backoff_chains import RETRY_WINDOW_S
    by_key: dict = {}
    groups = []
    for t in sorted(roots, key=lambda x: x.start):
        if t.proto == "tcp":
            groups.append([t])
            continue
        key = (t.client, t.server, t.proto, t.method, t.target, t.body)
        run = by_key.get(key)
        if run and run[-1].failed and t.start - run[-1].start <= RETRY_WINDOW_S:
            run.append(t)
        else:
            run = by_key[key] = [t]
            groups.append(run)
    return groups


def _breakers(txs: list[_Tx], calls_to: dict) -> tuple[list[dict], set]:
    """Circuit breakers seen from both sides of a tier: a service that calls another one
    below answered failures without making any call below (short-circuited) after its
    calls below had failed; the next call below is the half-open probe, whose outcome
    closes the breaker or opens it again. Returns the ``cascade-breaker`` records and the
    short-circuited transactions."""
    linked = {id(p) for t in txs for p in t.parents}
    by_server: dict = {}
    for t in txs:
        by_server.setdefault(t.server, []).append(t)
    out, short = [], set()
    for svc, below in sorted(calls_to.items()):
        host = svc.rsplit(":", 1)[0]
        ups = sorted(by_server.get(svc, ()), key=lambda x: x.start)
        downs = sorted((t for t in txs if t.client == host and t.server == below),
                       key=lambda x: x.start)
        sc = [t for t in ups if t.failed and id(t) not in linked]
        if not sc:
            continue
        events = sorted([(t.start, 1, t) for t in sc] + [(t.start, 0, t) for t in downs],
                        key=lambda e: (e[0], e[1]))
        state, last_failed, period, periods = "closed", None, None, []
        transitions = []
        for ts, kind, t in events:
            if kind == 1:
                if state == "closed":
                    if last_failed is None:
                        continue          # a failure with nothing failing below: not ours
                    state = "open"
                    transitions.append({"t": last_failed.end, "to": "open",
                                        "reason": "calls below failed",
                                        "frame": last_failed.frame})
                    period = {"opened_ts": last_failed.end, "requests": 0}
                    periods.append(period)
                short.add(t)
                period["requests"] += 1
                continue
            # a call below
            if state == "open":
                transitions.append({"t": t.start, "to": "half-open",
                                    "reason": "probe call", "frame": t.frame})
                period["probe_ts"] = t.start
                state = "open" if t.failed else "closed"
                transitions.append({"t": t.end, "to": state,
                                    "reason": "probe failed" if t.failed else "probe succeeded",
                                    "frame": t.frame})
                if t.failed:
                    period = {"opened_ts": t.end, "requests": 0}
                    periods.append(period)
            last_failed = t if t.failed else None
        # how many calls below each request made while the breaker was closed
        forwarded = [u for u in ups if u.children]
        per_request = (sum(len(u.children) for u in forwarded) / len(forwarded)
                       if forwarded else None)
        periods = [p for p in periods if p["requests"] or p.get("probe_ts")]
        out.append({"type": "cascade-breaker", "service": svc, "below": below,
                    "transitions": [x | {"t": round(x["t"], 6)} for x in transitions],
                    "short_circuited": sum(p["requests"] for p in periods),
                    "attempts_below_per_request_when_forwarded":
                        round(per_request, 3) if per_request is not None else None,
                    "open_periods": [{"from": round(p["opened_ts"], 6),
                                      "until": round(p["probe_ts"], 6)
                                      if p.get("probe_ts") else None,
                                      "requests": p["requests"]} for p in periods]})
    return out, short


class CascadeObserver(TransactionsObserver):
    """:func:`cascade_records` as an observer: the transactions' projections during the
    pass, the trees and breakers at the end."""

    def finish(self, res):
        return _cascades(self._build(True))


def cascade_records(res) -> list[dict]:
    """``cascade`` records (one per user request that caused requests below, or that a
    tier short-circuited), then ``cascade-breaker`` records."""
    return observe.run(res, CascadeObserver())


def _cascades(txs: list[_Tx]) -> list[dict]:
    """:func:`cascade_records` of the capture's transactions."""
    if not link(txs):
        # no call below any other: no tree, no service calling another (so no breaker
        # seen from both sides), nothing to group
        return []
    calls_to: dict = {}
    for t in txs:
        for c in t.children:
            calls_to.setdefault(t.server, {}).setdefault(c.server, 0)
            calls_to[t.server][c.server] += 1
    calls_to = {s: max(d, key=d.get) for s, d in calls_to.items()}
    breakers, short = _breakers(txs, calls_to)
    roots = [t for t in txs if not t.parents]
    out = []
    for g in sorted(_group_retries(roots), key=lambda g: g[0].start):
        if not any(t.children or t in short for t in g):
            continue     # nothing downstream: not a cascade
        tiers, level, ambiguous = [], g, False
        while level:
            own, waiting = 0.0, 0.0
            for t in level:
                w = _union([(c.start, c.end) for c in t.children])
                waiting += w
                own += max(0.0, (t.end - t.start) - w)
                ambiguous |= len(t.parents) > 1
            n_short = sum(1 for t in level if t in short)
            tiers.append({"tier": len(tiers), "server": level[0].server, "attempts": len(level),
                          "statuses": [t.status for t in level],
                          "short_circuited": n_short,
                          "own_s": round(own, 6), "waiting_s": round(waiting, 6)})
            below = [c for t in level for c in sorted(t.children, key=lambda x: x.start)]
            if not below and n_short and level[0].server in calls_to:
                # the tier below was never reached: its breaker held every attempt
                tiers.append({"tier": len(tiers), "server": calls_to[level[0].server],
                              "attempts": 0, "statuses": [], "short_circuited": 0,
                              "own_s": 0.0, "waiting_s": 0.0})
            level = below
        first = g[0]
        out.append({"type": "cascade",
                    "root": {"client": first.client, "server": first.server,
                             "proto": first.proto, "method": first.method,
                             "target": first.target, "frame": first.frame, "ts": first.start,
                             "status": g[-1].status},
                    "tiers": tiers, "amplification": [1] + [t["attempts"] for t in tiers],
                    "delay_tier": max(tiers, key=lambda t: t["own_s"])["tier"],
                    "ambiguous": ambiguous,
                    "confidence": min([link_confidence(c.parents[0], c) for t in g
                                       for c in _descendants(t)] or [1.0]),
                    "tree": [_node(t, short) for t in g]})
    return out + breakers


def worst_amplification(records: list[dict]) -> dict | None:
    cs = [r for r in records if r.get("type") == "cascade"]
    return max(cs, key=lambda r: r["amplification"][-1], default=None)
