"""Stream reassembly: in order, deduplicated, gaps as gaps, overlaps checked, limit named."""

from __future__ import annotations

from dissect.analysis import reassembly
from dissect.analysis.reassembly import StreamReassembler
from dissect.columns.segment import TcpSegment


def seg(frame, seq, data=b"", flags=0x10, ack=5001, src="c", plen=None):
    s, d, sp, dp = ("1.1.1.1", "2.2.2.2", 1000, 80) if src == "c" else ("2.2.2.2", "1.1.1.1", 80, 1000)
    return TcpSegment(frame, float(frame), s, d, sp, dp, seq, ack, flags, 100,
                      len(data) if plen is None else plen, None, data, 54)


def run(segs):
    r = StreamReassembler()
    out = []
    for direction, s in segs:
        out += r.push(direction, s)
    out += r.close()
    return out


def test_in_order_retransmission_and_reordering_deliver_each_byte_once():
    out = run([(0, seg(1, 1000, flags=0x02)), (0, seg(2, 1001, b"abc")),
               (0, seg(3, 1007, b"ghi")), (0, seg(4, 1004, b"def")), (0, seg(5, 1001, b"abc"))])
    assert [(k, v, f) for _d, k, v, f, _t in out] == [
        ("data", b"abc", 2), ("data", b"def", 4), ("data", b"ghi", 3)]


def test_overlap_with_different_bytes_is_an_anomaly_first_copy_wins():
    out = run([(0, seg(1, 1000, flags=0x02)), (0, seg(2, 1001, b"abc")), (0, seg(3, 1001, b"xbc"))])
    assert [x.kind for x in out] == ["data", "anomaly"] and out[1].value == "overlap-mismatch"


def test_ack_past_missing_bytes_is_a_gap_not_zeros():
    out = run([(0, seg(1, 1000, flags=0x02)), (0, seg(2, 1001, b"abc")),
               (1, seg(3, 5001, ack=1010, src="s"))])
    assert [(x.kind, x.value) for x in out] == [("data", b"abc"), ("gap", 6)]


def test_snaplen_cut_segment_gives_data_then_gap():
    out = run([(0, seg(1, 1000, flags=0x02)), (0, seg(2, 1001, b"ab", plen=5)),
               (0, seg(3, 1006, b"z"))])
    assert [(x.kind, x.value) for x in out] == [("data", b"ab"), ("gap", 3), ("data", b"z")]


def test_out_of_order_limit_declares_gap(monkeypatch):
    monkeypatch.setattr(reassembly, "MAX_OOO_BYTES", 4)
    out = run([(0, seg(1, 1000, flags=0x02)), (0, seg(2, 1011, b"xyz")), (0, seg(3, 1021, b"uvw"))])
    kinds = [(x.kind, x.value) for x in out]
    assert ("anomaly", "ooo-buffer-full") in kinds and ("gap", 10) in kinds
    assert b"".join(v for k, v in kinds if k == "data") == b"xyzuvw"
