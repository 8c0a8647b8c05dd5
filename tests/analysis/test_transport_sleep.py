"""What the transport and the dispatcher keep for a connection sleeps with it
(dissect/analysis/transport.py: TransportAnalyzer._sleep / _wake): its closed mark, its
ended dispatcher state and its protocol name go to one byte by connection id when TCP
puts the connection to sleep, and come back when a segment wakes it. With every
connection asleep as soon as it is over (and a look after every segment), a whole run -
connection records with their applications, application records, the summary - must be
exactly that of a run that never puts one to sleep, in memory and streamed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dissect.analysis import tcp as tcpmod
from dissect.analysis import transport as transmod
from dissect.engine import Engine, finish_stream

_here = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_dissect_conftest", _here.parent / "conftest.py")
_cf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cf)

PCAPS = sorted((_here.parents[1] / "pcaps").glob("*.pcap"))


def _run(path, monkeypatch, asleep: bool, stream: bool, seen: dict):
    monkeypatch.setattr(tcpmod, "DORMANT_AFTER_S", 0.0 if asleep else 1e18)
    monkeypatch.setattr(tcpmod, "DORMANT_SWEEP_EVERY", 1 if asleep else 4096)
    made = []
    real = transmod.TransportAnalyzer

    def spy(*a, **k):
        t = real(*a, **k)
        made.append(t)
        return t
    monkeypatch.setattr(transmod, "TransportAnalyzer", spy)
    try:
        res = Engine(str(path), stream=stream).run()
    finally:
        monkeypatch.setattr(transmod, "TransportAnalyzer", real)
    if stream and res.streamed:
        got = finish_stream(res, [_cf.Collect()])[0]
        conns, records = got.conns, got.records
    else:
        conns, records = list(res.connections), list(res.records)
    for t in made:
        seen["cold"] += sum(1 for b in t._cold if b)
        seen["revived"] += t.tcp.revived
    summary = json.dumps(res.summary.to_record(), default=str, sort_keys=True)
    return json.dumps(conns, default=str), json.dumps(records, default=str), summary, \
        str(res.error)


def _compare(path, monkeypatch, stream: bool, seen: dict) -> None:
    ref = _run(path, monkeypatch, False, stream, {"cold": 0, "revived": 0})
    got = _run(path, monkeypatch, True, stream, seen)
    assert got[0] == ref[0], f"{path.name}: connection records"
    assert got[1] == ref[1], f"{path.name}: application records"
    assert got[2] == ref[2], f"{path.name}: summary"
    assert got[3] == ref[3]


@pytest.mark.parametrize("stream", [False, True])
def test_lab_runs_are_the_same_with_every_connection_asleep(monkeypatch, stream):
    seen = {"cold": 0, "revived": 0}
    for p in PCAPS:
        _compare(p, monkeypatch, stream, seen)
    # connections sleep with what was kept above TCP (those asleep at the end are
    # counted), and some were woken
    assert seen["cold"] > 20 and seen["revived"] > 20, seen


@pytest.mark.parametrize("path", _cf.corpus_params())
def test_corpus_runs_are_the_same_with_every_connection_asleep(path, monkeypatch):
    _compare(path, monkeypatch, True, {"cold": 0, "revived": 0})


def test_a_woken_connection_gets_its_state_back():
    """Sleep then wake by hand: the closed mark, the dispatcher's ended state and the
    protocol name are out of the hash tables while asleep, answered by protocol_of, and
    back, the same objects, once woken."""
    t = transmod.TransportAnalyzer(app=True)
    app = t.app
    st = app.ended_state("closed", "http")
    app.tcp[5] = st
    app.protocols[5] = "http"
    t._closed.add(5)
    app.tcp[6] = app.ended_state("unknown", None)
    t._sleep([5, 6])
    assert 5 not in app.tcp and 5 not in app.protocols and 5 not in t._closed
    assert 6 not in app.tcp
    assert t.protocol_of(5) == "http" and t.protocol_of(6) is None
    assert t.protocol_of(4) is None and t.protocol_of(99) is None
    t._wake(5)
    assert app.tcp[5] is st and app.protocols[5] == "http" and 5 in t._closed
    assert t._cold[5] == 0
    # a connection's own state that is over (its protocol unknown: the transport stops
    # reassembling it without closing it in the dispatcher) sleeps too, and comes back
    # as the shared state with its state and name, all the dispatcher reads of it again
    own = type(st)({"proto": "tcp"})
    own.state, own.items = "unknown", ()
    app.tcp[8] = own
    t._sleep([8])
    assert 8 not in app.tcp
    t._wake(8)
    assert app.tcp[8] is app.ended_state("unknown", None)
    # a connection the dispatcher still works on stays where it is
    app.tcp[7] = probing = type(st)({"proto": "tcp"})
    t._sleep([7])
    assert app.tcp[7] is probing and (len(t._cold) <= 7 or t._cold[7] == 0)
