"""Transport-layer glue for the analysis path: TCP analysis, UDP flows, stream reassembly
and the application dispatcher, fed one segment/datagram at a time (sans-I/O).

Connection ids: TCP connections are numbered exactly like tshark's ``tcp.stream`` (ints);
UDP flows are ``"udp/N"`` in order of first appearance (strings, so the two never clash).
"""

from __future__ import annotations


from dissect.analysis.flows import UdpFlows
from dissect.analysis.reassembly import Reassembler
from dissect.analysis.tcp import TcpAnalyzer
from dissect.columns.segment import TcpSegment, UdpDatagram
from dissect.engine import Verdict
from dissect.engine import optional as _optional

def udp_id(n: int) -> str:
    return f"udp/{n}"


class TransportAnalyzer:
    def __init__(self, app: bool = True):
        self.tcp = TcpAnalyzer()
        self.udp = UdpFlows()
        self.app = None
        self.reasm = None
        self._closed: set = set()   # connections whose streams were flushed (RST / both FINs)
        self._fins: dict = {}
        if app:
            Dispatcher = _optional("dissect.analysis.app.dispatch", "AppDispatcher")
            if Dispatcher is not None:
                self.app = Dispatcher()
                self.reasm = Reassembler()

    def feed(self, t) -> Verdict:
        if type(t) is TcpSegment:
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
            if self.reasm is not None and pv.conn not in self._closed:
                self._stream(t, pv)
            return Verdict(pv.conn, pv.flags, values, pv.direction)
        if type(t) is UdpDatagram:
            fid, d = self.udp.feed(t)
            cid = udp_id(fid)
            if self.app is not None:
                f = self.udp.flows[fid]
                self.app.on_datagram(cid, {"client": f.client, "server": f.server, "proto": "udp"},
                                     t.payload, t.frame, t.ts, (t.src, t.sport), (t.dst, t.dport))
            return Verdict(cid, (), None, d)
        return Verdict()

    def _stream(self, seg, pv) -> None:
        conn = pv.conn
        meta = self._meta(conn)
        for it in self.reasm.push(seg, conn, pv.direction):
            self.app.on_stream(conn, meta, it.direction, it.kind, it.value, it.frame, it.ts)
        if not self.app.wants(conn):
            # unknown protocol, a failed parser, or a data connection counted elsewhere:
            # stop reassembling it (its buffers are freed now)
            self.reasm.close(conn)
            self._closed.add(conn)
            self._fins.pop(conn, None)
            return
        # a connection that is over frees its reassembly buffers now, not at the end of
        # the capture: memory follows the concurrent connections, not all of them
        if seg.flags & 0x04:
            self._close(conn, seg)
        elif seg.flags & 0x01:
            n = self._fins.get(conn, 0) | (1 << pv.direction)
            self._fins[conn] = n
            if n == 3:
                self._close(conn, seg)

    def _meta(self, conn) -> dict:
        c = self.tcp.connections[conn] if conn < len(self.tcp.connections) else None
        if c is None:
            return {"proto": "tcp"}
        return {"client": c.client, "server": c.server, "proto": "tcp"}

    def _close(self, conn, seg) -> None:
        meta = self._meta(conn)
        for it in self.reasm.close(conn, seg.frame, seg.ts):
            self.app.on_stream(conn, meta, it.direction, it.kind, it.value, it.frame, it.ts)
        self.app.on_close(conn, seg.ts)
        self._closed.add(conn)
        self._fins.pop(conn, None)

    def finish(self) -> tuple[list, list]:
        records: list = []
        if self.reasm is not None:
            for conn, items in self.reasm.finish().items():
                meta = self._meta(conn)
                for it in items:
                    self.app.on_stream(conn, meta, it.direction, it.kind, it.value, it.frame, it.ts)
                self.app.on_close(conn, None)
        conns = [c.record() for c in self.tcp.finish()]
        for f in self.udp.flows:
            r = f.record()
            r["id"] = udp_id(f.id)
            conns.append(r)
        if self.app is not None:
            records = self.app.finish()
            protos = getattr(self.app, "protocols", {}) or {}
            for c in conns:
                c["app"] = protos.get(c["id"])
            from dissect.analysis.post import postprocess
            records = postprocess(conns, records)
        return conns, records
