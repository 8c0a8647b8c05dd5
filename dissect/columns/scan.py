"""The split run's frame walk over an uncompressed pcap: records, shard choice and the fast
decode straight from the mapped file.

A worker of a split run (:mod:`dissect.parallel`) looks at every frame of the capture and
keeps those of its own connections. :func:`pcap_pairs` walks the pcap records in the
mapped file and, for Ethernet/IPv4/TCP|UDP frames (nearly all of a busy link), reads the
record header, the shard hash and the decoded header fields byte by byte from the map:
once compiled (``scan.pxd``), a frame of another shard costs a few C comparisons and no
Python object, and an own frame costs the Frame, the segment and its strings. Anything
else (other link types, IPv6, options, fragments, malformed headers) goes through
:func:`dissect.columns.decode.decode_frame`, the reference; the fast part gives the same
Decoded as that function does, which a test checks frame by frame on real captures.

In pure Python, byte-by-byte reading is slower than ``struct``; :data:`USE_SCAN` says
whether this module runs compiled, and the caller picks the struct-based walk otherwise.
"""

from __future__ import annotations

import dissect.buffers as _buffers
import dissect.tuples as _tuples
from dissect.columns.decode import (_CHAIN_ETH_IP_TCP, _CHAIN_ETH_IP_UDP, Decoded,
                                    decode_frame, parse_tcp_options)
from dissect.columns.segment import TcpOptions, TcpSegment, UdpDatagram
from dissect.io.capture import MAX_CAPLEN, Frame

# Record-header warnings a file gives before the rest are only counted.
MAX_WARNINGS = 1000
_addr4_int: dict = {}


def _compiled() -> bool:
    return type(_compiled).__name__ != "function"


USE_SCAN = _compiled()


def _be16(mv, o):
    a = mv[o]
    b = mv[o + 1]
    return (a << 8) | b


def _u32(mv, o, little):
    a = mv[o]
    b = mv[o + 1]
    c = mv[o + 2]
    d = mv[o + 3]
    if little:
        return (d << 24) | (c << 16) | (b << 8) | a
    return (a << 24) | (b << 16) | (c << 8) | d


# Frames decoded per call of the compiled walk (a list of this many pairs at a time).
CHUNK = 1024


def pcap_pairs(buf, size, little, res, snaplen, lt, base, shard, nshards, other_shard,
               warnings, fidx, counter, state, keep_data):
    """(Frame, Decoded) for each frame of shard ``shard`` of ``nshards`` in the pcap
    records of ``buf[24:size]`` (``little``: byte order; ``res``: timestamp resolution;
    ``lt``: link type), numbered from ``base + 1``. ``other_shard(frame, decoded)`` gives
    the shard of a frame the fast hash cannot place. ``warnings`` gets ``(fidx, frame,
    name)`` for odd record headers; ``state`` gets [frames in the file, stopped early?].
    ``keep_data``: Frames carry their bytes (else ``b""`` for frames decoded here, whose
    bytes nobody reads again)."""
    pos = [24, base, 0]     # next record's offset, last frame number, warnings given
    more = True
    while more:
        out: list = []
        more = _scan(out, buf, size, little, res, snaplen, lt, shard, nshards, other_shard,
                     warnings, fidx, counter, pos, keep_data)
        yield from out
    state[0] = pos[1] - base
    state[1] = pos[0] < size
    if counter is not None:
        counter(size, pos[1])


