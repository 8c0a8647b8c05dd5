"""TLS parser: records, fragmented handshakes, hellos, limits, display path; agreement with
tshark on the corpus and the lab capture."""

from __future__ import annotations

import json
import struct
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings

sys.path.insert(0, str(Path(__file__).parent))
from corpus_flows import cut_strategy, run_script

from dissect.analysis.app import tls
from dissect.analysis.app.base import CLIENT, SERVER
from tests.conftest import CORPUS, PCAPS, corpus_params, needs_tshark, tshark_fields

# -- synthetic handshakes ------------------------------------------------------------------

def _vec(width, b):
    return len(b).to_bytes(width, "big") + b


def _ext(t, data):
    return struct.pack(">HH", t, len(data)) + data


def client_hello(sni="example.test", alpn=("h2", "http/1.1"), versions=None, sid=b"",
                 suites=(0xC02F, 0x1301, 0x0A0A), ticket=None, psk=False):
    exts = b""
    if sni:
        name = sni.encode()
        exts += _ext(0, _vec(2, b"\x00" + _vec(2, name)))
    if alpn:
        exts += _ext(16, _vec(2, b"".join(_vec(1, a.encode()) for a in alpn)))
    if versions:
        exts += _ext(43, _vec(1, b"".join(struct.pack(">H", v) for v in versions)))
    if ticket is not None:
        exts += _ext(35, ticket)
    if psk:
        exts += _ext(41, b"\x00" * 10)
    body = (b"\x03\x03" + b"\x11" * 32 + _vec(1, sid)
            + _vec(2, b"".join(struct.pack(">H", s) for s in suites)) + b"\x01\x00"
            + _vec(2, exts))
    return b"\x01" + _vec(3, body)


def server_hello(suite=0xC02F, sid=b"", alpn="h2", version=None, psk=False):
    exts = b""
    if alpn:
        exts += _ext(16, _vec(2, _vec(1, alpn.encode())))
    if version:
        exts += _ext(43, struct.pack(">H", version))
    if psk:
        exts += _ext(41, b"\x00\x00")
    body = b"\x03\x03" + b"\x22" * 32 + _vec(1, sid) + struct.pack(">H", suite) + b"\x00" \
        + _vec(2, exts)
    return b"\x02" + _vec(3, body)


def record(ctype, payload, version=0x0303):
    return bytes([ctype]) + struct.pack(">HH", version, len(payload)) + payload


def records(ctype, payload, size):
    """``payload`` split into records of at most ``size`` bytes (a fragmented handshake)."""
    return b"".join(record(ctype, payload[i:i + size]) for i in range(0, len(payload), size))


CERT = b"\x30\x82\x01\x00" + b"\x55" * 256      # not real DER: the parser keeps its length
TLS12_SCRIPT = [
    (CLIENT, records(22, client_hello(), 40), 4, 1.0),           # ClientHello in 40-byte records
    (SERVER, record(22, server_hello() + b"\x0b" + _vec(3, _vec(3, _vec(3, CERT)))
                    + b"\x0e\x00\x00\x00"), 6, 1.1),
    (CLIENT, record(22, b"\x10" + _vec(3, b"\x41" * 65)) + record(20, b"\x01")
     + record(22, b"\xee" * 40), 8, 1.2),
    (SERVER, record(20, b"\x01") + record(22, b"\xdd" * 40), 9, 1.3),
    (CLIENT, record(23, b"\xaa" * 100), 10, 1.4),
    (SERVER, record(23, b"\xbb" * 300) + record(21, b"\xcc" * 26), 11, 1.5),
]


def _records(script, cuts=None, meta=None):
    p = tls.TlsParser(conn=1, meta=meta or {"client": ("10.0.0.1", 5555),
                                            "server": ("10.0.0.2", 443)})
    return run_script(p, script, cuts)


def _tls(recs):
    out = [r for r in recs if r["type"] == "tls"]
    assert len(out) == 1
    return out[0]


def test_tls12_full_handshake_fields():
    r = _tls(_records(TLS12_SCRIPT))
    assert r["sni"] == "example.test"
    assert r["alpn_offered"] == ["h2", "http/1.1"] and r["alpn"] == "h2"
    assert r["version"] == "TLS 1.2" and r["client_versions"] == ["TLS 1.2"]
    assert r["cipher"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" and r["cipher_code"] == 0xC02F
    # GREASE dropped from the offered list
    assert r["cipher_suites_offered"] == ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                                          "TLS_AES_128_GCM_SHA256"]
    assert r["resumed"] is False and r["resumption_attempted"] is False
    assert [c["der_len"] for c in r["certificates"]] == [len(CERT)]
    assert r["client_hello_frame"] == 4 and r["server_hello_frame"] == 6
    assert r["handshake_end_frame"] == 9            # server's Finished after its CCS
    assert r["is_https"] is True
    assert r["alerts"] == []                        # the encrypted alert came after the record


