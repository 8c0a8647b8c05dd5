"""Cascades as an observer of the streaming pass: it keeps no record (only projections of
interned strings and numbers), its output is cascade_records', whatever the record order
or source (JSON lines read back), and the gRPC/HTTP-2 dedupe and retry grouping survive
the projection."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from dissect.analysis.observe import observe, run
from dissect.analysis.tiers import (
    CascadeObserver,
    TransactionsObserver,
    _transactions,
    cascade_records,
)
from dissect.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from observer_helper import containers, feed  # noqa: E402

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"

# captures with cascades (HTTP, gRPC over HTTP/2, plain TCP, a breaker), and some with
# transactions but no tree
CASCADES = ["http-tiers.pcap", "http-tiers-breaker.pcap", "grpc-tiers.pcap", "tcp-tiers.pcap"]
OTHERS = ["grpc-h2c.pcap", "http-circuit-breaker.pcap", "http-keepalive-loss.pcap",
          "http-retry-idempotent-post.pcap", "websocket-echo.pcap", "dns-resend.pcap"]


def _res(name):
    cap = PCAPS / name
    if not cap.exists():
        pytest.skip(f"{name} not committed")
    return Engine(str(cap)).run()


class _Res:
    """A run's result with other connection/application records (same small fields)."""

    def __init__(self, res, connections, records):
        self.connections, self.records = connections, records
        for k in ("syns", "retrans", "summary", "path", "info"):
            setattr(self, k, getattr(res, k, None))


@pytest.mark.parametrize("name", CASCADES + ["grpc-h2c.pcap"])
def test_observer_keeps_no_record(name):
    res = _res(name)
    conns, recs = list(res.connections), list(res.records)
    objs: list = []
    for x in conns + recs:
        containers(x, objs)
    before = [sys.getrefcount(o) for o in objs]
    obs = CascadeObserver()
    feed(obs, res, conns, recs)
    assert [sys.getrefcount(o) for o in objs] == before
    # what it keeps: tuples of scalars (a transaction's holds its connection's), every
    # string interned
    kept = list(obs._ends) + list(obs._txs) + list(obs._grpc)
    assert kept
    for p in kept:
        _scalars(p)
    assert obs.finish(res) == cascade_records(res)


def _scalars(p):
    assert type(p) is tuple
    for v in p:
        if type(v) is tuple:
            _scalars(v)
            continue
        assert v is None or type(v) in (str, int, float, bool, bytes), (p, v)
        if type(v) is str:
            assert sys.intern(v) is v, v


@pytest.mark.parametrize("name", CASCADES + OTHERS)
def test_observer_equals_wrapper(name):
    res = _res(name)
    want = cascade_records(res)
    if name in CASCADES:
        assert want
    assert run(res, CascadeObserver()) == want
    # in a shared pass, next to another observer
    both = observe(res, [TransactionsObserver(), CascadeObserver()])
    assert both[1] == want
    assert [_key(t) for t in both[0]] == [_key(t) for t in _transactions(res)]
    # records read back from JSON lines, as from disk
    back = _Res(res, [json.loads(json.dumps(c)) for c in res.connections],
                [json.loads(json.dumps(r)) for r in res.records])
    assert run(back, CascadeObserver()) == want


def _key(t):
    return (t.client, t.server, t.host, t.proto, t.method, t.target, t.status, t.failed,
            t.frame, t.start, t.end, t.body)


CONNS = [{"id": 0, "proto": "tcp", "client": {"ip": "127.0.0.1", "port": 5000},
          "server": {"ip": "127.0.0.2", "port": 81}},
         {"id": 1, "proto": "tcp", "client": {"ip": "127.0.0.2", "port": 5001},
          "server": {"ip": "127.0.0.3", "port": 82}},
         {"id": "udp/0", "proto": "udp", "client": {"ip": "127.0.0.1", "port": 53},
          "server": {"ip": "127.0.0.9", "port": 53}}]


def _grpc(conn, sid, ts, code, name, data):
    # the edge's calls take 0.5 s, the gateway's 0.2 s
    end = ts + (0.5 if conn == 0 else 0.2)
    return {"type": "grpc", "conn": conn, "stream_id": sid, "path": "/s/M",
            "grpc_status": code, "grpc_status_name": name, "frames": [sid, sid + 1],
            "request_ts": ts, "response_ts": end, "response_end_ts": end,
            "messages": [{"direction": "request", "data": data},
                         {"direction": "response", "data": "ff"}]}


def _http2(conn, sid, ts):
    return {"type": "http2", "conn": conn, "stream_id": sid, "path": "/s/M", "method": "POST",
            "status": 200, "request_ts": ts, "response_ts": ts + 0.5, "request_frame": sid}


def _calls(first_data, second_data):
    """The edge client's two gRPC calls to the gateway (the first one failed), each with
    one call from the gateway to the backend, and the HTTP/2 streams that carried them."""
    return [_http2(0, 1, 1.0), _grpc(0, 1, 1.0, 14, "UNAVAILABLE", first_data),
            _grpc(1, 1, 1.1, 14, "UNAVAILABLE", "01"), _http2(1, 1, 1.1),
            _grpc(0, 3, 2.0, 0, "OK", second_data), _http2(0, 3, 2.0),
            _http2(1, 3, 2.1), _grpc(1, 3, 2.1, 0, "OK", "01")]


def test_grpc_retries_grouped_by_request_data():
    """The same request data retried is one user request; other data is another one."""
    same = cascade_records(_Res(None, CONNS, _calls("0a01", "0a01")))
    assert [r["amplification"] for r in same] == [[1, 2, 2]]
    assert same[0]["tiers"][0]["statuses"] == ["UNAVAILABLE", "OK"]
    other = cascade_records(_Res(None, CONNS, _calls("0a01", "0a02")))
    assert [r["amplification"] for r in other] == [[1, 1, 1], [1, 1, 1]]


def test_http2_stream_of_a_grpc_call_in_either_order():
    """An HTTP/2 stream is dropped for its gRPC call whether it comes before or after it;
    a stream that carried no call stays a transaction."""
    recs = _calls("0a01", "0a01") + [_http2(0, 5, 3.0)]
    for order in (recs, recs[::-1]):
        txs = _transactions(_Res(None, CONNS, order))
        assert sorted((t.proto, t.start) for t in txs) == [
            ("grpc", 1.0), ("grpc", 1.1), ("grpc", 2.0), ("grpc", 2.1), ("http2", 3.0)]
        assert all(t.target == "/s/M" for t in txs)


@pytest.mark.parametrize("name", CASCADES)
def test_projections_spilled_in_small_batches_give_the_same(name, monkeypatch):
    from dissect import store
    res = _res(name)
    want = run(res, CascadeObserver())
    monkeypatch.setattr(store, "BATCH", 2)
    obs = CascadeObserver()
    feed(obs, res, list(res.connections), list(res.records))
    assert len(obs._txs._first), "nothing was spilled"
    assert obs._may_link()
    assert obs.finish(res) == want


@pytest.mark.parametrize("name", OTHERS)
def test_no_call_below_possible_reads_nothing_back(name):
    # one server per address (or none calling another): no transaction can be another's
    # call below, and the cascade analysis says so without building any
    res = _res(name)
    obs = CascadeObserver()
    feed(obs, res, list(res.connections), list(res.records))
    assert not obs._may_link()
    assert obs.finish(res) == [] == cascade_records(res)
