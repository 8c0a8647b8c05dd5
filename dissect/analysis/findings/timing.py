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
"""

from __future__ import annotations

from dissect.analysis.findings import ACK, FIN, RST, SYN

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

# TLS records whose frames belong to the handshake (the TLS parser's record types)
TLS_TYPES = ("tls", "tls-handshake", "tls-session")

# bursts examined on an encrypted/unparsed connection: more exchanges than this on one
# connection are summarised by the first ones (a long-lived stream is not a transaction)
MAX_EXCHANGES_PER_CONN = 64
# stages that start at the same instant are listed in this order
_STAGE_ORDER = {name: i for i, name in enumerate(OSI_OF_STAGE)}


def _stage(name, start, end, frames) -> dict | None:
    if start is None or end is None:
        return None
    return {"name": name, "osi": OSI_OF_STAGE[name], "start_ts": start,
            "duration_s": round(max(0.0, end - start), 6), "frames": sorted(set(frames))}


def _finish(rec: dict) -> dict:
    st = [s for s in rec["stages"] if s is not None]
    st.sort(key=lambda s: (s["start_ts"], _STAGE_ORDER[s["name"]]))
    rec["stages"] = st
    if st:
        t0 = st[0]["start_ts"]
        t1 = max(s["start_ts"] + s["duration_s"] for s in st)
        rec["total_s"] = round(t1 - t0, 6)
        rec["slowest"] = max(st, key=lambda s: s["duration_s"])["name"]
    else:
        rec["total_s"], rec["slowest"] = 0.0, None
    return rec


class _Conn:
    """What timing needs to know about one connection."""

    def __init__(self, rec: dict, table):
        self.rec = rec
        self.id = rec["id"]
        self.tcp = rec.get("proto") == "tcp"
        self.table = table
        self.frames = table.frames(self.id) if table is not None else []

    def ts(self, f):
        return self.table.time(f) if self.table is not None else None

    def handshake(self):
        """(start, end, frames, syn_retries) of the TCP handshake, or None. A handshake
        never answered runs from the first SYN to the last retransmitted one."""
        hs = self.rec.get("handshake") or {}
        t = self.table
        if self.tcp and not hs.get("syn_ack") and t is not None:
            syns = [f for f in self.frames if t.flags[f] & SYN and not t.flags[f] & ACK
                    and t.direction[f] == CLIENT]
            if syns:
                return t.ts[syns[0]], t.ts[syns[-1]], syns, len(syns) - 1
        if not self.tcp or not hs:
            return None
        if t is None:
            rtt = hs.get("rtt_s")
            if rtt is None:
                return None
            return self.rec["start_ts"], self.rec["start_ts"] + rtt, \
                [f for f in (hs.get("syn"), hs.get("syn_ack"), hs.get("ack")) if f], None
        end_frame = hs.get("ack") or hs.get("syn_ack")
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


def _identify(rec: dict) -> dict:
    keys = TRANSACTION_TYPES.get(rec.get("type"), ())
    out = {}
    for k in keys:
        v = rec.get(k)
        if v is None:
            continue
        if k == "arg" and (rec.get("command") or "").upper() in SECRET_COMMANDS:
            continue
        out[k] = v
    return out


def _bounds(rec: dict, conn: _Conn):
    """(req_first, req_last, resp_first, resp_last) as (ts, frame) pairs, or None each."""
    t = conn.table
    frames = [f for f in rec.get("frames") or [] if isinstance(f, int)]
    req = resp = []
    if t is not None and frames:
        req = [f for f in frames if t.has(f) and t.direction[f] == CLIENT]
        resp = [f for f in frames if t.has(f) and t.direction[f] == SERVER]
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
        for k in ("response_ts",):
            if rec.get(k) is not None:
                rs = ((rec[k], rec.get("response_frame")),) * 2
        if rs[0] is None and rq[0] is not None and rec.get("response_time_s") is not None:
            p = (rq[1][0] + rec["response_time_s"], rec.get("response_frame"))
            rs = (p, p)
    return rq[0], rq[1], rs[0], rs[1]


def _l7_stages(rq0, rq1, rs0, rs1, frames_req, frames_resp) -> list:
    out = []
    if rq0 is not None:
        out.append(_stage("request", rq0[0], rq1[0], frames_req))
    if rq1 is not None and rs0 is not None:
        out.append(_stage("wait", rq1[0], rs0[0], [f for f in (rq1[1], rs0[1]) if f]))
    elif rq1 is None and rs0 is not None:
        pass
    if rs0 is not None:
        out.append(_stage("transfer", rs0[0], rs1[0], frames_resp))
    return out


def _tls_info(records_by_conn, cid):
    tls = [r for r in records_by_conn.get(cid, ()) if r.get("type") in TLS_TYPES]
    return tls


def _tls_stage(conn: _Conn, tls: list, after: float | None):
    """The TLS handshake stage from the tls records' frames, else from the burst pattern."""
    t = conn.table
    frames = sorted({f for r in tls for f in (r.get("handshake_frames") or r.get("frames") or [])
                     if isinstance(f, int)})
    version = next((r.get("version") for r in tls if r.get("version")), None)
    if t is None:
        if frames and all(isinstance(r.get("ts"), (int, float)) for r in tls):
            return None
        return None
    ch = next((r.get("client_hello_frame") for r in tls if r.get("client_hello_frame")), None)
    end = next((r.get(k) for r in tls for k in ("handshake_end_frame", "server_finished_frame")
                if r.get(k)), None)
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


