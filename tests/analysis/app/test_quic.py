"""QUIC headers: long/short, versions, coalescing, VN, Retry, gQUIC; agreement with tshark."""

from __future__ import annotations

import collections
import random
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from corpus_flows import feed_datagrams, read_capture

from dissect.analysis.app import quic
from tests.conftest import corpus_params, needs_tshark, tshark_fields

C, S = ("10.0.0.1", 50000), ("10.0.0.2", 443)
DCID, SCID, SRV = bytes(range(8)), b"\xaa" * 4, b"\xbb" * 6


def long_pkt(first: int, version: int, dcid: bytes, scid: bytes, body: bytes,
             token: bytes | None = None) -> bytes:
    out = bytes([first]) + struct.pack("!I", version) + bytes([len(dcid)]) + dcid + \
        bytes([len(scid)]) + scid
    if token is not None:
        out += bytes([len(token)]) + token           # 1-byte varint
    return out + struct.pack("!H", 0x4000 | len(body)) + body   # 2-byte varint length


def test_varint_all_sizes():
    assert quic.varint(b"\x25", 0) == (37, 1)
    assert quic.varint(b"\x7b\xbd", 0) == (15293, 2)
    assert quic.varint(b"\x9d\x7f\x3e\x7d", 0) == (494878333, 4)
    assert quic.varint(bytes.fromhex("c2197c5eff14e88c"), 0) == (151288809941952652, 8)
    with pytest.raises(IndexError):
        quic.varint(b"\x9d\x7f", 0)


def test_v1_coalesced_initial_handshake_then_short():
    p = quic.QuicParser(conn=1)
    d1 = long_pkt(0xC3, quic.V1, DCID, SCID, bytes(30), token=b"") + bytes(20)   # + zero padding
    d2 = long_pkt(0xC0, quic.V1, SCID, SRV, bytes(40), token=b"") + \
        long_pkt(0xE0, quic.V1, SCID, SRV, bytes(50)) + b"\x41" + SCID + bytes(10)
    d3 = b"\x40" + SRV + bytes(20)                 # client -> server: DCID = server's SCID
    out = p.datagram(d1, 1, 0.0, C, S) + p.datagram(d2, 2, 0.1, S, C) + \
        p.datagram(d3, 3, 0.2, C, S) + p.close()
    (rec,) = [r for r in out if r["type"] == "quic"]
    assert rec["versions"] == ["1"]
    assert rec["packets"] == {"initial": 2, "datagram_padding": 1, "handshake": 1, "short": 2}
    assert rec["dcids"] == [DCID.hex(), SCID.hex(), SRV.hex()]
    assert rec["scids"] == [SCID.hex(), SRV.hex()] and rec["client"] == list(C)
    assert (rec["first_frame"], rec["last_frame"]) == (1, 3)
    assert not [r for r in out if r["type"] == "anomaly"]


def test_v2_type_bits_retry_vn_and_drafts():
    p = quic.QuicParser(conn=1)
    p.datagram(long_pkt(0xD0, quic.V2, DCID, SCID, bytes(10), token=b""), 1, 0.0, C, S)  # Initial
    p.datagram(long_pkt(0xF0, quic.V2, SCID, SRV, bytes(10)), 2, 0.1, S, C)            # Handshake
    p.datagram(bytes([0xC0]) + struct.pack("!I", quic.V2) + b"\x04" + SCID + b"\x06" + SRV +
               b"token" + bytes(16), 3, 0.2, S, C)                                        # Retry
    vn = bytes([0x80]) + bytes(4) + b"\x04" + SCID + b"\x08" + DCID + \
        struct.pack("!II", quic.V1, 0xFF00001D)
    p.datagram(vn, 4, 0.3, S, C)
    p.datagram(long_pkt(0xC0, 0xFF00001B, DCID, SCID, bytes(5), token=b""), 5, 0.4, C, S)
    (rec,) = p.close()
    assert rec["packets"] == {"initial": 2, "handshake": 1, "retry": 1, "version_negotiation": 1}
    assert rec["versions"] == ["2", "version-negotiation", "draft-27"]
    assert rec["supported_versions"] == ["0x00000001", "0xff00001d"]


