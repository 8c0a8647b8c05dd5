"""Time by layer per transaction: a waterfall of where each transaction spent its time.

For every HTTP, gRPC, SMTP, FTP, POP3, IMAP or DNS transaction (an application record that
pairs a request with its response), and for every exchange on an encrypted or unparsed TCP
connection (a client burst followed by a server burst), the time is cut into stages:

=============  =====  ===================================================================
stage          OSI    from - to
=============  =====  ===================================================================
handshake      L4     first SYN (retransmitted SYNs included) - the handshake's ACK
tls            L5/L6  ClientHello - end of the server's handshake flight (TLS 1.3: its
                      first flight; TLS <= 1.2: its second, ChangeCipherSpec/Finished)
request        L7     first - last frame carrying request bytes
wait           L7     last request byte - first response byte (server think time + 1 RTT)
transfer       L7     first - last frame carrying response bytes
teardown       L4     first FIN/RST - last frame of the connection
=============  =====  ===================================================================

The handshake and TLS stages belong to the first transaction of a connection, teardown to
its last; keep-alive transactions in between show only their own L7 stages. A stage that
cannot be measured (e.g. the SYN was not captured) is left out rather than guessed.

Per-frame direction, flags and timestamps come from a
:class:`~dissect.analysis.findings.FrameTable`; without one, the record timestamps
(``request_ts``, ``reply_ts``, ``query_ts`` + ``response_time_s``) and the connection's
handshake RTT are used, and request/transfer have zero width.

Record: ``{"type": "timing", "conn", "protocol", "transaction": {...}, "stages": [{"name",
"osi", "start_ts", "duration_s", "frames"}], "total_s", "slowest"}``.

The analysis is :class:`TimingObserver`, an observer of the run's records
(:mod:`dissect.analysis.observe`): it keeps, per connection, the few fields of its record
that timing reads, and per transaction the bounds and identifying values of its record
(or, when only the ``n`` slowest are wanted, only the candidates for them);
:func:`timing_records`, :func:`slowest` and :func:`slowest_candidates` run it.
"""

from __future__ import annotations

from array import array
from sys import intern

from dissect.analysis.findings import ACK, FIN, RST, SYN
from dissect.analysis.observe import Observer, run
from dissect.columns.filearray import FileArray

CLIENT, SERVER = 0, 1

OSI_OF_STAGE = {"handshake": "L4", "tls": "L5/L6", "request": "L7", "wait": "L7",
                "transfer": "L7", "teardown": "L4"}

# application record types that are request/response transactions, and the fields that
# identify one (values that can carry credentials - PASS, AUTH, LOGIN arguments - are
# never copied into the transaction; see SECRET_COMMANDS)
TRANSACTION_TYPES = {
    "http": ("method", "target", "uri", "path", "host", "status"),
    "grpc": ("service", "method", "path", "grpc_status", "status"),
    "smtp": ("command", "arg", "reply_code"),
    "ftp": ("command", "arg", "reply_code"),
    "pop3": ("command", "arg", "status"),
    "imap": ("tag", "command", "arg", "status"),
    "dns": ("qname", "qtype", "rcode", "retransmission"),
}
SECRET_COMMANDS = frozenset({"PASS", "AUTH", "LOGIN", "AUTHENTICATE", "APOP", "USER"})
# protocols whose server speaks first: a record without a command is the greeting
GREETING_TYPES = ("ftp", "smtp", "pop3", "imap")

# TLS records whose frames belong to the handshake (the TLS parser's record types)
TLS_TYPES = ("tls", "tls-handshake", "tls-session")

# bursts examined on an encrypted/unparsed connection: more exchanges than this on one
# connection are summarised by the first ones (a long-lived stream is not a transaction)
MAX_EXCHANGES_PER_CONN = 64
# stages that start at the same instant are listed in this order
_STAGE_ORDER = {name: i for i, name in enumerate(OSI_OF_STAGE)}


def _i(v):
    """``v`` interned when it is a string: methods, hosts, commands, versions repeat across
    records, and a projection must not keep one copy per record alive."""
    return intern(v) if type(v) is str else v


# -- stages ------------------------------------------------------------------------------
# A stage is built as a tuple (name, start, duration, frames) and becomes a dict only in
# the record (_finish): the n slowest are found from the tuples alone (_span).

def _stage(name, start, end, frames) -> tuple | None:
    if start is None or end is None:
        return None
    return name, start, _duration(start, end), frames


def _duration(start, end) -> float:
    return round(max(0.0, end - start), 6)


def _span(stages: list) -> tuple:
    """(total_s, start of the first stage) of a transaction with these stages, as its
    record has them (0.0, 0.0 without stages)."""
    t0 = t1 = None
    for s in stages:
        if s is None:
            continue
        start = s[1]
        end = start + s[2]
        if t0 is None or start < t0:
            t0 = start
        if t1 is None or end > t1:
            t1 = end
    if t0 is None:
        return 0.0, 0.0
    return round(t1 - t0, 6), t0


