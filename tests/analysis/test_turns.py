"""The turn table (dissect/analysis/turns.py) against a plain model of request/response
turns: per connection a list of turns in Python lists, records sorted by request frame.
Whatever the connections, the sleeps in between, the cap and the values (frames past
what an array holds, int times), the records are the model's, values and types."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissect.analysis import turns as turnsmod
from dissect.analysis.turns import FIELDS, TurnTable


class _Model:
    def __init__(self, cap: int):
        self.cap = cap
        self.conns: dict = {}       # conn -> [cur, out]

    def data(self, conn, direction, plen, frame, ts):
        c = self.conns.setdefault(conn, [None, []])
        cur, out = c
        if direction == 0:
            if cur is None or cur[5] is not None:
                if len(out) >= self.cap:
                    c[0] = None
                    return
                c[0] = cur = [frame, ts, ts, plen, None, None, None, 0]
                out.append(cur)
            else:
                cur[2] = ts
                cur[3] += plen
        elif cur is not None:
            if cur[5] is None:
                cur[4], cur[5] = frame, ts
            cur[6] = ts
            cur[7] += plen

    def records(self, unknown) -> list:
        recs = []
        for conn in sorted(self.conns):
            if unknown(conn):
                recs += [{"type": "tcp-exchange", "conn": conn, **dict(zip(FIELDS, t))}
                         for t in self.conns[conn][1]]
        recs.sort(key=lambda r: r["request_frame"])
        return recs


def _typed(recs):
    return [[(k, type(v), v) for k, v in r.items()] for r in recs]


_events = st.lists(st.one_of(
    # a segment: connection, direction, bytes, time
    st.tuples(st.integers(0, 4), st.integers(0, 1), st.integers(1, 70000),
              st.one_of(st.floats(0, 2e9), st.just(5))),
    # connection goes to sleep
    st.tuples(st.integers(0, 4))), max_size=60)


def _play(events, cap, frames):
    table, model = TurnTable(), _Model(cap)
    for ev, frame in zip(events, frames):
        if len(ev) == 1:
            table.sleep(ev[0])
        else:
            conn, d, plen, ts = ev
            table.data(conn, d, plen, frame, ts)
            model.data(conn, d, plen, frame, ts)
    table.close()
    return table, model


@settings(max_examples=300, deadline=None)
@given(_events, st.sampled_from([1, 2, 3, 10000]), st.sets(st.integers(0, 4)),
       st.sampled_from([0, 2 ** 53, 2 ** 63]))
def test_records_are_the_models_in_frame_order(events, cap, known, base):
    """Frames in capture order (from ``base``: 2**63 is past what the int column holds)."""
    old = turnsmod.MAX_EXCHANGES_PER_CONN
    turnsmod.MAX_EXCHANGES_PER_CONN = cap
    try:
        frames = [base + i + 1 for i in range(len(events))]
        table, model = _play(events, cap, frames)
        def unknown(c):
            return c not in known
        got = table.records(unknown)
        want = model.records(unknown)
        assert table.ordered
        assert _typed(list(got)) == _typed(want)
        # read again: the same records; frames() and len() agree with them
        assert _typed(list(got)) == _typed(want)
        assert list(got.frames()) == [r["request_frame"] for r in want]
        assert len(got) == len(want)
    finally:
        turnsmod.MAX_EXCHANGES_PER_CONN = old


@settings(max_examples=200, deadline=None)
@given(_events, st.sampled_from([1, 3, 10000]),
       st.lists(st.integers(1, 30), min_size=60, max_size=60))
def test_frames_out_of_order_still_sort_as_the_model(events, cap, frames):
    """A hostile caller's frames (repeated, going back): the table notices and sorts as
    the model does, by frame, then connection, then as the turns opened."""
    old = turnsmod.MAX_EXCHANGES_PER_CONN
    turnsmod.MAX_EXCHANGES_PER_CONN = cap
    try:
        table, model = _play(events, cap, frames)
        got = list(table.records(lambda c: True))
        assert _typed(got) == _typed(model.records(lambda c: True))
    finally:
        turnsmod.MAX_EXCHANGES_PER_CONN = old


def test_a_sleeping_connection_keeps_nothing_in_memory_and_goes_on():
    """Asleep, a connection's open turn is only in the columns; data after it wakes
    extends that turn (a response), then opens the next (a request)."""
    t = TurnTable()
    t.data(3, 0, 100, 1, 1.0)
    t.data(3, 1, 50, 2, 1.5)
    t.sleep(3)
    assert t._open == {}
    t.data(3, 1, 25, 3, 2.0)      # more of the same response
    t.data(3, 0, 10, 4, 3.0)      # the next request
    t.sleep(3)
    t.data(7, 1, 10, 5, 3.5)      # server bytes before any request: no turn
    t.close()
    assert list(t.records(lambda c: True)) == [
        {"type": "tcp-exchange", "conn": 3, "request_frame": 1, "request_ts": 1.0,
         "request_end_ts": 1.0, "request_bytes": 100, "response_frame": 2,
         "response_ts": 1.5, "response_end_ts": 2.0, "response_bytes": 75},
        {"type": "tcp-exchange", "conn": 3, "request_frame": 4, "request_ts": 3.0,
         "request_end_ts": 3.0, "request_bytes": 10, "response_frame": None,
         "response_ts": None, "response_end_ts": None, "response_bytes": 0}]


def test_turns_of_many_connections_are_in_file_mappings(monkeypatch):
    """Past the spill size the columns are file mappings: a long run's turns are not the
    process's own memory."""
    from dissect.columns import filearray
    monkeypatch.setattr(filearray, "SPILL_BYTES", 1024)
    t = TurnTable()
    for i in range(2000):
        t.data(i, 0, 10, 2 * i + 1, float(i))
        t.data(i, 1, 20, 2 * i + 2, i + 0.5)
        t.sleep(i)
    t.close()
    assert t._open == {}
    assert t.conn.mapped and all(c.a.mapped for c in t.cols)
    assert t._count.mapped and t._last.mapped
    recs = list(t.records(lambda c: c % 2 == 0))
    assert len(recs) == 1000 and recs[-1]["conn"] == 1998
    assert recs[-1]["response_bytes"] == 20 and recs[-1]["response_ts"] == 1998.5


@pytest.mark.parametrize("cap", [1, 2])
def test_the_cap_stops_listing_a_connections_turns(cap, monkeypatch):
    monkeypatch.setattr(turnsmod, "MAX_EXCHANGES_PER_CONN", cap)
    t = TurnTable()
    f = 0
    for i in range(5):
        f += 1
        t.data(1, 0, 1, f, float(f))
        f += 1
        t.data(1, 1, 1, f, float(f))
        if i == 1:
            t.sleep(1)
    t.close()
    assert [r["request_frame"] for r in t.records(lambda c: True)] == [1, 3][:cap]
