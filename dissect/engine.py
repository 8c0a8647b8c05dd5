"""Wiring of the analysis path: capture -> fast decode -> transport analysis -> reassembly ->
application parsers -> records. No printing and no option parsing here (the CLI does
that); the only I/O is the capture reader.

``run()`` streams the file once. Per frame it calls ``on_frame(frame, decoded, verdict)``
when given (``verdict`` has the TCP analysis flags and the connection id), so callers that
show packets can build field trees for just the frames they show.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import dissect.tuples as _tuples
from dissect.analysis.observe import Observer, observe
from dissect.analysis.observe import run as run_observer
from dissect.analysis.summary import CaptureSummary
from dissect.columns.compact import KeyTable
from dissect.columns.decode import decode_frame
from dissect.columns.scan import USE_SCAN, pcap_pairs
from dissect.columns.segment import TcpSegment, UdpDatagram  # noqa: F401
from dissect.errors import CaptureError, UnsupportedError
from dissect.io.capture import CaptureReader


class Verdict:
    """Per-frame analysis result: connection id, tshark-named flags, analysis values.

    ``values`` (tshark's ``tcp.analysis.*`` values of the frame, and the byte-map verdict
    where it disagrees) is made from the TCP verdict ``pv`` on first use: most frames
    are never shown, and building it for each was a tenth of a run."""
    __slots__ = ("conn", "flags", "_values", "direction", "_pv")

    def __init__(self, conn=None, flags=(), values=None, direction=None, pv=None):
        self.conn = conn
        self.flags = flags
        self._values = values
        self.direction = direction
        self._pv = pv

    @property
    def values(self):
        pv = self._pv
        if pv is not None:
            self._pv = None
            self._values = tcp_values(pv)
        return self._values

    @values.setter
    def values(self, v):
        self._pv = None
        self._values = v


def tcp_values(pv) -> dict:
    """The analysis values of a TCP frame's verdict (``PacketVerdict``), as the packet
    records show them: those that are set, under tshark's field names."""
    values = {k: v for k, v in (
        ("ack_rtt", pv.ack_rtt), ("acks_frame", pv.acked_frame),
        ("bytes_in_flight", pv.bytes_in_flight),
        ("duplicate_ack_num", pv.dupack_num),
        ("duplicate_ack_frame", pv.dupack_frame), ("rto", pv.rto),
        ("rto_frame", pv.rto_frame), ("initial_rtt", pv.irtt)) if v is not None}
    if pv.reason:
        values["bytemap"] = list(pv.bytemap)
        values["bytemap_reason"] = pv.reason
    return values


@dataclass
class Result:
    path: str
    info: object = None
    summary: CaptureSummary = field(default_factory=CaptureSummary)
    connections: list = field(default_factory=list)
    records: list = field(default_factory=list)        # application and other typed records
    error: CaptureError | None = None
    # SYNs without ACK (frame, ts, src, sport, dst, dport, seq) sent more than once (the same
    # 4-tuple and sequence number): what SYN-retry chains are made of (repeated_syns; a
    # list of those tuples, or SynColumns, read as one)
    syns: list = field(default_factory=list)
    # retransmitted data segments (conn, seq, len, frame, ts, original frame, original ts)
    # whose connection and sequence number come more than once: what RTO chains are made
    # of (repeated_retrans; a list, or RetransColumns)
    retrans: list = field(default_factory=list)
    # (n, records): the n slowest transactions' timing records when a split run found
    # them in its workers (dissect.analysis.findings.timing.slowest), else None
    slowest_timings: tuple | None = None
    # a streamed run (Engine(stream=True)): ``connections`` and ``records`` are
    # RecordStores (dissect.store) or one-pass iterables, and what the summary learns from
    # them is learnt in the pass that reads them (finish_stream)
    streamed: bool = False


def optional(modname: str, attr: str):
    """``modname.attr`` if that module is installed, else None (optional analyses)."""
    import importlib
    try:
        return getattr(importlib.import_module(modname), attr)
    except (ImportError, AttributeError):
        return None