def _finish(cid, protocol, transaction: dict, stages: list) -> dict:
    """The timing record of a transaction with these stages (None ones left out)."""
    st = [{"name": s[0], "osi": OSI_OF_STAGE[s[0]], "start_ts": s[1],
           "duration_s": s[2], "frames": sorted(set(s[3]))}
          for s in stages if s is not None]
    st.sort(key=lambda s: (s["start_ts"], _STAGE_ORDER[s["name"]]))
    return {"type": "timing", "conn": cid, "protocol": protocol, "transaction": transaction,
            "stages": st, "total_s": _span(stages)[0],
            "slowest": max(st, key=lambda s: s["duration_s"])["name"] if st else None}


# -- connections -------------------------------------------------------------------------

def _conn_info(c: dict) -> tuple:
    """What timing reads of a connection record: ``(id, tcp, app, state, handshake seen,
    syn, syn_ack, ack, rtt_s, start_ts)`` (the last five from its handshake)."""
    hs = c.get("handshake") or {}
    return (_i(c["id"]), c.get("proto") == "tcp", _i(c.get("app")), _i(c.get("state")),
            bool(hs), hs.get("syn"), hs.get("syn_ack"), hs.get("ack"), hs.get("rtt_s"),
            c.get("start_ts"))


class _Conn:
    """What timing needs to know about one connection: its :func:`_conn_info` and, with a
    frame table, its frames."""

    __slots__ = ("id", "tcp", "app", "state", "hs", "syn", "syn_ack", "ack", "rtt",
                 "start_ts", "table", "frames")

    def __init__(self, info: tuple, table):
        (self.id, self.tcp, self.app, self.state, self.hs, self.syn, self.syn_ack, self.ack,
         self.rtt, self.start_ts) = info
        self.table = table
        self.frames = table.frames(self.id) if table is not None else []

    def ts(self, f):
        return self.table.time(f) if self.table is not None else None

    def handshake(self):
        """(start, end, frames, syn_retries) of the TCP handshake, or None. A handshake
        never answered runs from the first SYN to the last retransmitted one."""
        t = self.table
        if self.tcp and not self.syn_ack and t is not None:
            syns = [f for f in self.frames if t.flags[f] & SYN and not t.flags[f] & ACK
                    and t.direction[f] == CLIENT]
            if syns:
                return t.ts[syns[0]], t.ts[syns[-1]], syns, len(syns) - 1
        if not self.tcp or not self.hs:
            return None
        if t is None:
            rtt = self.rtt
            if rtt is None:
                return None
            return self.start_ts, self.start_ts + rtt, \
                [f for f in (self.syn, self.syn_ack, self.ack) if f], None
        end_frame = self.ack or self.syn_ack
        if end_frame is None:
            return None
        syns = [f for f in self.frames if f <= end_frame and t.flags[f] & SYN
                and not t.flags[f] & ACK and t.direction[f] == CLIENT]
        if not syns:
            return None
        frames = syns + [f for f in self.frames if syns[0] < f <= end_frame
                         and (t.flags[f] & SYN or f == end_frame)]
        return t.ts[syns[0]], t.ts[end_frame], frames, len(syns) - 1

    def teardown(self):
        t = self.table
        if t is None or not self.tcp:
            return None
        fr = [f for f in self.frames if t.flags[f] & (FIN | RST)]
        if not fr:
            return None
        tail = [f for f in self.frames if f >= fr[0]]
        return t.ts[fr[0]], t.ts[tail[-1]], tail

    def payload_frames(self, direction, lo=0, hi=None):
        t = self.table
        return [f for f in self.frames if f >= lo and (hi is None or f <= hi)
                and t.direction[f] == direction and t.plen[f] > 0]


# -- transactions ------------------------------------------------------------------------
# A transaction is kept as the projection of its record: _timing_part + _ident_part,
# ``(key, rq0, rq1, rs0, rs1, freq, fresp, type, values, greeting)``.

