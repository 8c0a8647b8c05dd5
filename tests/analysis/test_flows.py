"""UDP flows (5-tuple, idle timeout) and the records of both protocols."""

from __future__ import annotations

from dissect.analysis.flows import UDP_IDLE_TIMEOUT_S, FlowTracker
from dissect.columns.segment import UdpDatagram


def dg(frame, ts, src, sport, dst, dport, n=10):
    return UdpDatagram(frame, ts, src, dst, sport, dport, n, bytes(n), 42)


def test_udp_flow_directions_and_idle_timeout_split():
    ft = FlowTracker()
    assert ft.feed(dg(1, 0.0, "10.0.0.1", 5353, "10.0.0.2", 53)) == (0, 0)
    assert ft.feed(dg(2, 0.1, "10.0.0.2", 53, "10.0.0.1", 5353)) == (0, 1)
    assert ft.feed(dg(3, 0.2 + UDP_IDLE_TIMEOUT_S, "10.0.0.1", 5353, "10.0.0.2", 53)) == (1, 0)
    recs = ft.records()
    assert [r["state"] for r in recs] == ["SF", "S0"]
    assert recs[0]["packets"] == {"client": 1, "server": 1} and recs[0]["proto"] == "udp"
    assert ft.feed(object()) is None
