"""Wiring of the analysis path: capture -> fast decode -> transport analysis -> reassembly ->
application parsers -> records. No printing and no option parsing here (the CLI does
that); the only I/O is the capture reader.

``run()`` streams the file once. Per frame it calls ``on_frame(frame, decoded, verdict)``
when given (``verdict`` has the TCP analysis flags and the connection id), so callers that
show packets can build field trees for just the frames they show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from dissect.analysis.summary import CaptureSummary
from dissect.columns.decode import decode_frame
from dissect.columns.segment import TcpSegment, UdpDatagram  # noqa: F401
from dissect.errors import CaptureError, UnsupportedError
from dissect.io.capture import CaptureReader


class Verdict:
    """Per-frame analysis result: connection id, tshark-named flags, analysis values."""
    __slots__ = ("conn", "flags", "values", "direction")

    def __init__(self, conn=None, flags=(), values=None, direction=None):
        self.conn = conn
        self.flags = flags
        self.values = values
        self.direction = direction


@dataclass
class Result:
    path: str
    info: object = None
    summary: CaptureSummary = field(default_factory=CaptureSummary)
    connections: list = field(default_factory=list)
    records: list = field(default_factory=list)        # application and other typed records
    error: CaptureError | None = None
    # SYNs without ACK (frame, ts, src, sport, dst, dport, seq): what SYN-retry chains need
    syns: list = field(default_factory=list)
    # retransmitted data segments (conn, seq, len, frame, ts, original frame, original ts):
    # what RTO chains need
    retrans: list = field(default_factory=list)


def optional(modname: str, attr: str):
    """``modname.attr`` if that module is installed, else None (optional analyses)."""
    import importlib
    try:
        return getattr(importlib.import_module(modname), attr)
    except (ImportError, AttributeError):
        return None


class Engine:
    def __init__(self, path: str, *, tcp: bool = True, app: bool = True,
                 on_frame: Callable | None = None):
        self.path = str(path)
        self.tcp = tcp
        self.app = app
        self.on_frame = on_frame

    def run(self) -> Result:
        res = Result(self.path)
        summary = res.summary
        transport = None
        if self.tcp:
            TA = optional("dissect.analysis.transport", "TransportAnalyzer")
            if TA is not None:
                transport = TA(app=self.app)
        on_frame = self.on_frame
        empty = Verdict()
        reader = CaptureReader(self.path)   # errors opening propagate: nothing decoded yet
        res.info = reader.info
        try:
            for fr in reader:
                d = decode_frame(fr)
                summary.add(fr, d)
                v = empty
                t = d.transport
                if transport is not None and t is not None:
                    v = transport.feed(t)
                    if v.flags:
                        summary.flags(v.flags)
                        if "retransmission" in v.flags and v.values and t.plen:
                            val = v.values
                            res.retrans.append((v.conn, t.seq, t.plen, t.frame, t.ts,
                                                val.get("rto_frame"),
                                                t.ts - val["rto"] if val.get("rto") else None))
                    summary.add_conn(d.chain, v.conn, fr.wirelen)
                    if t.__class__ is TcpSegment and t.flags & 0x12 == 0x02:
                        res.syns.append((t.frame, t.ts, t.src, t.sport, t.dst, t.dport, t.seq))
                if on_frame is not None:
                    on_frame(fr, d, v)
        except CaptureError as e:
            res.error = e
        finally:
            reader.close()
        for frame, name in reader.warnings:
            summary.anomaly(name, frame)
        unsupported = sorted(k for k in summary.anomalies if k.startswith("unsupported-linktype-"))
        if unsupported and res.error is None:
            lts = ", ".join(k.rsplit("-", 1)[1] for k in unsupported)
            n = sum(summary.anomalies[k][0] for k in unsupported)
            res.error = UnsupportedError(
                f"link type {lts} is not supported: {n} frame(s) shown as raw data",
                path=self.path, frame=summary.anomalies[unsupported[0]][1][0])
        if transport is not None:
            res.connections, res.records = transport.finish()
            summary.apps = {c["id"]: c.get("app") for c in res.connections if c.get("app")}
            for r in res.records:
                if r.get("type") == "anomaly":
                    summary.anomaly(f"{r.get('protocol')}:{r.get('name')}", r.get("frame"))
        return res
