"""Test helper: run the real Engine on a capture and get application records.

While ``dissect.analysis.app.dispatch`` (the application dispatcher, being written
elsewhere) is missing, :func:`run` installs a small stand-in for the tests only: it picks
one of the existing parsers by the server port and feeds it the engine's own reassembled
streams and datagrams, so connection ids, frames and timestamps are the engine's. Once the
real dispatcher exists it is used and this stand-in is ignored.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

from dissect.analysis.findings import FrameTable
from dissect.engine import Engine

ROOT = Path(__file__).resolve().parents[3]
PCAPS = ROOT / "pcaps"
CORPUS = ROOT.parent / "shared" / "corpus"


def real_dispatcher() -> bool:
    try:
        importlib.import_module("dissect.analysis.app.dispatch")
        return True
    except ImportError:
        return False


def _stream_parsers():
    from dissect.analysis.app.dns import DnsTcpParser
    from dissect.analysis.app.ftp import FtpParser
    from dissect.analysis.app.imap import ImapParser
    from dissect.analysis.app.pop3 import Pop3Parser
    from dissect.analysis.app.smtp import SmtpParser
    return {21: FtpParser, 25: SmtpParser, 587: SmtpParser, 2525: SmtpParser,
            110: Pop3Parser, 143: ImapParser, 53: DnsTcpParser}


def _datagram_parsers():
    from dissect.analysis.app.dns import DnsUdpParser
    from dissect.analysis.app.rtc import RtcParser
    return DnsUdpParser, RtcParser


class StandInDispatcher:
    """Port-hint dispatch over the parsers that exist; test use only."""

    def __init__(self):
        self.by_port = _stream_parsers()
        self.dns_udp, self.rtc = _datagram_parsers()
        self.streams: dict = {}
        self.udp: dict = {}
        self.records: list = []
        self.protocols: dict = {}
        self.tcp_info: dict = {}

    def on_stream(self, conn, meta, direction, kind, value, frame, ts):
        if conn not in self.streams:
            srv = (meta.get("server") or (None, None))[1]
            cls = self.by_port.get(srv)
            if cls is None:
                self.streams[conn] = None
            else:
                self.streams[conn] = cls(conn, meta)
                self.protocols[conn] = cls.name
        p = self.streams[conn]
        if p is None:
            return
        if kind == "data":
            out = p.feed(direction, value, frame, ts)
        elif kind == "gap":
            out = p.gap(direction, value, frame, ts)
        else:
            return
        self._add(conn, out)

    def on_close(self, conn, ts):
        p = self.streams.get(conn)
        if p is not None:
            self._add(conn, p.close(ts))
            self.streams[conn] = None

    def on_datagram(self, cid, meta, payload, frame, ts, src, dst):
        p = self.udp.get(cid)
        if p is None:
            ports = {src[1], dst[1]}
            if 53 in ports or 5353 in ports:
                p = self.dns_udp(cid, meta)
            elif payload and (payload[0] < 4 or 128 <= payload[0] < 192 or 20 <= payload[0] < 64):
                p = self.rtc(cid, meta)
            else:
                p = False
            self.udp[cid] = p
            if p:
                self.protocols[cid] = p.name
        if p:
            self._add(cid, p.datagram(payload, frame, ts, src, dst))

    def _add(self, conn, out):
        for r in out:
            if r.get("conn") is None:
                r["conn"] = conn
        self.records += out

    def finish(self):
        for cid, p in list(self.streams.items()):
            if p is not None:
                self._add(cid, p.close(None))
        for cid, p in self.udp.items():
            if p:
                self._add(cid, p.close())
        return self.records


def run(path, monkeypatch=None):
    """(result, frame_table) for ``path``; uses the stand-in dispatcher if needed."""
    installed = False
    if not real_dispatcher():
        mod = types.ModuleType("dissect.analysis.app.dispatch")
        mod.AppDispatcher = StandInDispatcher
        sys.modules["dissect.analysis.app.dispatch"] = mod
        installed = True
    try:
        table = FrameTable()
        res = Engine(str(path), on_frame=table.on_frame).run()
    finally:
        if installed:
            sys.modules.pop("dissect.analysis.app.dispatch", None)
    _link_ftp(res)
    return res, table


def _link_ftp(res):
    """FTP data linkage as the dispatcher would do it (only if it did not)."""
    if any(r.get("type") == "ftp-data" for r in res.records):
        return
    if not any(r.get("type") == "ftp-expect" for r in res.records):
        return
    from dissect.analysis.app.ftp import link_ftp_data
    conns = [{"conn": c["id"], "client": (c["client"]["ip"], c["client"]["port"]),
              "server": (c["server"]["ip"], c["server"]["port"]),
              "first_frame": c["first_frame"], "last_frame": c["last_frame"],
              "client_bytes": c["bytes"]["client"], "server_bytes": c["bytes"]["server"]}
             for c in res.connections if c["proto"] == "tcp"]
    res.records += link_ftp_data(res.records, conns)


def corpus(rel: str) -> Path:
    import pytest
    p = CORPUS / rel
    if not p.exists():
        pytest.skip(f"corpus file {rel} not present (../shared/corpus)")
    return p


def script_records(parser, conn, script) -> list:
    """The records a stream parser makes of ``script`` ((direction, bytes) per frame,
    frame n at time n), with ``conn`` as their connection."""
    recs = []
    for n, (d, data) in enumerate(script, 1):
        recs += parser.feed(d, data, n, float(n))
    recs += parser.close(float(len(script) + 1))
    for r in recs:
        if r.get("conn") is None:
            r["conn"] = conn
    return recs
