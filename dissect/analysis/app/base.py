"""Contract every application-layer parser follows.

Stream parsers (TCP) receive the reassembled bytes of each direction of one connection,
in order, with the frame number and timestamp of the segment that delivered them, and
return records. Datagram parsers (UDP) receive one datagram at a time.

Detection is by content; ports are only hints. Each parser class declares
``name`` (the protocol name used in records, e.g. ``"http"``), ``ports`` (hint ports) and a
``probe`` classmethod that looks at the first bytes each side sent and answers with a
confidence in [0, 1]. The dispatcher (:mod:`dissect.analysis.app.dispatch`) picks the parser
with the highest confidence (ties broken by the port hint) and feeds it.

Records are dicts ready for JSON Lines: each has ``"type"`` (the protocol name, or a more
specific type), ``"conn"`` (the connection id, filled in by the dispatcher when absent), and
``"frames"`` (the frame numbers it came from). Malformed data becomes an anomaly record
``{"type": "anomaly", "protocol": ..., "name": ..., "frame": ..., "detail": ...}`` and the
parser carries on with the rest of the stream where it can (resynchronising or giving up
on that stream only).

Parsers never do I/O, never print, never import Scapy.
"""

from __future__ import annotations

from typing import ClassVar

CLIENT = 0  # direction: client -> server (the SYN sender, or the heuristic client)
SERVER = 1  # direction: server -> client


def anomaly(protocol: str, name: str, frame: int | None, detail: str = "", conn=None) -> dict:
    """A named, non-fatal oddity (zeek's 'weird')."""
    return {"type": "anomaly", "protocol": protocol, "name": name, "frame": frame,
            "detail": detail, "conn": conn}


class StreamParser:
    """Base for parsers of one TCP connection's two reassembled byte streams."""

    name: ClassVar[str] = "?"
    ports: ClassVar[tuple[int, ...]] = ()
    # The most probe() ever answers (inf: not declared). The dispatcher does not ask a
    # parser whose bound cannot beat an answer already in hand; a test holds every parser
    # to its bound on real and mutated stream heads.
    probe_max: ClassVar[float] = float("inf")

    @classmethod
    def probe_bound(cls, sport: int, dport: int) -> float:
        """The most :meth:`probe` answers for a connection on these ports."""
        return cls.probe_max

    @classmethod
    def probe(cls, client_head: bytes, server_head: bytes, sport: int, dport: int) -> float:
        """Confidence in [0, 1] that this stream speaks this protocol.

        ``client_head``/``server_head`` are the first bytes (up to 512) each side sent;
        either may be empty (not seen yet, or one-sided capture). Ports are hints only.
        """
        return 0.0

    def __init__(self, conn=None, meta: dict | None = None):
        self.conn = conn          # connection id, copied into records
        self.meta = meta or {}    # client/server addresses and ports, filled by the dispatcher

    def feed(self, direction: int, data: bytes, frame: int, ts: float) -> list[dict]:
        """Bytes delivered in order on ``direction``; returns finished records."""
        raise NotImplementedError

    def gap(self, direction: int, size: int, frame: int, ts: float) -> list[dict]:
        """``size`` bytes on ``direction`` were never captured. Default: one anomaly."""
        return [anomaly(self.name, "stream-gap", frame, f"{size} bytes missing", self.conn)]

    def close(self, ts: float | None = None) -> list[dict]:
        """The connection ended (or the capture did): flush incomplete transactions."""
        return []


class DatagramParser:
    """Base for parsers of UDP datagrams (stateful per parser instance if needed)."""

    name: ClassVar[str] = "?"
    ports: ClassVar[tuple[int, ...]] = ()

    @classmethod
    def probe(cls, payload: bytes, sport: int, dport: int) -> float:
        return 0.0

    def datagram(self, payload: bytes, frame: int, ts: float, src: tuple, dst: tuple) -> list[dict]:
        """One datagram from ``src`` (ip, port) to ``dst`` (ip, port); returns records."""
        raise NotImplementedError

    def close(self) -> list[dict]:
        return []