def test_tls12_resumption_ends_at_client_finished():
    sid = b"\x07" * 32
    script = [(CLIENT, record(22, client_hello(sid=sid, ticket=b"\x99" * 20)), 1, 1.0),
              (SERVER, record(22, server_hello(sid=sid)) + record(20, b"\x01")
               + record(22, b"\xdd" * 40), 2, 1.1),
              (CLIENT, record(20, b"\x01") + record(22, b"\xee" * 40), 3, 1.2)]
    r = _tls(_records(script))
    assert r["resumed"] is True and r["resumption_attempted"] is True
    assert r["handshake_end_frame"] == 3


def test_tls13_version_psk_and_handshake_end():
    script = [(CLIENT, record(22, client_hello(versions=(0x3A3A, 0x0304, 0x0303), sid=b"\x01" * 32,
                                               psk=True), 0x0301), 1, 1.0),
              (SERVER, record(22, server_hello(suite=0x1301, sid=b"\x01" * 32, alpn=None,
                                               version=0x0304, psk=True))
               + record(20, b"\x01") + record(23, b"\x99" * 80), 2, 1.1),
              (CLIENT, record(20, b"\x01") + record(23, b"\x98" * 53), 3, 1.2),
              (CLIENT, record(23, b"\x97" * 200), 4, 1.3)]
    r = _tls(_records(script, meta={"client": ("a", 1), "server": ("b", 8443)}))
    assert r["version"] == "TLS 1.3" and r["client_versions"] == ["TLS 1.3", "TLS 1.2"]
    assert r["cipher"] == "TLS_AES_128_GCM_SHA256"
    assert r["resumed"] is True                     # pre_shared_key selected
    assert r["handshake_end_frame"] == 3
    assert r["is_https"] is False                   # no ALPN, not port 443


def test_tls13_echoed_session_id_is_not_resumption():
    sid = b"\x05" * 32      # middlebox compatibility mode echoes the session id (RFC 8446 D.4)
    script = [(CLIENT, record(22, client_hello(versions=(0x0304,), sid=sid)), 1, 1.0),
              (SERVER, record(22, server_hello(suite=0x1302, sid=sid, version=0x0304)), 2, 1.1)]
    r = _tls(_records(script))
    assert r["resumed"] is False and r["handshake_end_frame"] is None   # emitted at close


def test_fatal_alert_emits_record():
    script = [(CLIENT, record(22, client_hello()), 1, 1.0),
              (SERVER, record(21, b"\x02\x28"), 2, 1.1)]
    recs = _records(script[:1]) and None
    p = tls.TlsParser(conn=1, meta={})
    assert p.feed(*script[0]) == []
    out = p.feed(*script[1])
    r = _tls(out)
    assert r["alerts"] == [{"direction": "server", "frame": 2, "encrypted": False,
                            "level": "fatal", "description": "handshake_failure"}]
    assert r["version"] is None and recs is None
    assert p.close() == []


@settings(max_examples=60, deadline=None)
@given(cut_strategy(TLS12_SCRIPT))
def test_segmentation_invariance(cuts):
    assert _records(TLS12_SCRIPT, list(cuts)) == _records(TLS12_SCRIPT)


# -- limits --------------------------------------------------------------------------------

def test_record_longer_than_limit_is_anomaly_and_stops():
    p = tls.TlsParser(conn=1, meta={})
    out = p.feed(CLIENT, bytes([22, 3, 3]) + struct.pack(">H", tls.MAX_RECORD + 1), 1, 1.0)
    assert [(r["name"], r["frame"]) for r in out] == [("tls-record-too-long", 1)]
    assert p.feed(CLIENT, record(22, client_hello()), 2, 1.1) == []   # direction stopped


def test_record_at_limit_waits_for_its_bytes():
    p = tls.TlsParser(conn=1, meta={})
    hdr = bytes([23, 3, 3]) + struct.pack(">H", tls.MAX_RECORD)
    assert p.feed(CLIENT, hdr + b"\0" * 100, 1, 1.0) == []
    assert p.feed(CLIENT, b"\0" * (tls.MAX_RECORD - 100), 2, 1.1) == []
    assert len(p.sides[CLIENT].buf) == 0
    assert p.close() == []       # nothing pending, no hello: no record


