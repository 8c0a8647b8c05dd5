"""CaptureSummary: the per-conversation cells, with the last cell remembered, count exactly
what a lookup per frame counts, also past MAX_CONVERSATIONS."""

from __future__ import annotations

import random

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
