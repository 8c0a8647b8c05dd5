"""Timing as an observer of the streaming pass: it keeps no record (only projections of
scalars, strings interned), its outputs are timing_records', slowest's and
slowest_candidates', and the n slowest found while streaming (a bounded set of candidates)
are those of sorting every timing record, whatever the record order, ties included."""

from __future__ import annotations

import copy
import gc
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine_helper import PCAPS, run  # noqa: E402
from observer_helper import containers, feed  # noqa: E402

from dissect.analysis.findings.timing import (  # noqa: E402
    SlowestCandidates,
    TimingObserver,
    _ConnTable,
    slowest,
    slowest_candidates,
    timing_records,
)
from dissect.analysis.observe import observe  # noqa: E402
from dissect.engine import Result  # noqa: E402

# captures with HTTP (keep-alive, many connections), TLS, SMTP (DATA + envelope), FTP
# (greeting, PASS), DNS, gRPC, UDP, an unanswered and a retried handshake
CAPTURES = ["http-keepalive.pcap", "http-keepalive-loss.pcap", "http-retry-backoff.pcap",
            "http-circuit-breaker.pcap", "tls-https-sni.pcap", "smtp-two-recipients.pcap",
            "ftp-active.pcap", "dns-resend.pcap", "grpc-h2c.pcap", "udp-echo.pcap",
            "tcp-syn-backoff-classic.pcap", "tcp-tiers.pcap", "websocket-echo.pcap"]


def _run(name):
    cap = PCAPS / name
    if not cap.exists():
        pytest.skip(f"{name} not committed")
    return run(cap)


class _Res:
    """A run's result with other connection/application records."""

    def __init__(self, connections, records, slowest_timings=None):
        self.connections, self.records = connections, records
        self.slowest_timings = slowest_timings
        self.syns, self.retrans, self.summary, self.path, self.info = [], [], None, "x", {}


def _scalars(p):
    """A projection: tuples (or the observer's own lists) of scalars, strings interned."""
    assert type(p) in (tuple, list), p
    for v in p:
        if type(v) in (tuple, list):
            _scalars(v)
            continue
        assert v is None or type(v) in (str, int, float, bool), (p, v)
        if type(v) is str:
            assert sys.intern(v) is v, v


def _by_total(recs):
    return sorted(recs, key=lambda r: -(r.get("total_s") or 0))


def _candidates_of(recs, n):
    """slowest_candidates' answer from every timing record in creation order."""
    if len(recs) <= n:
        return list(enumerate(recs))
    cut = sorted((r["total_s"] for r in recs), reverse=True)[n - 1]
    return [(i, r) for i, r in enumerate(recs) if r["total_s"] >= cut]


@pytest.mark.parametrize("name", ["smtp-two-recipients.pcap", "tls-https-sni.pcap",
                                  "ftp-active.pcap", "dns-resend.pcap",
                                  "http-keepalive-loss.pcap", "grpc-h2c.pcap"])
def test_observers_keep_no_record(name):
    res, table = _run(name)
    conns, recs = list(res.connections), list(res.records)
    objs: list = []
    for x in conns + recs:
        containers(x, objs)
    # earlier runs' garbage (cycles) may still hold sub-records shared across runs
    # (dissect.analysis.tcp._SHARED); collected now, it cannot drop a count half-way
    gc.collect()
    before = [sys.getrefcount(o) for o in objs]
    observers = [TimingObserver(table), TimingObserver(), TimingObserver(n=1),
                 SlowestCandidates(2)]
    for obs in observers:
        feed(obs, res, conns, recs)
        assert [sys.getrefcount(o) for o in objs] == before
    full, plain, top, cands = observers
    kept = (list(full._info.values()) + [p for ps in full._txs.values() for p in ps]
            + list(full._tls.values()) + list(full._datas.values())
            + list(full._envs.values()) + [p for ps in plain._txs.values() for p in ps]
            + list(top._conns.fentry.values())
            + [top._conns.info(i) for i in range(len(top._conns))] + top._kept + cands._kept)
    assert kept
    for p in kept:
        _scalars(p)
    # the answers do not hold the records either
    out = [obs.finish(res) for obs in observers]
    assert [sys.getrefcount(o) for o in objs] == before
    assert out == [timing_records(res, table), timing_records(res), slowest(res, 1),
                   slowest_candidates(res, 2)]


@pytest.mark.parametrize("name", CAPTURES)
def test_one_pass_of_every_observer_equals_the_wrappers(name):
    res, table = _run(name)
    got = observe(res, [TimingObserver(table), TimingObserver(), TimingObserver(n=3),
                        TimingObserver(table, n=2), SlowestCandidates(3)])
    full = timing_records(res)
    assert got[0] == timing_records(res, table)
    assert got[1] == full
    assert got[2] == slowest(res, 3) == _by_total(full)[:3]
    assert got[3] == _by_total(got[0])[:2]       # `dissect timing --slowest 2`
    assert got[4] == slowest_candidates(res, 3)


