"""DNS: decoding with limits, pairing, Wireshark's retransmission rule, TCP framing, tshark."""

from __future__ import annotations

import random
import re
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings

sys.path.insert(0, str(Path(__file__).parent))
from corpus_flows import (
    cut_strategy,
    feed_datagrams,
    feed_stream,
    read_capture,
    run_script,
    stream_meta,
)

from dissect.analysis.app import dns
from dissect.analysis.app.base import CLIENT, SERVER
from dissect.errors import MalformedError
from tests.conftest import corpus_params, needs_tshark, tshark_fields

C, S = ("10.0.0.1", 5353), ("10.0.0.53", 53)


def name(n: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in n.split(".") if p) + b"\0"


def rr(owner: bytes, rtype: int, rdata: bytes, ttl=300, rclass=1) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def message(ident, qname, qtype=1, response=False, rcode=0, answers=(), auth=(), add=()):
    flags = (0x8180 if response else 0x0100) | rcode
    head = struct.pack("!HHHHHH", ident, flags, 1, len(answers), len(auth), len(add))
    return head + name(qname) + struct.pack("!HH", qtype, 1) + b"".join(answers) + \
        b"".join(auth) + b"".join(add)


PTR = b"\xc0\x0c"    # compression pointer to the question name


def full_response():
    answers = [
        rr(PTR, 5, name("alias.example.com")),
        rr(PTR, 1, bytes([192, 0, 2, 1])),
        rr(PTR, 28, bytes(15) + b"\x01"),
        rr(PTR, 15, struct.pack("!H", 10) + name("mx.example.com")),
        rr(PTR, 16, b"\x05hello\x05world"),
        rr(PTR, 33, struct.pack("!HHH", 1, 2, 443) + PTR),
        rr(PTR, 65, struct.pack("!H", 1) + b"\0" + b"\x00\x01\x00\x03\x02h2"),
        rr(PTR, 12, name("ptr.example")),
    ]
    auth = [rr(b"\0", 6, name("ns1.example") + name("admin.example") +
               struct.pack("!IIIII", 2024, 3600, 600, 86400, 60))]
    add = [rr(b"\0", 41, struct.pack("!HH", 10, 4) + b"abcd", ttl=0x00008000, rclass=1232)]
    return message(0x1234, "www.example.com", response=True, answers=answers, auth=auth, add=add)


def test_decodes_common_record_types_with_compression():
    m, notes = dns.parse_message(full_response())
    assert notes == []
    data = [(dns.type_name(a["type"]), a["name"], a["data"]) for a in m["answers"]]
    assert data == [
        ("CNAME", "www.example.com", "alias.example.com"),
        ("A", "www.example.com", "192.0.2.1"),
        ("AAAA", "www.example.com", "::1"),
        ("MX", "www.example.com", {"preference": 10, "exchange": "mx.example.com"}),
        ("TXT", "www.example.com", ["hello", "world"]),
        ("SRV", "www.example.com", {"priority": 1, "weight": 2, "port": 443,
                                    "target": "www.example.com"}),
        ("HTTPS", "www.example.com", {"priority": 1, "target": "<Root>",
                                      "params": "0001000302" + b"h2".hex()}),
        ("PTR", "www.example.com", "ptr.example"),
    ]
    soa = m["authority"][0]["data"]
    assert soa["mname"] == "ns1.example" and soa["serial"] == 2024 and soa["minimum"] == 60
    assert m["edns"] == {"udp_payload_size": 1232, "ext_rcode": 0, "version": 0, "do": True,
                         "options": [{"code": 10, "length": 4, "data": b"abcd".hex()}]}


def test_pointer_loop_and_limits_are_named_anomalies():
    head = message(1, "a.example", response=True)
    n = len(head)                                      # answer name: n -> n+2 -> n
    loop = head + struct.pack("!HH", 0xC000 | (n + 2), 0xC000 | n)
    loop = loop[:6] + b"\x00\x01" + loop[8:]          # one answer, whose name loops
    m, notes = dns.parse_message(loop)
    assert [n[0] for n in notes] == ["dns-name-pointer-loop"]
    long_name = ".".join(["a" * 63] * 4)               # 4*64+1 = 257 > 255
    with pytest.raises(MalformedError):
        dns.parse_message(message(1, long_name))
    with pytest.raises(dns.DnsNameError) as e:
        dns.read_name(name(long_name), 0)
    assert e.value.name == "dns-name-too-long"
    many = b"\x01a" * (dns.MAX_LABELS + 1) + b"\0"
    with pytest.raises(dns.DnsNameError) as e:
        dns.read_name(many, 0)
    assert e.value.name in ("dns-too-many-labels", "dns-name-too-long")
    chain = b"".join(struct.pack("!H", 0xC000 | (2 * (i + 1))) for i in range(100)) + b"\0"
    with pytest.raises(dns.DnsNameError) as e:
        dns.read_name(chain, 0)
    assert e.value.name == "dns-name-pointer-limit"
    with pytest.raises(MalformedError):
        dns.parse_message(b"\x00" * 11)


