"""CaptureSummary: the per-conversation cells, with the last cell remembered, count exactly
what a lookup per frame counts, also past MAX_CONVERSATIONS."""

from __future__ import annotations

import random

import pytest

from dissect.analysis import summary
from dissect.columns.decode import Decoded
from dissect.io.capture import Frame

CHAIN = ("eth", "ipv4", "tcp")


def _expected(frames, limit):
    cells, dropped, conn_cells = {}, 0, {}
    for number, chain, src, dst, conn, wl in frames:
        key = (chain, src, dst)
        if key not in cells and len(cells) >= limit:
            dropped += 1
            key = (chain, None, None)
        c = cells.setdefault(key, [0, 0])
        c[0] += 1
        c[1] += wl
        k = (chain, conn)
        if k in conn_cells or len(conn_cells) < limit:
            cc = conn_cells.setdefault(k, [0, 0])
            cc[0] += 1
            cc[1] += wl
    return cells, dropped, conn_cells


def test_cells_match_a_lookup_per_frame(monkeypatch):
    monkeypatch.setattr(summary, "MAX_CONVERSATIONS", 5)
    rnd = random.Random(3)
    hosts = [f"10.0.0.{i}" for i in range(4)]
    chains = [CHAIN, ("eth", "ipv4", "udp")]
    frames = []
    for n in range(1, 3000):
        # runs of the same conversation, as captures have, and switches between them;
        # equal strings that are different objects must still find their cell
        src, dst = rnd.choice(hosts), rnd.choice(hosts)
        if rnd.random() < 0.5:
            src = "".join(list(src))
        for _ in range(rnd.randint(1, 4)):
            frames.append((n, rnd.choice(chains), src, dst, rnd.randint(0, 8),
                           rnd.randint(60, 1500)))
    s = summary.CaptureSummary()
    for i, (_n, chain, src, dst, conn, wl) in enumerate(frames, 1):
        fr = Frame(i, float(i), wl, wl, 1, 0, b"")
        s.add(fr, Decoded(chain, src, dst, None, (), ()))
        s.add_conn(chain, conn, wl)
    cells, dropped, conn_cells = _expected(frames, 5)
    assert {k: v[:2] for k, v in s._cells.items()} == cells
    assert s.conversations_dropped == dropped > 0
    assert s._conn_cells == conn_cells
    assert s.frames == len(frames)


def _summary_record(path, monkeypatch, fold: bool) -> dict:
    """The summary record of a run of ``path``; with ``fold``, every connection sleeps
    as soon as it is over and the fold hook runs at every frame (the cells of dormant
    connections with a known protocol are folded as the run goes); without, never."""
    from dissect.analysis import tcp as tcpmod
    from dissect.engine import Engine
    if fold:
        monkeypatch.setattr(tcpmod, "DORMANT_AFTER_S", 0.0)
        monkeypatch.setattr(tcpmod, "DORMANT_SWEEP_EVERY", 1)
        monkeypatch.setattr(summary, "FOLD_MASK", 0)
    else:
        monkeypatch.setattr(summary, "FOLD_MASK", (1 << 62) - 1)
    from dissect import engine
    folded = []
    real = engine._fold_hook

    def counting(transport):
        f = real(transport)
        if f is None:
            return None

        def fold(s):
            before = len(s._conn_cells)
            f(s)
            folded.append(before - len(s._conn_cells))
        return fold
    monkeypatch.setattr(engine, "_fold_hook", counting)
    res = Engine(str(path)).run()
    monkeypatch.undo()
    return res.summary.to_record(), sum(folded), res.summary._parked is not None


def test_cells_folded_while_the_run_goes_give_the_same_summary(monkeypatch):
    from pathlib import Path
    pcaps = sorted((Path(__file__).resolve().parents[2] / "pcaps").glob("*.pcap"))
    assert pcaps
    total = parked = 0
    for p in pcaps:
        want, n0, _ = _summary_record(p, monkeypatch, False)
        got, n, pk = _summary_record(p, monkeypatch, True)
        assert n0 == 0
        assert got == want, p.name
        total += n
        parked += pk
    assert total > 0, "no cell was folded during a run"
    assert parked > 0, "no connection without a protocol was parked"


def _corpus_params():
    import importlib.util
    from pathlib import Path
    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("_dissect_conftest",
                                                  here.parent / "conftest.py")
    cf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cf)
    return cf.corpus_params()


@pytest.mark.parametrize("path", _corpus_params())
def test_corpus_summaries_are_the_same_with_cells_folded_as_the_run_goes(path, monkeypatch):
    from dissect.errors import CaptureError
    try:
        want = _summary_record(path, monkeypatch, False)[0]
    except CaptureError:
        pytest.skip("the capture cannot be opened")
    assert _summary_record(path, monkeypatch, True)[0] == want