def _scan(out, buf, size, little, res, snaplen, lt, shard, nshards, other_shard, warnings,
          fidx, counter, pos, keep_data):
    """Up to CHUNK own frames into ``out``, from ``pos`` on (updated); True if it stopped
    for the chunk's size (call again), False at the end of the records."""
    mv = memoryview(buf)
    off = pos[0]
    number = pos[1]
    nwarn = pos[2]
    eth = lt == 1
    more = False
    maxcap = MAX_CAPLEN
    chunk = CHUNK
    while off + 16 <= size:
        if len(out) >= chunk:
            more = True
            break
        # the captured length (written out: the walk reads it for every frame of the file)
        b0 = mv[off + 8]
        b1 = mv[off + 9]
        b2 = mv[off + 10]
        b3 = mv[off + 11]
        if little:
            caplen = (b3 << 24) | (b2 << 16) | (b1 << 8) | b0
        else:
            caplen = (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
        rec = off
        start = off + 16
        end = start + caplen
        if caplen > maxcap or end > size:
            break
        number += 1
        if counter is not None and not number & 0x3FFF:
            counter(end, number)
        off = end
        fast = False
        total = proto = 0
        if eth and caplen >= 42 and mv[start + 12] == 8 and mv[start + 13] == 0 and \
                mv[start + 14] == 0x45 and not _be16(mv, start + 20) & 0x3FFF:
            proto = mv[start + 23]
            if proto == 6 or proto == 17:
                fast = True
                if nshards > 1:
                    # dissect.parallel._mix(src ^ dst, sport ^ dport), written out byte by byte
                    b0 = mv[start + 26] ^ mv[start + 30]
                    b1 = mv[start + 27] ^ mv[start + 31]
                    b2 = mv[start + 28] ^ mv[start + 32]
                    b3 = mv[start + 29] ^ mv[start + 33]
                    a = (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
                    b0 = mv[start + 34] ^ mv[start + 36]
                    b1 = mv[start + 35] ^ mv[start + 37]
                    p = (b0 << 8) | b1
                    h = ((a * 0x9E3779B1) ^ (p * 0x85EBCA6B)) & 0xFFFFFFFF
                    h = h ^ (h >> 16)
                    if h % nshards != shard:
                        continue
                total = _be16(mv, start + 16)
        sec = _u32(mv, rec, little)
        frac = _u32(mv, rec + 4, little)
        wirelen = _u32(mv, rec + 12, little)
        ts = sec + frac * res
        d = None
        if fast and 20 < total <= wirelen - 14:
            d = _decode_ip4(mv, buf, start, caplen, total, proto, number, ts)
        if d is None:
            fr = _tuples.make(Frame, (number, ts, caplen, wirelen, lt, 0, buf[start:end]))
            d = decode_frame(fr)
            if nshards > 1 and not fast and other_shard(number, d) != shard:
                continue
        else:
            fr = _tuples.make(Frame, (number, ts, caplen, wirelen, lt, 0,
                                      buf[start:end] if keep_data else b""))
        if nwarn < MAX_WARNINGS:
            if caplen > snaplen and snaplen:
                warnings.append((fidx, number, "caplen-exceeds-snaplen"))
                nwarn += 1
            if caplen > wirelen and nwarn < MAX_WARNINGS:
                warnings.append((fidx, number, "caplen-exceeds-wire-length"))
                nwarn += 1
            if frac * res >= 1.0 and nwarn < MAX_WARNINGS:
                warnings.append((fidx, number, "timestamp-fraction-out-of-range"))
                nwarn += 1
        out.append((fr, d))
    pos[0] = off
    pos[1] = number
    pos[2] = nwarn
    return more


def _decode_ip4(mv, buf, start, n, total, proto, number, ts):
    """The Decoded of an Ethernet/IPv4 (no options, not a fragment) TCP or UDP frame of
    ``n`` captured bytes at ``buf[start:]``, as decode_frame gives it; None when the
    transport header needs decode_frame's general path. (Fields are read byte by byte,
    written out: compiled, a helper taking the byte view costs a copy of it per call.)"""
    o = start + 26
    b0 = mv[o]
    b1 = mv[o + 1]
    b2 = mv[o + 2]
    b3 = mv[o + 3]
    v = (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
    src = _addr4(v)
    b0 = mv[o + 4]
    b1 = mv[o + 5]
    b2 = mv[o + 6]
    b3 = mv[o + 7]
    v = (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
    dst = _addr4(v)
    o = start + 34
    sport = (mv[o] << 8) | mv[o + 1]
    dport = (mv[o + 2] << 8) | mv[o + 3]
    if proto == 6:
        if n < 54:
            return None
        offb = mv[start + 46]
        thl = (offb >> 4) * 4
        if not (20 <= thl <= total - 20 and 34 + thl <= n):
            return None
        b0 = mv[o + 4]
        b1 = mv[o + 5]
        b2 = mv[o + 6]
        b3 = mv[o + 7]
        seq = (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
        b0 = mv[o + 8]
        b1 = mv[o + 9]
        b2 = mv[o + 10]
        b3 = mv[o + 11]
        ack = (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
        flags = mv[o + 13] | ((offb & 1) << 8)
        win = (mv[o + 14] << 8) | mv[o + 15]
        opts = None
        anomalies = ()
        o = start + 54
        if thl == 32 and mv[o] == 1 and mv[o + 1] == 1 and mv[o + 2] == 8 and \
                mv[o + 3] == 10:
            b0 = mv[o + 4]
            b1 = mv[o + 5]
            b2 = mv[o + 6]
            b3 = mv[o + 7]
            v = (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
            b0 = mv[o + 8]
            b1 = mv[o + 9]
            b2 = mv[o + 10]
            b3 = mv[o + 11]
            opts = _tuples.make(TcpOptions, (None, None, False, v,
                                             (b0 << 24) | (b1 << 16) | (b2 << 8) | b3, ()))
        elif thl > 20:
            opts, bad = parse_tcp_options(buf[start:start + 34 + thl], 54, 34 + thl)
            if bad:
                anomalies = (bad,)
        poff = 34 + thl
        plen = total - 20 - thl
        pend = poff + plen
        if pend > n:
            pend = n
        payload = b""
        if plen and poff < n:
            payload = _buffers.span(buf, mv, start + poff, start + pend)
        seg = _tuples.make(TcpSegment, (number, ts, src, dst, sport, dport, seq, ack, flags,
                                        win, plen, opts, payload, poff, (), 0))
        return _tuples.make(Decoded, (_CHAIN_ETH_IP_TCP, src, dst, seg, anomalies, ()))
    ulen = (mv[o + 4] << 8) | mv[o + 5]
    if not 8 <= ulen <= total - 20:
        return None
    plen = ulen - 8
    pend = 42 + plen
    if pend > n:
        pend = n
    payload = _buffers.span(buf, mv, start + 42, start + pend) if plen else b""
    dgram = _tuples.make(UdpDatagram, (number, ts, src, dst, sport, dport, plen, payload, 42,
                                       0))
    return _tuples.make(Decoded, (_CHAIN_ETH_IP_UDP, src, dst, dgram, (), ()))


# The last two IPv4 addresses looked up (a frame's two, and mostly the next frame's too),
# as (integer, text); _NO_ADDR matches no 32-bit address.
_NO_ADDR = 1 << 32
_a4v0 = _a4v1 = _NO_ADDR
_a4s0 = _a4s1 = None


def _addr4(v):
    """The text of the IPv4 address ``v`` (a 32-bit integer)."""
    global _a4v0, _a4v1, _a4s0, _a4s1
    if v == _a4v0:
        return _a4s0
    if v == _a4v1:
        return _a4s1
    s = _addr4_int.get(v)
    if s is None:
        s = _ip4_text(v)
    _a4v1 = _a4v0
    _a4s1 = _a4s0
    _a4v0 = v
    _a4s0 = s
    return s


def _ip4_text(v):
    """Dotted text of the IPv4 address ``v`` (a 32-bit integer), cached."""
    s = "%d.%d.%d.%d" % (v >> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255)
    if len(_addr4_int) < 65536:
        _addr4_int[v] = s
    return s