def test_pairing_response_time_and_retransmissions():
    p = dns.DnsUdpParser(conn=0)
    q = message(7, "x.example")
    r = message(7, "x.example", response=True, answers=[rr(PTR, 1, b"\x01\x02\x03\x04")])
    out = []
    out += p.datagram(q, 1, 10.0, C, S)
    out += p.datagram(q, 2, 11.0, C, S)          # same ID, no answer yet, within 5 s
    out += p.datagram(r, 3, 11.5, S, C)
    out += p.datagram(r, 4, 11.5, S, C)          # the same response again
    out += p.datagram(q, 5, 20.0, C, S)          # answered already: a new transaction
    out += p.datagram(message(8, "y.example"), 6, 30.0, C, S)
    out += p.datagram(message(8, "y.example"), 7, 36.0, C, S)   # beyond the 5 s timer
    out += p.datagram(message(9, "z", response=True, rcode=3), 8, 40.0, S, C)
    out += p.close()
    recs = [(r["query_frame"], r["response_frame"], r["retransmission"], r["rcode"])
            for r in out if r["type"] == "dns"]
    assert recs == [(1, 3, False, "NOERROR"), (2, 3, True, "NOERROR"), (1, 4, True, "NOERROR"),
                    (None, 8, False, "NXDOMAIN"), (5, None, False, None),
                    (6, None, False, None), (7, None, False, None)]
    first = next(r for r in out if r["type"] == "dns")
    assert first["response_time_s"] == pytest.approx(1.5) and first["qname"] == "x.example"
    assert first["answers"] == [{"name": "x.example", "type": "A", "ttl": 300, "data": "1.2.3.4"}]
    assert first["transport"] == "udp"
    assert [r.get("unsolicited") for r in out if r["type"] == "dns"][3] is True


TCP_SCRIPT = []
for i in range(3):
    qm, rm = message(100 + i, f"q{i}.example"), message(100 + i, f"q{i}.example", response=True,
                                                          rcode=3)
    TCP_SCRIPT.append((CLIENT, struct.pack("!H", len(qm)) + qm, 2 * i + 1, float(i)))
    TCP_SCRIPT.append((SERVER, struct.pack("!H", len(rm)) + rm, 2 * i + 2, i + 0.5))


def _tcp(cuts=None):
    return run_script(dns.DnsTcpParser(conn=1, meta={"client": C, "server": S}), TCP_SCRIPT, cuts)


def test_tcp_length_prefixed_messages():
    recs = [r for r in _tcp() if r["type"] == "dns"]
    assert [(r["qname"], r["rcode"], r["transport"], r["query_frame"], r["response_frame"])
            for r in recs] == [(f"q{i}.example", "NXDOMAIN", "tcp", 2 * i + 1, 2 * i + 2)
                               for i in range(3)]


@settings(max_examples=60, deadline=None)
@given(cut_strategy(TCP_SCRIPT))
def test_tcp_records_do_not_depend_on_segmentation(cuts):
    assert _tcp(list(cuts)) == _tcp()


