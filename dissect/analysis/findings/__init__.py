"""Findings a network engineer would write, derived from the analysis results (sans-I/O).

* :mod:`.timing` - time by layer per transaction (a waterfall: TCP handshake, TLS handshake,
  request, server wait, transfer, teardown), each stage with its OSI layer;
* :mod:`.cleartext` - credentials and secrets visible on the wire, STARTTLS offered but not
  used, weak TLS;
* :mod:`.conversations` - per conversation: communication model, connection type, transport,
  reliability seen and use, each with its evidence;
* :mod:`.protobuf` - protobuf wire-format decoding of gRPC messages (schema-less, or with a
  ``.proto`` compiled at run time).

They read what :class:`dissect.engine.Engine` returns (connection records and application
records) plus, for timing, a :class:`FrameTable`: per frame the timestamp, connection,
direction, TCP flags and payload length, which the records alone do not carry.
"""

from __future__ import annotations

from array import array

# TCP flag bits, as in dissect.analysis.tcp
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10

NO_CONN = -1
# payload bytes kept from the first data segment of each direction of each connection:
# enough for a TLS record header + handshake type (6) and a protocol banner's first word
FIRST_BYTES_KEPT = 16


class FrameTable:
    """Compact per-frame facts, filled from ``Engine(..., on_frame=table.on_frame)``.

    Stored column-wise in arrays (about 30 bytes per frame), indexed by frame number, so
    a capture of a million frames costs tens of megabytes, not a Python object per frame.
    Connection ids are interned to small ints (TCP ids are ints, UDP ids ``"udp/N"``).
    """

    def __init__(self):
        self.ts = array("d", [0.0])       # index 0 unused: frames are numbered from 1
        self.conn = array("l", [NO_CONN])
        self.direction = array("b", [-1])
        self.flags = array("H", [0])
        self.plen = array("l", [0])
        self.head = array("h", [-1])       # first captured payload byte (-1: none)
        self.first_bytes: dict = {}       # (interned conn, direction) -> first 16 payload bytes
        self._ids: dict = {}
        self._names: list = []
        self.frames_of: dict = {}         # interned conn -> array of its frame numbers

    def _intern(self, conn) -> int:
        i = self._ids.get(conn)
        if i is None:
            i = self._ids[conn] = len(self._names)
            self._names.append(conn)
            self.frames_of[i] = array("l")
        return i

    def add(self, number: int, ts: float, conn=None, direction=None, flags: int = 0,
            plen: int = 0, payload: bytes = b"") -> None:
        while len(self.ts) < number:       # frames the engine did not report (gaps)
            self.ts.append(ts)
            self.conn.append(NO_CONN)
            self.direction.append(-1)
            self.flags.append(0)
            self.plen.append(0)
            self.head.append(-1)
        if len(self.ts) > number:          # re-added frame: keep the first
            return
        c = NO_CONN if conn is None else self._intern(conn)
        self.ts.append(ts)
        self.conn.append(c)
        self.direction.append(-1 if direction is None else direction)
        self.flags.append(flags & 0xFFFF)
        self.plen.append(plen)
        self.head.append(payload[0] if payload else -1)
        if c != NO_CONN:
            self.frames_of[c].append(number)
            if payload and direction in (0, 1) and (c, direction) not in self.first_bytes:
                self.first_bytes[(c, direction)] = bytes(payload[:FIRST_BYTES_KEPT])

    def on_frame(self, fr, d, v) -> None:
        t = d.transport if d is not None else None
        flags = getattr(t, "flags", 0) if t is not None else 0
        plen = getattr(t, "plen", None)
        if plen is None:
            plen = len(getattr(t, "payload", b"") or b"") if t is not None else 0
        self.add(fr.number, fr.ts, getattr(v, "conn", None), getattr(v, "direction", None),
                 flags, plen, getattr(t, "payload", b"") or b"")

    # -- queries -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ts) - 1

    def has(self, frame) -> bool:
        return isinstance(frame, int) and 0 < frame < len(self.ts)

    def time(self, frame) -> float | None:
        return self.ts[frame] if self.has(frame) else None

    def first(self, conn, direction) -> bytes:
        """The first payload bytes (up to FIRST_BYTES_KEPT) ``conn`` carried ``direction``."""
        i = self._ids.get(conn)
        return self.first_bytes.get((i, direction), b"") if i is not None else b""

    def frames(self, conn) -> list[int]:
        i = self._ids.get(conn)
        return list(self.frames_of[i]) if i is not None else []


def collect(path: str, frames: bool = True):
    """Run the engine on ``path``; returns ``(result, frame_table)``."""
    from dissect.engine import Engine
    table = FrameTable() if frames else None
    res = Engine(path, on_frame=table.on_frame if table is not None else None).run()
    return res, table


from dissect.analysis.findings.timing import timing_records  # noqa: E402
from dissect.analysis.findings.cleartext import cleartext_findings  # noqa: E402
from dissect.analysis.findings.conversations import conversation_records  # noqa: E402

__all__ = ["FrameTable", "collect", "timing_records", "cleartext_findings",
           "conversation_records"]