def _timing_part(rec: dict, table) -> tuple:
    """``(key, rq0, rq1, rs0, rs1, freq, fresp)`` of a transaction record: ``key`` orders
    the transactions of a connection (their first frame); ``rq0, rq1`` are the request's
    first and last ``(ts, frame)``, ``rs0, rs1`` the response's, None each when unknown;
    ``freq``, ``fresp`` the record's client and server frames in the frame table."""
    frames = [f for f in rec.get("frames") or [] if isinstance(f, int)]
    key = min(frames or [0])
    t = table
    req = resp = []
    if t is not None and frames:
        req = [f for f in frames if t.has(f) and t.direction[f] == CLIENT]
        resp = [f for f in frames if t.has(f) and t.direction[f] == SERVER]
    freq, fresp = tuple(req), tuple(resp)
    if rec.get("type") == "dns":
        q, r = rec.get("query_frame"), rec.get("response_frame")
        req = [q] if q else req
        resp = [r] if r else []

    def pair(fs, key_ts, key_frame):
        if fs and t is not None:
            return (t.ts[fs[0]], fs[0]), (t.ts[fs[-1]], fs[-1])
        ts = rec.get(key_ts)
        if ts is None:
            return None, None
        p = (ts, rec.get(key_frame))
        return p, p
    rq = pair(sorted(req), "request_ts", "request_frame")
    if rq[0] is None and rec.get("query_ts") is not None:
        rq = ((rec["query_ts"], rec.get("query_frame")),) * 2
    rs = pair(sorted(resp), "reply_ts", "reply_frame")
    if rs[0] is None:
        if rec.get("response_ts") is not None:
            rs = ((rec["response_ts"], rec.get("response_frame")),) * 2
        if rs[0] is None and rq[0] is not None and rec.get("response_time_s") is not None:
            p = (rq[1][0] + rec["response_time_s"], rec.get("response_frame"))
            rs = (p, p)
    return key, rq[0], rq[1], rs[0], rs[1], freq, fresp


def _ident_part(rec: dict) -> tuple:
    """``(type, values, greeting)`` of a transaction record: the values of its type's
    identifying fields (TRANSACTION_TYPES; None when missing or a credential) and whether
    it is the server's greeting."""
    typ = rec.get("type")
    values = []
    for k in TRANSACTION_TYPES[typ]:
        v = rec.get(k)
        if v is not None and k == "arg" and \
                (rec.get("command") or "").upper() in SECRET_COMMANDS:
            v = None
        values.append(intern(v) if type(v) is str else v)
    return intern(typ), tuple(values), typ in GREETING_TYPES and rec.get("command") is None


def _l7_stages(rq0, rq1, rs0, rs1, frames_req, frames_resp) -> list:
    out = []
    if rq0 is not None:
        out.append(_stage("request", rq0[0], rq1[0], frames_req))
    if rq1 is not None and rs0 is not None:
        out.append(_stage("wait", rq1[0], rs0[0], [f for f in (rq1[1], rs0[1]) if f]))
    if rs0 is not None:
        out.append(_stage("transfer", rs0[0], rs1[0], frames_resp))
    return out


def _lead_stages(p: tuple, hs) -> list:
    """The stages only the first transaction of a connection has: the handshake ``hs``
    and, before a server greeting, the wait from the handshake's end to it."""
    rq0, rs0 = p[1], p[3]
    out = [_stage("handshake", hs[0], hs[1], hs[2])]
    if rq0 is None and rs0 is not None:     # a server greeting: wait from ACK
        gfr = [f for f in (hs[2][-1], rs0[1]) if f]
        out.append(_stage("wait", hs[1], rs0[0], gfr))
    return out


def _own_stages(p: tuple) -> list:
    """The L7 stages of transaction ``p``, which it has wherever it is in its connection."""
    _key, rq0, rq1, rs0, rs1, freq, fresp = p[:7]
    return _l7_stages(rq0, rq1, rs0, rs1,
                      freq or [x[1] for x in (rq0, rq1) if x and x[1]],
                      fresp or [x[1] for x in (rs0, rs1) if x and x[1]])


def _tx_stages(p: tuple, hs, td) -> list:
    """The stages of transaction ``p``: ``hs``, the connection's handshake, when it is the
    connection's first transaction (None otherwise), ``td`` its teardown when the last."""
    stages = _lead_stages(p, hs) if hs is not None else []
    stages += _own_stages(p)
    if td is not None:
        stages.append(_stage("teardown", td[0], td[1], td[2]))
    return stages


def _tx_record(cid, p: tuple, hs, td) -> dict:
    """The timing record of transaction ``p`` (``hs``, ``td``: see :func:`_tx_stages`)."""
    typ = p[7]
    transaction = {k: v for k, v in zip(TRANSACTION_TYPES[typ], p[8]) if v is not None}
    if p[9]:
        transaction["command"] = "(greeting)"
    if hs is not None and hs[3]:
        transaction["syn_retries"] = hs[3]
    return _finish(cid, typ, transaction, _tx_stages(p, hs, td))


def _smtp_messages(conn: _Conn, datas, envelopes) -> list[dict]:
    """The message sent after DATA answered 354 as its own transaction: request = the
    message bytes (client frames after the 354 up to the envelope's last frame), response =
    the server's final reply. Needs the frame table (the envelope has no reply frame).
    ``datas``: the reply frames of the connection's DATA commands answered 354;
    ``envelopes``: ``(last frame, reply_code, reply_ts)`` of its envelopes with data."""
    t = conn.table
    if t is None:
        return []
    out = []
    for last, reply_code, reply_ts in envelopes:
        d = [f for f in datas if f < last]
        if not d:
            continue
        start = d[-1]
        req = conn.payload_frames(CLIENT, start + 1, last)
        if not req:
            continue
        resp = conn.payload_frames(SERVER, req[-1] + 1)[:1]
        out.append({"type": "smtp", "command": "(message)", "conn": conn.id,
                    "reply_code": reply_code, "frames": req + resp, "reply_ts": reply_ts})
    return out