def test_handshake_message_over_limit_is_anomaly():
    p = tls.TlsParser(conn=1, meta={})
    msg = b"\x0b" + (tls.MAX_HANDSHAKE + 1).to_bytes(3, "big")
    out = p.feed(SERVER, record(22, msg), 3, 1.0)
    assert [r["name"] for r in out] == ["tls-handshake-too-long"]


def test_unfinished_record_reported_at_close():
    p = tls.TlsParser(conn=1, meta={})
    assert p.feed(CLIENT, record(22, client_hello())[:-3], 1, 1.0) == []
    names = [r.get("name") or r["type"] for r in p.close()]
    assert names == ["tls-record-incomplete"]


def test_bad_hello_is_named_anomaly_not_exception():
    p = tls.TlsParser(conn=1, meta={})
    out = p.feed(CLIENT, record(22, b"\x01\x00\x00\x05\x03\x03\x00\x00\x00"), 1, 1.0)
    assert [r["name"] for r in out] == ["tls-bad-client-hello"]


def test_probe():
    ch = record(22, client_hello())
    assert tls.TlsParser.probe(ch, b"", 5555, 443) >= 0.8
    assert tls.TlsParser.probe(b"GET / HTTP/1.1\r\n", b"", 5555, 443) == 0.0
    assert tls.TlsParser.probe(b"", record(22, server_hello()), 5555, 443) >= 0.8


# -- display path --------------------------------------------------------------------------

def test_dissect_payload_offsets():
    data = record(22, client_hello(versions=(0x0304, 0x0303)))
    layers = tls.dissect_payload(data, 54)
    assert [lay.protocol for lay in layers] == ["tls", "tls.handshake"]
    assert int(layers[0].osi) == 6 and int(layers[1].osi) == 5
    hs = layers[1]
    by = {f.name: f for f in hs.fields}
    sni = by["tls.handshake.extensions_server_name"]
    assert sni.value == "example.test"
    assert data[sni.offset - 54:sni.offset - 54 + sni.length] == b"example.test"
    alpn = [f for f in hs.fields if f.name == "tls.handshake.extensions_alpn_str"]
    assert [(f.value, data[f.offset - 54:f.offset - 54 + f.length]) for f in alpn] == [
        ("h2", b"h2"), ("http/1.1", b"http/1.1")]
    sv = [f for f in hs.fields if f.name == "tls.handshake.extensions.supported_version"]
    assert [(f.value, data[f.offset - 54:f.offset - 52]) for f in sv] == [
        ("TLS 1.3", b"\x03\x04"), ("TLS 1.2", b"\x03\x03")]
    assert tls.dissect_payload(b"GET / HTTP/1.1\r\n", 0) == []


# -- tshark agreement ---------------------------------------------------------------------

EXTRA_TLS_FILES = [
    "vlan/zeek+zeek__testing_btest_Traces_pppoe-over-qinq.pcap",
    "linux_sll/ntop+nDPI__tests_cfgs_default_pcap_KakaoTalk_chat.pcap",
    "raw_ip/OISF+suricata-verify__tests_linktype-228_flow-test-01.pcap",
    "raw_ip/OISF+suricata-verify__tests_tcp-empty-sack_tcp-opt.pcap",
    "raw_ip/ntop+nDPI__tests_cfgs_default_pcap_ocs.pcap",
    "raw_ip/ntop+nDPI__tests_cfgs_default_pcap_psiphon3.pcap",
    "ipv6/ntop+nDPI__tests_cfgs_default_pcap_pinterest.pcap",
]


def _extra_params():
    out = []
    for rel in EXTRA_TLS_FILES:
        p = CORPUS / rel
        out.append(pytest.param(p, id=p.name[:80], marks=[] if p.exists() else
                                pytest.mark.skip(reason=f"corpus file {rel} not found")))
    return out


def _vcode(name):
    inv = {v: k for k, v in tls.VERSIONS.items()}
    return inv.get(name)


def tshark_tls_summary(path):
    rows = tshark_fields(path, ["tls.handshake.type", "tls.handshake.extensions_server_name",
                                "tls.handshake.extensions_alpn_str",
                                "tls.handshake.extensions.supported_version",
                                "tls.handshake.version", "tls.handshake.ciphersuite"],
                         extra=("-Y", "tls.handshake.type==1 || tls.handshake.type==2"))
    sni, alpn, negotiated = set(), set(), set()
    for types, names, alpns, svs, hvs, suites in rows:
        types = types.split(",")
        if "1" in types and names:
            sni.update(names.split(","))
        if "2" in types:
            sh_alpn = alpns.split(",")[-1] if alpns else None
            if "1" in types:      # both hellos in one frame (never seen here)
                continue
            if sh_alpn:
                alpn.add(sh_alpn)
            ver = svs.split(",")[0] if svs else hvs.split(",")[0]
            negotiated.add((int(ver, 16), int(suites.split(",")[0], 16)))
    return sni, alpn, negotiated


