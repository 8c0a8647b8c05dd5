"""TCP connection tracking and sequence analysis, sans-I/O.

:class:`TcpAnalyzer` takes :class:`~dissect.columns.segment.TcpSegment` tuples in frame order
and returns one :class:`PacketVerdict` per segment:

* the connection id, numbered exactly like tshark's ``tcp.stream`` (a new id for every new
  conversation, and for a SYN that reuses the ports of a known connection with another ISN);
* the analysis flags with tshark's ``tcp.analysis.*`` names (``_`` written ``-``), computed by
  the same per-direction state machine as Wireshark 4.0 (``tcp_analyze_sequence_number`` in
  ``epan/dissectors/packet-tcp.c``): the same state (nextseq, maxseqtobeacked, lastack,
  window, window scale with its "unknown" and "no scaling" cases, duplicate-ACK counter,
  unacked-segment list), the same order of checks and the same precedence;
* the values tshark shows beside them (ACK RTT and the frame acked, bytes in flight,
  duplicate-ACK number and the original frame, RTO for retransmissions, initial RTT);
* a second verdict from a byte map of what each side really sent and what the peer
  acknowledged or SACKed (tcptrace-style), given with a reason wherever it disagrees with
  Wireshark's heuristics, and capture artefacts named as such (``duplicate-frame``,
  ``capture-loss``).

:meth:`TcpAnalyzer.finish` returns one :class:`Connection` per connection: client and server,
handshake frames and iRTT, negotiated options, FIN/RST, Zeek's ``conn_state`` and ``history``,
packet/byte counts and missed bytes. ``Connection.record()`` is the JSON Lines shape.

The hot path keeps per-direction state in ``__slots__`` objects and returns NamedTuples; the
flag names of a verdict come from a small cache keyed by the flag bits.
"""

from __future__ import annotations

import pickle
from bisect import bisect_left
from socket import AF_INET as _AF_INET
from socket import AF_INET6 as _AF_INET6
from socket import inet_pton as _inet_pton
from typing import NamedTuple

import dissect.numeric as _numeric
import dissect.tuples as _tuples
from dissect.columns.compact import KeyTable
from dissect.columns.filearray import FileArray
from dissect.columns.segment import TcpSegment
from dissect.spill import Spill

# --- TCP header flag bits -------------------------------------------------------------------
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_SFR = SYN | FIN | RST

M32 = 0xFFFFFFFF
HALF = 0x80000000

# --- Wireshark's analysis flag bits (TCP_A_* in packet-tcp.h) --------------------------------
A_RETRANSMISSION = 0x0001
A_LOST_PACKET = 0x0002
A_ACK_LOST_PACKET = 0x0004
A_KEEP_ALIVE = 0x0008
A_DUPLICATE_ACK = 0x0010
A_ZERO_WINDOW = 0x0020
A_ZERO_WINDOW_PROBE = 0x0040
A_ZERO_WINDOW_PROBE_ACK = 0x0080
A_KEEP_ALIVE_ACK = 0x0100
A_OUT_OF_ORDER = 0x0200
A_FAST_RETRANSMISSION = 0x0400
A_WINDOW_UPDATE = 0x0800
A_WINDOW_FULL = 0x1000
A_REUSED_PORTS = 0x2000
A_SPURIOUS_RETRANSMISSION = 0x4000

# Which tshark expert fields each bit shows as, in the order tshark's field list has them.
# A fast or spurious retransmission also shows the plain retransmission expert.
_FLAG_NAMES: tuple[tuple[int, tuple[str, ...]], ...] = (
    (A_RETRANSMISSION, ("retransmission",)),
    (A_FAST_RETRANSMISSION, ("fast-retransmission", "retransmission")),
    (A_SPURIOUS_RETRANSMISSION, ("spurious-retransmission", "retransmission")),
    (A_OUT_OF_ORDER, ("out-of-order",)),
    (A_REUSED_PORTS, ("reused-ports",)),
    (A_LOST_PACKET, ("lost-segment",)),
    (A_ACK_LOST_PACKET, ("ack-lost-segment",)),
    (A_WINDOW_UPDATE, ("window-update",)),
    (A_WINDOW_FULL, ("window-full",)),
    (A_KEEP_ALIVE, ("keep-alive",)),
    (A_KEEP_ALIVE_ACK, ("keep-alive-ack",)),
    (A_DUPLICATE_ACK, ("duplicate-ack",)),
    (A_ZERO_WINDOW_PROBE, ("zero-window-probe",)),
    (A_ZERO_WINDOW, ("zero-window",)),
    (A_ZERO_WINDOW_PROBE_ACK, ("zero-window-probe-ack",)),
)
FLAG_NAMES: tuple[str, ...] = (
    "retransmission", "fast-retransmission", "spurious-retransmission", "out-of-order",
    "lost-segment", "ack-lost-segment", "duplicate-ack", "zero-window", "zero-window-probe",
    "zero-window-probe-ack", "window-full", "window-update", "keep-alive", "keep-alive-ack",
    "reused-ports")
_names_cache: dict[int, tuple[str, ...]] = {0: ()}


def flag_names(bits: int) -> tuple[str, ...]:
    """tshark expert names for a set of TCP_A_* bits (sorted, each once)."""
    names = _names_cache.get(bits)
    if names is None:
        s: set[str] = set()
        for bit, ns in _FLAG_NAMES:
            if bits & bit:
                s.update(ns)
        names = _names_cache[bits] = tuple(sorted(s))
    return names


# --- Named constants from Wireshark's defaults ----------------------------------------------
# packet-tcp.c keeps at most this many unacknowledged segments per direction (so a capture
# that misses the ACKs cannot grow the list without bound); past it, segments are not listed.
TCP_MAX_UNACKED_SEGMENTS = 10000
# A segment that does not advance the sequence within this time after a duplicate-ACK run
# (>= 2 dup ACKs) for exactly its sequence number is a fast retransmission (Wireshark: 20 ms).
FAST_RETRANSMISSION_WINDOW_S = 0.020
# Out-of-order threshold when the initial RTT is unknown (Wireshark: 3 ms); with an iRTT,
# the iRTT itself is the threshold.
OUT_OF_ORDER_DEFAULT_S = 0.003
# tshark ignores a bytes-in-flight value at or above this (it is a wrapped subtraction).
BIF_SANE_LIMIT = 2000000000

# --- Beyond Wireshark -----------------------------------------------------------------------
# Two identical segments (same seq, ack, window, flags, payload) of one direction closer than
# this are one packet captured twice (both ends, or a span port and a host), not a
# retransmission: a real retransmission waits for an RTO (>= 200 ms on Linux), a tail-loss
# probe (>= 10 ms) or three duplicate ACKs, none of which can come within 2 ms twice with
# nothing in between.
DUPLICATE_FRAME_MAX_GAP_S = 0.002
# SYN/FIN marks of one direction kept as a tuple up to this many (a set costs 216 bytes
# per direction for what is nearly always one SYN and one FIN); a set past it.
CTL_MARKS_AS_TUPLE = 8
# Zeek logs repeated history letters (T, W, G) on a log-10 scale: at 1, 10, 100, ... events.
HISTORY_REPEATED = "TWG"


_FAST_NS = round(FAST_RETRANSMISSION_WINDOW_S * 1e9)
_OOO_NS = round(OUT_OF_ORDER_DEFAULT_S * 1e9)


# Epoch seconds as float64 carry ~0.24 us of rounding at today's dates, so the difference of
# two microsecond timestamps can be off by a few hundred ns. Wireshark subtracts exact
# integers; to decide the same "<" at equal-time boundaries, a difference within this of a
# whole microsecond is taken as that microsecond (nanosecond captures lose nothing that
# float64 epoch times had not lost already).
_US_SNAP_NS = 300


def _ns(seconds: float) -> int:
    return _numeric.snap_ns(seconds, _US_SNAP_NS)


