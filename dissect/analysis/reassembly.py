"""TCP stream reassembly per direction, sans-I/O.

Each connection direction turns captured segments back into the byte stream the application
saw, in order, each chunk tagged with the frame number and timestamp of the segment that
delivered it. Retransmitted bytes are delivered once; a retransmission whose bytes differ from
what was already delivered is reported (``overlap-mismatch``), and the first version wins (as
the receiving host would keep it). Bytes that were never captured are a *gap* of known size -
never zeros - when the peer acknowledges past them, when the FIN or a later segment shows
where the stream went on, when the out-of-order buffer is full, or when the stream closes.

Output items are ``(direction, kind, value, frame, ts)``:

* ``("data", bytes)``  - in-order bytes
* ``("gap", int)``     - that many bytes missing at this point of the stream
* ``("anomaly", str)`` - a named oddity: ``overlap-mismatch``, ``ooo-buffer-full``,
  ``data-after-fin``

They map one to one onto :class:`dissect.analysis.app.base.StreamParser` ``feed`` / ``gap``.
"""

from __future__ import annotations

from bisect import insort
from typing import NamedTuple

import dissect.tuples as _tuples
from dissect.columns.segment import TcpSegment

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
M32 = 0xFFFFFFFF
HALF = 0x80000000

# Out-of-order bytes held back per direction while waiting for a hole to fill. 8 MiB is
# above the largest receive window Linux grants by default (tcp_rmem max 6 MiB), so a real
# sender cannot have more than this outstanding beyond a hole; past it the hole is declared
# a gap and the held data delivered, so a hostile capture cannot make us buffer without end.
MAX_OOO_BYTES = 8 * 1024 * 1024
# Delivered bytes kept to compare retransmissions against (overlap-mismatch): a retransmission
# resends at most about a window's worth behind the edge; older overlaps are only counted.
KEEP_DELIVERED = 256 * 1024

DATA, GAP, ANOMALY = "data", "gap", "anomaly"


class StreamItem(NamedTuple):
    direction: int
    kind: str
    value: object      # bytes for data, int for gap, str for anomaly
    frame: int
    ts: float


class _Half:
    """One direction of one connection."""
    __slots__ = ("next", "lastraw", "lastabs", "started", "held", "held_bytes", "tail",
                 "tail_start", "tail_base", "fin_at", "delivered", "gapped", "overlaps",
                 "mismatches")

    def __init__(self):
        self.next = None          # unwrapped offset of the next byte to deliver
        self.lastraw = 0
        self.lastabs = 0
        self.started = False
        self.held: list = []      # sorted [start, data, frame, ts]
        self.held_bytes = 0
        # the last KEEP_DELIVERED bytes delivered, from offset tail_start, kept in a buffer
        # that starts at tail_base <= tail_start and is cut back only once it holds twice
        # that (appending to an immutable tail copied up to 256 KB for every segment)
        self.tail = bytearray()
        self.tail_start = 0
        self.tail_base = 0
        self.fin_at = None        # offset of the FIN
        self.delivered = 0
        self.gapped = 0
        self.overlaps = 0
        self.mismatches = 0

    def unwrap(self, raw: int) -> int:
        if not self.started:
            self.started = True
            self.lastraw = raw
            self.lastabs = 0
            return 0
        d = (raw - self.lastraw) & M32
        if d >= HALF:
            d -= 0x100000000
        a = self.lastabs + d
        if d > 0:
            self.lastraw = raw
            self.lastabs = a
        return a


