"""Hostile application data inside well-formed captures, through the whole engine: each case
gives a named anomaly (never an exception), in bounded time, and every frame is still counted.
(Capture-level damage is in tests/io/; header-level fuzzing in tests/protocols/.)"""

from __future__ import annotations

import struct
import time

import pytest

from dissect.engine import Engine
from dissect.io.writer import PcapWriter

CLIENT, SERVER = ("127.0.0.1", 40000), ("127.0.0.1", 80)
MSS = 1400
# generous bound on one hostile capture's analysis (they hold a few MB at most)
BOUND_S = 20.0


def _frame(src, dst, sport, dport, seq, ack, flags, payload=b"", proto=6):
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0) + payload
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    return b"\x00" * 12 + b"\x08\x00" + ip + l4


class Conversation:
    """A TCP conversation with correct sequence numbers, written to a pcap."""

    def __init__(self, server=SERVER):
        self.server = server
        self.frames = []
        self.t = 1_700_000_000.0
        self.seq = {"c": 1000, "s": 5000}
        self._add("c", 0x02)
        self._add("s", 0x12)
        self._add("c", 0x10)

    def _add(self, side, flags, payload=b""):
        a, b = (CLIENT, self.server) if side == "c" else (self.server, CLIENT)
        other = "s" if side == "c" else "c"
        self.t += 0.0001
        self.frames.append((self.t, _frame(a[0], b[0], a[1], b[1], self.seq[side],
                                           self.seq[other], flags, payload)))
        self.seq[side] = (self.seq[side] + len(payload) + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF

    def send(self, side, data: bytes):
        for i in range(0, len(data), MSS):
            self._add(side, 0x18, data[i:i + MSS])
        self._add("s" if side == "c" else "c", 0x10)
        return self

    def close(self):
        self._add("c", 0x11)
        self._add("s", 0x11)
        self._add("c", 0x10)
        return self

    def write(self, path):
        with PcapWriter(str(path), 1, force=True) as w:
            for ts, f in self.frames:
                w.write(ts, f)
        return len(self.frames)


def _run(path, n):
    t = time.perf_counter()
    res = Engine(str(path)).run()
    assert time.perf_counter() - t < BOUND_S
    assert res.error is None and res.summary.frames == n
    return [r for r in res.records if r["type"] == "anomaly"], res


def test_http_header_line_of_megabytes(tmp_path):
    c = Conversation().send("c", b"GET / HTTP/1.1\r\nX-Huge: " + b"A" * (3 << 20) + b"\r\n\r\n")
    n = c.close().write(tmp_path / "huge.pcap")
    an, _ = _run(tmp_path / "huge.pcap", n)
    assert any(a["protocol"] == "http" for a in an), an


def test_http_chunk_size_that_overflows(tmp_path):
    c = Conversation().send("c", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    c.send("s", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"F" * 40 + b"\r\nabc\r\n")
    n = c.close().write(tmp_path / "chunk.pcap")
    an, res = _run(tmp_path / "chunk.pcap", n)
    assert any(a["protocol"] == "http" for a in an), an
    assert [r for r in res.records if r["type"] == "http"]   # the request is still reported


def test_tls_handshake_length_past_the_record(tmp_path):
    # a ClientHello record of 206 bytes whose handshake claims 16 MB
    body = b"\x01\xff\xff\xfb" + b"\x03\x03" + bytes(200)
    hello = b"\x16\x03\x01" + struct.pack("!H", len(body)) + body
    c = Conversation(("127.0.0.1", 443)).send("c", hello)
    n = c.close().write(tmp_path / "tls.pcap")
    an, _ = _run(tmp_path / "tls.pcap", n)
    assert any(a["protocol"] == "tls" for a in an), an


def test_websocket_64_bit_length_with_the_top_bit(tmp_path):
    c = Conversation().send("c", b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    c.send("s", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    c.send("s", b"\x82\x7f" + struct.pack("!Q", 1 << 63) + b"data")
    n = c.close().write(tmp_path / "ws.pcap")
    an, _ = _run(tmp_path / "ws.pcap", n)
    assert any(a["protocol"] == "websocket" for a in an), an


def test_dns_compression_loop(tmp_path):
    # a response whose answer name points at itself
    hdr = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0)
    q = b"\x03www\x07example\x03com\x00" + struct.pack("!HH", 1, 1)
    ans_off = 12 + len(q)
    ans = struct.pack("!H", 0xC000 | ans_off) + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(4)
    query = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + q
    frames = [(1.0, _frame("127.0.0.1", "127.0.0.1", 5353 + 1000, 53, 0, 0, 0, query, 17)),
              (1.1, _frame("127.0.0.1", "127.0.0.1", 53, 5353 + 1000, 0, 0, 0, hdr + q + ans, 17))]
    p = tmp_path / "dns.pcap"
    with PcapWriter(str(p), 1, force=True) as w:
        for ts, f in frames:
            w.write(ts, f)
    an, _ = _run(p, 2)
    assert any(a["protocol"] == "dns" for a in an), an


@pytest.mark.parametrize("garbage", [b"\x00" * 5000, bytes(range(256)) * 20, b"\r\n" * 3000])
def test_garbage_streams_are_unknown_not_errors(tmp_path, garbage):
    c = Conversation(("127.0.0.1", 4444)).send("c", garbage).send("s", garbage[::-1])
    n = c.close().write(tmp_path / "g.pcap")
    _an, res = _run(tmp_path / "g.pcap", n)
    assert len(res.connections) == 1
