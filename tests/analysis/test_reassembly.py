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


def test_overlaps_are_checked_against_exactly_the_last_keep_delivered_bytes(monkeypatch):
    """The kept tail is a buffer cut back lazily; what a retransmission is compared with
    must still be exactly the last KEEP_DELIVERED bytes delivered, at every point of a long
    stream (a slice that reached older bytes would find mismatches the rule does not)."""
    import random
    keep = 64
    monkeypatch.setattr(reassembly, "KEEP_DELIVERED", keep)
    rnd = random.Random(5)
    stream = bytes(rnd.randrange(256) for _ in range(3000))
    segs = [(0, seg(1, 1000, flags=0x02))]
    expected = 0
    pos, frame = 0, 2
    while pos < len(stream):
        n = rnd.randrange(1, 40)
        segs.append((0, seg(frame, 1001 + pos, stream[pos:pos + n])))
        pos = min(pos + n, len(stream))
        frame += 1
        # a resend of 8 bytes from somewhere behind the edge, one byte changed
        back = rnd.randrange(8, 2 * keep)
        if back <= pos:
            start = pos - back
            data = bytearray(stream[start:start + 8])
            flip = rnd.randrange(8)
            data[flip] ^= 0xFF
            segs.append((0, seg(frame, 1001 + start, bytes(data))))
            frame += 1
            # compared only where it overlaps the last `keep` bytes delivered
            if start + flip >= pos - keep:
                expected += 1
    out = run(segs)
    got = sum(1 for x in out if x.kind == "anomaly" and x.value == "overlap-mismatch")
    assert b"".join(x.value for x in out if x.kind == "data") == stream
    assert expected > 20 and got == expected