def timing_records(result, frames=None) -> list[dict]:
    """Timing records for every transaction in ``result`` (an engine Result, or anything
    with ``.connections`` and ``.records``); ``frames`` is the FrameTable of the same run.
    In order of their first stage's start (equal starts: connection order, then the
    transaction's place in its connection)."""
    out = list(_timing_iter(result, frames))
    out.sort(key=_start)
    return out


def _start(r: dict) -> float:
    return r["stages"][0]["start_ts"] if r["stages"] else 0.0


def _timing_iter(result, frames=None):
    """The timing records of :func:`timing_records`, one at a time, connection by
    connection (not yet in start order)."""
    conns = {c["id"]: _Conn(c, frames) for c in result.connections
             if c.get("type", "connection") == "connection"}
    by_conn: dict = {}
    for r in result.records:
        by_conn.setdefault(r.get("conn"), []).append(r)
    for cid, conn in conns.items():
        recs = by_conn.get(cid, [])
        txs = [r for r in recs if r.get("type") in TRANSACTION_TYPES
               and not (r.get("type") == "dns" and r.get("query_frame") is None)]
        txs += _smtp_messages(recs, conn)
        txs.sort(key=lambda r: min([f for f in r.get("frames") or [] if isinstance(f, int)]
                                   or [0]))
        tls = _tls_info(by_conn, cid)
        if not tls and not txs and conn.tcp and looks_like_tls(frames, cid):
            tls = [{"type": "tls", "conn": cid, "inferred": True}]
        proto = (conn.rec.get("app") or (txs[0]["type"] if txs else None)
                 or ("tls" if tls else None))
        if not txs and conn.tcp and frames is not None:
            # encrypted, unparsed, or never established: exchanges from the packets
            yield from _exchanges(conn, proto, tls)
            continue
        hs = conn.handshake() if conn.tcp else None
        td = conn.teardown() if conn.tcp else None
        for i, r in enumerate(txs):
            rq0, rq1, rs0, rs1 = _bounds(r, conn)
            fr = [f for f in r.get("frames") or [] if isinstance(f, int)]
            t = frames
            freq = [f for f in fr if t is not None and t.has(f) and t.direction[f] == CLIENT] \
                or [x[1] for x in (rq0, rq1) if x and x[1]]
            fresp = [f for f in fr if t is not None and t.has(f) and t.direction[f] == SERVER] \
                or [x[1] for x in (rs0, rs1) if x and x[1]]
            stages = []
            transaction = _identify(r)
            if r.get("type") in ("ftp", "smtp", "pop3", "imap") and r.get("command") is None:
                transaction["command"] = "(greeting)"
            if i == 0 and hs is not None:
                stages.append(_stage("handshake", hs[0], hs[1], hs[2]))
                if hs[3]:
                    transaction["syn_retries"] = hs[3]
                if rq0 is None and rs0 is not None:     # a server greeting: wait from ACK
                    gfr = [f for f in (hs[2][-1], rs0[1]) if f]
                    stages.append(_stage("wait", hs[1], rs0[0], gfr))
            stages += _l7_stages(rq0, rq1, rs0, rs1, freq, fresp)
            if i == len(txs) - 1 and td is not None:
                stages.append(_stage("teardown", td[0], td[1], td[2]))
            yield _finish({"type": "timing", "conn": cid, "protocol": r["type"],
                           "transaction": transaction, "stages": stages})