# -- TLS and unparsed exchanges ----------------------------------------------------------
# What the TLS records of a connection say of its handshake: (version, ClientHello frame,
# last handshake frame, SNI), each the first one given (truthy) in record order.
_INFERRED_TLS = (None, None, None, None)


def _tls_stage(conn: _Conn, tls: tuple):
    """The TLS handshake stage from the TLS records' frames, else from the burst pattern."""
    t = conn.table
    if t is None:
        return None
    version, ch, end, _sni = tls
    if ch is None:
        cl = conn.payload_frames(CLIENT)
        ch = cl[0] if cl else None
    if ch is None:
        return None
    if end is None:
        end = _handshake_end(conn, ch, version)
    if end is None:
        return None
    fr = [f for f in conn.frames if ch <= f <= end]
    return _stage("tls", t.ts[ch], t.ts[end], fr), end


def _bursts(conn: _Conn, start_frame: int):
    """Payload frames from ``start_frame`` grouped into alternating direction bursts."""
    t = conn.table
    out = []
    for f in conn.frames:
        if f < start_frame or t.plen[f] <= 0 or t.direction[f] not in (CLIENT, SERVER):
            continue
        d = t.direction[f]
        if out and out[-1][0] == d:
            out[-1][1].append(f)
        else:
            out.append((d, [f]))
    return out


# TLS record content types (RFC 8446 B.1)
TLS_CCS, TLS_HANDSHAKE, TLS_APPDATA = 0x14, 0x16, 0x17
OLD_TLS = {"TLS1.2", "TLS1.1", "TLS1.0", "SSL3.0", "SSL2.0"}


def looks_like_tls(table, cid) -> bool:
    """The connection's first client bytes are a TLS handshake record holding a ClientHello
    (content type 22, version 3.x, handshake type 1) - the fallback when no TLS parser
    record exists for it."""
    if table is None:
        return False
    b = table.first(cid, CLIENT)
    return len(b) >= 6 and b[0] == TLS_HANDSHAKE and b[1] == 3 and b[5] == 1


def _handshake_end(conn: _Conn, ch: int, version) -> int | None:
    """Last frame of the TLS handshake, from the record type starting each burst.

    After the ClientHello (C1) and the server's first flight (S1), the client's second
    burst (C2) tells which handshake this is: a handshake record (ClientKeyExchange,
    0x16) means a full TLS <= 1.2 handshake, finished by the server's ChangeCipherSpec +
    Finished in its second burst (S2); ChangeCipherSpec (0x14, TLS 1.3 compatibility mode
    or a TLS 1.2 resumption) or application data (0x17, TLS 1.3's encrypted Finished) means
    the server finished in S1 and the client's Finished in C2 ends the handshake. Without
    C2's first byte, the version reported by the TLS parser decides."""
    from dissect.analysis.findings.cleartext import normalise_version
    t = conn.table
    bursts = _bursts(conn, ch)
    if len(bursts) < 2 or bursts[0][0] != CLIENT or bursts[1][0] != SERVER:
        return bursts[1][1][-1] if len(bursts) >= 2 and bursts[1][0] == SERVER else None
    s1 = bursts[1][1]
    if len(bursts) < 3:
        return s1[-1]
    c2 = bursts[2][1]
    head = t.head[c2[0]]
    full = head == TLS_HANDSHAKE if head >= 0 else normalise_version(version) in OLD_TLS
    if full:
        return bursts[3][1][-1] if len(bursts) >= 4 else c2[-1]
    return c2[0]


def _burst_end(conn: _Conn, start_frame: int, server_flights: int):
    seen = 0
    for d, fs in _bursts(conn, start_frame):
        if d == SERVER:
            seen += 1
            if seen == server_flights:
                return fs[-1]
    return None