def our_tls_summary(path):
    from dissect.engine import Engine
    recs = [r for r in Engine(path).run().records if r["type"] == "tls"]
    sni = {r["sni"] for r in recs if r["sni"]}
    alpn = {r["alpn"] for r in recs if r["alpn"]}
    negotiated = {(_vcode(r["version"]), r["cipher_code"]) for r in recs
                  if r["server_hello_frame"] and r["cipher_code"] is not None}
    return recs, sni, alpn, negotiated


@needs_tshark
@pytest.mark.parametrize("path", corpus_params("tls") + _extra_params())
def test_hellos_agree_with_tshark(path):
    recs, *ours = our_tls_summary(path)
    if path.name.endswith("ssl-v2.pcap"):
        # SSLv2 message types differ (4 = SERVER-HELLO, 2 = CLIENT-MASTER-KEY): by hand
        rows = tshark_fields(path, ["frame.number", "tls.handshake.type",
                                    "tls.handshake.version"],
                             extra=("-Y", "tls.handshake.type"))
        assert [r[:2] for r in rows] == [["4", "1"], ["6", "4"], ["8", "2"]]
        (r,) = recs
        assert rows[0][2] == rows[1][2] == "0x0002"
        assert r["version"] == "SSL 2.0" and r["client_hello_frame"] == 4 \
            and r["server_hello_frame"] == 6
        return
    assert tuple(ours) == tshark_tls_summary(path)


@needs_tshark
def test_fragmented_handshake_certificate_reassembled():
    # tshark 4.0 shows the Certificate split over 21 records as "Encrypted Handshake
    # Message" (corpus README); we reassemble it: one 339,623-byte certificate (CN "Bro")
    path = CORPUS / "tls/zeek+zeek__testing_btest_Traces_tls_tls-fragmented-handshake.pcap.gz"
    if not path.exists():
        pytest.skip("corpus file not found")
    recs, *_ = our_tls_summary(path)
    (r,) = recs
    server_port = tshark_fields(path, ["tcp.srcport"], extra=("-Y", "tls.handshake.type==2"))[0][0]
    rows = tshark_fields(path, ["frame.number", "tls.record.content_type"],
                         extra=("-Y", f"tls.record.content_type==22 && tcp.srcport=={server_port}"))
    server_hs_frames = [int(f) for f, _ in rows]
    assert len(r["certificates"]) == 1 and r["certificates"][0]["subject_cn"] in ("Bro", None)
    assert r["certificates"][0]["frame"] in server_hs_frames
    # the capture stops after ServerKeyExchange + ServerHelloDone (the last server handshake
    # frame, where the record is emitted at close): no ChangeCipherSpec, no Finished, so no
    # handshake end
    assert tshark_fields(path, ["frame.number"], extra=("-Y", "tls.record.content_type==20")) == []
    assert r["handshake_end_frame"] is None
    assert max(r["frames"]) == server_hs_frames[-1]


@needs_tshark
def test_lab_https_capture_against_truth_and_keylog():
    path = PCAPS / "tls-https-sni.pcap"
    truth = json.loads((PCAPS / "tls-https-sni.json").read_text())
    keylog = truth["client"]["info"]["tls_keylog"]
    recs, sni, alpn, negotiated = our_tls_summary(path)
    # the ground truth's ALPN (http/1.1) is offered in the ClientHello; TLS 1.3 selects it in
    # the encrypted EncryptedExtensions, so neither we nor tshark without the keylog see it
    assert sni == {"dissect.test"} and alpn == set()
    assert all("http/1.1" in (r["alpn_offered"] or []) for r in recs)
    assert {v for v, _ in negotiated} == {0x0304}
    assert (sni, alpn, negotiated) == tshark_tls_summary(path)
    with tempfile.NamedTemporaryFile("w", suffix=".keys") as kl:
        kl.write(keylog if isinstance(keylog, str) else "\n".join(keylog))
        kl.flush()
        rows = tshark_fields(path, ["frame.number", "tcp.stream", "tcp.srcport",
                                    "tls.handshake.type"],
                             extra=("-o", f"tls.keylog_file:{kl.name}", "-Y",
                                    "tls.handshake.type==20"))
    client_fin = {}
    for frame, stream, sport, _t in rows:
        if sport != "443":
            client_fin.setdefault(int(stream), int(frame))
    assert len(recs) == len(client_fin) >= 1
    assert sorted(r["handshake_end_frame"] for r in recs) == sorted(client_fin.values())
    assert all(r["is_https"] for r in recs)