def test_bad_headers_are_anomalies():
    p = quic.QuicParser(conn=1)
    out = p.datagram(long_pkt(0xC0, quic.V1, bytes(21), SCID, b"", token=b""), 1, 0.0, C, S)
    assert [r["name"] for r in out] == ["quic-bad-long-header"]       # CID over 20 in v1
    out = p.datagram(long_pkt(0xC0, quic.V1, DCID, SCID, bytes(10), token=b"")[:-4], 2, 0.0, C, S)
    assert [r["name"] for r in out] == ["quic-bad-long-header"]
    assert quic.QuicParser.probe(b"\x00" * 30, 1000, 2000) == 0.0


def test_gquic_recognised_by_version():
    p = quic.QuicParser(conn=1)
    q046 = bytes([0xC3]) + b"Q046" + b"\x50" + DCID + bytes(20)
    p.datagram(q046, 1, 0.0, C, S)
    p.datagram(b"\x43" + bytes(30), 2, 0.1, S, C)
    (rec,) = p.close()
    assert rec["versions"] == ["Q046"] and rec["packets"] == {"gquic": 2}
    assert quic.QuicParser.probe(q046, 50000, 443) >= 0.9


def test_random_datagrams_never_raise():
    rng = random.Random(4)
    p = quic.QuicParser(conn=0)
    seed = long_pkt(0xC0, quic.V1, DCID, SCID, bytes(30), token=b"ab")
    for i in range(800):
        b = bytearray(seed if i % 2 else rng.randbytes(rng.randint(0, 60)))
        for _ in range(rng.randint(0, 4)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        b = bytes(b[: rng.randint(0, len(b))])
        p.datagram(b, i, float(i), C, S)
        quic.dissect_payload(b, 0)
        quic.QuicParser.probe(b, 1, 443)
    p.close()


def test_dissect_payload_layers():
    d = long_pkt(0xC0, quic.V1, DCID, SCID, bytes(30), token=b"") + b"\x40" + bytes(8)
    layers = quic.dissect_payload(d, 28)
    assert [x.protocol for x in layers] == ["quic", "quic"] and int(layers[0].osi) == 6
    f = {x.name: x for x in layers[0].fields}
    assert (f["quic.version"].value, f["quic.version"].offset) == ("0x00000001", 29)
    assert (f["quic.dcid"].value, f["quic.dcid"].offset, f["quic.dcid"].length) == (
        DCID.hex(), 34, 8)
    assert layers[1].get("quic.header_form") == "short"
    assert quic.dissect_payload(b"\x40abc", 0) == []


# -- corpus agreement with tshark --------------------------------------------------------

@needs_tshark
@pytest.mark.parametrize("path", corpus_params("quic"))
def test_corpus_versions_and_packet_counts_match_tshark(path):
    cap = read_capture(path)
    recs = []
    for fl in cap.udp:
        if max(quic.QuicParser.probe(d[4], d[2][1], d[3][1]) for d in fl.datagrams) >= 0.5:
            recs += feed_datagrams(quic.QuicParser(fl.id), fl)
    assert not [r for r in recs if r["type"] == "anomaly"]
    conns = [r for r in recs if r["type"] == "quic"]
    # QUIC quoted inside ICMP errors is decoded by tshark, not by our flow helper
    rows = tshark_fields(path, ["quic.header_form", "quic.version", "gquic.version"],
                         extra=("-Y", "(quic || gquic) && !icmp && !icmpv6"))
    forms, versions = collections.Counter(), collections.Counter()
    for hf, v, g in rows:
        forms.update(x for x in hf.split(",") if x)
        versions.update(x for x in v.split(",") if x)
        versions.update(x for x in g.split(",") if x)
    ours_long = sum(n for r in conns for t, n in r["packets"].items()
                    if t not in ("short", "datagram_padding", "gquic"))
    ours_short = sum(r["packets"].get("short", 0) for r in conns)
    assert ours_long == forms["1"] and ours_short == forms["0"]
    names = {quic.version_name(int(v, 16)) if v.startswith("0x") else v for v in versions}
    assert {v for r in conns for v in r["versions"]} == names
    if "q46" in path.name:
        # tshark's gQUIC dissector names the version on the two handshake packets only; we
        # count every packet of the flow as gQUIC
        assert versions == {"Q046": 2} and conns[0]["packets"] == {"gquic": 20}


def test_coalesced_packet_limit_bounds_the_walk():
    one = long_pkt(0xE0, quic.V1, DCID, SCID, b"")          # Handshake, empty payload
    p = quic.QuicParser(conn=1)
    p.datagram(one * (quic.MAX_COALESCED + 10), 1, 0.0, C, S)
    (rec,) = p.close()
    assert rec["packets"] == {"handshake": quic.MAX_COALESCED}