def _exchanges(conn: _Conn, proto, tls) -> list[dict]:
    """Encrypted (TLS) or unparsed TCP: each client burst + following server burst.
    ``tls``: what the TLS records say of the handshake (see _INFERRED_TLS), or None."""
    t = conn.table
    hs = conn.handshake()
    td = conn.teardown()
    start = 0
    pre = []
    if hs is not None:
        pre.append(_stage("handshake", hs[0], hs[1], hs[2]))
    if tls:
        got = _tls_stage(conn, tls)
        if got is not None:
            pre.append(got[0])
            start = got[1] + 1
    bursts = _bursts(conn, start)
    if tls:
        # server records between the handshake and the client's first request are
        # post-handshake messages (TLS 1.3 NewSessionTicket), not answers to anything
        while bursts and bursts[0][0] == SERVER:
            bursts.pop(0)
    pairs = []
    i = 0
    while i < len(bursts) and len(pairs) < MAX_EXCHANGES_PER_CONN:
        d, fs = bursts[i]
        if d == CLIENT:
            resp = bursts[i + 1][1] if i + 1 < len(bursts) else []
            pairs.append((fs, resp))
            i += 2
        else:
            pairs.append(([], fs))     # server push with no request before it
            i += 1
    out = []
    if not pairs and not pre:
        return []
    if not pairs:
        pairs = [([], [])]
    sni = tls[3] if tls else None
    for n, (req, resp) in enumerate(pairs):
        rq0 = (t.ts[req[0]], req[0]) if req else None
        rq1 = (t.ts[req[-1]], req[-1]) if req else None
        rs0 = (t.ts[resp[0]], resp[0]) if resp else None
        rs1 = (t.ts[resp[-1]], resp[-1]) if resp else None
        stages = list(pre) if n == 0 else []
        stages += _l7_stages(rq0, rq1, rs0, rs1, req, resp)
        if n == len(pairs) - 1 and td is not None:
            stages.append(_stage("teardown", td[0], td[1], td[2]))
        transaction = {"exchange": n + 1, "encrypted": bool(tls)}
        if not req and not resp and n == 0:
            transaction["outcome"] = ("unanswered" if not conn.syn_ack else "no data") \
                if conn.state != "REJ" else "refused"
        if sni:
            transaction["sni"] = sni
        if n == 0 and hs is not None and hs[3]:
            transaction["syn_retries"] = hs[3]
        if n == len(pairs) - 1 and len(pairs) >= MAX_EXCHANGES_PER_CONN:
            transaction["more_exchanges_not_shown"] = True
        out.append(_finish(conn.id, proto or "tcp", transaction, stages))
    return out


# -- the observer ------------------------------------------------------------------------

class _ConnTable:
    """:func:`_conn_info` of every connection in connection order, as columns (about 60
    bytes a connection, no object; a tuple of ten in a dict took about 300), and per
    connection what the n-slowest search keeps: its transactions seen so far and its first
    transaction's key (TimingObserver with ``n``). Rows are numbered in connection order.
    The handshake frames (ints) and times (floats) are five doubles a row, NaN for None
    (exact: frame numbers are far below 2**53); a row with any other value keeps its whole
    tuple aside."""

    __slots__ = ("others", "ids", "flags", "codes", "nums", "odd", "_codes", "_names",
                 "count", "fkey", "fentry")

    def __init__(self):
        # a run's TCP ids come in order, 0 to n - 1: connection i is row i, found by
        # looking (ids[i] == i); any other id's row is in this dict
        self.others: dict = {}
        # (the columns go to file mappings once large: dissect.columns.filearray)
        self.ids = FileArray("q")       # the id; -1: in odd
        self.flags = FileArray("B")     # 1: TCP, 2: handshake seen
        self.codes = FileArray("i")     # app, state: indices into _names
        self.nums = FileArray("d")      # syn, syn_ack, ack, rtt, start
        self.odd: dict = {}             # row -> its info tuple, when the columns cannot hold it
        self._codes: dict = {}
        self._names: list = []
        self.count = FileArray("q")     # transactions seen
        self.fkey = FileArray("q")      # the first one's key (while count > 0)
        self.fentry: dict = {}          # row -> the first one's candidate entry, if kept

    def row(self, cid) -> int:
        """Connection ``cid``'s row, -1 if it has none."""
        ids = self.ids
        if type(cid) is int and 0 <= cid < len(ids) and ids[cid] == cid:
            return cid
        try:
            return self.others.get(cid, -1)
        except TypeError:       # an unhashable id: never added
            return -1

    def add(self, info: tuple) -> None:
        cid, tcp, app, state, hs, syn, syn_ack, ack, rtt, start = info
        row = self.row(cid)
        if row >= 0:
            # a second record of an id (not in a run's output): it replaces the first,
            # as a dict's entry would, in the first's place
            self.odd[row] = info
            return
        row = len(self.flags)
        if cid != row or type(cid) is not int:
            self.others[cid] = row
        codes, names = self._codes, self._names
        a = codes.get(app)
        if a is None:
            a = codes[app] = len(names)
            names.append(app)
        b = codes.get(state)
        if b is None:
            b = codes[state] = len(names)
            names.append(state)
        self.codes.append(a)
        self.codes.append(b)
        self.flags.append((1 if tcp else 0) | (2 if hs else 0))
        if type(cid) is int and 0 <= cid < _EXACT:
            self.ids.append(cid)
        else:
            self.ids.append(-1)
            self.odd[row] = info
        if ((syn is None or type(syn) is int and -_EXACT < syn < _EXACT)
                and (syn_ack is None or type(syn_ack) is int and -_EXACT < syn_ack < _EXACT)
                and (ack is None or type(ack) is int and -_EXACT < ack < _EXACT)
                and (rtt is None or type(rtt) is float and rtt == rtt)
                and (start is None or type(start) is float and start == start)):
            self.nums.extend((_NAN if syn is None else syn, _NAN if syn_ack is None else syn_ack,
                              _NAN if ack is None else ack, _NAN if rtt is None else rtt,
                              _NAN if start is None else start))
        else:
            self.nums.extend((_NAN, _NAN, _NAN, _NAN, _NAN))
            self.odd[row] = info
        self.count.append(0)
        self.fkey.append(0)

    def info(self, row: int) -> tuple:
        """The row's :func:`_conn_info` tuple."""
        x = self.odd.get(row)
        if x is not None:
            return x
        f = self.flags[row]
        names, codes, nums = self._names, self.codes, self.nums
        o = 5 * row
        syn, syn_ack, ack, rtt, start = nums[o], nums[o + 1], nums[o + 2], nums[o + 3], \
            nums[o + 4]
        return (self.ids[row], bool(f & 1), names[codes[2 * row]], names[codes[2 * row + 1]],
                bool(f & 2), None if syn != syn else int(syn),
                None if syn_ack != syn_ack else int(syn_ack), None if ack != ack else int(ack),
                None if rtt != rtt else rtt, None if start != start else start)

    def __len__(self) -> int:
        return len(self.flags)


