"""dissect.engine: the SYN list a run keeps (only SYNs sent more than once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dissect.analysis.backoff_chains import syn_chains
from dissect.columns.decode import iter_transport
from dissect.columns.segment import TcpSegment
from dissect.engine import Engine, repeated_syns
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