def seq_gt(a: int, b: int) -> bool:
    """Wireshark's GT_SEQ: a after b in 32-bit sequence space."""
    return ((b - a) & M32) >= HALF


def seq_le(a: int, b: int) -> bool:
    d = (a - b) & M32
    return d == 0 or d >= HALF


class PacketVerdict(NamedTuple):
    """What the analysis says about one TCP frame."""
    frame: int
    conn: int                   # connection id (tshark's tcp.stream)
    direction: int              # 0 = client -> server, 1 = server -> client
    flags: tuple[str, ...]      # tshark tcp.analysis.* names (with '-')
    ack_rtt: float | None       # tcp.analysis.ack_rtt
    acked_frame: int | None     # tcp.analysis.acks_frame
    bytes_in_flight: int | None  # tcp.analysis.bytes_in_flight
    dupack_num: int | None      # tcp.analysis.duplicate_ack_num
    dupack_frame: int | None    # tcp.analysis.duplicate_ack_frame
    rto: float | None           # tcp.analysis.rto (time since the original segment)
    rto_frame: int | None       # tcp.analysis.rto_frame
    irtt: float | None          # tcp.analysis.initial_rtt as tshark shows it on this frame
    bytemap: tuple[str, ...]    # byte-map / SACK verdict (see ByteMapVerdict names)
    reason: str | None          # why bytemap disagrees with flags, when it does


# Names the byte-map verdict uses.
BM_RETRANSMISSION = "retransmission"          # bytes really sent before, not yet acked
BM_SPURIOUS = "spurious-retransmission"       # bytes already acked or SACKed by the peer
BM_OUT_OF_ORDER = "out-of-order"              # fills a hole soon, nothing says it was lost
BM_LOST_UPSTREAM = "retransmission-of-unseen"  # fills a hole the peer had reported (dup ACKs /
                                              # SACK above it): the original was lost before
                                              # the capture point
BM_GAP = "gap"                                # starts beyond everything sent so far
BM_DUPLICATE_FRAME = "duplicate-frame"        # the same packet captured twice
BM_CAPTURE_LOSS = "capture-loss"              # acks bytes the capture never saw


class _Dir:
    """Per-direction state (Wireshark's tcp_flow_t + tcp_analyze_seq_info), plus records."""
    __slots__ = (
        # Wireshark state
        "base_seq", "base_set", "win_scale", "window", "is_first_ack", "valid_bif",
        "lastsegflags", "nextseq", "nextseqframe", "nextseqtime", "maxseqtobeacked",
        "lastack", "lastacktime", "lastnondupack", "dupacknum", "segs", "sack",
        # record keeping
        "ep", "packets", "bytes", "mss", "wscale_opt", "sack_perm", "timestamps",
        "fin_frame", "rst_frame", "syn_frame", "retrans", "zwin",
        # byte map (unwrapped offsets from the first sequence number seen)
        "bm_base", "bm_lastraw", "bm_lastabs", "bm_iv", "bm_high", "bm_acked", "bm_sacked",
        "bm_lseq", "bm_lack", "bm_lwin", "bm_lflags", "bm_lplen", "bm_lpayload", "bm_lts",
        "bm_lnpk", "bm_dupacks", "bm_isn_set", "hist_counts", "ctl_seen",
    )

    def __init__(self, ep):
        self.base_seq = 0
        self.base_set = False
        self.win_scale = -1          # -1 unknown, -2 no scaling, else shift count
        self.window = M32            # Wireshark starts with G_MAXUINT32
        self.is_first_ack = False
        self.valid_bif = True
        self.lastsegflags = 0
        self.nextseq = 0
        self.nextseqframe = 0
        self.nextseqtime = 0.0
        self.maxseqtobeacked = 0
        self.lastack = 0
        self.lastacktime = 0.0
        self.lastnondupack = 0
        self.dupacknum = 0
        self.segs: list = []         # [seq, nextseq, frame, ts], oldest first
        self.sack: tuple = ()        # SACK blocks of this direction's last segment
        self.ep = ep
        self.packets = 0
        self.bytes = 0
        self.mss = None
        self.wscale_opt = None
        self.sack_perm = False
        self.timestamps = False
        self.fin_frame = None
        self.rst_frame = None
        self.syn_frame = None
        self.retrans = 0
        self.zwin = 0
        self.bm_base = None
        self.bm_lastraw = 0
        self.bm_lastabs = 0
        self.bm_iv: list = []        # merged [start, end) intervals of payload sent
        self.bm_high = None          # end of the highest payload byte sent
        self.bm_acked = None         # highest cumulative ACK from the peer (unwrapped)
        self.bm_sacked: list = []    # SACK blocks from the peer (unwrapped), merged
        # the last segment of this direction (seq, ack, win, flags, payload length, payload,
        # time, and its number among the connection's packets; -1: none yet)
        self.bm_lseq = self.bm_lack = self.bm_lwin = self.bm_lflags = self.bm_lplen = 0
        self.bm_lpayload = b""
        self.bm_lts = 0.0
        self.bm_lnpk = -1
        self.bm_dupacks = 0          # dup ACKs from the peer for the current bm_acked
        self.bm_isn_set = False
        self.hist_counts: dict = {}
        self.ctl_seen = None   # (SYN|FIN bit, seq) of payload-less SYNs/FINs sent: a tuple
                               # while short (usually a SYN and a FIN), a set past
                               # CTL_MARKS_AS_TUPLE

    def unwrap(self, raw: int) -> int:
        d = (raw - self.bm_lastraw) & M32
        if d >= HALF:
            d -= 0x100000000
        a = self.bm_lastabs + d
        self.bm_lastraw = raw
        self.bm_lastabs = a
        return a

    def rel(self, raw: int) -> int:
        """Unwrapped offset of raw without moving the reference point."""
        d = (raw - self.bm_lastraw) & M32
        if d >= HALF:
            d -= 0x100000000
        return self.bm_lastabs + d


