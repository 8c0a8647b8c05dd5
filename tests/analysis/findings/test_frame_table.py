"""FrameTable (dissect.analysis.findings): per-frame facts the records do not carry."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from conftest import needs_tshark, tshark_fields  # noqa: E402
from engine_helper import PCAPS, corpus, run  # noqa: E402

from dissect.analysis.findings import FIRST_BYTES_KEPT, FrameTable  # noqa: E402
from dissect.analysis.findings.timing import MAX_EXCHANGES_PER_CONN, timing_records  # noqa: E402


@needs_tshark
def test_frame_table_agrees_with_tshark():
    path = PCAPS / "http-keepalive-loss.pcap"
    _res, t = run(path)
    rows = tshark_fields(path, ["frame.number", "frame.time_epoch", "tcp.stream", "tcp.len",
                                "tcp.flags"])
    assert len(t) == len(rows)
    for num, ts, stream, tlen, flags in rows:
        n = int(num)
        assert abs(t.time(n) - float(ts)) < 1e-6
        assert t.conn[n] != -1 and t.frames(int(stream)).count(n) == 1
        assert t.plen[n] == int(tlen) and t.flags[n] == int(flags, 16)
    assert t.first(0, 0).startswith(b"GET ") and len(t.first(0, 0)) == FIRST_BYTES_KEPT
    assert t.first(0, 1).startswith(b"HTTP/1.")
    assert t.time(0) is None and t.time(len(rows) + 1) is None and t.frames("nope") == []


def test_gaps_and_repeats():
    t = FrameTable()
    t.add(1, 10.0, 0, 0, 0x02, 0)
    t.add(3, 12.0, "udp/0", 1, 0, 5, b"hello")
    t.add(3, 99.0, "udp/0", 1, 0, 5, b"again")    # a frame added twice keeps the first
    assert len(t) == 3 and t.conn[2] == -1 and t.time(3) == 12.0
    assert t.frames("udp/0") == [3] and t.head[3] == ord("h") and t.head[1] == -1


def test_exchanges_per_connection_are_capped():
    path = corpus("http1/zeek+zeek__testing_btest_Traces_http_1000-requests-one-dropped-"
                  "response.pcap.gz")
    res, t = run(path)
    recs = [r for r in timing_records(res, t) if "exchange" in r["transaction"]]
    if not recs:
        import pytest
        pytest.skip("an HTTP parser produced transactions: the exchange fallback is unused")
    assert len(recs) == MAX_EXCHANGES_PER_CONN
    assert recs[-1]["transaction"]["more_exchanges_not_shown"] is True
    assert not any(r["transaction"].get("more_exchanges_not_shown") for r in recs[:-1])