_NAN = float("nan")
# ints a double holds exactly
_EXACT = 1 << 53


class TimingObserver(Observer):
    """The timing records of a run, in start order (:func:`timing_records`; ``frames``:
    the run's FrameTable, or None), or with ``n`` (and no frame table) the ``n`` slowest
    of them as :func:`slowest` gives them.

    Kept per connection: :func:`_conn_info`'s tuple (ten scalars, about 200 bytes with
    its place in the dict). Per transaction record (TRANSACTION_TYPES; DNS answers without
    their query left out): its projection, :func:`_timing_part` + :func:`_ident_part` (a
    tuple of ten, the values it is named by interned; about 350 bytes without a frame
    table, plus its frame numbers with one). With a frame table also, per connection,
    what its TLS records say of the handshake (four scalars), the reply frames of its DATA
    commands answered 354 and ``(last frame, reply code, reply ts)`` of its SMTP envelopes
    with data; other records are skipped at once.

    With ``n`` (no frame table), a transaction's total time depends only on its own
    record and, for the first transaction of its connection (the one with the lowest first
    frame, which also has the handshake), on the connection's handshake. So per connection
    only its transaction count and its first transaction's key and place are kept, and of
    the transactions only the candidates for the ``n`` slowest: those at least as slow as
    the ``n``-th slowest seen so far (ties kept), pruned as they come in (:meth:`_offer`),
    about 4 n + 64 projections at most (more only with ties).
    """

    def __init__(self, frames=None, n: int | None = None):
        self.table = frames
        self.n = n
        self._candidates = False     # SlowestCandidates' answer instead of slowest's
        # the answer when it is known before the pass (a split run's slowest_timings)
        self._done = None
        self._info: dict = {}        # conn id -> _conn_info, in connection order
        # keeping everything (no n, a frame table, or an n below 1)
        self._txs: dict = {}         # conn id -> [projection] in record order
        self._tls: dict = {}         # conn id -> [version, client hello, end, sni]
        self._datas: dict = {}       # conn id -> [reply frame of DATA answered 354]
        self._envs: dict = {}        # conn id -> [(last frame, reply_code, reply_ts)]
        # keeping the candidates for the n slowest only
        self._top = frames is None and n is not None and n >= 1
        # with n: every connection's _conn_info, and how many transactions it had so far,
        # its first's key and its first's entry in _kept (if kept), as columns
        self._conns = _ConnTable() if self._top else None
        self._kept: list = []        # candidates (see _offer)
        # a total at least n transactions are sure to reach: only those reaching it count
        self._cut = float("-inf")
        self._limit = 4 * n + 64 if self._top else 0
        self._keys = None            # SlowestCandidates: conn id -> keys (see _top_record)

    def start(self, res):
        if self.n is not None and self.table is None and not self._candidates:
            self._done = _precomputed(res, self.n)

    def conn(self, c):
        if self._done is None and c.get("type", "connection") == "connection":
            info = _conn_info(c)
            if self._top:
                self._conns.add(info)
            else:
                self._info[info[0]] = info

    def record(self, r):
        typ = r.get("type")
        if typ in TRANSACTION_TYPES:
            if typ == "dns" and r.get("query_frame") is None:
                return      # an answer whose query was not seen is no transaction
            if self._top:
                self._top_record(r)
                return
            cid = _i(r.get("conn"))     # UDP flows' ids are strings
            if cid not in self._info:
                return
            t = self.table
            p = _timing_part(r, t) + _ident_part(r)
            txs = self._txs.get(cid)
            if txs is None:
                self._txs[cid] = [p]
            else:
                txs.append(p)
            if t is not None and typ == "smtp" and r.get("command") == "DATA" \
                    and r.get("reply_code") == 354 and r.get("reply_frame"):
                self._datas.setdefault(cid, []).append(r.get("reply_frame"))
            return
        if self.table is None or (typ not in TLS_TYPES and typ != "smtp-envelope"):
            return
        cid = _i(r.get("conn"))
        if cid not in self._info:
            return
        if typ == "smtp-envelope":
            if r.get("data_bytes"):
                last = max([f for f in r.get("frames") or [] if isinstance(f, int)] or [0])
                self._envs.setdefault(cid, []).append(
                    (last, _i(r.get("reply_code")), r.get("reply_ts")))
            return
        s = self._tls.get(cid)
        if s is None:
            s = self._tls[cid] = [None, None, None, None]
        if s[0] is None and r.get("version"):
            s[0] = _i(r.get("version"))
        if s[1] is None and r.get("client_hello_frame"):
            s[1] = r.get("client_hello_frame")
        if s[2] is None:
            end = r.get("handshake_end_frame") or r.get("server_finished_frame")
            if end:
                s[2] = end
        if s[3] is None and r.get("sni"):
            s[3] = _i(r.get("sni"))

    def finish(self, res):
        if self._done is not None:
            return self._done
        if self._top:
            return self._top_finish()
        recs = self._all()
        if self._candidates:
            kept: list = []
            for i, r in enumerate(recs):
                kept.append((i, r))
                if len(kept) >= 4 * self.n + 64:
                    kept = _at_least_nth(kept, self.n)
            return _at_least_nth(kept, self.n)
        recs.sort(key=_start)
        if self.n is not None:
            return sorted(recs, key=lambda r: -_total(r))[:self.n]
        return recs

    # -- everything ----------------------------------------------------------------------
    def _all(self) -> list[dict]:
        """Every timing record, connection by connection, each connection's in the order
        of their first frame (not yet in start order)."""
        t = self.table
        out: list = []
        for cid, info in self._info.items():
            conn = _Conn(info, t)
            txs = self._txs.get(cid, [])
            if t is not None and cid in self._envs:
                txs = txs + [_timing_part(m, t) + _ident_part(m) for m in
                             _smtp_messages(conn, self._datas.get(cid, ()), self._envs[cid])]
            txs.sort(key=_first_frame)
            tls = self._tls.get(cid)
            if tls is None and not txs and conn.tcp and looks_like_tls(t, cid):
                tls = _INFERRED_TLS
            proto = conn.app or (txs[0][7] if txs else None) or ("tls" if tls else None)
            if not txs and conn.tcp and t is not None:
                # encrypted, unparsed, or never established: exchanges from the packets
                out += _exchanges(conn, proto, tls)
                continue
            hs = conn.handshake() if conn.tcp else None
            td = conn.teardown() if conn.tcp else None
            last = len(txs) - 1
            for i, p in enumerate(txs):
                out.append(_tx_record(cid, p, hs if i == 0 else None,
                                      td if i == last else None))
        return out

    # -- the n slowest -------------------------------------------------------------------
    def _handshake(self, cid):
        t = self._conns
        return _Conn(t.info(t.row(cid)), None).handshake()

    def _top_record(self, r):
        cid = _i(r.get("conn"))
        t = self._conns
        row = t.row(cid)
        if row < 0:
            return
        seq = t.count[row]
        t.count[row] = seq + 1
        tp = _timing_part(r, None)
        key = tp[0]
        if self._keys is not None and seq:
            # every key of a connection with more than one transaction (the first's is
            # still fkey when the second comes): their order is the candidates' index
            keys = self._keys.get(cid)
            if keys is None:
                keys = self._keys[cid] = array("q", [t.fkey[row]])
            keys.append(key)
        own = _own_stages(tp)
        low, low_start = _span(own)
        if seq and key >= t.fkey[row]:
            # not the connection's first: its total is final
            if low >= self._cut:
                self._offer([low, low_start, cid, key, seq, tp + _ident_part(r), False,
                             low, low_start])
            return
        # the connection's first transaction so far, which carries the handshake; if a
        # later record takes its place, its total falls to that of its own stages (low)
        hs = self._handshake(cid)
        total, start = _span(_lead_stages(tp, hs) + own) if hs is not None \
            else (low, low_start)
        old = t.fentry.pop(row, None)
        t.fkey[row] = key
        if old is not None:
            old[0], old[1], old[6] = old[7], old[8], False
        if total >= self._cut:
            e = [total, start, cid, key, seq, tp + _ident_part(r), True, low, low_start]
            t.fentry[row] = e
            self._offer(e)

    def _offer(self, e: list) -> None:
        """Keep candidate ``e``: ``[total, start, conn id, key, seq, projection, first,
        low, low_start]``, where a connection's first transaction (``first``) may still
        fall to ``low``. When many are kept, the n-th largest of the totals they are sure
        to have is the cut: those that cannot reach it are dropped (ties kept), and
        twice as many are let in before the next pruning."""
        kept = self._kept
        kept.append(e)
        if len(kept) < self._limit:
            return
        cut = self._cut = _nth_total([x[7] if x[6] else x[0] for x in kept], self.n)
        keep = []
        for x in kept:
            if x[0] >= cut:
                keep.append(x)
            elif x[6]:
                # a first transaction dropped: its connection keeps only its key
                t = self._conns
                row = t.row(x[2])
                if t.fentry.get(row) is x:
                    del t.fentry[row]
        self._kept = keep
        self._limit = max(4 * self.n + 64, 2 * len(keep))

    def _top_finish(self):
        n = self.n
        entries = self._kept
        cut = _nth_total([e[0] for e in entries], n)
        if cut is not None:
            entries = [e for e in entries if e[0] >= cut]
        if self._candidates:
            # creation index: the transactions of the connections before, then the place
            # in its connection (by first frame, then record order)
            t = self._conns
            rows = {t.row(e[2]) for e in entries}
            offset, at = {}, 0
            for row in range(len(t)):
                if row in rows:
                    offset[row] = at
                at += t.count[row]
            ranks: dict = {}
            out = []
            for e in entries:
                cid = e[2]
                rank = ranks.get(cid)
                if rank is None:
                    keys = self._keys.get(cid) or array("q", [0])
                    order = sorted(range(len(keys)), key=keys.__getitem__)
                    rank = ranks[cid] = {seq: i for i, seq in enumerate(order)}
                out.append((offset[t.row(cid)] + rank[e[4]], self._build(e)))
            out.sort(key=lambda x: x[0])
            return out
        row = self._conns.row
        entries.sort(key=lambda e: (-e[0], e[1], row(e[2]), e[3], e[4]))
        return [self._build(e) for e in entries[:n]]

    def _build(self, e: list) -> dict:
        cid = e[2]
        return _tx_record(cid, e[5], self._handshake(cid) if e[6] else None, None)