class Connection:
    """One TCP connection (one tcp.stream)."""
    __slots__ = ("id", "client", "server", "cdir", "sdir", "flipped", "history",
                 "first_frame", "last_frame", "start_ts", "last_ts", "irtt", "ts_mru_syn",
                 "hs_syn", "hs_synack", "hs_ack", "d_a", "d_b", "key", "ostate", "rstate",
                 "reused", "frames", "npackets")

    def __init__(self, cid: int, key, first: TcpSegment):
        self.id = cid
        self.key = key
        self.first_frame = first.frame
        self.last_frame = first.frame
        self.start_ts = first.ts
        self.last_ts = first.ts
        self.irtt: float | None = None
        self.ts_mru_syn: float | None = None
        self.hs_syn = self.hs_synack = self.hs_ack = None
        a = (first.src, first.sport)
        b = (first.dst, first.dport)
        da, db = _Dir(a), _Dir(b)
        # the directions by first sender (a) and first receiver (b); a connection from an
        # endpoint to itself has one direction
        self.d_a = da
        self.d_b = db if a != b else da
        fl = first.flags
        flipped = False
        if fl & SYN:
            client_is_a = not (fl & ACK)
            flipped = not client_is_a
        elif first.sport != first.dport:
            # Handshake not captured: the lower port is the service; the first sender is
            # the client when ports tie. Zeek writes '^' when this flips the first sender.
            client_is_a = first.sport > first.dport
            flipped = not client_is_a
        else:
            client_is_a = True
        self.cdir, self.sdir = (da, db) if client_is_a else (db, da)
        self.client, self.server = self.cdir.ep, self.sdir.ep
        self.flipped = flipped
        self.history: list[str] = ["^"] if flipped else []
        self.ostate = self.rstate = _INACTIVE
        self.reused = False
        self.frames: list[int] | None = None
        self.npackets = 0

    # -- Zeek vocabulary ----------------------------------------------------------------
    def _hist(self, d: _Dir, letter: str) -> None:
        counts = d.hist_counts
        if letter not in HISTORY_REPEATED:
            # logged once: only whether it was seen is kept
            if letter not in counts:
                counts[letter] = 1
                self.history.append(letter if d is self.cdir else letter.lower())
            return
        c = counts.get(letter, 0) + 1
        counts[letter] = c
        # 1, 10, 100, ...: log once per power of ten
        x = c
        while x % 10 == 0:
            x //= 10
        if x == 1:
            self.history.append(letter if d is self.cdir else letter.lower())

    @property
    def conn_state(self) -> str:
        return _zeek_conn_state(self.ostate, self.rstate, "".join(self.history),
                                self.cdir.bytes, self.sdir.bytes)

    def missed_bytes(self) -> int:
        return _missed(self.cdir) + _missed(self.sdir)

    def record(self) -> dict:
        """The connection's record (JSON Lines shape; keys in CONN_KEYS order)."""
        return _unwrap_one(self.record_values())

    def record_values(self, app=None) -> tuple:
        """record()'s values in CONN_KEYS order, its client, packets, bytes, fin and
        handshake as tuples of theirs: what :func:`wrap_records` makes of the record (a
        record store's item), made without the dicts. ``app``: the record's ``app``."""
        c, s = self.cdir, self.sdir
        hs = None
        if self.hs_syn is not None or self.hs_synack is not None:
            hs = (self.hs_syn, self.hs_synack, self.hs_ack, self.irtt)
        ip, port = self.server
        return ("connection", self.id, "tcp", (self.client[0], self.client[1]),
                _shared(("server", ip, port)), self.conn_state, "".join(self.history), hs,
                self.first_frame, self.last_frame, self.start_ts,
                self.last_ts - self.start_ts, (c.packets, s.packets), (c.bytes, s.bytes),
                c.retrans + s.retrans, _shared(("mss", c.mss, s.mss)),
                _shared(("wscale", c.wscale_opt, s.wscale_opt)),
                c.sack_perm and s.sack_perm, c.timestamps and s.timestamps,
                (c.fin_frame, s.fin_frame), _shared(("rst", c.rst_frame, s.rst_frame)),
                self.missed_bytes(), self.reused, app)


class ConnRecord:
    """Holder of a TCP connection record. Instances of one class whose attributes are set
    in the same order share one table of keys, and the ``__dict__`` of such an instance is
    an ordinary dict that keeps only its values (CPython's key-sharing dictionaries, PEP
    412): about 300 bytes for the 24 keys of a connection record instead of 840. The
    per-connection sub-records are made the same way (:class:`_Endpoint`, :class:`_Sides`,
    :class:`_Handshake`: about 100 instead of 190 bytes each). Split runs pickle the
    records as tuples of values (:func:`wrap_records`) and rebuild them the same way in
    the parent."""


class _Endpoint:
    """Holder of a connection record's ``client``: ``{"ip", "port"}`` (see ConnRecord)."""


class _Sides:
    """Holder of a per-direction sub-record: ``{"client", "server"}`` (see ConnRecord)."""


class _Handshake:
    """Holder of a connection record's ``handshake`` (see ConnRecord)."""


def _endpoint(ip, port) -> dict:
    o = _Endpoint()
    o.ip = ip
    o.port = port
    return o.__dict__


def _sides(client, server) -> dict:
    o = _Sides()
    o.client = client
    o.server = server
    return o.__dict__


def _handshake(syn, syn_ack, ack, rtt_s) -> dict:
    h = _Handshake()
    h.syn = syn
    h.syn_ack = syn_ack
    h.ack = ack
    h.rtt_s = rtt_s
    return h.__dict__


# The keys of a TCP connection record in record()'s order, and the per-connection
# sub-records among them (their place, their keys, how one is made from its values).
CONN_KEYS = ("type", "id", "proto", "client", "server", "state", "history", "handshake",
             "first_frame", "last_frame", "start_ts", "duration_s", "packets", "bytes",
             "retransmissions", "mss", "wscale", "sack_perm", "timestamps", "fin", "rst",
             "missed_bytes", "reused_ports", "app")
_SUBRECORDS = tuple((CONN_KEYS.index(k), keys, make) for k, keys, make in (
    ("client", ("ip", "port"), _endpoint),
    ("packets", ("client", "server"), _sides),
    ("bytes", ("client", "server"), _sides),
    ("fin", ("client", "server"), _sides),
    ("handshake", ("syn", "syn_ack", "ack", "rtt_s"), _handshake)))


def wrap_records(conns: list) -> list:
    """Connection records for pickling: a TCP connection record with record()'s keys as the
    tuple of its values (its per-connection sub-records as tuples of theirs), which pickles
    faster than dicts and is rebuilt as key-sharing dicts by :func:`unwrap_records`; other
    records as they are. The records given are not changed."""
    out = []
    for d in conns:
        if type(d) is dict and len(d) == len(CONN_KEYS) and tuple(d) == CONN_KEYS:
            vals = list(d.values())
            for i, keys, _make in _SUBRECORDS:
                sub = vals[i]
                if type(sub) is dict and tuple(sub) == keys:
                    vals[i] = tuple(sub.values())
            d = tuple(vals)
        out.append(d)
    return out


def unwrap_records(items: list) -> list:
    """The records :func:`wrap_records` gave, as dicts again (connection records and their
    sub-records sharing their keys, as record() makes them)."""
    return [_unwrap_one(x) if type(x) is tuple else x for x in items]


def _unwrap_one(x: tuple) -> dict:
    """One connection record from its wrapped tuple: the __dict__ of a ConnRecord (see
    there), its sub-records made by their holders."""
    vals = list(x)
    for i, _keys, make in _SUBRECORDS:
        sub = vals[i]
        if type(sub) is tuple:
            vals[i] = make(*sub)
    o = ConnRecord()
    d = o.__dict__
    d.update(zip(CONN_KEYS, vals))
    return d


_APP = CONN_KEYS.index("app")
_FIRST_FRAME = CONN_KEYS.index("first_frame")


def unwrap_plain(items: list) -> list:
    """:func:`unwrap_records` made as plain dicts: the same records (keys, order, values),
    made several times faster, in about three times the memory. For records read once and
    let go (a record store's, read by one pass of observers); records that are kept are
    made by unwrap_records."""
    return [_plain(x) if type(x) is tuple else x for x in items]


def _plain(x: tuple) -> dict:
    (rtype, cid, proto, client, server, state, history, hs, first, last, start, dur, pk, by,
     retrans, mss, wscale, sack, tsopt, fin, rst, missed, reused, app) = x
    if type(client) is tuple:
        client = {"ip": client[0], "port": client[1]}
    if type(hs) is tuple:
        hs = {"syn": hs[0], "syn_ack": hs[1], "ack": hs[2], "rtt_s": hs[3]}
    if type(pk) is tuple:
        pk = {"client": pk[0], "server": pk[1]}
    if type(by) is tuple:
        by = {"client": by[0], "server": by[1]}
    if type(fin) is tuple:
        fin = {"client": fin[0], "server": fin[1]}
    return {"type": rtype, "id": cid, "proto": proto, "client": client, "server": server,
            "state": state, "history": history, "handshake": hs, "first_frame": first,
            "last_frame": last, "start_ts": start, "duration_s": dur, "packets": pk,
            "bytes": by, "retransmissions": retrans, "mss": mss, "wscale": wscale,
            "sack_perm": sack, "timestamps": tsopt, "fin": fin, "rst": rst,
            "missed_bytes": missed, "reused_ports": reused, "app": app}


def _conn_store():
    from dissect.store import RecordStore
    return RecordStore(wrap_records, unwrap_plain, prefix="dissect-conns-")


# Equal sub-records that most connections share (the server's address, MSS, window scale,
# no RST) are one object: a capture has tens of thousands of connection records, and these
# sub-records are never changed once made. Bounded, for captures where they do not repeat.
_SHARED: dict = {}
MAX_SHARED = 4096


