"""Test helper: per-connection streams and UDP datagrams from a capture, read with dpkt.

Deliberately independent of dissect's own reader and TCP engine, so application-parser tests
do not depend on them: dpkt reads the file (pcap/pcapng, gzip), this module peels the link
layer (Ethernet/VLAN, SLL, SLL2, null/loopback, raw IP), and does a naive in-order reassembly
per TCP direction: segments are ordered by sequence number, retransmitted bytes are dropped,
a hole that never fills becomes a gap event. IP fragments are not reassembled (a fragmented
datagram is skipped); that is noted wherever a count could depend on it.

Frame numbers are 1-based and count every record of the file, as tshark's ``frame.number``.
"""

from __future__ import annotations

import gzip
import ipaddress
from dataclasses import dataclass, field

import dpkt

from dissect.analysis.app.base import CLIENT, SERVER

MAX_PENDING_SEGMENTS = 256  # out-of-order segments kept per direction before declaring a gap


@dataclass
class TcpConn:
    id: int
    client: tuple
    server: tuple
    first_frame: int
    last_frame: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0
    bytes: list = field(default_factory=lambda: [0, 0])    # payload bytes delivered per direction
    events: list = field(default_factory=list)   # ("data"|"gap", direction, bytes|size, frame, ts)
    syn_seen: bool = False
    fin_or_rst: bool = False
    _next: list = field(default_factory=lambda: [None, None])
    _pending: list = field(default_factory=lambda: [{}, {}])

    def info(self) -> dict:
        """The connection summary the FTP data linker takes."""
        return {"conn": self.id, "client": self.client, "server": self.server,
                "first_frame": self.first_frame, "last_frame": self.last_frame,
                "client_bytes": self.bytes[CLIENT], "server_bytes": self.bytes[SERVER]}

    def head(self, direction: int, n: int = 512) -> bytes:
        out = b""
        for ev in self.events:
            if ev[0] == "data" and ev[1] == direction:
                out += ev[2]
                if len(out) >= n:
                    break
        return out[:n]

    # -- reassembly ----------------------------------------------------------------------
    def segment(self, d: int, seq: int, syn: bool, data: bytes, frame: int, ts: float) -> None:
        self.last_frame, self.last_ts = frame, ts
        if syn:
            self._next[d] = (seq + 1) & 0xFFFFFFFF
            return
        if not data:
            return
        if self._next[d] is None:
            self._next[d] = seq
        rel = ((seq - self._next[d] + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        if rel > 0:
            pend = self._pending[d]
            if len(data) > len(pend.get(seq, (b"",))[0]):
                pend[seq] = (data, frame, ts)
            if len(pend) > MAX_PENDING_SEGMENTS:
                self._skip_to_pending(d, frame, ts)
            return
        self._deliver(d, data[-rel:] if rel < 0 else data, frame, ts)
        self._drain(d)

    def _deliver(self, d, data, frame, ts):
        if not data:
            return
        self.events.append(("data", d, data, frame, ts))
        self.bytes[d] += len(data)
        self._next[d] = (self._next[d] + len(data)) & 0xFFFFFFFF

    def _drain(self, d):
        pend = self._pending[d]
        progressed = True
        while pend and progressed:
            progressed = False
            for seq in list(pend):
                rel = ((seq - self._next[d] + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                if rel <= 0:
                    data, frame, ts = pend.pop(seq)
                    if -rel < len(data):
                        self._deliver(d, data[-rel:], frame, ts)
                    progressed = True

    def _skip_to_pending(self, d, frame, ts):
        pend = self._pending[d]
        nxt = self._next[d]
        first = min(pend, key=lambda s: (s - nxt) & 0xFFFFFFFF)
        size = (first - nxt) & 0xFFFFFFFF
        self.events.append(("gap", d, size, frame, ts))
        self._next[d] = first
        self._drain(d)

    def finish(self) -> None:
        for d in (CLIENT, SERVER):
            while self._pending[d]:
                self._skip_to_pending(d, self.last_frame, self.last_ts)


@dataclass
class UdpFlow:
    id: int
    a: tuple          # the first sender
    b: tuple
    datagrams: list = field(default_factory=list)   # (frame, ts, src, dst, payload)


@dataclass
class Capture:
    tcp: list
    udp: list
    frames: int


def _open(path):
    f = open(path, "rb")
    magic = f.read(2)
    f.seek(0)
    if magic == b"\x1f\x8b":
        f.close()
        return gzip.open(path, "rb")
    return f


def _ip_of(buf: bytes, dlt: int):
    """The IPv4/IPv6 packet inside one frame, or None."""
    try:
        if dlt == 1:
            pkt = dpkt.ethernet.Ethernet(buf)
        elif dlt == 113:
            pkt = dpkt.sll.SLL(buf)
        elif dlt == 276:
            pkt = dpkt.sll2.SLL2(buf)
        elif dlt == 0 or dlt == 108:
            fam = int.from_bytes(buf[:4], "little" if buf[:2] != b"\x00\x00" else "big")
            inner = buf[4:]
            pkt = dpkt.ip.IP(inner) if fam == 2 else dpkt.ip6.IP6(inner)
        elif dlt in (101, 12, 14, 228, 229):
            if not buf:
                return None
            pkt = dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
        else:
            return None
    except (dpkt.UnpackError, IndexError, ValueError):
        return None
    for _ in range(8):
        if isinstance(pkt, (dpkt.ip.IP, dpkt.ip6.IP6)):
            return pkt
        pkt = getattr(pkt, "data", None)
        if pkt is None or isinstance(pkt, bytes):
            return None
    return None


def read_capture(path) -> Capture:
    conns: dict = {}
    tcp: list[TcpConn] = []
    flows: dict = {}
    udp: list[UdpFlow] = []
    frame = 0
    with _open(path) as f:
        try:
            reader = dpkt.pcap.UniversalReader(f)
        except (ValueError, dpkt.NeedData):
            return Capture([], [], 0)
        dlt = reader.datalink()
        it = iter(reader)
        while True:
            try:
                ts, buf = next(it)
            except StopIteration:
                break
            except (dpkt.NeedData, dpkt.UnpackError, ValueError, EOFError):
                break
            frame += 1
            ip = _ip_of(buf, dlt)
            if ip is None:
                continue
            if isinstance(ip, dpkt.ip.IP):
                if ip.mf or ip.offset:          # a fragment: not reassembled here
                    continue
                src, dst = str(ipaddress.IPv4Address(ip.src)), str(ipaddress.IPv4Address(ip.dst))
            else:
                src, dst = str(ipaddress.IPv6Address(ip.src)), str(ipaddress.IPv6Address(ip.dst))
            l4 = ip.data
            ts = float(ts)
            if isinstance(l4, dpkt.tcp.TCP):
                a, b = (src, l4.sport), (dst, l4.dport)
                key = frozenset((a, b))
                syn = bool(l4.flags & dpkt.tcp.TH_SYN)
                ack = bool(l4.flags & dpkt.tcp.TH_ACK)
                c = conns.get(key)
                if c is not None and syn and not ack and c.fin_or_rst and a == c.client \
                        and c._next[CLIENT] != ((l4.seq + 1) & 0xFFFFFFFF):
                    c = None     # a new connection reusing the 4-tuple
                if c is None:
                    if syn and ack:
                        client, server = b, a
                    elif syn or not (l4.sport < 1024 <= l4.dport):
                        client, server = a, b
                    else:
                        client, server = b, a
                    c = TcpConn(len(tcp), client, server, frame, first_ts=ts)
                    conns[key] = c
                    tcp.append(c)
                d = CLIENT if a == c.client else SERVER
                if syn:
                    c.syn_seen = True
                if l4.flags & (dpkt.tcp.TH_FIN | dpkt.tcp.TH_RST):
                    c.fin_or_rst = True
                c.segment(d, l4.seq, syn, bytes(l4.data), frame, ts)
            elif isinstance(l4, dpkt.udp.UDP):
                a, b = (src, l4.sport), (dst, l4.dport)
                key = frozenset((a, b))
                fl = flows.get(key)
                if fl is None:
                    fl = flows[key] = UdpFlow(len(udp), a, b)
                    udp.append(fl)
                fl.datagrams.append((frame, ts, a, b, bytes(l4.data)))
    for c in tcp:
        c.finish()
    return Capture(tcp, udp, frame)


def feed_stream(parser, conn: TcpConn) -> list[dict]:
    out: list[dict] = []
    for kind, d, payload, frame, ts in conn.events:
        if kind == "data":
            out += parser.feed(d, payload, frame, ts)
        else:
            out += parser.gap(d, payload, frame, ts)
    out += parser.close(conn.last_ts)
    for r in out:
        if r.get("conn") is None:
            r["conn"] = conn.id
    return out


def stream_meta(conn: TcpConn) -> dict:
    return {"client": conn.client, "server": conn.server}


def feed_datagrams(parser, flow: UdpFlow) -> list[dict]:
    out: list[dict] = []
    for frame, ts, src, dst, payload in flow.datagrams:
        out += parser.datagram(payload, frame, ts, src, dst)
    out += parser.close()
    for r in out:
        if r.get("conn") is None:
            r["conn"] = flow.id
    return out


# -- segmentation invariance -------------------------------------------------------------

def run_script(parser, script, cuts=None) -> list[dict]:
    """Feed ``script`` (a list of (direction, bytes, frame, ts)) to a stream parser.

    ``cuts`` (optional) gives, per script entry, the offsets where its bytes are split into
    separate ``feed`` calls (same frame and timestamp). Returns every record, close included.
    """
    out: list[dict] = []
    for i, (d, data, frame, ts) in enumerate(script):
        points = [0] + sorted(set(c for c in (cuts[i] if cuts else []) if 0 < c < len(data))) \
            + [len(data)]
        for a, b in zip(points, points[1:]):
            out += parser.feed(d, data[a:b], frame, ts)
    out += parser.close(script[-1][3] if script else None)
    return out


def cut_strategy(script):
    """Hypothesis strategy: per script entry, a list of cut offsets (byte-by-byte included)."""
    from hypothesis import strategies as st

    def one(data: bytes):
        n = len(data)
        if n < 2:
            return st.just([])
        return st.one_of(st.just([]), st.just(list(range(1, n))),
                         st.lists(st.integers(1, n - 1), max_size=12))
    return st.tuples(*[one(e[1]) for e in script]) if script else st.just(())
