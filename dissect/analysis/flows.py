"""Flows of a capture: TCP connections (via :class:`~dissect.analysis.tcp.TcpAnalyzer`) and UDP
flows keyed by 5-tuple with an idle timeout, sans-I/O.

:class:`FlowTracker` takes what :func:`dissect.columns.decode.iter_transport` yields (anything
that is neither a TcpSegment nor a UdpDatagram is skipped) and returns per-frame verdicts for
TCP; :meth:`FlowTracker.records` gives the JSON Lines connection records of both protocols.
TCP ids are tshark's ``tcp.stream``; UDP ids are numbered separately, in order of first
packet, and a flow idle for longer than :data:`UDP_IDLE_TIMEOUT_S` starts a new one.
"""

from __future__ import annotations

from typing import Iterable

from dissect.analysis.tcp import PacketVerdict, TcpAnalyzer
from dissect.columns.segment import TcpSegment, UdpDatagram

# Zeek's udp_inactivity_timeout: a 5-tuple silent for a minute is a new flow when it speaks
# again (DNS resolvers reuse source ports; NAT bindings expire after 30 s - 5 min).
UDP_IDLE_TIMEOUT_S = 60.0


class UdpFlow:
    __slots__ = ("id", "client", "server", "first_frame", "last_frame", "start_ts", "last_ts",
                 "packets", "bytes")

    def __init__(self, fid: int, dg: UdpDatagram):
        self.id = fid
        self.client = (dg.src, dg.sport)
        self.server = (dg.dst, dg.dport)
        self.first_frame = self.last_frame = dg.frame
        self.start_ts = self.last_ts = dg.ts
        self.packets = [0, 0]
        self.bytes = [0, 0]

    @property
    def state(self) -> str:
        # Zeek's UDP conn_state: S0 one way only, SF both ways
        return "SF" if self.packets[0] and self.packets[1] else "S0"

    def record(self) -> dict:
        return {
            "type": "connection", "id": self.id, "proto": "udp",
            "client": {"ip": self.client[0], "port": self.client[1]},
            "server": {"ip": self.server[0], "port": self.server[1]},
            "state": self.state, "history": ("D" if self.packets[0] else "") +
            ("d" if self.packets[1] else ""),
            "handshake": None, "first_frame": self.first_frame, "last_frame": self.last_frame,
            "start_ts": self.start_ts, "duration_s": self.last_ts - self.start_ts,
            "packets": {"client": self.packets[0], "server": self.packets[1]},
            "bytes": {"client": self.bytes[0], "server": self.bytes[1]},
            "retransmissions": 0, "mss": None, "wscale": None, "sack_perm": None,
            "timestamps": None, "fin": None, "rst": None, "missed_bytes": 0, "app": None,
        }


class UdpFlows:
    def __init__(self, idle_timeout: float = UDP_IDLE_TIMEOUT_S):
        self.idle_timeout = idle_timeout
        self._live: dict = {}
        self.flows: list[UdpFlow] = []

    def feed(self, dg: UdpDatagram) -> tuple[int, int]:
        """(flow id, direction) of this datagram; direction 0 = client -> server."""
        a = (dg.src, dg.sport)
        b = (dg.dst, dg.dport)
        key = (a, b) if a <= b else (b, a)
        f = self._live.get(key)
        if f is None or dg.ts - f.last_ts > self.idle_timeout:
            f = UdpFlow(len(self.flows), dg)
            self.flows.append(f)
            self._live[key] = f
        d = 0 if a == f.client else 1
        f.packets[d] += 1
        f.bytes[d] += dg.plen
        f.last_frame = dg.frame
        if dg.ts > f.last_ts:
            f.last_ts = dg.ts
        return f.id, d


class FlowTracker:
    """TCP and UDP flows of one capture."""

    def __init__(self, keep_frames: bool = False):
        self.tcp = TcpAnalyzer(keep_frames=keep_frames)
        self.udp = UdpFlows()

    def feed(self, item) -> PacketVerdict | tuple[int, int] | None:
        t = type(item)
        if t is TcpSegment:
            return self.tcp.feed(item)
        if t is UdpDatagram:
            return self.udp.feed(item)
        return None

    def feed_all(self, items: Iterable) -> list[PacketVerdict]:
        """Feed everything; returns the TCP verdicts in frame order."""
        out = []
        tcp_feed = self.tcp.feed
        udp_feed = self.udp.feed
        for it in items:
            t = type(it)
            if t is TcpSegment:
                out.append(tcp_feed(it))
            elif t is UdpDatagram:
                udp_feed(it)
        return out

    def records(self) -> list[dict]:
        return [c.record() for c in self.tcp.finish()] + [f.record() for f in self.udp.flows]
