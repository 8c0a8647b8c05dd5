"""RetryObserver (dissect/analysis/backoff_chains.py): the retry chains, storms and breakers
from one streaming pass, keeping small tuples and never the records themselves."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PCAPS  # noqa: E402

from dissect.analysis import backoff_chains as bc  # noqa: E402
from dissect.analysis.backoff_chains import RetryObserver, detect  # noqa: E402
from dissect.analysis.observe import observe, run  # noqa: E402
from dissect.engine import Engine  # noqa: E402

# Captures with every kind of record the observer keeps something of: HTTP retries and a
# breaker, DNS resends, gRPC, SMTP envelopes, SYN retries, plain traffic and UDP flows.
NAMES = ("http-circuit-breaker", "http-retry-backoff", "http-retry-idempotent-post",
         "http-tiers-breaker", "dns-resend", "grpc-h2c", "grpc-tiers", "smtp-two-recipients",
         "tcp-syn-backoff-linear", "tcp-syn-backoff-classic", "http-keepalive-loss",
         "udp-echo")


@functools.cache
def _res(name):
    p = PCAPS / f"{name}.pcap"
    if not p.exists():
        pytest.skip(f"{name}.pcap not committed")
    return Engine(str(p)).run()


def _containers(obj, out: list) -> None:
    """``obj`` and every list, dict and tuple inside it (what must not be kept)."""
    out.append(obj)
    vals = obj.values() if isinstance(obj, dict) else obj
    for v in vals:
        # (the empty tuple is one object for all: its count moves with anything)
        if isinstance(v, (dict, list, tuple)) and v != ():
            _containers(v, out)


def _fed(res) -> RetryObserver:
    """An observer shown every record of ``res`` (not finished; no record left bound)."""
    o = RetryObserver()
    o.start(res)
    for c in res.connections:
        o.conn(c)
    for r in res.records:
        o.record(r)
    return o


def _old_detect(res) -> list:
    """detect as it was written before the observer: the list functions one after another
    over the whole Result."""
    conns, recs = res.connections, res.records
    chains = bc.syn_chains(res.syns or [], conns) + bc.rto_chains(res.retrans, conns) + \
        bc.reconnect_chains(conns) + bc.http_chains(recs, conns) + bc.dns_chains(recs) + \
        bc.grpc_chains(recs, conns) + bc.smtp_chains(recs, conns)
    chains.sort(key=lambda c: c["attempts"][0]["ts"] or 0)
    return chains + bc.storms(chains) + bc.breakers(recs, conns)


class _Once:
    """A Result whose connections and records can be read once (as a stream from disk),
    so an observer that read them itself would break the pass."""

    def __init__(self, res):
        self._c, self._r = res.connections, res.records
        self.syns, self.retrans = res.syns, res.retrans
        self.summary, self.info, self.path = res.summary, res.info, res.path

    @property
    def connections(self):
        c, self._c = self._c, None
        assert c is not None, "connections read twice"
        return iter(c)

    @property
    def records(self):
        r, self._r = self._r, None
        assert r is not None, "records read twice"
        return iter(r)


def test_the_observer_keeps_no_record_nor_anything_inside_one():
    found = set()
    for name in NAMES:
        res = _res(name)
        objs: list = []
        for x in res.connections + res.records:
            _containers(x, objs)
        found.update(r.get("type") for r in res.records)
        before = [sys.getrefcount(o) for o in objs]
        o = _fed(res)
        assert [sys.getrefcount(x) for x in objs] == before, name
        out = o.finish(res)
        assert [sys.getrefcount(x) for x in objs] == before, name
        assert out == detect(res)
    # the captures did show it every kind of record it reads
    assert {"http", "dns", "grpc", "smtp-envelope"} <= found


def test_kept_strings_are_interned():
    o = _fed(_res("http-tiers-breaker"))
    keys = list(o._tcp.ends) + list(o._http) + list(o._dns) + list(o._grpc)
    strs = [s for k in keys for s in k if type(s) is str]
    strs += [s for k in keys for e in k if type(e) is tuple for s in e if type(s) is str]
    assert strs and all(sys.intern(s) is s for s in strs)


@pytest.mark.parametrize("name", NAMES)
def test_observer_equals_detect_and_the_list_functions(name):
    res = _res(name)
    want = _old_detect(res)
    assert detect(res) == want
    assert repr(run(_Once(res), RetryObserver())) == repr(want)     # key order too
    # two observers in one pass, each with what it was given
    a, b = observe(_Once(res), [RetryObserver(), RetryObserver([])])
    assert a == want
    assert b == detect(res, []) and not [c for c in b if c.get("kind") == "syn"]


def test_syns_given_replace_the_results():
    res = _res("tcp-syn-backoff-linear")
    assert res.syns
    assert run(res, RetryObserver(res.syns[:2])) == detect(res, res.syns[:2])
    got = [c for c in run(res, RetryObserver(res.syns[:2])) if c.get("kind") == "syn"]
    assert len(got) == 1 and len(got[0]["attempts"]) == 2
    assert run(res, RetryObserver()) == detect(res, None) == detect(res, res.syns)
