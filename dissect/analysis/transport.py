"""Transport-layer glue for the analysis path: TCP analysis, UDP flows, stream reassembly
and the application dispatcher, fed one segment/datagram at a time (sans-I/O).

Connection ids: TCP connections are numbered exactly like tshark's ``tcp.stream`` (ints);
UDP flows are ``"udp/N"`` in order of first appearance (strings, so the two never clash).
"""

from __future__ import annotations

import importlib

from dissect.analysis.tcp import TcpAnalyzer
from dissect.columns.segment import TcpSegment, UdpDatagram
from dissect.engine import Verdict

# A UDP flow idle this long ends; the next datagram on the same 5-tuple starts a new flow.
# (Zeek uses 1 min for UDP; DNS retries and RTP pauses are well inside it.)
UDP_IDLE_TIMEOUT_S = 60.0
# UDP flows tracked at once; beyond this the least recent are closed (bounds memory on scans).
MAX_UDP_FLOWS = 100_000


def _optional(modname: str, attr: str):
    try:
        return getattr(importlib.import_module(modname), attr)
    except (ImportError, AttributeError):
        return None


class _UdpFlow:
    __slots__ = ("id", "client", "server", "first_frame", "last_frame", "start_ts", "last_ts",
                 "packets", "bytes")

    def __init__(self, fid, dg: UdpDatagram):
        self.id = fid
        self.client = (dg.src, dg.sport)
        self.server = (dg.dst, dg.dport)
        self.first_frame = self.last_frame = dg.frame
        self.start_ts = self.last_ts = dg.ts
        self.packets = [0, 0]
        self.bytes = [0, 0]

    def record(self) -> dict:
        return {"type": "connection", "id": self.id, "proto": "udp",
                "client": {"ip": self.client[0], "port": self.client[1]},
                "server": {"ip": self.server[0], "port": self.server[1]},
                "state": None, "history": None, "handshake": None,
                "first_frame": self.first_frame, "last_frame": self.last_frame,
                "start_ts": self.start_ts, "duration_s": self.last_ts - self.start_ts,
                "packets": {"client": self.packets[0], "server": self.packets[1]},
                "bytes": {"client": self.bytes[0], "server": self.bytes[1]},
                "app": None}


class TransportAnalyzer:
    def __init__(self, app: bool = True):
        self.tcp = TcpAnalyzer()
        self.udp: dict = {}
        self.udp_done: list = []
        self.udp_count = 0
        self.app = None
        self.reasm = None
        if app:
            Dispatcher = _optional("dissect.analysis.app.dispatch", "AppDispatcher")
            Reassembler = _optional("dissect.analysis.reassembly", "StreamSet")
            if Dispatcher is not None:
                self.app = Dispatcher()
            if Reassembler is not None and self.app is not None:
                self.reasm = Reassembler()

    def feed(self, t) -> Verdict:
        if isinstance(t, TcpSegment):
            pv = self.tcp.feed(t)
            values = None
            if pv.flags or pv.ack_rtt is not None or pv.irtt is not None:
                values = {k: v for k, v in (
                    ("ack_rtt", pv.ack_rtt), ("acks_frame", pv.acked_frame),
                    ("bytes_in_flight", pv.bytes_in_flight),
                    ("duplicate_ack_num", pv.dupack_num),
                    ("duplicate_ack_frame", pv.dupack_frame), ("rto", pv.rto),
                    ("rto_frame", pv.rto_frame), ("initial_rtt", pv.irtt)) if v is not None}
                if pv.reason:
                    values["bytemap"] = list(pv.bytemap)
                    values["bytemap_reason"] = pv.reason
            if self.reasm is not None:
                for ev in self.reasm.push(t, pv):
                    self.app.on_stream(*ev)
            return Verdict(pv.conn, pv.flags, values, pv.direction)
        if isinstance(t, UdpDatagram):
            return self._udp(t)
        return Verdict()

    def _udp(self, dg: UdpDatagram) -> Verdict:
        a, b = (dg.src, dg.sport), (dg.dst, dg.dport)
        key = (a, b) if a <= b else (b, a)
        fl = self.udp.get(key)
        if fl is not None and dg.ts - fl.last_ts > UDP_IDLE_TIMEOUT_S:
            self.udp_done.append(self.udp.pop(key))
            fl = None
        if fl is None:
            if len(self.udp) >= MAX_UDP_FLOWS:
                oldest = min(self.udp, key=lambda k: self.udp[k].last_ts)
                self.udp_done.append(self.udp.pop(oldest))
            fl = _UdpFlow(f"udp/{self.udp_count}", dg)
            self.udp_count += 1
            self.udp[key] = fl
        d = 0 if a == fl.client else 1
        fl.packets[d] += 1
        fl.bytes[d] += dg.plen
        fl.last_frame = dg.frame
        fl.last_ts = dg.ts
        if self.app is not None:
            meta = {"client": fl.client, "server": fl.server}
            self.app.on_datagram(fl.id, meta, dg.payload, dg.frame, dg.ts, a, b)
        return Verdict(fl.id, (), None, d)

    def finish(self) -> tuple[list, list]:
        conns = [c.record() for c in self.tcp.finish()]
        records: list = []
        if self.reasm is not None:
            for ev in self.reasm.finish():
                self.app.on_stream(*ev)
        if self.app is not None:
            records = self.app.finish()
            protos = getattr(self.app, "protocols", {})
            for c in conns:
                c["app"] = protos.get(c["id"])
        udp = sorted(self.udp_done + list(self.udp.values()), key=lambda f: f.first_frame)
        for f in udp:
            r = f.record()
            if self.app is not None:
                r["app"] = getattr(self.app, "protocols", {}).get(f.id)
            conns.append(r)
        return conns, records