def test_random_datagrams_never_raise():
    rng = random.Random(1)
    p = dns.DnsUdpParser(conn=0)
    base = full_response()
    for i in range(500):
        b = bytearray(base if i % 2 else rng.randbytes(rng.randint(0, 80)))
        for _ in range(rng.randint(0, 6)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        p.datagram(bytes(b[: rng.randint(0, len(b))]), i, float(i), C, S)
        dns.dissect_payload(bytes(b), 0)
    p.close()
    t = dns.DnsTcpParser(conn=2)
    for i in range(200):
        t.feed(rng.choice((CLIENT, SERVER)), rng.randbytes(rng.randint(0, 40)), i, float(i))
    t.close()


def test_dissect_payload_fields_udp_and_tcp():
    msg = message(0xBEEF, "a.example", qtype=28)
    (layer,) = dns.dissect_payload(msg, 42)
    assert layer.protocol == "dns" and int(layer.osi) == 7
    f = {x.name: x for x in layer.fields}
    assert (f["dns.id"].value, f["dns.id"].offset) == (0xBEEF, 42)
    assert (f["dns.qry.name"].value, f["dns.qry.name"].offset, f["dns.qry.name"].length) == (
        "a.example", 54, 11)
    assert f["dns.qry.type"].value == "AAAA" and f["dns.qry.type"].offset == 65
    (layer,) = dns.dissect_payload(struct.pack("!H", len(msg)) + msg, 0)
    assert layer.get("dns.length") == len(msg) and layer.fields[1].offset == 2
    (layer,) = dns.dissect_payload(full_response(), 0)
    assert [x.value for x in layer.fields if x.name == "dns.resp.type"][:2] == ["CNAME", "A"]
    assert dns.dissect_payload(b"GET / HTTP/1.1\r\n\r\n", 0) == []


# -- corpus agreement with tshark --------------------------------------------------------

def _ours(path):
    cap = read_capture(path)
    recs = []
    for fl in cap.udp:
        _f, _t, src, dst, _p = fl.datagrams[0]
        if 53 in (src[1], dst[1]):
            recs += feed_datagrams(dns.DnsUdpParser(fl.id), fl)
    for t in cap.tcp:
        if 53 in (t.server[1], t.client[1]):
            recs += feed_stream(dns.DnsTcpParser(t.id, stream_meta(t)), t)
    return recs


@needs_tshark
@pytest.mark.parametrize("path", corpus_params("dns"))
def test_corpus_names_rcodes_retransmissions_match_tshark(path):
    recs = _ours(path)
    # DNS quoted inside ICMP errors is decoded by tshark, not by our flow helper
    rows = tshark_fields(path, ["frame.number", "dns.flags.response", "dns.qry.name",
                                "dns.flags.rcode", "dns.retransmission"],
                         extra=("-Y", "dns && (udp.port==53 || tcp.port==53) && !icmp && !icmpv6"))
    t_names, t_rcodes, t_retrans = [], [], set()
    for fr, resp, qnames, rcodes, retrans in rows:
        fr = int(fr)
        resp, qnames, rcodes = resp.split(","), qnames.split(","), rcodes.split(",")
        for i, isresp in enumerate(resp):
            if isresp == "0":
                t_names.append((fr, qnames[i] if i < len(qnames) else ""))
            else:
                t_rcodes.append((fr, int(rcodes[i])))
        if "1" in retrans.split(","):
            t_retrans.add(fr)
    dnsrecs = [r for r in recs if r["type"] == "dns"]
    o_names = sorted((r["query_frame"], r["qname"]) for r in dnsrecs
                     if r["query_frame"] is not None and
                     (not r["retransmission"] or r.get("original_frame")))
    o_rcodes = sorted((r["response_frame"], {v: k for k, v in dns.RCODES.items()}[r["rcode"]])
                      for r in dnsrecs if r["response_frame"] is not None
                      and not r.get("original_frame"))
    o_retrans = {r["query_frame"] if r.get("original_frame") else r["response_frame"]
                 for r in dnsrecs if r["retransmission"]}
    # labels that are not UTF-8 (the iodine tunnel): Python and GLib put a different number
    # of U+FFFD for some invalid sequences, so runs of U+FFFD are compared as one
    o_names = [(f, re.sub("\ufffd+", "\ufffd", n)) for f, n in o_names]
    t_names = [(f, re.sub("\ufffd+", "\ufffd", n)) for f, n in t_names]
    assert o_names == sorted(t_names)
    assert o_rcodes == sorted(t_rcodes)
    assert o_retrans == t_retrans
    assert not [r for r in recs if r["type"] == "anomaly"]


def test_record_limit_is_named_and_enforced():
    n = dns.MAX_RECORDS + 3
    msg = struct.pack("!HHHHHH", 1, 0x8180, 0, n, 0, 0) + rr(b"\0", 1, b"\1\2\3\4") * n
    m, notes = dns.parse_message(msg)
    assert len(m["answers"]) == dns.MAX_RECORDS
    assert [x[0] for x in notes] == ["dns-too-many-records"]
