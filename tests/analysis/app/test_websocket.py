"""WebSocket framing: lengths, masking, fragmentation, control frames, limits; agreement with
tshark (websocket.opcode) and the lab ground truth."""

from __future__ import annotations

import json
import random
import struct
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings

sys.path.insert(0, str(Path(__file__).parent))
from corpus_flows import cut_strategy, run_script

from dissect.analysis.app import websocket as ws
from dissect.analysis.app.base import CLIENT, SERVER
from tests.conftest import PCAPS, corpus_params, needs_tshark, tshark_fields

KEY = b"\x37\xfa\x21\x3d"


def frame(opcode: int, payload: bytes, *, fin=True, masked=False, rsv=0, length=None) -> bytes:
    """An RFC 6455 frame; ``length`` forces the length field (7/16/64-bit chosen from it)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if masked else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 1 << 16:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if masked:
        return head + KEY + ws.unmask(payload, KEY)
    return head + payload


BIG = bytes(range(256)) * 300          # 76800 bytes: the 64-bit length form
MID = b"m" * 300                       # the 16-bit length form
SCRIPT = [
    (CLIENT, frame(1, "héllo wörld".encode(), masked=True), 1, 1.0),
    (SERVER, frame(1, "héllo wörld".encode()), 2, 1.1),
    # a fragmented text message with a ping between its fragments
    (CLIENT, frame(1, b"frag-one ", fin=False, masked=True)
     + frame(9, b"are you there", masked=True)
     + frame(0, b"frag-two ", fin=False, masked=True), 3, 1.2),
    (SERVER, frame(10, b"are you there"), 4, 1.3),
    (CLIENT, frame(0, b"end", masked=True) + frame(2, MID, masked=True), 5, 1.4),
    (SERVER, frame(2, BIG), 6, 1.5),
    (CLIENT, frame(8, b"\x03\xe8normal closure", masked=True), 7, 1.6),
    (SERVER, frame(8, b"\x03\xe8"), 8, 1.7),
]


def _records(script=SCRIPT, cuts=None):
    return run_script(ws.WebSocketParser(conn=4, meta={}), script, cuts)


def _frames(recs):
    return [r for r in recs if r["type"] == "websocket"]


def test_frames_lengths_masks_and_previews():
    recs = _records()
    assert not [r for r in recs if r["type"] == "anomaly"]
    got = [(r["direction"], r["opcode_name"], r["fin"], r["masked"], r["payload_len"])
           for r in _frames(recs)]
    assert got == [("client", "text", True, True, 13), ("server", "text", True, False, 13),
                   ("client", "text", False, True, 9), ("client", "ping", True, True, 13),
                   ("client", "continuation", False, True, 9), ("server", "pong", True, False, 13),
                   ("client", "continuation", True, True, 3), ("client", "binary", True, True, 300),
                   ("server", "binary", True, False, len(BIG)),
                   ("client", "close", True, True, 16), ("server", "close", True, False, 2)]
    f = _frames(recs)
    assert f[0]["preview"] == "héllo wörld" and f[1]["preview"] == "héllo wörld"
    assert f[3]["preview"] == "are you there"
    assert (f[9]["close_code"], f[9]["close_reason"]) == (1000, "normal closure")
    assert (f[10]["close_code"], f[10]["close_reason"]) == (1000, "")
    assert f[0]["ts"] == 1.0 and f[0]["frames"] == [1] and f[0]["conn"] == 4


def test_fragmented_message_reassembled():
    msgs = [r for r in _records() if r["type"] == "websocket-message"]
    got = [(m["direction"], m["opcode_name"], m["length"], m["fragments"], m["frames"])
           for m in msgs]
    assert got == [("client", "text", 13, 1, [1]), ("server", "text", 13, 1, [2]),
                   ("client", "text", len(b"frag-one frag-two end"), 3, [3, 5]),
                   ("client", "binary", 300, 1, [5]), ("server", "binary", len(BIG), 1, [6])]
    assert all(m["message_len"] == m["length"] for m in msgs)


def test_preview_is_capped():
    text = ("x" * 500).encode()
    (f,) = _frames(_records([(SERVER, frame(1, text), 1, 0.0)]))
    assert f["preview"] == "x" * ws.PREVIEW_CHARS and f["payload_len"] == 500


@settings(max_examples=60, deadline=None)
@given(cut_strategy(SCRIPT))
def test_records_do_not_depend_on_segmentation(cuts):
    assert _records(cuts=list(cuts)) == _records()


def test_byte_by_byte_equals_whole():
    small = SCRIPT[:5] + SCRIPT[6:]
    cuts = [list(range(1, len(e[1]))) for e in small]
    assert _records(small, cuts=cuts) == _records(small)


def _anoms(recs):
    return [r["name"] for r in recs if r["type"] == "anomaly"]


def test_64bit_length_with_top_bit_set_stops():
    bad = bytes([0x82, 0x7f]) + (1 << 63 | 5).to_bytes(8, "big") + b"abcde"
    recs = _records([(SERVER, bad + frame(1, b"after"), 1, 0.0)])
    assert _anoms(recs) == ["websocket-bad-length"] and not _frames(recs)


def test_length_over_named_limit_stops():
    over = bytes([0x82, 0x7f]) + (ws.MAX_FRAME_PAYLOAD + 1).to_bytes(8, "big")
    recs = _records([(SERVER, over + b"x" * 10, 1, 0.0)])
    assert _anoms(recs) == ["websocket-bad-length"]
    at = bytes([0x82, 0x7f]) + ws.MAX_FRAME_PAYLOAD.to_bytes(8, "big")
    recs = _records([(SERVER, at + b"x" * 10, 1, 0.0)])
    assert "websocket-bad-length" not in _anoms(recs)     # accepted, then truncated at close
    assert "websocket-truncated-frame" in _anoms(recs)


def test_other_direction_keeps_going_after_a_stop():
    bad = bytes([0x82, 0x7f]) + (1 << 63).to_bytes(8, "big")
    recs = _records([(SERVER, bad, 1, 0.0), (CLIENT, frame(1, b"hi", masked=True), 2, 0.1)])
    assert [f["direction"] for f in _frames(recs)] == ["client"]


def test_protocol_oddities_are_named_and_reading_continues():
    script = [(CLIENT, frame(1, b"unmasked"), 1, 0.0),
              (SERVER, frame(1, b"masked", masked=True), 2, 0.1),
              (SERVER, frame(9, b"p" * 126), 3, 0.2),                 # control > 125 bytes
              (SERVER, frame(8, b"", fin=False), 4, 0.3),             # fragmented control
              (SERVER, frame(0, b"orphan"), 5, 0.4),
              (SERVER, frame(3, b"r"), 6, 0.5),                       # reserved opcode
              (SERVER, frame(1, b"a", fin=False) + frame(2, b"b"), 7, 0.6),
              (SERVER, frame(1, b"still read"), 8, 0.7)]
    recs = _records(script)
    assert _anoms(recs) == ["websocket-unmasked-client-frame", "websocket-masked-server-frame",
                            "websocket-bad-control-frame", "websocket-bad-control-frame",
                            "websocket-orphan-continuation", "websocket-reserved-opcode",
                            "websocket-interleaved-message"]
    assert _frames(recs)[-1]["preview"] == "still read"


def test_gap_inside_payload_counted_gap_in_header_stops():
    p = ws.WebSocketParser(conn=1)
    f = frame(2, b"0123456789")
    out = p.feed(SERVER, f[:5], 1, 0.0)
    out += p.gap(SERVER, 4, 2, 0.1)
    out += p.feed(SERVER, f[9:] + frame(1, b"next"), 3, 0.2)
    out += p.gap(SERVER, 3, 4, 0.3)          # lands where a header is due
    out += p.feed(SERVER, frame(1, b"lost"), 5, 0.4)
    out += p.close()
    fr = _frames(out)
    assert [(x["payload_len"], x.get("gap_bytes")) for x in fr] == [(10, 4), (4, None)]
    assert _anoms(out) == ["websocket-gap-in-header"]
    (m, _n) = [r for r in out if r["type"] == "websocket-message"]
    assert m["gap_bytes"] == 4


def test_close_without_status_and_truncation():
    recs = _records([(SERVER, frame(8, b""), 1, 0.0), (CLIENT, frame(2, b"abc", masked=True)[:7],
                                                       2, 0.1)])
    (f,) = _frames(recs)
    assert f["close_code"] is None
    assert _anoms(recs) == ["websocket-truncated-frame"]
    # cut inside the 6-byte masked header
    recs = _records([(CLIENT, frame(2, b"abc", masked=True)[:5], 1, 0.0)])
    assert _anoms(recs) == ["websocket-truncated-header"] and not _frames(recs)


def test_random_bytes_never_raise():
    rng = random.Random(5)
    for _ in range(300):
        p = ws.WebSocketParser(conn=1)
        for i in range(8):
            d = rng.choice((CLIENT, SERVER))
            chunk = rng.choice([rng.randbytes(rng.randint(0, 60)),
                                frame(rng.randint(0, 15), rng.randbytes(5), fin=rng.random() < .5,
                                      masked=rng.random() < .5)])
            p.feed(d, chunk, i, float(i))
            if rng.random() < 0.1:
                p.gap(d, rng.randint(1, 20), i, float(i))
        p.close()


def test_probe_is_low_confidence_and_strict():
    c = frame(1, b"hello", masked=True)
    s = frame(1, b"hello")
    assert 0.3 <= ws.WebSocketParser.probe(c, b"", 1, 2) < 0.8
    assert ws.WebSocketParser.probe(c, s, 1, 2) > ws.WebSocketParser.probe(c, b"", 1, 2)
    assert ws.WebSocketParser.probe(c, s, 1, 2) < 0.8      # HTTP and others win when they match
    assert ws.WebSocketParser.probe(b"GET / HTTP/1.1\r\n", b"", 1, 80) == 0
    assert ws.WebSocketParser.probe(b"\x16\x03\x01\x00\x10", b"", 1, 443) == 0
    assert ws.WebSocketParser.probe(s, b"", 1, 2) == 0        # an unmasked client frame
    assert ws.WebSocketParser.probe(b"", s, 1, 2) == 0        # server frames alone prove nothing


# ------------------------------------------------------------------ display path
def test_dissect_payload_offsets():
    data = frame(1, b"hi", masked=True) + frame(8, b"\x03\xe9", masked=True)
    a, b = ws.dissect_payload(data, 66)
    assert a.protocol == "websocket" and int(a.osi) == 7
    fa = {x.name: x for x in a.fields}
    assert fa["websocket.opcode"].value == 1 and fa["websocket.mask"].value is True
    assert (fa["websocket.masking_key"].value, fa["websocket.masking_key"].offset) == (KEY, 68)
    assert (fa["websocket.payload"].value, fa["websocket.payload"].offset) == (b"hi", 72)
    fb = {x.name: x for x in b.fields}
    assert (fb["websocket.close.code"].value, fb["websocket.close.code"].offset) == (1001, 80)
    # 16-bit length: the length field spans bytes 1..3
    (c,) = ws.dissect_payload(frame(2, MID), 0)
    fc = {x.name: x for x in c.fields}
    assert (fc["websocket.payload_length"].value, fc["websocket.payload_length"].length) == (300, 3)


def test_dissect_payload_rejects_other_protocols():
    for data in (b"GET / HTTP/1.1\r\n\r\n", b"220 ftp ready\r\n", b"\x16\x03\x01\x00\x05hello",
                 b"SSH-2.0-OpenSSH\r\n", frame(1, b"hello") + b"x"):
        assert ws.dissect_payload(data, 0) == [], data


# ------------------------------------------------------------------ real captures
def _engine(path):
    from dissect.engine import Engine
    return Engine(str(path)).run()


@needs_tshark
@pytest.mark.parametrize("path", corpus_params("websocket"))
def test_corpus_opcodes_agree_with_tshark(path):
    recs = _engine(path).records
    ours = Counter(r["opcode"] for r in recs if r["type"] == "websocket")
    theirs = Counter()
    for row in tshark_fields(path, ["websocket.opcode"]):
        if row and row[0]:
            theirs.update(int(x) for x in row[0].split(","))
    assert theirs, "tshark sees WebSocket frames in every file of this category"
    assert ours == theirs


@needs_tshark
@pytest.mark.parametrize("path", corpus_params("websocket"))
def test_corpus_masks_and_lengths_agree_with_tshark(path):
    recs = _engine(path).records
    ours = Counter((r["opcode"], r["masked"], r["payload_len"]) for r in recs
                   if r["type"] == "websocket")
    theirs = Counter()
    for row in tshark_fields(path, ["websocket.opcode", "websocket.mask",
                                    "websocket.payload_length_ext_64",
                                    "websocket.payload_length_ext_16",
                                    "websocket.payload_length"]):
        row = (row + [""] * 5)[:5]
        if not row[0]:
            continue
        ops, masks = row[0].split(","), row[1].split(",")
        l64, l16, l7 = ([int(x) for x in c.split(",")] if c else [] for c in row[2:])
        for i, op in enumerate(ops):
            n = l7[i]
            if n == 127:
                n = l64.pop(0)
            elif n == 126:
                n = l16.pop(0)
            theirs[(int(op), masks[i] in ("1", "True"), n)] += 1
    assert ours == theirs


def test_lab_echo_against_ground_truth():
    pcap, truth = PCAPS / "websocket-echo.pcap", PCAPS / "websocket-echo.json"
    if not pcap.exists() or not truth.exists():
        pytest.skip("websocket-echo capture or ground truth missing")
    gt = json.loads(truth.read_text())
    recs = _engine(pcap).records
    (h,) = [r for r in recs if r["type"] == "http"]
    client = gt["client"]["records"]
    assert h["status"] == next(r["status"] for r in client if r["kind"] == "handshake")
    msgs = [r for r in recs if r["type"] == "websocket-message"]
    for m in (r for r in client if r["kind"] == "message"):
        sent = [x for x in msgs if x["direction"] == "client" and x["opcode"] == m["opcode"]
                and x["length"] == m["bytes"]]
        echoed = [x for x in msgs if x["direction"] == "server" and x["opcode"] == m["opcode"]
                  and x["length"] == m["bytes"]]
        assert len(sent) == 1 and len(echoed) == (1 if m["echoed"] else 0)
    frames = [r for r in recs if r["type"] == "websocket"]
    ping = next(r for r in client if r["kind"] == "ping")
    (p,) = [f for f in frames if f["opcode"] == 9 and f["direction"] == "client"]
    assert p["preview"] == ping["payload"]
    assert [f for f in frames if f["opcode"] == 10 and f["direction"] == "server"]
    close = next(r for r in client if r["kind"] == "close")
    c = [f for f in frames if f["opcode"] == 8 and f["direction"] == "client"]
    assert [(x["close_code"], x["close_reason"]) for x in c] == [(close["code"], close["reason"])]
    assert all(f["masked"] == (f["direction"] == "client") for f in frames)
    assert not [r for r in recs if r["type"] == "anomaly" and r["protocol"] in ("http",
                                                                                  "websocket")]


def test_dispatcher_picks_websocket_without_a_handshake():
    from dissect.analysis.app.dispatch import AppDispatcher
    d = AppDispatcher()
    meta = {"client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 9001), "proto": "tcp"}
    d.on_stream(7, meta, CLIENT, "data", frame(1, b"hello", masked=True), 1, 0.0)
    d.on_stream(7, meta, SERVER, "data", frame(1, b"hello"), 2, 0.1)
    d.on_stream(7, meta, CLIENT, "data", frame(8, b"\x03\xe8", masked=True), 3, 0.2)
    recs = d.finish()
    assert d.protocols[7] == "websocket"
    assert [(r["direction"], r["opcode_name"]) for r in recs if r["type"] == "websocket"] == [
        ("client", "text"), ("server", "text"), ("client", "close")]


def test_message_frame_list_is_capped(monkeypatch):
    monkeypatch.setattr(ws, "MAX_MESSAGE_FRAMES", 3)
    script = [(SERVER, frame(2, b"a", fin=False), 1, 0.0)]
    script += [(SERVER, frame(0, b"b", fin=False), i, float(i)) for i in range(2, 6)]
    script += [(SERVER, frame(0, b"c"), 6, 6.0)]
    (m,) = [r for r in _records(script) if r["type"] == "websocket-message"]
    assert m["frames"] == [1, 2, 3] and m["frames_truncated"] is True
    assert m["length"] == 6 and m["fragments"] == 6


def test_dissect_payload_rejects_length_prefixed_records():
    dns_tcp = b"\x00\x1d" + bytes(29)                       # DNS over TCP, 29-byte message
    nbss = b"\x81\x00\x00\x44" + bytes(68)                  # NetBIOS session request
    rpc = b"\x80\x00\x00\x70" + bytes(112)                  # ONC RPC record marker
    mid_body = b"\x00\xfe\x05\xdf" + bytes(1416)            # some body bytes
    for data in (dns_tcp, nbss, rpc, mid_body):
        assert ws.dissect_payload(data, 0) == [], data[:8]
    # a masked client frame running past the segment is still shown
    big = frame(2, bytes(1000), masked=True)
    (layer,) = ws.dissect_payload(big[:300], 0)
    assert layer.get("websocket.payload_length") == 1000
