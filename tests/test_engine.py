"""dissect.engine: the SYN list a run keeps (only SYNs sent more than once)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dissect import engine as engine_mod
from dissect.analysis.backoff_chains import rto_chains, syn_chains
from dissect.columns.decode import iter_transport
from dissect.columns.segment import TcpSegment
from dissect.engine import Engine, RetransColumns, SynColumns, repeated_retrans, repeated_syns
from dissect.errors import CaptureError
from dissect.parallel import run

PCAPS = sorted((Path(__file__).resolve().parents[1] / "pcaps").glob("*.pcap"))


def _syn(frame, sport, seq, ts=None):
    return (frame, float(frame) if ts is None else ts, "10.0.0.1", sport, "10.0.0.2", 80, seq)


def test_repeated_syns_keeps_repeats_in_order():
    syns = [_syn(1, 4000, 7), _syn(2, 4001, 9), _syn(3, 4000, 7), _syn(4, 4002, 5),
            _syn(5, 4001, 10), _syn(6, 4000, 7), _syn(7, 4002, 5)]
    # 4001 sent two SYNs with different ISNs: two connections, no retry
    assert repeated_syns(syns) == [syns[0], syns[2], syns[3], syns[5], syns[6]]
    assert repeated_syns([]) == []
    assert repeated_syns([_syn(1, 1, 1)]) == []


def _all_syns(path):
    return [(t.frame, t.ts, t.src, t.sport, t.dst, t.dport, t.seq)
            for t in iter_transport(str(path))
            if type(t) is TcpSegment and t.flags & 0x12 == 0x02]


def test_the_kept_syns_give_the_same_chains_as_every_syn():
    chains = 0
    for path in PCAPS:
        res = Engine(str(path)).run()
        every = _all_syns(path)
        assert res.syns == repeated_syns(every), path.name
        want = syn_chains(every, res.connections)
        assert syn_chains(res.syns, res.connections) == want, path.name
        chains += len(want)
    # the SYN-backoff lab captures have chains: the comparison is not vacuous
    assert chains >= 2


@pytest.mark.parametrize("name", ["tcp-syn-backoff-classic.pcap", "tcp-syn-backoff-linear.pcap"])
def test_a_split_run_keeps_the_same_syns(name):
    path = Path(__file__).resolve().parents[1] / "pcaps" / name
    if not path.exists():
        pytest.skip(f"{name} is not among the committed captures")
    one = Engine(str(path)).run()
    assert one.syns and run([str(path)], jobs=3).syns == one.syns


def _kept(rows, key) -> list:
    """The rows whose key comes more than once, in order (the reference: a dict count)."""
    seen: dict = {}
    for r in rows:
        seen[key(r)] = seen.get(key(r), 0) + 1
    return [r for r in rows if seen[key(r)] > 1]


_ODD_INTS = st.sampled_from([0, -1, 2 ** 32, 2 ** 64, 2 ** 70, -(2 ** 63)])


@given(st.lists(st.tuples(
    st.one_of(st.integers(0, 6), st.sampled_from(["udp/1", None]), _ODD_INTS),
    st.one_of(st.integers(0, 4), _ODD_INTS), st.integers(0, 1500), st.integers(1, 10 ** 6),
    st.one_of(st.floats(0, 1e9), st.sampled_from([3, 0.0])),
    st.one_of(st.none(), st.integers(1, 10 ** 6)),
    st.one_of(st.none(), st.floats(0, 1e9), st.sampled_from([1]))), max_size=60))
def test_retransmission_columns_give_back_the_rows_and_keep_the_repeats(rows):
    """RetransColumns reads back exactly what was appended (types too), and
    repeated_retrans of the columns, or of the list, keeps what a dict count keeps."""
    c = RetransColumns()
    for r in rows:
        c.append(r)
    back = list(c)
    assert back == rows and len(c) == len(rows)
    assert [[type(x) for x in r] for r in back] == [[type(x) for x in r] for r in rows]
    want = _kept(rows, lambda r: r[:2])
    assert repeated_retrans(c) == want == repeated_retrans(rows)


@given(st.lists(st.tuples(
    st.integers(1, 10 ** 6), st.floats(0, 1e9),
    st.sampled_from(["10.0.0.1", "::1", "192.0.2.7"]), st.one_of(st.integers(0, 3), st.just(65535)),
    st.sampled_from(["10.0.0.2", "::2"]), st.sampled_from([80, 443, 65535]),
    st.one_of(st.integers(0, 3), st.just(2 ** 32 - 1))), max_size=60))
def test_syn_columns_keep_the_same_repeats_as_a_dict_count(syns):
    c = SynColumns()
    for s in syns:
        c.append(s)
    assert list(c) == syns
    assert repeated_syns(c) == _kept(syns, lambda s: s[2:]) == repeated_syns(syns)


@given(st.lists(st.tuples(st.integers(1, 10 ** 6), st.floats(0, 1e9),
                          st.sampled_from(["10.0.0.1", "::1"]), st.integers(0, 65535),
                          st.sampled_from(["10.0.0.2", "::2"]), st.integers(0, 65535),
                          st.integers(0, 2 ** 32 - 1)), max_size=20),
       st.integers(-25, 25), st.integers(-25, 25), st.sampled_from([1, 2, -1]))
def test_columns_read_by_position_as_the_list(rows, a, b, step):
    """A Result's SYNs and retransmissions in columns (what repeated_* give) read like
    the list of their tuples: by index (negative too; past the end an IndexError), by
    slice (a list), and compare equal to it, and to columns of the same rows."""
    retrans = [(r[3], r[6], r[5], r[0], r[1], None if r[3] % 3 else r[0] - 1, None)
               for r in rows]
    for cls, lst in ((SynColumns, rows), (RetransColumns, retrans)):
        c = cls.of(lst)
        assert c == lst and lst == c and c == cls.of(lst) and c == tuple(lst)
        assert (c != lst + [lst[0]]) if lst else (c == [])
        assert c[a:b:step] == lst[a:b:step]
        if -len(lst) <= a < len(lst):
            assert c[a] == lst[a]
        else:
            with pytest.raises(IndexError):
                c[a]
        assert bool(c) == bool(lst) and len(c) == len(lst)
        assert repr(c) == f"{cls.__name__}({lst!r})"


def _same_rto_chains(path, monkeypatch, jobs=()) -> int:
    """A run keeps only the retransmissions whose connection and sequence number repeat;
    the RTO chains made of them are those made of every retransmission (and a split run
    keeps the same). The number of chains."""
    kept = Engine(str(path)).run()
    monkeypatch.setattr(engine_mod, "repeated_retrans", list)
    every = Engine(str(path)).run().retrans
    monkeypatch.undo()
    assert kept.retrans == _kept(every, lambda r: r[:2]), path.name
    want = rto_chains(every, kept.connections)
    assert rto_chains(kept.retrans, kept.connections) == want, path.name
    for j in jobs:
        assert run([str(path)], jobs=j).retrans == kept.retrans, path.name
    return len(want)


def test_the_kept_retransmissions_give_the_same_rto_chains_on_the_lab_captures(monkeypatch):
    for path in PCAPS:
        _same_rto_chains(path, monkeypatch, jobs=(2,))


def test_the_kept_retransmissions_give_the_same_rto_chains_on_the_corpus(monkeypatch):
    spec = importlib.util.spec_from_file_location("_dissect_conftest",
                                                  Path(__file__).resolve().parent / "conftest.py")
    cf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cf)
    files = cf.corpus_files()
    if not files:
        pytest.skip("developers' corpus not found")
    chains = 0
    for path in files:
        try:
            chains += _same_rto_chains(path, monkeypatch)
        except CaptureError:
            continue    # files that cannot be opened at all
    # several corpus captures have segments retransmitted twice or more
    assert chains >= 10