def _shared(key: tuple) -> dict:
    """The sub-record ``key`` names: ``("server", ip, port)``, or ``(name, client value,
    server value)`` for ``mss``, ``wscale`` and ``rst`` (whose ``by`` it derives)."""
    v = _SHARED.get(key)
    if v is not None:
        return v
    kind, a, b = key
    if kind == "server":
        v = {"ip": a, "port": b}
    elif kind == "rst":
        v = {"client": a, "server": b,
             "by": ("client" if a is not None and (b is None or a < b) else
                    "server" if b is not None else None)}
    else:
        v = {"client": a, "server": b}
    if len(_SHARED) < MAX_SHARED:
        _SHARED[key] = v
    return v


# --- Zeek endpoint states and conn_state ----------------------------------------------------
_INACTIVE, _SYN_SENT, _SYN_ACK_SENT, _PARTIAL, _ESTABLISHED, _CLOSED, _RESET = range(7)


def _zeek_conn_state(os_: int, rs: int, history: str, obytes: int, rbytes: int) -> str:
    """Zeek's conn_state from the two endpoint states (base/protocols/conn/main.zeek)."""
    o_inactive = os_ in (_INACTIVE, _PARTIAL)
    r_inactive = rs in (_INACTIVE, _PARTIAL)
    if rs == _RESET:
        if os_ in (_SYN_SENT, _SYN_ACK_SENT) or (os_ == _RESET and obytes == 0 and rbytes == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == _RESET:
        if r_inactive:
            h = history.lstrip("^")
            if h.startswith("S") and "R" in h and not any(ch in h[:h.index("R")]
                                                           for ch in "HAFGIQ"):
                return "RSTOS0"
            return "OTH"
        return "RSTO"
    if rs == _CLOSED and os_ == _CLOSED:
        return "SF"
    if os_ == _CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == _CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == _SYN_SENT and rs == _INACTIVE:
        return "S0"
    if os_ == _ESTABLISHED and rs == _ESTABLISHED:
        return "S1"
    return "OTH"


def _missed(d: _Dir) -> int:
    """Bytes of this direction never captured: holes below max(sent, acked by the peer)."""
    if d.bm_high is None and d.bm_acked is None:
        return 0
    iv = d.bm_iv
    if not iv:
        return 0
    start = iv[0][0]
    end = max(d.bm_high or start, d.bm_acked or start)
    if d.fin_frame is not None and d.bm_acked is not None and d.bm_acked == end and \
            (d.bm_high is None or d.bm_acked > d.bm_high):
        end -= 1     # the ACK of the FIN counts one sequence number that is not data
    covered = 0
    for a, b in iv:
        if a >= end:
            break
        covered += min(b, end) - a
    return max(0, end - start - covered)


def _iv_add(iv: list, a: int, b: int) -> None:
    """Insert [a, b) into a sorted list of disjoint [start, end) intervals, merging."""
    if not iv:
        iv.append([a, b])
        return
    last = iv[-1]
    # the last interval's ends as plain integers (C integers when compiled)
    ls = last[0]
    le = last[1]
    if a > le:
        iv.append([a, b])
        return
    if a >= ls:
        if b > le:
            last[1] = b
        return
    i = bisect_left(iv, [a, a])
    if i > 0 and iv[i - 1][1] >= a:
        i -= 1
    j = i
    lo, hi = a, b
    while j < len(iv) and iv[j][0] <= hi:
        lo = min(lo, iv[j][0])
        hi = max(hi, iv[j][1])
        j += 1
    iv[i:j] = [[lo, hi]]


def _iv_covered(iv: list, a: int, b: int) -> int:
    """How many bytes of [a, b) the intervals cover."""
    if not iv:
        return 0
    ls = iv[0][0]
    le = iv[-1][1]
    if b <= ls or a >= le:
        return 0
    i = bisect_left(iv, [a, a])
    if i > 0:
        i -= 1
    n = 0
    while i < len(iv) and iv[i][0] < b:
        s, e = iv[i]
        lo = s if s > a else a
        hi = e if e < b else b
        if hi > lo:
            n += hi - lo
        i += 1
    return n


# A connection that is over (a RST, or a FIN each way) and has had no segment for this many
# seconds of capture time goes "dormant": its record is made then, and its state is kept
# pickled in a spill file (dissect.spill: page cache, not the process's memory) instead of
# as live objects, to be brought back unchanged if another segment of it comes. Memory
# follows the connections of the last seconds plus a record and a small index entry per
# connection, and the analysis is exactly the same (tests/analysis/test_tcp_dormant.py runs
# it with 0 s).
DORMANT_AFTER_S = 10.0
# Segments between two looks for connections to put to sleep (a power of two).
DORMANT_SWEEP_EVERY = 4096


# Connections pickled together (a quarter cheaper and a sixth smaller than one by one;
# waking one unpickles its batch).
DORMANT_BATCH = 64
# a dormant slot's index in its batch: its low bits
_DORMANT_SLOT = 6
_DORMANT_INDEX = (1 << _DORMANT_SLOT) - 1
assert DORMANT_BATCH <= 1 << _DORMANT_SLOT


# A dormant connection's entry (its id, which end of its key sent first, each direction's
# ISN if one was seen), packed into the two ints a KeyTable holds: ``id << 3 | end << 2 |
# has ISN a << 1 | has ISN b`` and ``ISN a << 32 | ISN b`` (ISNs are 32-bit).
_ISN_MASK = (1 << 32) - 1


def _pack_dormant(cid: int, end: int, isn_a: int, isn_b: int) -> tuple:
    return ((cid << 3 | end << 2 | (isn_a >= 0) << 1 | (isn_b >= 0)),
            (isn_a if isn_a >= 0 else 0) << 32 | (isn_b if isn_b >= 0 else 0))


def _ip_int(addr: str) -> int:
    """The address text ``addr`` as an integer (IPv4 below 2**32, IPv6 with bit 128 set,
    so that the two never meet); ValueError when it is neither. Cached (a capture's
    connections share few addresses)."""
    v = _IP_INTS.get(addr)
    if v is None:
        if ":" in addr:
            v = int.from_bytes(_inet_pton(_AF_INET6, addr), "big") | 1 << 128
        else:
            v = int.from_bytes(_inet_pton(_AF_INET, addr), "big")
        if len(_IP_INTS) < 65536:
            _IP_INTS[addr] = v
    return v


_IP_INTS: dict = {}


def _dormant_key(key):
    """A connection key (address, port, address, port) as one int, the key of its
    dormant entry: below 2**96 for IPv4 (what KeyTable holds in its arrays), at or above
    2**300 otherwise; the key itself when an address is not an IP address text (no such
    key is an int, so the three never meet)."""
    try:
        a = _ip_int(key[0]) << 16 | key[1]
        b = _ip_int(key[2]) << 16 | key[3]
    except (ValueError, TypeError, OSError, OverflowError):
        return key
    if a < 1 << 48 and b < 1 << 48:
        return a << 48 | b
    return 1 << 300 | a << 145 | b


def _freeze(conns: list, spill: Spill, store) -> tuple:
    """Pickle ``conns`` (which get no segment for now) together into ``spill`` and append
    their records to ``store`` (a list of records, or a record store:
    :class:`dissect.store.RecordStore`), in order: (the pickled batch's number in
    ``spill``, position of the first record)."""
    ref = spill.put(pickle.dumps(conns, pickle.HIGHEST_PROTOCOL))
    pos = len(store)
    if type(store) is list:
        for c in conns:
            store.append(c.record())
    else:
        for c in conns:
            store.append_wrapped(c.record_values(), "connection")
    return ref, pos


class TcpAnalyzer:
    """Wireshark-compatible TCP sequence analysis and connection tracking (sans-I/O)."""

    def __init__(self, keep_frames: bool = False, store: bool = False):
        self._conns: dict = {}          # canonical 4-tuple -> current Connection
        # with ``store``, the records of dormant connections wait on disk
        # (dissect.store) instead of in memory, and drain_store() gives them all there
        self._frozen = _conn_store() if store else []
        # by connection id: its Connection, or None while dormant; then _slots[id] is
        # ``batch << 6 | index``: its batch of connections pickled together (blob number
        # ``batch`` of _spill, which holds nothing else), and its index in it
        # (_DORMANT_SLOT), and _bpos[batch] the position of the batch's first record in
        # _frozen. No object a connection or a batch (a tuple of three took about 100
        # bytes): the slots and positions in file mappings once there are many
        # (dissect.columns.filearray).
        self.connections: list = []
        self._slots = FileArray("q")
        self._bpos = FileArray("q")
        # called with the ids of connections put to sleep, and with the id of one woken
        # (before its segment is analysed): what the layers above keep per connection can
        # sleep with it (TransportAnalyzer)
        self.on_sleep = None
        self.on_wake = None
        self._spill = Spill("dissect-tcp-")
        self.keep_frames = keep_frames  # remember each connection's frame numbers (ladders)
        self._quiet: dict = {}          # id -> Connection that is over, not yet dormant
        self._retired: list = []        # Connections whose ports a new one took since the
        #                                 last sweep (they never get a segment again)
        # canonical 4-tuple as one int (_dormant_key) -> (id, 0 when the key's first end
        # sent first else 1, and each direction's ISN or none) of its dormant connection,
        # packed (_pack_dormant), in a KeyTable (arrays, not an object an entry)
        self._dormant = KeyTable()
        self._reuse_hit = False
        self._tmax = 0.0                # the latest timestamp seen
        self._nfed = 0
        self._dormant_after = DORMANT_AFTER_S
        self._sweep_mask = DORMANT_SWEEP_EVERY - 1
        self.revived = 0                # dormant connections brought back by a segment

    # -----------------------------------------------------------------------------------
    def feed(self, seg: TcpSegment) -> PacketVerdict:
        # every DORMANT_SWEEP_EVERY segments, before the next one is analysed (so that a
        # connection never sleeps between its segment's analysis here and above: on_sleep)
        if not self._nfed & self._sweep_mask and (self._quiet or self._retired):
            self._sweep()
        # one unpacking instead of a dozen attribute lookups
        (frame, ts, src, dst, sport, dport, seq, ack, flags, win, seglen, opts, _payload,
         _poff, _vlan, _iface) = _tuples.view(seg)
        a = (src, sport)
        # the connection's key: both endpoints, the lesser (src, sport) first, in one flat
        # tuple (cheaper to hash and compare than a pair of pairs)
        if src < dst or (src == dst and sport <= dport):
            key = (src, sport, dst, dport)
        else:
            key = (dst, dport, src, sport)
        ta = 0
        conn = self._conns.get(key)
        if conn is None:
            conn = self._wake(key, a, seq, flags) if self._dormant else None
            if conn is None:
                conn = self._new_conn(key, seg)
                if self._reuse_hit:
                    # a new ISN on the ports of a dormant connection: what the reuse
                    # test below would have found had the connection been woken
                    self._reuse_hit = False
                    conn.reused = True
                    ta |= A_REUSED_PORTS
        if conn.d_a.ep == a:
            fwd, rev = conn.d_a, conn.d_b
        else:
            fwd, rev = conn.d_b, conn.d_a

        # A SYN on known ports: another ISN starts a new conversation ("ports reused"); the
        # same ISN is the SYN again, and Wireshark restores nextseq (issue 17616).
        syn_ack = flags & (SYN | ACK)
        if syn_ack == SYN and fwd.base_set:
            if seq != fwd.base_seq:
                conn = self._new_conn(key, seg)
                conn.reused = True
                fwd, rev = conn.d_a, conn.d_b   # the SYN's sender is the new first sender
                ta |= A_REUSED_PORTS
            else:
                fwd.nextseq = fwd.maxseqtobeacked
        elif syn_ack == (SYN | ACK) and fwd.base_set and seq != fwd.base_seq:
            fwd.base_seq = seq
            ta |= A_REUSED_PORTS

        conn.last_frame = frame
        conn.last_ts = ts
        if conn.frames is not None:
            conn.frames.append(frame)
        fwd.sack = ()

        # ---- tcp_analyze_sequence_number -------------------------------------------------
        if not fwd.base_set:
            fwd.base_seq = seq if flags & SYN else (seq - 1) & M32
            fwd.base_set = True
        if not rev.base_set and flags & ACK:
            rev.base_seq = (ack - 1) & M32
            rev.base_set = True
        if flags & ACK:
            rev.valid_bif = True
        fin_syn = flags & (SYN | FIN)
        nextseq_f = fwd.nextseq

        rto = rto_frame = None
        dup_num = dup_frame = None
        if seglen == 1 and seq == nextseq_f and rev.window == 0:
            ta |= A_ZERO_WINDOW_PROBE
        else:
            if win == 0 and not flags & _SFR:
                ta |= A_ZERO_WINDOW
            if nextseq_f and seq_gt(seq, nextseq_f) and not flags & RST:
                ta |= A_LOST_PACKET
                fwd.valid_bif = False
            no_sfr = not flags & _SFR
            if seglen <= 1 and seq == ((nextseq_f - 1) & M32) and no_sfr:
                ta |= A_KEEP_ALIVE
            same = seglen == 0 and seq == nextseq_f and ack == fwd.lastack and no_sfr
            if same and win and win != fwd.window:
                ta |= A_WINDOW_UPDATE
            if seglen > 0 and rev.win_scale != -1 and no_sfr:
                sh = 0 if (rev.is_first_ack or rev.win_scale == -2) else rev.win_scale
                if ((seq + seglen) & M32) == ((rev.lastack + (rev.window << sh)) & M32):
                    ta |= A_WINDOW_FULL
            if same and win and win == fwd.window and rev.lastsegflags & A_KEEP_ALIVE:
                ta |= A_KEEP_ALIVE_ACK
            elif same and win == 0 and fwd.window == 0 and \
                    rev.lastsegflags & A_ZERO_WINDOW_PROBE:
                ta |= A_ZERO_WINDOW_PROBE_ACK
            elif same and win and win == fwd.window:
                if fwd.dupacknum == -1:
                    fwd.dupacknum = 1
                else:
                    fwd.dupacknum += 1
                ta |= A_DUPLICATE_ACK
                dup_num = fwd.dupacknum
                dup_frame = fwd.lastnondupack

        # finished_fwd:
        if ack != fwd.lastack:
            fwd.lastnondupack = frame
            fwd.dupacknum = 0

        m = rev.maxseqtobeacked
        if m and flags & ACK and seq_gt(ack, m):
            if m != rev.nextseq:
                # more was sent since the last warning: warn again, move the mark
                rev.maxseqtobeacked = rev.nextseq
                ta |= A_ACK_LOST_PACKET
            else:
                # the other side is stalled: warn once until it sends a new ACK
                if rev.dupacknum == 0:
                    ta |= A_ACK_LOST_PACKET
                rev.dupacknum = -1

        if (seglen > 0 or fin_syn) and not ta & A_KEEP_ALIVE:
            nextseq_f = fwd.nextseq
            seq_not_advanced = bool(nextseq_f) and seq_gt(nextseq_f, seq)
            if seglen > 1 and ((nextseq_f - 1) & M32) == seq:
                seq_not_advanced = False
            if seglen > 0 and rev.lastack and seq_le((seq + seglen) & M32, rev.lastack):
                ta |= A_SPURIOUS_RETRANSMISSION
            elif seq_not_advanced and rev.dupacknum >= 2 and rev.lastack == seq and \
                    _ns(ts - rev.lastacktime) < _FAST_NS:
                ta |= A_FAST_RETRANSMISSION
            else:
                # compared in whole nanoseconds, as Wireshark does: float epoch seconds would
                # misjudge the equal-time boundary
                thres = _ns(conn.irtt) if conn.irtt else _OOO_NS
                if seq_not_advanced and _ns(ts - fwd.nextseqtime) < thres and \
                        nextseq_f != ((seq + seglen + (1 if fin_syn else 0)) & M32):
                    ta |= A_OUT_OF_ORDER
                elif seq_not_advanced:
                    ta |= A_RETRANSMISSION
                    rto = ts - fwd.nextseqtime
                    rto_frame = fwd.nextseqframe
                    if fwd.segs:
                        o = fwd.segs[0]
                        rto = ts - o[3]
                        rto_frame = o[2]

        # finished_checking_retransmission_type:
        nextseq = (seq + seglen) & M32
        if (seglen or fin_syn) and len(fwd.segs) < TCP_MAX_UNACKED_SEGMENTS:
            if fin_syn:
                nextseq = (nextseq + 1) & M32
            fwd.segs.append([seq, nextseq, frame, ts])
        if seq_gt(nextseq, fwd.nextseq) or not fwd.nextseq:
            if not ta & A_ZERO_WINDOW_PROBE:
                fwd.nextseq = nextseq
                fwd.nextseqframe = frame
                fwd.nextseqtime = ts
        if seq == fwd.maxseqtobeacked or not fwd.maxseqtobeacked:
            if not ta & A_ZERO_WINDOW_PROBE:
                fwd.maxseqtobeacked = fwd.nextseq
        fwd.window = win
        fwd.lastack = ack
        fwd.lastacktime = ts
        fwd.lastsegflags = ta

        # segments of the other direction this ACKs
        ack_rtt = acked_frame = None
        rsegs = rev.segs
        if rsegs:
            keep = None
            for i in range(len(rsegs) - 1, -1, -1):
                u = rsegs[i]
                # the ends as plain integers first (C integers when compiled)
                lo = u[0]
                hi = u[1]
                if ack == hi:
                    acked_frame = u[2]
                    ack_rtt = ts - u[3]
                elif seq_gt(ack, lo) and seq_le(ack, hi):
                    u[0] = ack
                    continue
                elif seq_gt(hi, ack):
                    continue
                if keep is None:
                    keep = set()
                keep.add(i)
            if keep:
                rev.segs = [u for i, u in enumerate(rsegs) if i not in keep]

        # bytes in flight (Wireshark's default payload-based method)
        bif = None
        fsegs = fwd.segs
        dry_bif = seglen and fsegs and fwd.valid_bif
        if dry_bif:
            base = fwd.base_seq
            u = fsegs[-1]
            lo = u[0]
            hi = u[1]
            first = (lo - base) & M32
            last = (hi - base) & M32
            for u in fsegs:
                hi = u[1]
                x = (hi - base) & M32
                if x > last:
                    last = x
                lo = u[0]
                x = (lo - base) & M32
                if x < first:
                    first = x
            inf = (last - first) & M32
            for l_, r_ in rev.sack:
                inf = (inf - ((r_ - l_) & M32)) & M32
            if 0 < inf < BIF_SANE_LIMIT:
                bif = inf - 1 if fin_syn else inf

        # ---- options, SYN bookkeeping, iRTT (after the analysis, as in dissect_tcp) -----
        if opts is not None:
            _mss, wscale, _sp, _tsv, _tse, sack = _tuples.view(opts)
            if wscale is not None:
                fwd.win_scale = min(wscale, 14)
            if sack:
                fwd.sack = sack[:4]
        if flags & SYN:
            fwd.is_first_ack = True
            if not flags & ACK:
                conn.ts_mru_syn = ts
        if syn_ack == ACK:
            if conn.ts_mru_syn is not None and not conn.irtt:
                conn.irtt = ts - conn.ts_mru_syn
                if conn.irtt:
                    conn.hs_ack = frame
            fwd.is_first_ack = False
        if flags & SYN:
            if fwd.win_scale == -1:
                fwd.win_scale = -2
                rev.win_scale = -2
            elif flags & ACK and rev.win_scale == -2:
                fwd.win_scale = -2

        # ---- records and the byte-map verdict ------------------------------------------
        bm, reason = self._records(conn, fwd, rev, seg, ta)
        # tshark prints the iRTT inside the per-frame analysis record, which exists only for
        # frames with a flag, an acked segment or a bytes-in-flight computation.
        irtt = conn.irtt if conn.irtt and (ta or acked_frame or dry_bif) else None
        names = _names_cache.get(ta)
        if names is None:
            names = flag_names(ta)
        if flags & (FIN | RST) and conn.id not in self._quiet and (
                flags & RST or (conn.cdir.fin_frame is not None
                                and conn.sdir.fin_frame is not None)):
            self._quiet[conn.id] = conn
        if ts > self._tmax:
            self._tmax = ts
        self._nfed += 1
        # dissect.tuples.make: the NamedTuple without its Python-level __new__
        return _tuples.make(PacketVerdict, (
            frame, conn.id, 0 if fwd is conn.cdir else 1, names, ack_rtt, acked_frame, bif,
            dup_num, dup_frame, rto, rto_frame, irtt, bm, reason))

    # -----------------------------------------------------------------------------------
    def _new_conn(self, key, seg: TcpSegment) -> Connection:
        old = self._conns.get(key)
        if old is not None:
            # ports reused: the old connection gets no segment again; it sleeps at the next
            # sweep, in a batch with the others retired since (one by one, each made a
            # batch of its own, with its bookkeeping)
            self._quiet.pop(old.id, None)
            self._retired.append(old)
        conn = Connection(len(self.connections), key, seg)
        if self.keep_frames:
            conn.frames = []
        self._conns[key] = conn
        self.connections.append(conn)
        self._slots.append(-1)
        return conn

    def _sweep(self) -> None:
        """Freeze the connections that are over and quiet for ``DORMANT_AFTER_S``, and
        those whose ports a new connection took (_retired)."""
        cutoff = self._tmax - self._dormant_after
        quiet = self._quiet
        sleepy = [conn for conn in quiet.values() if conn.last_ts <= cutoff]
        retired, self._retired = self._retired, []
        for k in range(0, len(retired), DORMANT_BATCH):
            self._put_to_sleep(retired[k:k + DORMANT_BATCH])
        for k in range(0, len(sleepy), DORMANT_BATCH):
            batch = sleepy[k:k + DORMANT_BATCH]
            self._put_to_sleep(batch)
            for conn in batch:
                cid = conn.id
                del quiet[cid]
                del self._conns[conn.key]
                # what a SYN on these ports needs to know without waking it: which end of
                # the key sent first, and each direction's ISN (-1: none seen)
                da, db = conn.d_a, conn.d_b
                key = conn.key
                self._dormant[_dormant_key(key)] = _pack_dormant(
                    cid, 0 if da.ep == (key[0], key[1]) else 1,
                    da.base_seq if da.base_set else -1, db.base_seq if db.base_set else -1)

    def _put_to_sleep(self, batch: list) -> None:
        """Pickle ``batch`` (at most DORMANT_BATCH connections) and give each its dormant
        slot."""
        b = len(self._bpos)
        ref, pos = _freeze(batch, self._spill, self._frozen)
        if ref != b:
            raise RuntimeError("the dormant connections' spill holds something else")
        self._bpos.append(pos)
        conns, slots = self.connections, self._slots
        for i, conn in enumerate(batch):
            conns[conn.id] = None
            slots[conn.id] = b << _DORMANT_SLOT | i
        if self.on_sleep is not None:
            self.on_sleep([conn.id for conn in batch])

    def _wake(self, key, a, seq: int, flags: int):
        """The dormant connection of ``key`` back as live objects for a segment from ``a``
        (None if there is none, or if the segment is a SYN that starts a new connection on
        its ports: then ``_reuse_hit`` is set and the dormant one stays asleep)."""
        dk = _dormant_key(key)
        d = self._dormant.get(dk)
        if d is None:
            return None
        ids, isns = d
        cid = ids >> 3
        if flags & (SYN | ACK) == SYN:
            first = (key[0], key[1]) if not (ids >> 2) & 1 else (key[2], key[3])
            if a == first:
                base = isns >> 32 if (ids >> 1) & 1 else -1
            else:
                base = isns & _ISN_MASK if ids & 1 else -1
            if base >= 0 and seq != base:
                del self._dormant[dk]
                self._reuse_hit = True
                return None
        del self._dormant[dk]
        conn = self._live(cid)
        self.connections[cid] = conn
        self._conns[key] = conn
        self._quiet[cid] = conn
        self.revived += 1
        if self.on_wake is not None:
            self.on_wake(cid)
        return conn

    def is_dormant(self, i: int) -> bool:
        """Whether connection ``i`` sleeps (its state pickled, its record made)."""
        return self.connections[i] is None

    def frozen_record(self, i: int):
        """The record of dormant connection ``i``, as it was stored (a dict; with a record
        store, its stored form: RecordStore.get_wrapped)."""
        s = self._slots[i]
        pos = self._bpos[s >> _DORMANT_SLOT] + (s & _DORMANT_INDEX)
        f = self._frozen
        return f[pos] if type(f) is list else f.get_wrapped(pos)

    def _live(self, i: int, thawed: dict | None = None):
        """Connection ``i`` as live objects (a dormant one unpickled; ``thawed`` keeps the
        unpickled batches when many are asked for)."""
        c = self.connections[i]
        if c is not None:
            return c
        c = self._slots[i]
        b = c >> _DORMANT_SLOT
        if thawed is None:
            return pickle.loads(self._spill.get(b))[c & _DORMANT_INDEX]
        batch = thawed.get(b)
        if batch is None:
            batch = thawed[b] = pickle.loads(self._spill.get(b))
        return batch[c & _DORMANT_INDEX]

    def _records(self, conn: Connection, fwd: _Dir, rev: _Dir, seg: TcpSegment, ta: int):
        (frame, ts, _src, _dst, _sport, _dport, seq, ack, flags, win, plen, opts, payload,
         _poff, _vlan, _iface) = _tuples.view(seg)
        fwd.packets += 1
        fwd.bytes += plen
        is_orig = fwd is conn.cdir
        if flags & SYN:
            if opts is not None:
                if opts.mss is not None:
                    fwd.mss = opts.mss
                if opts.wscale is not None:
                    fwd.wscale_opt = opts.wscale
                if opts.sack_perm:
                    fwd.sack_perm = True
                if opts.tsval is not None:
                    fwd.timestamps = True
            if flags & ACK:
                if conn.hs_synack is None:
                    conn.hs_synack = frame
            elif conn.hs_syn is None:
                conn.hs_syn = frame
                fwd.syn_frame = frame

        # Zeek endpoint states and history
        st = conn.ostate if is_orig else conn.rstate
        pst = conn.rstate if is_orig else conn.ostate
        if flags & RST:
            st = _RESET
            conn._hist(fwd, "R")
            if fwd.rst_frame is None:
                fwd.rst_frame = frame
        else:
            if flags & SYN:
                if flags & FIN:
                    conn._hist(fwd, "Q")
                conn._hist(fwd, "H" if flags & ACK else "S")
                if st in (_INACTIVE, _PARTIAL):
                    st = _SYN_ACK_SENT if flags & ACK else _SYN_SENT
                if flags & ACK and pst == _SYN_SENT:
                    st = _SYN_ACK_SENT
            else:
                if plen == 0 and flags & ACK and not flags & FIN:
                    conn._hist(fwd, "A")
                if st == _INACTIVE:
                    st = _PARTIAL
                elif st in (_SYN_SENT, _SYN_ACK_SENT) and flags & ACK and \
                        pst in (_SYN_SENT, _SYN_ACK_SENT, _ESTABLISHED):
                    st = _ESTABLISHED
                    if pst in (_SYN_SENT, _SYN_ACK_SENT):
                        pst = _ESTABLISHED
            if plen:
                conn._hist(fwd, "D")
            if flags & FIN:
                conn._hist(fwd, "F")
                st = _CLOSED
                if fwd.fin_frame is None:
                    fwd.fin_frame = frame
        if win == 0 and not flags & (SYN | FIN | RST):
            conn._hist(fwd, "W")
            fwd.zwin += 1
        if is_orig:
            conn.ostate, conn.rstate = st, pst
        else:
            conn.rstate, conn.ostate = st, pst

        # ---- byte map -----------------------------------------------------------------
        if not fwd.bm_isn_set:
            fwd.bm_isn_set = True
            fwd.bm_lastraw = seq
            fwd.bm_lastabs = 0
        s = fwd.unwrap(seq) + (1 if flags & SYN else 0)
        e = s + plen
        out: list[str] = []
        reason = None
        npk = conn.npackets = conn.npackets + 1
        # the same packet twice, back to back (nothing from anyone in between: a real
        # retransmission that quick needs the peer's duplicate ACKs first)
        dup = fwd.bm_lnpk == npk - 1 and fwd.bm_lseq == seq and fwd.bm_lack == ack and \
            fwd.bm_lwin == win and fwd.bm_lflags == flags and fwd.bm_lplen == plen and \
            fwd.bm_lpayload == payload and ts - fwd.bm_lts < DUPLICATE_FRAME_MAX_GAP_S and \
            (plen or flags & (SYN | FIN))
        fwd.bm_lseq, fwd.bm_lack, fwd.bm_lwin, fwd.bm_lflags = seq, ack, win, flags
        fwd.bm_lplen, fwd.bm_lpayload, fwd.bm_lts, fwd.bm_lnpk = plen, payload, ts, npk
        if dup:
            out.append(BM_DUPLICATE_FRAME)
        elif not plen and flags & (SYN | FIN) and not flags & RST:
            marks = fwd.ctl_seen
            k = (flags & (SYN | FIN), seq)
            if marks is not None and k in marks:
                out.append(BM_RETRANSMISSION)
                fwd.retrans += 1
                conn._hist(fwd, "T")
            elif marks is None:
                fwd.ctl_seen = (k,)
            elif type(marks) is tuple and len(marks) < CTL_MARKS_AS_TUPLE:
                fwd.ctl_seen = marks + (k,)
            else:
                if type(marks) is tuple:
                    marks = fwd.ctl_seen = set(marks)
                marks.add(k)
        elif plen:
            high = fwd.bm_high
            covered = _iv_covered(fwd.bm_iv, s, e)
            if covered:
                acked = fwd.bm_acked
                if acked is not None and e <= acked:
                    out.append(BM_SPURIOUS)
                elif fwd.bm_sacked and _iv_covered(fwd.bm_sacked, s, e) == plen:
                    out.append(BM_SPURIOUS)
                else:
                    out.append(BM_RETRANSMISSION)
                fwd.retrans += 1
                conn._hist(fwd, "T")
            elif high is not None and s < high:
                # fills a hole: never seen before
                sacked_above = False
                for x in fwd.bm_sacked:
                    if x[0] >= e:
                        sacked_above = True
                        break
                if fwd.bm_dupacks >= 2 or sacked_above:
                    out.append(BM_LOST_UPSTREAM)
                    fwd.retrans += 1
                    conn._hist(fwd, "T")
                else:
                    out.append(BM_OUT_OF_ORDER)
            elif high is not None and s > high:
                out.append(BM_GAP)
            _iv_add(fwd.bm_iv, s, e)
            if high is None or e > high:
                fwd.bm_high = e
        elif fwd.bm_high is None and flags & SYN:
            fwd.bm_high = s
        # what this segment's ACK / SACK say about the other direction
        if flags & ACK and rev.bm_isn_set:
            a_ = rev.rel(ack)
            old = rev.bm_acked
            if old is None or a_ > old:
                rev.bm_acked = a_
                rev.bm_dupacks = 0
                rh = rev.bm_high
                if rh is not None and a_ > rh + (1 if rev.fin_frame is not None else 0):
                    out.append(BM_CAPTURE_LOSS)
                    conn._hist(rev, "G")
            elif a_ == old and plen == 0 and not flags & (SYN | FIN | RST):
                rev.bm_dupacks += 1
            if opts is not None:
                for l_, r_ in _tuples.view(opts)[5]:   # its SACK blocks
                    lo = rev.rel(l_)
                    _iv_add(rev.bm_sacked, lo, lo + ((r_ - l_) & M32))
        out_t = tuple(out)
        reason = _disagreement(ta, out_t)
        return out_t, reason

    # -----------------------------------------------------------------------------------
    def finish(self) -> list[Connection]:
        """All connections, in id order (call once the capture is done)."""
        thawed: dict = {}       # each pickled batch unpickled once
        return [self._live(i, thawed) for i in range(len(self.connections))]

    def drain_records(self) -> list[dict]:
        """``Connection.record()`` of every connection, in id order, releasing each
        connection's state as its record is made (so the end of a run does not hold both).
        The analyzer is empty afterwards."""
        self._conns.clear()
        self._quiet.clear()
        self._retired = []
        self._dormant.clear()
        conns = self.connections
        out = []
        for i in range(len(conns)):
            c = conns[i]
            out.append(self.frozen_record(i) if c is None else c.record())
            conns[i] = None
        self.connections = []
        self._slots = FileArray("q")
        self._bpos = FileArray("q")
        self._frozen = []
        self._spill.close()
        return out

    def drain_store(self, app_of=None, first_frames=None):
        """Like :meth:`drain_records` for an analyzer made with ``store=True``: the records
        in id order in a :class:`dissect.store.RecordStore` (on disk but for its last
        batch), each given ``app_of(id)`` as its ``app`` when ``app_of`` is given; each
        record's first frame appended to ``first_frames`` when given."""
        self._conns.clear()
        self._quiet.clear()
        self._retired = []
        self._dormant.clear()
        frozen = self._frozen
        # read in id order, which is nearly the order they went dormant in: two batches
        # read back are enough (each one is 512 records)
        frozen.cached = 2
        out = _conn_store()
        conns = self.connections
        for i in range(len(conns)):
            c = conns[i]
            if c is None:
                # a dormant connection's record goes over as the tuple it was stored as
                r = self.frozen_record(i)
                if type(r) is tuple:
                    if app_of is not None:
                        r = r[:_APP] + (app_of(i),) + r[_APP + 1:]
                    if first_frames is not None:
                        first_frames.append(r[_FIRST_FRAME])
                    out.append_wrapped(r, r[0])
                    conns[i] = None
                    continue
            else:
                r = c.record_values(app_of(i) if app_of is not None else None)
                if first_frames is not None:
                    first_frames.append(r[_FIRST_FRAME])
                out.append_wrapped(r, "connection")
                conns[i] = None
                continue
            if app_of is not None:
                r["app"] = app_of(i)
            if first_frames is not None:
                first_frames.append(r["first_frame"])
            out.append(r)
            conns[i] = None
        self.connections = []
        self._slots = FileArray("q")
        self._bpos = FileArray("q")
        self._spill.close()
        frozen.close()
        return out


_WS_RETRANS = A_RETRANSMISSION | A_FAST_RETRANSMISSION | A_SPURIOUS_RETRANSMISSION


def _disagreement(ta: int, bm: tuple[str, ...]) -> str | None:
    """Why the byte-map verdict differs from Wireshark's, or None when they agree."""
    if not bm and not ta & (_WS_RETRANS | A_OUT_OF_ORDER | A_LOST_PACKET | A_ACK_LOST_PACKET):
        return None
    ws_re = bool(ta & _WS_RETRANS)
    ws_sp = bool(ta & A_SPURIOUS_RETRANSMISSION)
    ws_ooo = bool(ta & A_OUT_OF_ORDER)
    reasons = []
    if BM_DUPLICATE_FRAME in bm:
        if ws_re or ws_ooo:
            reasons.append("identical to the previous segment of this direction within "
                           f"{DUPLICATE_FRAME_MAX_GAP_S * 1000:g} ms: one packet captured twice")
        return "; ".join(reasons) or None
    bm_re = BM_RETRANSMISSION in bm or BM_SPURIOUS in bm or BM_LOST_UPSTREAM in bm
    if ws_re and not bm_re:
        if BM_OUT_OF_ORDER in bm:
            reasons.append("these bytes were never captured before and nothing reported them "
                           "lost: reordering, not a retransmission")
        else:
            reasons.append("these bytes were never sent before in this capture")
    if bm_re and not ws_re:
        if ws_ooo and BM_LOST_UPSTREAM in bm:
            reasons.append("fills a hole the peer had reported with duplicate ACKs or SACK: "
                           "the original was lost before the capture point")
        elif ws_ooo:
            reasons.append("these bytes were already sent: a retransmission that came soon "
                           "after the highest segment")
        elif ta & (A_KEEP_ALIVE | A_ZERO_WINDOW_PROBE):
            pass   # one byte resent as a probe: Wireshark's name is the better one
        else:
            reasons.append("these bytes were already sent in this capture")
    if BM_SPURIOUS in bm and ws_re and not ws_sp:
        reasons.append("every byte was already acknowledged or SACKed by the peer")
    if ws_sp and BM_RETRANSMISSION in bm:
        reasons.append("not all of these bytes were acknowledged or SACKed yet")
    if ws_ooo and not bm_re and BM_OUT_OF_ORDER not in bm and not ws_re:
        reasons.append("starts at or beyond the highest byte sent: in order")
    if BM_CAPTURE_LOSS in bm and not ta & A_ACK_LOST_PACKET:
        reasons.append("acknowledges bytes the capture never saw")
    return "; ".join(reasons) or None


# Compiled (scripts/build_speedups.py with tcp.pxd), the constants above are C integers that
# Python cannot see; this keeps every one of them importable either way.
globals().update(
    FIN=FIN, SYN=SYN, RST=RST, PSH=PSH, ACK=ACK, _SFR=_SFR, M32=M32, HALF=HALF,
    A_RETRANSMISSION=A_RETRANSMISSION, A_LOST_PACKET=A_LOST_PACKET,
    A_ACK_LOST_PACKET=A_ACK_LOST_PACKET, A_KEEP_ALIVE=A_KEEP_ALIVE,
    A_DUPLICATE_ACK=A_DUPLICATE_ACK, A_ZERO_WINDOW=A_ZERO_WINDOW,
    A_ZERO_WINDOW_PROBE=A_ZERO_WINDOW_PROBE, A_ZERO_WINDOW_PROBE_ACK=A_ZERO_WINDOW_PROBE_ACK,
    A_KEEP_ALIVE_ACK=A_KEEP_ALIVE_ACK, A_OUT_OF_ORDER=A_OUT_OF_ORDER,
    A_FAST_RETRANSMISSION=A_FAST_RETRANSMISSION, A_WINDOW_UPDATE=A_WINDOW_UPDATE,
    A_WINDOW_FULL=A_WINDOW_FULL, A_REUSED_PORTS=A_REUSED_PORTS,
    A_SPURIOUS_RETRANSMISSION=A_SPURIOUS_RETRANSMISSION,
    TCP_MAX_UNACKED_SEGMENTS=TCP_MAX_UNACKED_SEGMENTS, BIF_SANE_LIMIT=BIF_SANE_LIMIT,
    _INACTIVE=_INACTIVE, _SYN_SENT=_SYN_SENT, _SYN_ACK_SENT=_SYN_ACK_SENT, _PARTIAL=_PARTIAL,
    _ESTABLISHED=_ESTABLISHED, _CLOSED=_CLOSED, _RESET=_RESET, _WS_RETRANS=_WS_RETRANS,
    _US_SNAP_NS=_US_SNAP_NS)
