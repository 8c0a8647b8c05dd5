"""STUN, DTLS, RTP/RTCP on one port (RFC 7983): parsing, RFC 3550 statistics, tshark."""

from __future__ import annotations

import collections
import random
import struct
import sys
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from corpus_flows import feed_datagrams, read_capture

from dissect.analysis.app import rtc
from tests.conftest import corpus_params, needs_tshark, tshark_fields

A, B = ("192.168.1.2", 50000), ("203.0.113.5", 3478)
TXID = bytes(range(12))


def stun(mtype: int, attrs: list[tuple[int, bytes]], fingerprint=True, txid=TXID) -> bytes:
    body = b"".join(struct.pack("!HH", t, len(v)) + v + bytes(-len(v) % 4) for t, v in attrs)
    msg = struct.pack("!HHI", mtype, len(body), rtc.STUN_COOKIE) + txid + body
    if fingerprint:
        head = struct.pack("!HHI", mtype, len(body) + 8, rtc.STUN_COOKIE) + txid + body
        crc = zlib.crc32(head) ^ rtc.FINGERPRINT_XOR
        msg = head + struct.pack("!HHI", 0x8028, 4, crc)
    return msg


def xor_addr(ip: str, port: int) -> bytes:
    raw = bytes(int(x) for x in ip.split("."))
    x = bytes(a ^ b for a, b in zip(raw, struct.pack("!I", rtc.STUN_COOKIE)))
    return struct.pack("!BBH", 0, 1, port ^ (rtc.STUN_COOKIE >> 16)) + x


def rtp(seq, ts, ssrc=0x11223344, pt=0, marker=False, payload=b"\xff" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq, ts, ssrc) + payload


def dtls(ctype, epoch, seq, body, version=0xFEFD) -> bytes:
    return struct.pack("!BHH", ctype, version, epoch) + seq.to_bytes(6, "big") + \
        struct.pack("!H", len(body)) + body


def test_demultiplexing_table():
    assert rtc.demux(b"\x00\x01") == "stun"
    assert rtc.demux(b"\x16\xfe\xfd") == "dtls"
    assert rtc.demux(b"\x30") == "dtls"            # DTLS 1.3 unified header
    assert rtc.demux(b"\x40\x00") == "turn-channel"
    assert rtc.demux(b"\x80\x00") == "rtp"
    assert rtc.demux(b"\x80\xc8") == "rtcp"        # PT 200 = SR
    assert rtc.demux(b"\x81\xc9") == "rtcp"
    assert rtc.demux(b"\x80\xe0") == "rtp"         # PT 96 with the marker bit
    assert rtc.demux(b"\xff") is None


def test_stun_request_response_pairing_and_attributes():
    p = rtc.RtcParser(conn=1)
    req = stun(0x0001, [(0x0006, b"user:frag"), (0x8022, b"test agent")])
    resp = stun(0x0101, [(0x0020, xor_addr("198.51.100.7", 61000))])
    out = p.datagram(req, 1, 1.0, A, B) + p.datagram(req, 2, 1.5, A, B) + \
        p.datagram(resp, 3, 1.6, B, A) + p.close()
    (rec,) = [r for r in out if r["type"] == "stun"]
    assert rec["method"] == "Binding" and rec["class"] == "request"
    assert rec["response_class"] == "success" and rec["retransmissions"] == 1
    assert rec["username"] == "user:frag" and rec["software"] == "test agent"
    assert rec["xor_mapped_address"] == {"ip": "198.51.100.7", "port": 61000}
    assert rec["message_types"] == [0x0001, 0x0001, 0x0101] and rec["frames"] == [1, 2, 3]
    assert rec["response_time_s"] == pytest.approx(0.6) and rec["fingerprint"] is True
    assert not [r for r in out if r["type"] == "anomaly"]
    bad = bytearray(req)
    bad[-1] ^= 1
    out = rtc.RtcParser(conn=1).datagram(bytes(bad), 1, 0.0, A, B)
    assert [r["name"] for r in out if r["type"] == "anomaly"] == ["stun-bad-fingerprint"]


def test_rtp_statistics_per_rfc3550():
    p = rtc.RtcParser(conn=2)
    # seq wraps, 1 is lost; arrival 25 ms late once -> transit 0,0,40,0,0 in 8 kHz units
    seqs = [65534, 65535, 0, 2, 3]
    arrivals = [0.0, 0.020, 0.045, 0.060, 0.080]
    for i, (s, t) in enumerate(zip(seqs, arrivals)):
        p.datagram(rtp(s, 160 * i), i + 1, 100.0 + t, A, B)
    (rec,) = [r for r in p.close() if r["type"] == "rtp"]
    assert rec["packets"] == 5 and rec["expected"] == 6 and rec["lost"] == 1
    assert rec["extended_max_seq"] == 65536 + 3
    # J += (|D| - J)/16 over D = 0, 40, 40, 0 (RFC 3550 A.8)
    j = 0.0
    for d in (0, 40, 40, 0):
        j += (d - j) / 16
    assert rec["jitter"] == pytest.approx(j, abs=1e-3)
    assert rec["jitter_ms"] == pytest.approx(j / 8, abs=1e-3)
    assert rec["clock_rate"] == 8000 and rec["clock_rate_guessed"] is False
    assert rec["encoding"] == "PCMU" and (rec["first_frame"], rec["last_frame"]) == (1, 5)