def _smtp_messages(recs: list, conn: _Conn) -> list[dict]:
    """The message sent after DATA answered 354 as its own transaction: request = the
    message bytes (client frames after the 354 up to the envelope's last frame), response =
    the server's final reply. Needs the frame table (the envelope has no reply frame)."""
    t = conn.table
    if t is None:
        return []
    out = []
    datas = [r for r in recs if r.get("type") == "smtp" and r.get("command") == "DATA"
             and r.get("reply_code") == 354 and r.get("reply_frame")]
    for env in recs:
        if env.get("type") != "smtp-envelope" or not env.get("data_bytes"):
            continue
        last = max([f for f in env.get("frames") or [] if isinstance(f, int)] or [0])
        d = [r for r in datas if r["reply_frame"] < last]
        if not d:
            continue
        start = d[-1]["reply_frame"]
        req = conn.payload_frames(CLIENT, start + 1, last)
        if not req:
            continue
        resp = conn.payload_frames(SERVER, req[-1] + 1)[:1]
        out.append({"type": "smtp", "command": "(message)", "conn": conn.id,
                    "reply_code": env.get("reply_code"), "frames": req + resp,
                    "reply_ts": env.get("reply_ts")})
    return out


def _exchanges(conn: _Conn, proto, tls) -> list[dict]:
    """Encrypted (TLS) or unparsed TCP: each client burst + following server burst."""
    t = conn.table
    hs = conn.handshake()
    td = conn.teardown()
    start = 0
    pre = []
    if hs is not None:
        pre.append(_stage("handshake", hs[0], hs[1], hs[2]))
    if tls:
        got = _tls_stage(conn, tls, None)
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
            transaction["outcome"] = ("unanswered" if not (conn.rec.get("handshake") or {})
                                      .get("syn_ack") else "no data") \
                if conn.rec.get("state") != "REJ" else "refused"
        sni = next((r.get("sni") for r in tls if r.get("sni")), None)
        if sni:
            transaction["sni"] = sni
        if n == 0 and hs is not None and hs[3]:
            transaction["syn_retries"] = hs[3]
        if n == len(pairs) - 1 and len(pairs) >= MAX_EXCHANGES_PER_CONN:
            transaction["more_exchanges_not_shown"] = True
        out.append(_finish({"type": "timing", "conn": conn.id, "protocol": proto or "tcp",
                            "transaction": transaction, "stages": stages}))
    return out


def _total(r: dict) -> float:
    return r.get("total_s") or 0


def slowest(result, n: int = 5) -> list[dict]:
    """The ``n`` slowest transactions' timing records, slowest first (equal totals in
    :func:`timing_records` order). A split run leaves its workers' candidates in
    ``result.slowest_timings`` (``(n, records)``, see :func:`slowest_candidates`), which
    give the same answer without timing every transaction again."""
    pre = getattr(result, "slowest_timings", None)
    if pre is not None and pre[0] >= n:
        return pre[1][:n]
    return sorted(timing_records(result), key=lambda r: -_total(r))[:n]


def slowest_candidates(result, n: int = 5) -> list[tuple[int, dict]]:
    """(creation index, record) of the timing records of ``result`` that can be among the
    ``n`` slowest of a capture holding its connections and others: every record at least
    as slow as its own ``n``-th slowest (ties kept). Records are timed one at a time and
    only candidates kept, so this holds a handful of records, not one per transaction.
    The creation index orders records of equal start as :func:`timing_records` does."""
    kept: list = []
    for i, r in enumerate(_timing_iter(result)):
        kept.append((i, r))
        if len(kept) >= 4 * n + 64:
            kept = _at_least_nth(kept, n)
    return _at_least_nth(kept, n)


def _at_least_nth(kept: list, n: int) -> list:
    if len(kept) <= n:
        return kept
    cut = sorted((_total(r) for _i, r in kept), reverse=True)[n - 1]
    return [x for x in kept if _total(x[1]) >= cut]
