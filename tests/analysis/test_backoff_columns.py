"""The retry analysis keeps connections, HTTP requests and breaker calls as columns
(dissect/analysis/backoff_chains.py: _TcpTable, _Items, _Calls). Here the same chains
and breakers are computed the way they were before, from a tuple per connection and per
request (the functions below, kept as the reference), and compared on random
connections and requests: ties, timestamps out of order, missing values, unknown
connections, several clients and servers."""

from __future__ import annotations

import statistics

from hypothesis import given, settings
from hypothesis import strategies as st

from dissect.analysis import backoff_chains as bc
from dissect.analysis.observe import observe

# ----------------------------------------------------------------------------- reference


def _ref_tcp_map(conns):
    out = {}
    for c in conns:
        if c["proto"] != "tcp":
            continue
        sv = c["server"]
        e = (c["client"]["ip"], f"{sv['ip']}:{sv['port']}")
        out[c["id"]] = (e, c["start_ts"], c["first_frame"],
                        bc._OUTCOMES.get(c.get("state"), bc._CONNECTED))
    return out


def _ref_reconnect(conns):
    by: dict = {}
    for e, ts, frame, o in sorted(_ref_tcp_map(conns).values(), key=lambda t: t[1]):
        by.setdefault(e, []).append((ts, frame, o))
    out = []
    for (cip, server), cs in by.items():
        run = []
        for ts, frame, o in cs:
            if run and ts - run[-1]["ts"] > bc.RETRY_WINDOW_S:
                run = []
            run.append({"frame": frame, "ts": ts, "outcome": o})
            if o == bc._CONNECTED:
                if len(run) >= 2:
                    out.append(bc._chain("tcp-reconnect", cip, server, "connect", run, True))
                run = []
        if len(run) >= 2:
            out.append(bc._chain("tcp-reconnect", cip, server, "connect", run, False))
    return out


def _ref_http(records, conns, tcp_only=False):
    # (the observer names the endpoints of TCP connections only)
    ends = {c["id"]: bc._ends(c) for c in conns if not tcp_only or c["proto"] == "tcp"}
    groups: dict = {}
    for r in records:
        if r.get("type") != "http":
            continue
        it = bc._http_item(r)
        if r.get("method") and it[0] is not None:
            e = ends.get(r.get("conn")) or bc._NO_ENDS
            groups.setdefault((e, r.get("method"), r.get("host"), r.get("target"),
                               r.get("request_body_sha256")), []).append(it)
    out = []
    for ((client, server), method, host, target, _d), rs in groups.items():
        rs.sort(key=lambda t: t[0] or 0)
        run: list = []
        for it in rs:
            failed = it[2] is None or it[2] in bc.RETRYABLE
            if run and it[0] - run[-1][0] > bc.RETRY_WINDOW_S:
                run = []
            run.append(it)
            if not failed:
                if len(run) >= 2:
                    out.append(bc._http_chain(client, server, method, host, target,
                                              bc._http_run(run), True))
                run = []
        if len(run) >= 2:
            out.append(bc._http_chain(client, server, method, host, target,
                                      bc._http_run(run), False))
    return out