class SlowestCandidates(TimingObserver):
    """What :func:`slowest_candidates` returns: ``(creation index, timing record)`` of
    every transaction at least as slow as the ``n``-th slowest (ties kept), in creation
    order (connection order, then the transaction's place in its connection)."""

    def __init__(self, n: int = 5):
        TimingObserver.__init__(self, None, n)
        self._candidates = True
        if self._top:
            self._keys = {}


def _first_frame(p: tuple):
    return p[0]


def _precomputed(result, n):
    """The ``n`` slowest a split run's workers found (``result.slowest_timings``), or
    None."""
    pre = getattr(result, "slowest_timings", None)
    if pre is not None and pre[0] >= n:
        return pre[1][:n]
    return None


def timing_records(result, frames=None) -> list[dict]:
    """Timing records for every transaction in ``result`` (an engine Result, or anything
    with ``.connections`` and ``.records``); ``frames`` is the FrameTable of the same run.
    In order of their first stage's start (equal starts: connection order, then the
    transaction's place in its connection)."""
    return run(result, TimingObserver(frames))


def _start(r: dict) -> float:
    return r["stages"][0]["start_ts"] if r["stages"] else 0.0


def _total(r: dict) -> float:
    return r.get("total_s") or 0


def slowest(result, n: int = 5) -> list[dict]:
    """The ``n`` slowest transactions' timing records, slowest first (equal totals in
    :func:`timing_records` order). A split run leaves its workers' candidates in
    ``result.slowest_timings`` (``(n, records)``, see :func:`slowest_candidates`), which
    give the same answer without timing every transaction again."""
    pre = _precomputed(result, n)
    if pre is not None:
        return pre
    return run(result, TimingObserver(n=n))


def slowest_candidates(result, n: int = 5) -> list[tuple[int, dict]]:
    """(creation index, record) of the timing records of ``result`` that can be among the
    ``n`` slowest of a capture holding its connections and others: every record at least
    as slow as its own ``n``-th slowest (ties kept). Only candidates are kept while the
    records are read (:class:`SlowestCandidates`), so this holds a handful of timing
    records, not one per transaction. The creation index orders records of equal start as
    :func:`timing_records` does."""
    return run(result, SlowestCandidates(n))


def _nth_total(totals: list, n: int):
    """The ``n``-th largest of ``totals``, or None when there are no more than ``n``."""
    if len(totals) <= n:
        return None
    return sorted(totals, reverse=True)[n - 1]


def _at_least_nth(kept: list, n: int) -> list:
    cut = _nth_total([_total(r) for _j, r in kept], n)
    if cut is None:
        return kept
    return [x for x in kept if _total(x[1]) >= cut]
