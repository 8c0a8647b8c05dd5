"""Dormant connections (dissect/analysis/tcp.py): a connection that is over and quiet is
kept as its record and its pickled state, and woken unchanged by a later segment. Run with
no quiet time and a look after every segment, every connection that is over sleeps at once
and every later segment of it (the last ACK, a retransmitted FIN, a reused port) wakes it:
the verdicts and records must be exactly those of a run that never puts one to sleep."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dissect.analysis import tcp as tcpmod
from dissect.columns.decode import decode_frame
from dissect.columns.segment import TcpSegment
from dissect.errors import CaptureError
from dissect.io.capture import read_frames

_here = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_dissect_conftest", _here.parent / "conftest.py")
_cf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cf)

PCAPS = sorted((_here.parents[1] / "pcaps").glob("*.pcap"))


def _segments(path):
    out = []
    try:
        for fr in read_frames(str(path)):
            t = decode_frame(fr).transport
            if type(t) is TcpSegment:
                out.append(t)
    except CaptureError:
        pass    # damaged files: the frames before the damage
    return out


def _run(segs, monkeypatch, after, every):
    monkeypatch.setattr(tcpmod, "DORMANT_AFTER_S", after)
    monkeypatch.setattr(tcpmod, "DORMANT_SWEEP_EVERY", every)
    a = tcpmod.TcpAnalyzer()
    verdicts = [a.feed(s) for s in segs]
    revived = a.revived
    # finish() (what the ladders and 'dissect flows' read) brings every one back
    ids = [(c.id, c.record()) for c in a.finish()]
    return verdicts, ids, a.drain_records(), revived


def _compare(path, monkeypatch) -> int:
    segs = _segments(path)
    if not segs:
        return 0
    ref = _run(segs, monkeypatch, 1e18, 4096)
    got = _run(segs, monkeypatch, 0.0, 1)
    assert ref[3] == 0
    for r, g in zip(ref[0], got[0]):
        assert r == g, f"{path.name} frame {r.frame}"
    assert ref[1] == got[1]
    assert [i for i, _ in got[1]] == list(range(len(ref[1])))
    assert ref[2] == got[2], path.name
    return got[3]


def test_the_lab_captures_are_the_same_with_every_connection_asleep(monkeypatch):
    woken = sum(_compare(p, monkeypatch) for p in PCAPS)
    # the committed captures have last ACKs, retransmitted FINs and RSTs after FINs
    assert woken > 20


@pytest.mark.parametrize("path", _cf.corpus_params())
def test_corpus_captures_are_the_same_with_every_connection_asleep(path, monkeypatch):
    _compare(path, monkeypatch)


def test_dormant_state_is_kept_in_the_spill_file_or_in_memory_alike(monkeypatch):
    """The pickled states go to the spill file (not the process's memory); where no file
    can be made they stay in memory, with the same verdicts and records."""
    segs = _segments(_here.parents[1] / "pcaps" / "http-keepalive-loss.pcap")
    assert segs
    on_disk = _run(segs, monkeypatch, 0.0, 1)

    a = tcpmod.TcpAnalyzer()
    for s in segs:
        a.feed(s)
    a._dormant_after = 0.0
    a._sweep()
    frozen = [a._slots[i] >> 6 for i in range(len(a.connections)) if a.is_dormant(i)]
    assert frozen and all(a._spill._file[b] >= 0 for b in frozen)     # in the file
    assert a._spill.size > 0 and a._spill.in_memory == 0

    def refuse(*_a, **_k):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr("dissect.spill.tempfile.mkstemp", refuse)
    in_memory = _run(segs, monkeypatch, 0.0, 1)
    assert in_memory[3] == on_disk[3] > 0           # the same connections were woken
    assert in_memory[0] == on_disk[0]
    assert in_memory[1] == on_disk[1] and in_memory[2] == on_disk[2]


def test_a_connection_sleeps_only_when_over_and_quiet(monkeypatch):
    """The default keeps live what is open, or over but active within the quiet time."""
    segs = _segments(_here.parents[1] / "pcaps" / "http-keepalive.pcap")
    monkeypatch.setattr(tcpmod, "DORMANT_SWEEP_EVERY", 1)
    a = tcpmod.TcpAnalyzer()
    for s in segs:
        a.feed(s)
    # the capture lasts a few seconds: nothing has been quiet for ten
    assert tcpmod.DORMANT_AFTER_S == 10.0
    assert not any(c is None for c in a.connections)
    a._dormant_after = 0.0
    a._sweep()
    over = [a.frozen_record(i) for i in range(len(a.connections)) if a.is_dormant(i)]
    assert over, "no connection of the capture was over"
    for rec in over:
        fin = rec["fin"]
        assert rec["rst"]["by"] is not None or (fin["client"] is not None
                                                 and fin["server"] is not None), rec
    # and every connection still open stays live
    live = [c for c in a.connections if c is not None]
    for c in live:
        assert not (c.cdir.fin_frame is not None and c.sdir.fin_frame is not None)
        assert c.cdir.rst_frame is None and c.sdir.rst_frame is None


def _seg(frame, ts, fwd, seq, ack, flags, plen=0):
    c, s = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    (src, sport), (dst, dport) = (c, s) if fwd else (s, c)
    return TcpSegment(frame, ts, src, dst, sport, dport, seq, ack, flags, 65535, plen, None,
                      b"", 0)


def test_a_new_isn_on_a_sleeping_connections_ports_does_not_wake_it(monkeypatch):
    """Ports reused long after a connection ended: the new connection is flagged
    (tcp.analysis.reused_ports) exactly as if the old one had stayed awake, and the old
    one is not unpickled for it; a retransmitted SYN of the old one (same ISN) wakes it."""
    S, A, F = 0x02, 0x10, 0x01
    first = [_seg(1, 0.0, True, 1000, 0, S), _seg(2, 0.1, False, 5000, 1001, S | A),
             _seg(3, 0.2, True, 1001, 5001, A), _seg(4, 0.3, True, 1001, 5001, F | A),
             _seg(5, 0.4, False, 5001, 1002, F | A), _seg(6, 0.5, True, 1002, 5002, A)]
    later = [_seg(7, 100.0, True, 9000, 0, S), _seg(8, 100.1, False, 7000, 9001, S | A),
             _seg(9, 100.2, True, 9001, 7001, A)]
    ref = _run(first + later, monkeypatch, 1e18, 4096)
    got = _run(first + later, monkeypatch, 0.0, 1)
    assert got[:3] == ref[:3]
    assert "reused-ports" in got[0][6].flags or "reused_ports" in " ".join(got[0][6].flags)
    # the last ACK woke the first connection once (it slept after the second FIN); the
    # new SYN woke nothing
    assert got[3] == _run(first, monkeypatch, 0.0, 1)[3] == 1
    assert [r["reused_ports"] for r in got[2]] == [False, True]
    again = [_seg(7, 100.0, True, 1000, 0, S)]     # the old SYN once more
    ref = _run(first + again, monkeypatch, 1e18, 4096)
    got = _run(first + again, monkeypatch, 0.0, 1)
    assert got[:3] == ref[:3] and got[3] == 2
