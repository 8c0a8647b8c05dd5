"""Offline crafting: complete, deterministic exchanges that tshark validates."""

from __future__ import annotations

import subprocess

import pytest

from dissect.columns.decode import decode_frame
from dissect.craft.dialogue import build_request
from dissect.craft.offline import BASE_TIME, tcp_exchange, udp_exchange
from dissect.io.capture import Frame, read_frames
from dissect.io.writer import PcapWriter
from tests.conftest import needs_tshark, tshark_fields

CASES = {
    "http": ("http", "GET /", None),
    "ftp": ("ftp", "USER anonymous", None),
    "ftp-quit": ("ftp", "QUIT", None),
    "smtp": ("smtp", "HELO x", None),
    "raw": ("raw", None, b"hello"),
    "bare": ("raw", None, None),
}


def _build(case, teardown="fin", dst="127.0.0.1", seed=7):
    app, text, payload = CASES[case]
    req = build_request(app, text, payload) if (text or payload) else None
    return tcp_exchange(app=app, request=req.data if req else b"", dst=dst, teardown=teardown,
                        seed=seed)


def _write(tmp_path, crafted, name="x.pcap"):
    p = tmp_path / name
    with PcapWriter(str(p), 1) as w:
        for ts, data in crafted.frames:
            w.write(ts, data)
    return p


def _segs(crafted):
    return [decode_frame(Frame(i, ts, len(d), len(d), 1, 0, d)).transport
            for i, (ts, d) in enumerate(crafted.frames, 1)]


def test_same_seed_same_bytes_other_seed_other_numbers():
    a, b, c = _build("http"), _build("http"), _build("http", seed=8)
    assert a.frames == b.frames
    assert a.isn_client != c.isn_client and a.sport != c.sport
    assert a.frames[0][0] == BASE_TIME


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("teardown", ["fin", "rst"])
def test_sequence_numbers_follow_every_byte_and_flag(case, teardown):
    c = _build(case, teardown)
    segs = _segs(c)
    syn, synack, ack = segs[:3]
    assert syn.flags == 0x02 and synack.flags == 0x12 and ack.flags == 0x10
    assert synack.ack == c.isn_client + 1 and ack.ack == c.isn_server + 1
    nxt = {"c": c.isn_client, "s": c.isn_server}
    for t in segs:
        side = "c" if t.sport == c.sport else "s"
        peer = "s" if side == "c" else "c"
        assert t.seq == nxt[side]
        if t.flags & 0x10:
            assert t.ack == nxt[peer]
        nxt[side] = (nxt[side] + t.plen + (1 if t.flags & 0x03 else 0)) & 0xFFFFFFFF
    last = segs[-1]
    assert (last.flags & 0x04) if teardown == "rst" else (last.flags == 0x10)


TSHARK_CASES = [(c, t, "127.0.0.1") for c in sorted(CASES) for t in ("fin", "rst")] + [
    ("http", "fin", "::1"), ("smtp", "rst", "::1"), ("ftp-quit", "fin", "::1")]


@needs_tshark
@pytest.mark.parametrize("case,teardown,dst", TSHARK_CASES)
def test_tshark_checksums_valid_and_conversation_complete(tmp_path, case, teardown, dst):
    p = _write(tmp_path, _build(case, teardown, dst))
    bad = subprocess.run(
        ["tshark", "-n", "-r", str(p), "-o", "tcp.check_checksum:TRUE",
         "-o", "ip.check_checksum:TRUE", "-Y", "tcp.checksum.status==2 || ip.checksum.status==2"],
        capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 0 and bad.stdout.strip() == ""
    # two passes: tshark's completeness is final only once the whole stream was read
    rows = tshark_fields(p, ["tcp.checksum.status", "tcp.analysis.flags", "tcp.completeness"],
                         extra=("-2", "-o", "tcp.check_checksum:TRUE"))
    assert len(rows) == len(_build(case, teardown, dst).frames)
    assert all(r[0] == "1" for r in rows)          # 1 = good: checked, not skipped
    assert all(r[1] == "" for r in rows), rows     # no tcp.analysis flag anywhere
    # tshark's completeness bitmask: 1 SYN, 2 SYN-ACK, 4 ACK, 8 data, 16 FIN, 32 RST
    want = 1 | 2 | 4 | (16 if teardown == "fin" else 32) | (0 if case == "bare" else 8)
    if case == "ftp-quit":
        want |= 16                                 # the server's FIN after QUIT
    assert int(rows[-1][2]) == want


@needs_tshark
@pytest.mark.parametrize("case,field,value", [
    ("http", "http.request.method", "GET"), ("ftp", "ftp.request.command", "USER"),
    ("smtp", "smtp.req.command", "HELO")])
def test_tshark_reads_the_application_request(tmp_path, case, field, value):
    p = _write(tmp_path, _build(case))
    got = [r[0] for r in tshark_fields(p, [field]) if r[0]]
    assert got == [value]
    resp = {"http": "http.response.code", "ftp": "ftp.response.code",
            "smtp": "smtp.response.code"}[case]
    codes = [r[0] for r in tshark_fields(p, [resp]) if r[0]]
    assert codes == {"http": ["200"], "ftp": ["220", "331"], "smtp": ["220", "250"]}[case]


@needs_tshark
def test_udp_offline_echo_checksums(tmp_path):
    c = udp_exchange(payload=b"ping", seed=3)
    assert c.frames == udp_exchange(payload=b"ping", seed=3).frames
    p = _write(tmp_path, c)
    rows = tshark_fields(p, ["udp.srcport", "udp.dstport", "udp.checksum.status", "udp.payload"],
                         extra=("-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"))
    assert rows == [[str(c.sport), "7", "1", b"ping".hex()], ["7", str(c.sport), "1", b"ping".hex()]]


def test_read_back_with_our_reader(tmp_path):
    c = _build("smtp")
    frames = list(read_frames(str(_write(tmp_path, c))))
    assert [f.data for f in frames] == [d for _t, d in c.frames]