def _ref_breakers(records, conns):
    http_calls: dict = {}
    for r in records:
        if r.get("type") == "http":
            http_calls.setdefault(r.get("conn"), []).append(bc._http_item(r))
    calls: dict = {}
    for cid, (e, ts, frame, o) in _ref_tcp_map(conns).items():
        hs = http_calls.get(cid)
        if hs:
            calls.setdefault(e, []).extend([(h[0], h[1], bc._ok(h[2])) for h in hs])
        elif o != bc._CONNECTED:
            calls.setdefault(e, []).append((ts, frame, False))
    out = []
    for (client, server), cs in calls.items():
        cs = sorted(x for x in cs if x[0] is not None)
        if len(cs) < bc.MIN_BREAKER_CALLS:
            continue
        gaps = [b[0] - a[0] for a, b in zip(cs, cs[1:])]
        usual = statistics.median(sorted(gaps)[: max(1, len(gaps) // 2)])
        if usual <= 0:
            continue
        trans, fails, threshold, opens, state = [], 0, None, [], "closed"
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
            if nxt is not None and nxt - ts > bc.BREAKER_GAP_FACTOR * usual and \
                    (state == "half-open" or fails >= 2):
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


# ----------------------------------------------------------------------------- inputs

_TS = st.one_of(st.sampled_from([0.0, 1.0, 1.0, 2.5, 130.0, 400.0]),
                st.floats(0, 1000, allow_nan=False))


@st.composite
def _capture(draw):
    n = draw(st.integers(0, 14))
    conns = []
    for i in range(n):
        conns.append({"type": "connection", "id": i, "proto": draw(st.sampled_from(
            ["tcp", "tcp", "tcp", "udp"])),
            "client": {"ip": draw(st.sampled_from(["10.0.0.1", "10.0.0.2"])),
                       "port": 40000 + i},
            "server": {"ip": "10.0.0.9", "port": draw(st.sampled_from([80, 8080]))},
            "start_ts": draw(_TS), "first_frame": draw(st.integers(1, 50)),
            "state": draw(st.sampled_from(["SF", "REJ", "S0", "RSTOS0", "SH", None]))})
    records = []
    for _ in range(draw(st.integers(0, 25))):
        hdrs = draw(st.sampled_from([[], [("Idempotency-Key", "k1")],
                                     [("X-Request-Id", "r"), ("x-request-id", "s")]]))
        records.append({
            "type": draw(st.sampled_from(["http", "http", "http", "dns"])),
            "conn": draw(st.one_of(st.integers(-1, n + 1), st.just("udp/0"), st.none())),
            "method": draw(st.sampled_from(["GET", "POST", None])), "host": "h",
            "target": draw(st.sampled_from(["/", "/a"])),
            "request_body_sha256": None,
            "request_ts": draw(st.one_of(_TS, st.none())),
            "request_frame": draw(st.integers(1, 60)),
            "status": draw(st.sampled_from([None, 200, 201, 404, 429, 500, 503])),
            "retry_after": draw(st.sampled_from([None, None, "1", "x"])),
            "response_ts": draw(st.one_of(_TS, st.none())),
            "request_headers": hdrs})
    return conns, records


class _Res:
    def __init__(self, conns, records):
        self.connections, self.records = conns, records
        self.syns, self.retrans = [], []


@settings(max_examples=300, deadline=None)
@given(_capture())
def test_columns_equal_the_tuples(cap):
    conns, records = cap
    assert bc.reconnect_chains(conns) == _ref_reconnect(conns)
    assert bc.http_chains(records, conns) == _ref_http(records, conns)
    assert bc.breakers(records, conns) == _ref_breakers(records, conns)
    # the observer's pass gives the same, in the same order
    (got,) = observe(_Res(conns, records), [bc.RetryObserver()])
    chains = _ref_reconnect(conns) + _ref_http(records, conns, tcp_only=True)
    chains.sort(key=lambda c: c["attempts"][0]["ts"] or 0)
    assert repr(got) == repr(chains + bc.storms(chains) + _ref_breakers(records, conns))


def test_a_breaker_from_many_calls():
    # a client calling every second; three failures, silence, a probe that fails, more
    # silence, a probe that succeeds: open, half-open, open, half-open, closed
    conns = [{"type": "connection", "id": 0, "proto": "tcp",
              "client": {"ip": "10.0.0.1", "port": 40000},
              "server": {"ip": "10.0.0.9", "port": 80}, "start_ts": 0.0, "first_frame": 1,
              "state": "SF"}]
    ts = [0, 1, 2, 3, 4, 5, 6, 20, 40, 41, 42]
    st_ = [200, 200, 200, 200, 503, 503, 503, 503, 200, 200, 200]
    records = [{"type": "http", "conn": 0, "method": "GET", "host": "h", "target": f"/{i}",
                "request_ts": float(t), "request_frame": i + 1, "status": s,
                "response_ts": float(t) + 0.1} for i, (t, s) in enumerate(zip(ts, st_))]
    got = bc.breakers(records, conns)
    assert got == _ref_breakers(records, conns)
    assert [t["state"] for t in got[0]["transitions"]] == \
        ["open", "half-open", "open", "half-open", "closed"]


@st.composite
def _periodic(draw):
    """One client calling one server about once a second over a few connections, with
    failures and long silences: what breakers are made of."""
    conns = [{"type": "connection", "id": i, "proto": "tcp",
              "client": {"ip": "10.0.0.1", "port": 40000 + i},
              "server": {"ip": "10.0.0.9", "port": 80}, "start_ts": float(i),
              "first_frame": i + 1, "state": draw(st.sampled_from(["SF", "SF", "REJ"]))}
             for i in range(draw(st.integers(1, 4)))]
    t, records = 0.0, []
    for k in range(draw(st.integers(3, 30))):
        t += draw(st.sampled_from([1.0, 1.0, 1.0, 1.0, 0.0, 12.0, 30.0]))
        records.append({"type": "http", "conn": draw(st.integers(0, len(conns) - 1)),
                        "method": "GET", "host": "h", "target": "/", "request_ts": t,
                        "request_frame": 100 + k,
                        "status": draw(st.sampled_from([200, 200, 503, 500, None])),
                        "response_ts": t + 0.1})
    return conns, draw(st.permutations(records))


@settings(max_examples=300, deadline=None)
@given(_periodic())
def test_breaker_columns_equal_the_tuples(cap):
    conns, records = cap
    assert bc.breakers(records, conns) == _ref_breakers(records, conns)
    assert bc.http_chains(records, conns) == _ref_http(records, conns)
