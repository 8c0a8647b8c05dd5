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
from dissect.io.capture import read_frames
from dissect.errors import CaptureError

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
    ids = [c.id for c in a.finish()]
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
    assert ref[1] == got[1] == list(range(len(ref[1])))
    assert ref[2] == got[2], path.name
    return got[3]


def test_the_lab_captures_are_the_same_with_every_connection_asleep(monkeypatch):
    woken = sum(_compare(p, monkeypatch) for p in PCAPS)
    # the committed captures have last ACKs, retransmitted FINs and RSTs after FINs
    assert woken > 20


@pytest.mark.parametrize("path", _cf.corpus_params())
def test_corpus_captures_are_the_same_with_every_connection_asleep(path, monkeypatch):
    _compare(path, monkeypatch)


def test_a_connection_sleeps_only_when_over_and_quiet(monkeypatch):
    """The default keeps live what is open, or over but active within the quiet time."""
    segs = _segments(_here.parents[1] / "pcaps" / "http-keepalive.pcap")
    monkeypatch.setattr(tcpmod, "DORMANT_SWEEP_EVERY", 1)
    a = tcpmod.TcpAnalyzer()
    for s in segs:
        a.feed(s)
    # the capture lasts a few seconds: nothing has been quiet for ten
    assert tcpmod.DORMANT_AFTER_S == 10.0
    assert not any(type(c) is tuple for c in a.connections)
    a._dormant_after = 0.0
    a._sweep()
    over = [c for c in a.connections if type(c) is tuple]
    assert over, "no connection of the capture was over"
    for rec, _state in over:
        fin = rec["fin"]
        assert rec["rst"]["by"] is not None or (fin["client"] is not None
                                                 and fin["server"] is not None), rec
    # and every connection still open stays live
    live = [c for c in a.connections if type(c) is not tuple]
    for c in live:
        assert not (c.cdir.fin_frame is not None and c.sdir.fin_frame is not None)
        assert c.cdir.rst_frame is None and c.sdir.rst_frame is None