def test_dynamic_payload_type_clock_is_a_flagged_guess_unless_given():
    p = rtc.RtcParser(conn=2)
    p.datagram(rtp(1, 0, pt=100), 1, 0.0, A, B)
    (rec,) = [r for r in p.close() if r["type"] == "rtp"]
    assert rec["clock_rate"] == 90000 and rec["clock_rate_guessed"] is True
    p = rtc.RtcParser(conn=2, meta={"clock_rates": {100: 48000}})
    p.datagram(rtp(1, 0, pt=100), 1, 0.0, A, B)
    (rec,) = [r for r in p.close() if r["type"] == "rtp"]
    assert rec["clock_rate"] == 48000 and rec["clock_rate_guessed"] is False


def test_rtcp_compound_sr_sdes_bye():
    block = struct.pack("!IBBHIIII", 0x11223344, 64, 0xFF, 0xFFFE, 70000, 33, 1, 2)
    sr = struct.pack("!BBH", 0x81, 200, 12) + struct.pack("!IIIIII", 0xAABBCCDD, 1, 0, 160,
                                                           10, 1600) + block
    cname = b"\x01\x09host@test"                      # 11 bytes + end + pad -> 12
    sdes_body = struct.pack("!I", 0xAABBCCDD) + cname + b"\x00"
    sdes = struct.pack("!BBH", 0x81, 202, len(sdes_body) // 4) + sdes_body
    bye = struct.pack("!BBHI", 0x81, 203, 1, 0xAABBCCDD)
    out = rtc.RtcParser(conn=3).datagram(sr + sdes + bye, 9, 1.0, A, B)
    (rec,) = [r for r in out if r["type"] == "rtcp"]
    sr_p, sdes_p, bye_p = rec["packets"]
    assert sr_p["name"] == "SR" and sr_p["sender_packets"] == 10 and sr_p["sender_octets"] == 1600
    (b,) = sr_p["report_blocks"]
    assert b["fraction_lost"] == 0.25 and b["cumulative_lost"] == -2 and b["jitter"] == 33
    assert sdes_p["chunks"] == [{"ssrc": 0xAABBCCDD, "items": {"CNAME": "host@test"}}]
    assert bye_p["ssrcs"] == [0xAABBCCDD]


def test_dtls_flights_and_session_summary():
    p = rtc.RtcParser(conn=4)
    out = p.datagram(dtls(22, 0, 0, b"\x01" + bytes(20), version=0xFEFF), 1, 0.0, A, B)
    out += p.datagram(dtls(22, 0, 0, b"\x02" + bytes(10)) + dtls(22, 0, 1, b"\x0b" + bytes(10)),
                      2, 0.1, B, A)
    out += p.datagram(dtls(22, 0, 2, b"\x0e" + bytes(3)), 3, 0.1, B, A)
    out += p.datagram(dtls(20, 0, 3, b"\x01") + dtls(22, 1, 0, bytes(40)), 4, 0.2, A, B)
    out += p.datagram(dtls(23, 1, 1, bytes(100)), 5, 0.3, A, B)
    out += p.close()
    flights = [r for r in out if r["type"] == "dtls"]
    assert [(f["frames"], f["handshake_types"]) for f in flights] == [
        ([1], ["client_hello"]), ([2, 3], ["server_hello", "certificate", "server_hello_done"]),
        ([4], [])]
    assert flights[0]["versions"] == ["DTLS 1.0"]
    (sess,) = [r for r in out if r["type"] == "dtls-session"]
    assert sess["records_by_content"] == {"handshake": 5, "change_cipher_spec": 1,
                                          "application_data": 1}
    out = rtc.RtcParser(conn=4).datagram(dtls(22, 0, 0, b"\x01" + bytes(5))[:-2], 1, 0.0, A, B)
    assert [r["name"] for r in out if r["type"] == "anomaly"] == ["dtls-truncated-record"]


def test_random_datagrams_never_raise():
    rng = random.Random(9)
    p = rtc.RtcParser(conn=0)
    seeds = [stun(1, [(6, b"u")]), rtp(1, 2), dtls(22, 0, 0, b"\x01abc"), b"\x81\xc8\x00\x06" + bytes(24)]
    for i in range(800):
        b = bytearray(rng.choice(seeds) if i % 3 else rng.randbytes(rng.randint(0, 60)))
        for _ in range(rng.randint(0, 4)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        b = bytes(b[: rng.randint(0, len(b))])
        p.datagram(b, i, i * 0.01, A, B)
        rtc.dissect_payload(b, 0)
        rtc.RtcParser.probe(b, 1, 2)
    p.close()


def test_dissect_payload_layers():
    (layer,) = rtc.dissect_payload(stun(1, [(6, b"user")]), 42)
    assert layer.protocol == "stun" and int(layer.osi) == 5
    assert layer.fields[0].offset == 42 and layer.get("stun.type") == "0x0001"
    (layer,) = rtc.dissect_payload(rtp(7, 99, ssrc=0xDEADBEEF), 10)
    assert layer.protocol == "rtp" and layer.get("rtp.seq") == 7
    assert [f.offset for f in layer.fields if f.name == "rtp.ssrc"] == [18]
    layers = rtc.dissect_payload(dtls(22, 0, 0, b"\x01" + bytes(3)) + dtls(23, 1, 0, bytes(4)), 0)
    assert [(x.protocol, x.offset) for x in layers] == [("dtls", 0), ("dtls", 17)]
    assert int(layers[0].osi) == 6
    assert rtc.dissect_payload(b"\x17\x03\x03\x00\x01\x00", 0) == []   # TLS, not DTLS


# -- corpus agreement with tshark --------------------------------------------------------

def _ours(path):
    cap = read_capture(path)
    recs = []
    for fl in cap.udp:
        if max(rtc.RtcParser.probe(d[4], d[2][1], d[3][1]) for d in fl.datagrams) >= 0.4:
            recs += feed_datagrams(rtc.RtcParser(fl.id), fl)
    return recs


@needs_tshark
@pytest.mark.parametrize("path", corpus_params("webrtc"))
def test_corpus_stun_rtp_dtls_match_tshark(path):
    recs = _ours(path)
    stun_types = collections.Counter(f"0x{t:04x}" for r in recs if r["type"] == "stun"
                                     and not r["classic"] for t in r["message_types"])
    rows = tshark_fields(path, ["stun.type"], extra=("-Y", "stun"))
    assert stun_types == collections.Counter(t for (ts,) in rows for t in ts.split(",") if t)
    # RTP: per-SSRC packet counts (summed over flows, as tshark's rtp.ssrc counts are)
    ours = collections.Counter()
    for r in recs:
        if r["type"] == "rtp":
            ours[r["ssrc_hex"]] += r["packets"]
    rows = tshark_fields(path, ["rtp.ssrc"], extra=("--enable-heuristic", "rtp_udp", "-Y", "rtp"))
    assert ours == collections.Counter(s for (s,) in rows)
    # DTLS: the handshake message types in clear (epoch 0)
    names = {v: k for k, v in rtc.HANDSHAKE_TYPES.items()}
    ours_hs = collections.Counter(names[h] for r in recs if r["type"] == "dtls"
                                  for h in r["handshake_types"])
    rows = tshark_fields(path, ["dtls.handshake.type"], extra=("-Y", "dtls"))
    assert ours_hs == collections.Counter(int(h) for (hs,) in rows for h in hs.split(",") if h)
    if "sip.pcap" in path.name:
        # RTCP that tshark finds through SDP: one compound SR + SDES + BYE
        (rtcp,) = [r for r in recs if r["type"] == "rtcp"]
        assert [p["name"] for p in rtcp["packets"]] == ["SR", "SDES", "BYE"]
        assert rtcp["packets"][1]["chunks"][0]["items"]["CNAME"] == \
            "11894297-4432a9f8@192.168.1.2"
        assert rtcp["packets"][2]["reason"] == "session shutdown"
    assert all(r["type"] != "anomaly" or r["name"] == "rtc-unknown-first-byte" for r in recs)


def test_ssrc_limit_is_named_and_enforced():
    p = rtc.RtcParser(conn=1)
    out = []
    for i in range(rtc.MAX_SSRCS + 2):
        out += p.datagram(rtp(1, 0, ssrc=i), i, 0.0, A, B)
    assert [r["name"] for r in out] == ["rtp-too-many-ssrcs"] * 2
    assert len([r for r in p.close() if r["type"] == "rtp"]) == rtc.MAX_SSRCS


def test_stun_transaction_limit_flushes_oldest_unanswered():
    p = rtc.RtcParser(conn=1)
    out = []
    for i in range(rtc.MAX_STUN_TRANSACTIONS + 1):
        out += p.datagram(stun(1, [], txid=i.to_bytes(12, "big")), i, 0.0, A, B)
    flushed = [r for r in out if r["type"] == "stun"]
    assert len(flushed) == rtc.MAX_STUN_TRANSACTIONS // 2 and flushed[0]["response_frame"] is None
    assert len(p.stun) == rtc.MAX_STUN_TRANSACTIONS // 2 + 1