@pytest.mark.parametrize("name", CAPTURES)
def test_streamed_slowest_equals_sorting_everything_in_any_record_order(name):
    res, _table = _run(name)
    conns, recs = list(res.connections), list(res.records)
    orders = [recs, recs[::-1]] + [random.Random(s).sample(recs, len(recs)) for s in range(3)]
    for rs in orders:
        r = _Res(conns, rs)
        full = timing_records(r)
        # n < 1 keeps every record: the creation order the candidates' indexes count in
        created = [x for _i, x in slowest_candidates(r, 0)]
        assert sorted(created, key=lambda x: x["stages"][0]["start_ts"] if x["stages"]
                      else 0.0) == full
        for n in (1, 2, 5, 10**6):
            assert slowest(r, n) == _by_total(full)[:n]
            assert slowest_candidates(r, n) == _candidates_of(created, n)


def _crowd(seed: int):
    """Connections cloned with equal durations, transactions moved to other connections,
    records shuffled: many transactions per connection, arriving out of order (a later
    one taking the first place, which carries the handshake), and many equal totals."""
    res, _t = _run("http-keepalive-loss.pcap")
    rnd = random.Random(seed)
    tcp = [c for c in res.connections if c.get("proto") == "tcp"]
    conns, records = [], []
    for k in range(40):
        shift = {}
        for c in tcp:
            c2 = copy.deepcopy(c)
            c2["id"] = shift[c["id"]] = len(conns)
            c2["start_ts"] += (k % 3) * 0.5
            conns.append(c2)
        for r in res.records:
            if r.get("conn") in shift:
                r2 = copy.deepcopy(r)
                r2["conn"] = rnd.choice([shift[r["conn"]], rnd.randrange(len(conns))])
                records.append(r2)
    rnd.shuffle(records)
    return conns, records


@pytest.mark.parametrize("seed", range(4))
def test_bounded_candidates_equal_sorting_everything_with_ties(seed):
    conns, records = _crowd(seed)
    r = _Res(conns, records)
    full = timing_records(r)
    created = [x for _i, x in slowest_candidates(r, 0)]
    assert len(full) > 4 * 1 + 64       # enough for the candidates to be pruned
    totals = [x["total_s"] for x in full]
    assert len(set(totals)) < len(totals)
    for n in (1, 2, 3, 7, 40):
        obs = TimingObserver(n=n)
        feed(obs, r, conns, records)
        # bounded: the candidates kept, whatever the number of transactions
        assert len(obs._kept) <= 2 * (4 * n + 64)
        if n == 1:
            assert obs._cut > float("-inf")     # they were pruned
        assert obs.finish(r) == slowest(r, n) == _by_total(full)[:n]
        assert slowest_candidates(r, n) == _candidates_of(created, n)


def test_a_split_runs_answer_is_used_without_keeping_anything():
    res, _t = _run("http-keepalive.pcap")
    pre = slowest(res, 5)
    r = _Res(list(res.connections), list(res.records), slowest_timings=(5, pre))
    obs = TimingObserver(n=3)
    feed(obs, r, r.connections, r.records)
    assert not obs._info and not len(obs._conns) and not obs._kept
    assert obs.finish(r) == pre[:3] == slowest(r, 3)
    # more than the workers looked for: timed again
    assert slowest(r, 6) == slowest(_Res(r.connections, r.records), 6)


def test_candidates_of_a_split_merge_as_one_pass():
    """Candidates' creation indexes order records of equal start as one pass does."""
    from dissect import parallel
    conns, records = _crowd(9)
    one = Result("x", connections=conns, records=records)
    for n in (1, 4):
        want = slowest(one, n)
        parts, maps = [], []
        for sh in range(2):
            mine = [c for c in conns if c["id"] % 2 == sh]
            ids = {c["id"] for c in mine}
            local = {c["id"]: i for i, c in enumerate(mine)}
            part = Result("x", connections=[dict(c, id=local[c["id"]]) for c in mine],
                          records=[dict(x, conn=local[x["conn"]]) for x in records
                                   if x.get("conn") in ids])
            sr = parallel.ShardResult(sh, part)
            sr.slowest = (n, slowest_candidates(part, n))
            parts.append(sr)
            maps.append({v: k for k, v in local.items()})
        _n, got = parallel._merge_slowest(parts, maps, conns)
        assert [(x["conn"], x["total_s"], x["stages"]) for x in got] == \
            [(x["conn"], x["total_s"], x["stages"]) for x in want]


@given(st.lists(st.tuples(
    st.one_of(st.integers(0, 30), st.sampled_from(["udp/0", "udp/1", 2 ** 40])),
    st.booleans(), st.sampled_from([None, "http", "tls", "x"]),
    st.sampled_from([None, "SF", "S0", "REJ"]), st.booleans(),
    st.one_of(st.none(), st.integers(1, 2 ** 40)), st.one_of(st.none(), st.integers(1, 99)),
    st.one_of(st.none(), st.integers(1, 99)), st.one_of(st.none(), st.floats(0, 10)),
    st.one_of(st.none(), st.floats(0, 2e9))), max_size=40))
def test_the_connection_columns_give_back_each_connections_info(infos):
    """_ConnTable (what the n-slowest search keeps per connection) against a dict of the
    tuples: the same info by id, in the same order (a repeated id keeps its first place
    and takes the last values, as a dict does)."""
    t, ref = _ConnTable(), {}
    for info in infos:
        t.add(info)
        ref[info[0]] = info
    assert len(t) == len(ref)
    assert [t.info(i) for i in range(len(t))] == list(ref.values())
    for cid in ref:
        assert t.info(t.row(cid)) == ref[cid]