@contextmanager
def gc_paused():
    """Python's cycle collector off for the duration (restored after). An analysis keeps
    hundreds of thousands of objects alive and makes almost no cyclic garbage (375 objects
    in a 200,000-frame run, measured), yet each collection walks the live ones: on the
    1,000,000-frame benchmark the collector took a quarter of the run. Reference counting
    still frees everything else at once."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Engine:
    def __init__(self, path: str, *, tcp: bool = True, app: bool = True,
                 on_frame: Callable | None = None, stream: bool = False):
        self.path = str(path)
        self.tcp = tcp
        self.app = app
        self.on_frame = on_frame
        # records wait on disk (dissect.store) and the Result's lists are stores, read
        # in one pass by finish_stream: memory does not hold every record of the capture
        self.stream = stream

    def run(self, progress: Callable | None = None) -> Result:
        """One pass over the file. ``progress(frames, bytes)`` is called now and then
        (every few thousand frames) when given."""
        with gc_paused():
            return self._run(progress)

    def _run(self, progress) -> Result:
        res = Result(self.path)
        res.syns = SynColumns()
        res.retrans = RetransColumns()
        transport = new_transport(self.tcp, self.app, store=self.stream)
        reader = CaptureReader(self.path)   # errors opening propagate: nothing decoded yet
        res.info = reader.info
        warnings = reader.warnings
        try:
            info = reader.info
            if USE_SCAN and info.format == "pcap" and not info.compressed and info.interfaces:
                # a plain pcap: the compiled walk over the mapped file (the same frames and
                # decodes as the reader and decode_frame; tests/columns/test_scan.py)
                src = reader._win.src
                found: list = []
                state = [0, False]
                pairs = pcap_pairs(src.buf, src.size, info.byte_order == "<",
                                   info.resolution, info.snaplen,
                                   info.interfaces[0]["linktype"], 0, 0, 1, None, found, 0,
                                   None, state, self.on_frame is not None)
                analyse_frames(pairs, res, transport, self.on_frame, progress=progress,
                               decoded=True)
                warnings = [(f, n) for _i, f, n in found]
                if state[1]:
                    # the walk stopped short: the reader names the damage as it would
                    for _ in reader:
                        pass
            else:
                analyse_frames(reader, res, transport, self.on_frame, progress=progress)
        except CaptureError as e:
            res.error = e
        finally:
            reader.close()
        for frame, name in warnings:
            res.summary.anomaly(name, frame)
        unsupported_error(res, self.path)
        res.syns = repeated_syns(res.syns)
        res.retrans = repeated_retrans(res.retrans)
        if transport is not None:
            res.connections, res.records = transport.finish()
            if self.stream and type(res.records) is not list:
                res.streamed = True
                fold_summary(res.summary, transport)
            else:
                finish_summary(res)
        return res


class _Rows:
    """A list of tuples kept as columns (a subclass's ``_row(i)`` makes row ``i``): read
    by position (a slice gives a list), iterated, and equal to a list of the same tuples."""

    def __iter__(self):
        for i in range(len(self)):
            yield self._row(i)

    def __getitem__(self, i):
        n = len(self)
        if type(i) is slice:
            return [self._row(k) for k in range(*i.indices(n))]
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("row index out of range")
        return self._row(i)

    def __eq__(self, other):
        if not isinstance(other, (list, tuple, _Rows)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"

    @classmethod
    def of(cls, rows):
        """The columns of the tuples ``rows``."""
        out = cls()
        for r in rows:
            out.append(r)
        return out


class SynColumns(_Rows):
    """The SYN list of a run, as columns (32 bytes a SYN instead of a 7-tuple's 150):
    appended with the tuples ``analyse_frames`` makes and read back as them, in order.
    :func:`repeated_syns` keeps the repeated ones, in columns again: a Result's SYNs."""

    def __init__(self):
        from dissect.columns.filearray import FileArray
        # 32 bytes a SYN: a TCP sequence number is 32-bit, a port 16-bit (in a file
        # mapping once large: dissect.columns.filearray)
        self.frame, self.ts, self.seq = FileArray("q"), FileArray("d"), FileArray("I")
        self.ports = FileArray("H")         # sport, dport
        self.addrs = FileArray("I")         # src, dst as indices into _names
        self._names: list = []
        self._index: dict = {}

    def _addr(self, a) -> int:
        i = self._index.get(a)
        if i is None:
            i = self._index[a] = len(self._names)
            self._names.append(a)
        return i

    def append(self, syn: tuple) -> None:
        frame, ts, src, sport, dst, dport, seq = syn
        self.frame.append(frame)
        self.ts.append(ts)
        self.seq.append(seq)
        self.ports.append(sport)
        self.ports.append(dport)
        self.addrs.append(self._addr(src))
        self.addrs.append(self._addr(dst))

    def __len__(self) -> int:
        return len(self.frame)

    def _row(self, i: int) -> tuple:
        names, ports, addrs = self._names, self.ports, self.addrs
        return (self.frame[i], self.ts[i], names[addrs[2 * i]], ports[2 * i],
                names[addrs[2 * i + 1]], ports[2 * i + 1], self.seq[i])

    def repeated(self) -> SynColumns:
        """repeated_syns of these SYNs, keyed by columns (address indices stand for the
        addresses one for one), without a tuple per SYN."""
        # the key, (src, sport, dst, dport, seq) in 32 + 16 + 32 + 16 + 32 bits, is made
        # twice rather than kept; counted in a KeyTable (typed arrays: at the end of a
        # long run's pass, where memory peaks, a dict of key tuples took about 250 bytes
        # a SYN)
        ports, addrs, seq = self.ports, self.addrs, self.seq
        counts = KeyTable()
        for i in range(len(self.frame)):
            counts.incr((((addrs[2 * i] << 16 | ports[2 * i]) << 32 | addrs[2 * i + 1]) << 16
                         | ports[2 * i + 1]) << 32 | seq[i])
        out = SynColumns()
        for i in range(len(self.frame)):
            if counts.get((((addrs[2 * i] << 16 | ports[2 * i]) << 32 | addrs[2 * i + 1])
                           << 16 | ports[2 * i + 1]) << 32 | seq[i])[0] > 1:
                out.append(self._row(i))
        return out


class RetransColumns(_Rows):
    """The retransmission list of a run, as columns (about 60 bytes a retransmission
    instead of a 7-tuple's 200): appended with the tuples ``analyse_frames`` makes and
    read back as them, in order (exactly: the original frame and time may be None).
    :func:`repeated_retrans` keeps the repeated ones, in columns again: a Result's
    retransmissions."""

    def __init__(self):
        from dissect.columns.compact import Column
        # (in file mappings once large: dissect.columns.filearray)
        self.conn, self.ofr, self.ots = Column("q", True), Column("q", True), Column("d", True)
        self.seq, self.plen, self.frame = Column("q", True), Column("q", True), Column("q", True)
        self.ts = Column("d", True)

    def append(self, r: tuple) -> None:
        conn, seq, plen, frame, ts, ofr, ots = r
        self.conn.append(conn)
        self.seq.append(seq)
        self.plen.append(plen)
        self.frame.append(frame)
        self.ts.append(ts)
        self.ofr.append(ofr)
        self.ots.append(ots)

    def __len__(self) -> int:
        return len(self.ts)

    def _row(self, i: int) -> tuple:
        return (self.conn[i], self.seq[i], self.plen[i], self.frame[i], self.ts[i],
                self.ofr[i], self.ots[i])

    def repeated(self) -> RetransColumns:
        """repeated_retrans of these retransmissions, without a tuple per one: (conn, seq)
        packed into one int of 128 bits while both are in their arrays (as SynColumns)."""
        conn, seq = self.conn, self.seq
        if conn.irregular or seq.irregular:  # an id or number not in the arrays
            return RetransColumns.of(
                _repeated(self.__iter__, lambda: ((r[0], r[1]) for r in self)))
        ca, sa = conn.a, seq.a
        counts = KeyTable()
        for i in range(len(ca)):
            counts.incr((ca[i] + _HALF64) * _TWO64 + sa[i] + _HALF64)
        out = RetransColumns()
        for i in range(len(ca)):
            if counts.get((ca[i] + _HALF64) * _TWO64 + sa[i] + _HALF64)[0] > 1:
                out.append(self._row(i))
        return out


# signed 64-bit values moved to 0 .. 2**64 - 1, and the high half of a 128-bit key
_HALF64 = 1 << 63
_TWO64 = 1 << 64


def repeated_syns(syns):
    """The SYNs of ``syns`` (a list, or SynColumns) whose 4-tuple and sequence number come
    more than once, in their order (a list, or SynColumns): a SYN-retry chain is a run of
    those (dissect.analysis.backoff_chains.syn_chains skips the others), and most
    connections send one SYN, so keeping only these saves about 230 bytes per connection.
    Exact per shard of a split run too, since the shards split the capture by 4-tuple."""
    if type(syns) is SynColumns:
        return syns.repeated()
    return _repeated(lambda: iter(syns), lambda: (s[2:] for s in syns))


def repeated_retrans(retrans):
    """The retransmissions of ``retrans`` (a list, or RetransColumns) whose connection and
    sequence number come more than once, in their order (a list, or RetransColumns): all
    an RTO chain is made of
    (dissect.analysis.backoff_chains.rto_chains: a segment retransmitted twice or more).
    Exact per shard of a split run too (the shards split the capture by connection)."""
    if type(retrans) is RetransColumns:
        return retrans.repeated()
    return _repeated(lambda: iter(retrans), lambda: ((r[0], r[1]) for r in retrans))


def _repeated(rows, keys) -> list:
    """The rows (``rows()``: an iterator over them) whose key (``keys()``: an iterator over
    them, aligned) comes more than once, in order (the lists' way; the columns count
    their packed keys in a KeyTable themselves)."""
    seen: dict = {}
    for k in keys():
        seen[k] = seen.get(k, 0) + 1
    return [r for r, k in zip(rows(), keys()) if seen[k] > 1]


# Frames between two calls of a progress callback.
PROGRESS_EVERY = 8192


def new_transport(tcp: bool = True, app: bool = True, tag: bool = False,
                  store: bool = False):
    """The transport analyzer (None when TCP analysis is off or not installed)."""
    if not tcp:
        return None
    TA = optional("dissect.analysis.transport", "TransportAnalyzer")
    return TA(app=app, tag=tag, store=store) if TA is not None else None


def analyse_frames(frames, res: Result, transport, on_frame=None, progress=None,
                   decoded: bool = False) -> None:
    """The per-frame work of a run: fast decode, summary, transport analysis, SYN and
    retransmission lists, ``on_frame``. ``frames`` yields Frames in file order (or one
    worker's share of them, in file order); with ``decoded``, (Frame, Decoded) pairs."""
    summary = res.summary
    summary.fold_hook = _fold_hook(transport)
    try:
        _analyse(frames, res, summary, transport, on_frame, progress, decoded)
    finally:
        summary.fold_hook = None


def _fold_hook(transport):
    """What the summary calls now and then during a run (CaptureSummary.fold_hook): the
    packet/byte cells of TCP connections that are dormant (over, and quiet for a while)
    and whose application protocol is known are folded into that protocol's sums. A
    dormant connection that a later segment wakes gets a new cell, folded later with the
    same protocol (the dispatcher names a connection's protocol once), so the sums are
    the same as folding at the end; a dormant connection without a protocol has its cell
    parked as columns (FTP data linking may name one at the end)."""
    if transport is None or transport.app is None:
        return None
    conns, protocol_of = transport.tcp.connections, transport.protocol_of

    def app_if_done(cid):
        if type(cid) is int and 0 <= cid < len(conns) and conns[cid] is None:
            return protocol_of(cid) or ""
        return None

    def fold(summary) -> None:
        summary.fold_conns(app_if_done)
    return fold


def _analyse(frames, res: Result, summary, transport, on_frame, progress,
             decoded: bool) -> None:
    empty = Verdict()
    syns = res.syns
    retrans = res.retrans
    for item in frames:
        if decoded:
            fr, d = item
        else:
            fr = item
            d = decode_frame(fr)
        summary.add(fr, d)
        v = empty
        chain, _src, _dst, t, _anomalies, _vlan = _tuples.view(d)
        if transport is not None and t is not None:
            v = transport.feed(t)
            flags = v.flags
            if flags:
                summary.flags(flags)
                if "retransmission" in flags and v.values and t.plen:
                    val = v.values
                    retrans.append((v.conn, t.seq, t.plen, t.frame, t.ts,
                                    val.get("rto_frame"),
                                    t.ts - val["rto"] if val.get("rto") else None))
            summary.add_conn(chain, v.conn, _tuples.view(fr)[3])   # its wire length
            # a SYN without ACK (the segment's flags, item 8)
            if type(t) is TcpSegment and _tuples.view(t)[8] & 0x12 == 0x02:
                syns.append((t.frame, t.ts, t.src, t.sport, t.dst, t.dport, t.seq))
        if on_frame is not None:
            on_frame(fr, d, v)
        if progress is not None and not _tuples.view(fr)[0] % PROGRESS_EVERY:
            progress(summary.frames, summary.bytes_captured + 16 * summary.frames)


def unsupported_error(res: Result, path: str) -> None:
    summary = res.summary
    unsupported = sorted(k for k in summary.anomalies if k.startswith("unsupported-linktype-"))
    if unsupported and res.error is None:
        lts = ", ".join(k.rsplit("-", 1)[1] for k in unsupported)
        n = sum(summary.anomalies[k][0] for k in unsupported)
        res.error = UnsupportedError(
            f"link type {lts} is not supported: {n} frame(s) shown as raw data",
            path=path, frame=summary.anomalies[unsupported[0]][1][0])


def fold_summary(summary: CaptureSummary, transport) -> None:
    """A streamed run's summary, once its pass is over: every connection's application
    protocol is final then (the run that would change one, FTP data linking, gives
    lists), so the per-connection cells are folded into their application's sums now
    instead of being kept, and merged, until the records are read."""
    summary.fold_apps(transport.protocol_of if transport.app is not None else None)


class SummaryObserver(Observer):
    """What the summary learns once connections and records are known: each connection's
    application protocol (unless the summary has folded its per-connection cells
    already: :func:`fold_summary`), and the application parsers' anomalies (an
    observer)."""

    def __init__(self, summary: CaptureSummary):
        self.summary = summary
        self.apps: dict = {}

    def start(self, res) -> None:
        self._want = self.summary.has_conn_cells()

    def conn(self, c: dict) -> None:
        if not self._want:
            return
        app = c.get("app")
        if app:
            self.apps[c["id"]] = app

    def record(self, r: dict) -> None:
        if r.get("type") == "anomaly":
            self.summary.anomaly(f"{r.get('protocol')}:{r.get('name')}", r.get("frame"))

    def finish(self, res) -> None:
        self.summary.apps = self.apps


def finish_summary(res: Result) -> None:
    """What the summary learns once connections and records are known."""
    run_observer(res, SummaryObserver(res.summary))


def finish_stream(res: Result, observers: list) -> list:
    """The one pass over a run's records: ``observers`` (dissect.analysis.observe), and the
    summary's own when the run was streamed; each observer's result."""
    if not res.streamed:
        return observe(res, observers)
    out = observe(res, [SummaryObserver(res.summary)] + list(observers))[1:]
    res.streamed = False
    return out