class StreamReassembler:
    """Both directions of one TCP connection (direction 0 = client, 1 = server)."""

    def __init__(self):
        self.halves = (_Half(), _Half())

    # ------------------------------------------------------------------------------------
    def push(self, direction: int, seg: TcpSegment) -> list[StreamItem]:
        h = self.halves[direction]
        other = self.halves[1 - direction]
        out: list[StreamItem] = []
        (frame, ts, _src, _dst, _sport, _dport, seq, ack, flags, _win, plen, _opts, payload,
         _poff, _vlan, _iface) = _tuples.view(seg)
        s = h.unwrap(seq)
        if flags & SYN:
            s += 1
            if h.next is None:
                h.next = s
        if plen > 0 and not flags & RST:
            if h.next is None:
                h.next = s
            if len(payload) < plen:
                # the capture cut the segment: what we have is data, the rest a known gap
                self._insert(h, direction, s, payload, frame, ts, out)
                self._deliver(h, direction, out)
                self._gap_until(h, direction, s + plen, frame, ts, out)
            else:
                self._insert(h, direction, s, payload[:plen], frame, ts, out)
        if flags & FIN and not flags & RST:
            f = s + max(plen, 0)
            if h.fin_at is None or f < h.fin_at:
                h.fin_at = f
        self._deliver(h, direction, out)
        # the peer's ACK tells us what it received of the other direction
        if flags & ACK and other.started and other.next is not None:
            a = other.lastabs + _sdiff(ack, other.lastraw)
            limit = a
            if other.fin_at is not None and a > other.fin_at:
                limit = other.fin_at
            if limit > other.next and (not other.held or other.held[0][0] > other.next):
                upto = min(limit, other.held[0][0]) if other.held else limit
                self._gap_until(other, 1 - direction, upto, frame, ts, out)
                self._deliver(other, 1 - direction, out)
        return out

    def close(self, frame: int | None = None, ts: float | None = None) -> list[StreamItem]:
        """End of connection or capture: what is held is delivered around gaps."""
        out: list[StreamItem] = []
        for d, h in enumerate(self.halves):
            while h.held:
                start = h.held[0][0]
                if start > h.next:
                    self._gap_until(h, d, start, h.held[0][2], h.held[0][3], out)
                self._deliver(h, d, out)
            if h.fin_at is not None and h.next is not None and h.fin_at > h.next:
                self._gap_until(h, d, h.fin_at, frame or 0, ts or 0.0, out)
        return out

    # ------------------------------------------------------------------------------------
    def _insert(self, h: _Half, d: int, s: int, data: bytes, frame, ts, out) -> None:
        if not data:
            return
        e = s + len(data)
        if h.fin_at is not None and s >= h.fin_at:
            out.append(_tuples.make(StreamItem, (d, ANOMALY, "data-after-fin", frame, ts)))
        nxt = h.next
        if e <= nxt:
            self._check_overlap(h, d, s, data, frame, ts, out)
            return
        if s < nxt:
            self._check_overlap(h, d, s, data[:nxt - s], frame, ts, out)
            data = data[nxt - s:]
            s = nxt
        if h.held_bytes + len(data) > MAX_OOO_BYTES and s > nxt:
            out.append(_tuples.make(StreamItem, (d, ANOMALY, "ooo-buffer-full", frame, ts)))
            first = h.held[0][0] if h.held else s
            self._gap_until(h, d, min(first, s), frame, ts, out)
            self._deliver(h, d, out)
            nxt = h.next
            if s < nxt:
                if e <= nxt:
                    return
                data = data[nxt - s:]
                s = nxt
        insort(h.held, [s, data, frame, ts], key=_start)
        h.held_bytes += len(data)

    def _check_overlap(self, h: _Half, d: int, s: int, data: bytes, frame, ts, out) -> None:
        h.overlaps += 1
        lo = max(s, h.tail_start)
        hi = s + len(data)
        if hi <= lo:
            return
        old = h.tail[lo - h.tail_base:hi - h.tail_base]
        new = data[lo - s:hi - s]
        if old != new[:len(old)]:
            h.mismatches += 1
            out.append(_tuples.make(StreamItem, (d, ANOMALY, "overlap-mismatch", frame, ts)))

    def _deliver(self, h: _Half, d: int, out) -> None:
        held = h.held
        while held and held[0][0] <= h.next:
            start, data, frame, ts = held.pop(0)
            h.held_bytes -= len(data)
            end = start + len(data)
            if end <= h.next:
                self._check_overlap(h, d, start, data, frame, ts, out)
                continue
            if start < h.next:
                self._check_overlap(h, d, start, data[:h.next - start], frame, ts, out)
                data = data[h.next - start:]
            out.append(_tuples.make(StreamItem, (d, DATA, data, frame, ts)))
            if not h.tail:
                h.tail_start = h.tail_base = h.next
            self._append_tail(h, data)
            h.next += len(data)
            h.delivered += len(data)

    def _append_tail(self, h: _Half, data: bytes) -> None:
        t = h.tail
        t += data
        end = h.tail_base + len(t)
        if end - h.tail_start > KEEP_DELIVERED:
            h.tail_start = end - KEEP_DELIVERED
            if len(t) > 2 * KEEP_DELIVERED:
                del t[:h.tail_start - h.tail_base]
                h.tail_base = h.tail_start

    def _gap_until(self, h: _Half, d: int, upto: int, frame, ts, out) -> None:
        if h.next is None or upto <= h.next:
            return
        size = upto - h.next
        out.append(_tuples.make(StreamItem, (d, GAP, size, frame, ts)))
        h.gapped += size
        h.next = upto
        h.tail = bytearray()
        h.tail_start = h.tail_base = upto


def _start(item) -> int:
    return item[0]


def _sdiff(raw: int, ref: int) -> int:
    d = (raw - ref) & M32
    return d - 0x100000000 if d >= HALF else d


class Reassembler:
    """Reassembly for every connection of a capture, driven by TcpAnalyzer's verdicts."""

    def __init__(self):
        self.streams: dict[int, StreamReassembler] = {}

    def push(self, seg: TcpSegment, conn: int, direction: int) -> list[StreamItem]:
        r = self.streams.get(conn)
        if r is None:
            r = self.streams[conn] = StreamReassembler()
        return r.push(direction, seg)

    def close(self, conn: int, frame=None, ts=None) -> list[StreamItem]:
        r = self.streams.pop(conn, None)
        return r.close(frame, ts) if r else []

    def finish(self) -> dict[int, list[StreamItem]]:
        return {c: self.close(c) for c in list(self.streams)}


# Compiled with reassembly.pxd, M32 and HALF are C integers Python cannot see; this keeps
# them importable either way.
globals().update(M32=M32, HALF=HALF)
