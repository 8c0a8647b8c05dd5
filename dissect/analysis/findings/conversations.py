"""The classic comparison table, one row per conversation (TCP connection or UDP flow).

For each conversation, with the evidence for every column:

* ``model`` - ``client-server`` (one side offers a service on a well-known/registered port
  and the other opened the conversation to it, or a request/response protocol names the
  roles) or ``peer-to-peer`` (both ends talk between ports outside the well-known services,
  neither plays a server role: e.g. RTP between two hosts after a STUN check). Media relayed
  through a TURN server (port 3478) is client-server: the relay is the server.
* ``connection`` - ``stateless request-response`` (each exchange stands alone: DNS, one HTTP
  request per connection, a one-shot data connection, UDP echo) or ``persistent`` (the
  conversation outlives an exchange: keep-alive with several requests, WebSocket, gRPC/HTTP/2
  streams, mail and FTP sessions, media streams).
* ``transport`` - TCP, UDP or QUIC (QUIC headers seen on the UDP flow).
* ``reliability`` - what was seen: TCP retransmissions and missed bytes (TCP analysis), RTP
  loss and duplicates from sequence numbers (RFC 3550 A.3), DNS query retransmissions; UDP
  without any of those says "no recovery at transport".
* ``use`` - browsing, API, chat / real-time messaging, media streaming, mail, file transfer,
  name lookup, NAT traversal, ... from the application protocol and its content.

Record: ``{"type": "conversation", "conn", "client", "server", "protocol", "model",
"connection", "transport", "reliability", "use", "evidence": {column: text}}``.

The table is made by :class:`ConversationObserver` in one pass over a run's records
(:mod:`dissect.analysis.observe`): a small tuple per connection and, per connection with
application records, counters and the few values the evidence quotes.
"""

from __future__ import annotations

import sys
from collections import namedtuple

from dissect.analysis.findings.timing import looks_like_tls
from dissect.analysis.observe import Observer, run

# ports below which a port is a service port (IANA system ports)
SYSTEM_PORTS = 1024
# registered service ports above 1023 that name a server role
SERVICE_PORTS = {1433: "mssql", 1883: "mqtt", 2525: "smtp", 3306: "mysql", 3478: "stun/turn",
                 5060: "sip", 5061: "sips", 5222: "xmpp", 5349: "turns", 5353: "mdns",
                 5432: "postgresql", 5672: "amqp", 6379: "redis", 8000: "http-alt",
                 8008: "http-alt", 8080: "http-alt", 8443: "https-alt", 8888: "http-alt",
                 9090: "http-alt", 9200: "elasticsearch", 27017: "mongodb", 50051: "grpc"}
# a keep-alive connection idle/open longer than this with one exchange is still persistent
LONG_LIVED_S = 60.0

USE_BY_PROTOCOL = {
    "http": "browsing", "http2": "browsing", "grpc": "API (RPC)",
    "websocket": "chat / real-time messaging",
    "smtp": "mail (sending)", "imap": "mail (reading)", "pop3": "mail (reading)",
    "ftp": "file transfer (control)", "ftp-data": "file transfer (data)",
    "dns": "name lookup", "stun": "NAT traversal", "rtp": "media streaming (voice/video)",
    "dtls": "real-time media key exchange (DTLS)", "quic": "web (HTTP/3 over QUIC)",
    "tls": "encrypted (TLS)",
}
PERSISTENT_SESSION = {"smtp", "imap", "pop3", "ftp", "websocket", "grpc", "http2", "rtp"}
PORT_USE = {7: ("echo (diagnostics)", "echo"), 22: ("remote shell", "ssh"),
            80: ("web (HTTP)", "http"), 8080: ("web (HTTP)", "http-alt"),
            50051: ("API (gRPC)", "grpc"),
            443: ("web (HTTPS)", "https"), 853: ("name lookup (DNS over TLS)", "dot"),
            993: ("mail (reading, IMAPS)", "imaps"), 995: ("mail (reading, POP3S)", "pop3s"),
            465: ("mail (sending, SMTPS)", "smtps"), 123: ("time sync", "ntp"),
            67: ("address assignment", "dhcp"), 68: ("address assignment", "dhcp"),
            5060: ("voice signalling", "sip"), 1883: ("IoT messaging", "mqtt")}


def _ep(ip, port) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _service(port: int) -> bool:
    return port < SYSTEM_PORTS or port in SERVICE_PORTS


# record types that name a conversation's protocol, the first one present wins
PROTOCOL_ORDER = ("websocket", "grpc", "http2", "http", "ftp-data", "ftp", "smtp", "imap",
                  "pop3", "dns", "quic", "rtp", "dtls", "stun", "tls")
# one bit per record type the columns look for, so a connection's types are one int
_BIT = {t: 1 << i for i, t in enumerate(PROTOCOL_ORDER + ("rtcp",))}
_PROTOCOL_BITS = tuple((t, _BIT[t]) for t in PROTOCOL_ORDER)
_RTC = _BIT["rtp"] | _BIT["stun"] | _BIT["dtls"] | _BIT["rtcp"]
_RTP, _STUN = _BIT["rtp"], _BIT["stun"]
# session protocols whose records with a command are counted per connection
COMMAND_TYPES = frozenset({"smtp", "imap", "pop3", "ftp"})
# TLS records (the TLS parser's types) that timing reads for a connection's handshake
TLS_TYPES = ("tls", "tls-handshake", "tls-session")
_SKIP = object()
_intern = sys.intern


# What a conversation reads of one connection record (made by _project): scalars, the
# repeated strings interned. ``extra`` holds the endpoints when they have more keys than ip
# and port (as _flat gives them); ``handshake`` and ``state`` are kept only when exchanges
# are counted from a frame table.
_Conn = namedtuple("_Conn", ("id", "proto", "app", "cip", "cport", "sip", "sport", "syn",
                             "start_ts", "duration_s", "pk_client", "pk_server",
                             "retransmissions", "missed_bytes", "extra", "handshake", "state"))


def _interned(v):
    return _intern(v) if type(v) is str else v


def _flat(d) -> tuple:
    """A sub-record of scalars (an endpoint, a handshake) as (key, value, key, value, ...),
    its strings interned."""
    out = []
    for k, v in d.items():
        out.append(k)
        out.append(_interned(v))
    return tuple(out)


def _unflat(t: tuple) -> dict:
    return dict(zip(t[0::2], t[1::2]))


def _project(c: dict, timing: bool) -> _Conn:
    """The projection of connection record ``c``; its handshake and state only when
    ``timing`` (exchanges counted from a frame table)."""
    cl, sv = c["client"], c["server"]
    hs = c.get("handshake")
    pk = c.get("packets")
    proto, app, cip, sip = c.get("proto", "?"), c.get("app"), cl["ip"], sv["ip"]
    return tuple.__new__(_Conn, (
        c["id"],        # one per connection: nothing to share by interning it
        _intern(proto) if type(proto) is str else proto,
        _intern(app) if type(app) is str else app,
        _intern(cip) if type(cip) is str else cip, cl["port"],
        _intern(sip) if type(sip) is str else sip, sv["port"],
        hs.get("syn") if hs else None, c.get("start_ts"), c.get("duration_s"),
        pk.get("client") if pk else None, pk.get("server") if pk else None,
        c.get("retransmissions"), c.get("missed_bytes"),
        None if len(cl) == 2 and len(sv) == 2 else (_flat(cl), _flat(sv)),
        _flat(hs) if timing and hs else None,
        _interned(c.get("state")) if timing else None))


def _endpoints(conn: _Conn) -> tuple[dict, dict]:
    """The connection's ``client`` and ``server`` sub-records again."""
    if conn.extra is not None:
        return _unflat(conn.extra[0]), _unflat(conn.extra[1])
    return {"ip": conn.cip, "port": conn.cport}, {"ip": conn.sip, "port": conn.sport}


class _Recs:
    """What a conversation needs of one connection's application records: counters and
    the few values the evidence quotes, added to record by record (:meth:`add`)."""

    __slots__ = ("types", "n_http", "n_dns", "n_h2", "commands", "dns_rx", "ctypes", "sni",
                 "alpn", "n_rtp", "lost", "expected", "dups", "first_rtp", "src", "both_ways",
                 "encodings", "payload_types", "stun_min", "stun_unframed", "methods",
                 "tx", "tls")

    def __init__(self):
        self.types = self.n_http = self.n_dns = self.n_h2 = self.dns_rx = 0
        self.n_rtp = self.lost = self.expected = self.dups = 0
        self.commands = self.ctypes = self.sni = self.alpn = self.first_rtp = None
        self.src = self.encodings = self.payload_types = self.stun_min = None
        self.methods = self.tls = None
        self.both_ways = self.stun_unframed = self.tx = False

    def add(self, r: dict, tx_types) -> None:
        """One record of the connection (``tx_types``: timing's transaction record types,
        when the exchanges are counted)."""
        t = r.get("type")
        bit = _BIT.get(t)
        if bit is not None:
            self.types |= bit
        if not self.sni:        # the first one given, by a record of any type
            v = r.get("sni")
            if v:
                self.sni = _interned(v)
        if not self.alpn:
            v = r.get("alpn")
            if v:
                self.alpn = _interned(v)
        if t == "http":
            # the content types the evidence quotes, two per record ("" when absent); no
            # list while they are all absent (the common case)
            self.n_http += 1
            ct, rt = r.get("content_type"), r.get("response_content_type")
            if ct or rt or self.ctypes is not None:
                if self.ctypes is None:
                    self.ctypes = [""] * (2 * self.n_http - 2)
                self.ctypes.append(_intern(str(ct)) if ct else "")
                self.ctypes.append(_intern(str(rt)) if rt else "")
        elif t == "dns":
            self.n_dns += 1
            if r.get("retransmission"):
                self.dns_rx += 1
        elif t == "grpc" or t == "http2":
            self.n_h2 += 1
        elif t == "rtp":
            self._rtp(r)
        elif t == "stun":
            fr = r.get("frames")
            if fr:
                m = min(fr)
                if self.stun_min is None or m < self.stun_min:
                    self.stun_min = m
            else:
                self.stun_unframed = True
            if self.methods is None:
                self.methods = set()
            self.methods.add(_intern(str(r.get("method"))))
        elif t in COMMAND_TYPES and r.get("command"):
            if self.commands is None:
                self.commands = {}
            self.commands[t] = self.commands.get(t, 0) + 1
        if tx_types is not None:
            self._timing(r, t, tx_types)

    def _rtp(self, r: dict) -> None:
        self.n_rtp += 1
        self.lost += max(0, r.get("lost") or 0)
        self.expected += r.get("expected") or 0
        self.dups += r.get("duplicates") or 0
        first = r.get("first_frame") or min(r.get("frames") or [0])
        if self.first_rtp is None or first < self.first_rtp:
            self.first_rtp = first
        if not self.both_ways:
            src = tuple(r.get("src") or ())
            if self.src is None:
                self.src = tuple(_interned(x) for x in src)
            elif src != self.src:
                self.both_ways = True
        if self.payload_types is None:
            self.payload_types = set()
        self.payload_types.add(_intern(str(r.get("payload_type"))))
        enc = r.get("encoding")
        if enc:
            if self.encodings is None:
                self.encodings = set()
            self.encodings.add(_intern(str(enc)))

    def _timing(self, r: dict, t, tx_types) -> None:
        """The facts timing's exchange count needs: whether the connection has a
        transaction record, and what its TLS records say of the handshake."""
        if t in tx_types and not (t == "dns" and r.get("query_frame") is None):
            self.tx = True
        elif t in TLS_TYPES:
            if self.tls is None:
                self.tls = []
            self.tls.append((t, _interned(r.get("version")), r.get("client_hello_frame"),
                             r.get("handshake_end_frame"), r.get("server_finished_frame"),
                             _interned(r.get("sni"))))


_NO_RECS = _Recs()
_HTTP = _BIT["http"]


def _plain_http(r: dict) -> bool:
    """An HTTP record that only counts (no content type, SNI or ALPN to quote): most of
    them, so a connection with only such records keeps their number, not a _Recs."""
    return r.get("type") == "http" and not (
        r.get("content_type") or r.get("response_content_type") or r.get("sni")
        or r.get("alpn"))


def _recs_of(s, scratch: _Recs | None = None) -> _Recs:
    """A connection's _Recs from what the pass kept: None (no record), the number of
    plain HTTP records, or a _Recs. For a number, ``scratch`` (a _Recs of no other use
    that is only read until the next call) is filled in, else a new one."""
    if s is None:
        return _NO_RECS
    if type(s) is int:
        recs = scratch if scratch is not None else _Recs()
        recs.types = _HTTP
        recs.n_http = s
        return recs
    return s


def _protocol(conn: _Conn, recs: _Recs) -> str | None:
    types = recs.types
    if types:
        for t, bit in _PROTOCOL_BITS:
            if types & bit:
                return t
    app = conn.app
    return None if app in (None, "rtc") else app


def _model(conn: _Conn, recs: _Recs, proto):
    c, s = _ep(conn.cip, conn.cport), _ep(conn.sip, conn.sport)
    cport, sport = conn.cport, conn.sport
    ev = []
    rtc = recs.types & _RTC
    if rtc and not _service(sport) and not _service(cport):
        ev.append(f"both ends on non-service ports ({c} <-> {s})")
        if rtc & _STUN and rtc & _RTP:
            first_rtp = recs.first_rtp
            first_stun = first_rtp if recs.stun_unframed else recs.stun_min
            if recs.stun_min is not None and recs.stun_min < first_stun:
                first_stun = recs.stun_min
            if first_stun <= first_rtp:
                ev.append("STUN connectivity check, then RTP on the same ports")
        if recs.both_ways:
            ev.append("media sent both ways")
        return "peer-to-peer", "; ".join(ev)
    if rtc and sport in (3478, 5349):
        what = "media relayed through" if rtc & _RTP else "requests to"
        return "client-server", f"{what} the STUN/TURN service at {s}"
    if conn.proto == "tcp":
        if conn.syn is not None:
            ev.append(f"{c} opened the connection (SYN) to {s}")
        else:
            ev.append(f"no SYN seen; server side guessed from ports ({sport})")
    else:
        ev.append(f"{c} sent first, to {s}")
    if _service(sport):
        name = SERVICE_PORTS.get(sport)
        ev.append(f"server port {sport}" + (f" ({name})" if name else " (system port)"))
    if proto in USE_BY_PROTOCOL and proto not in ("rtp", "stun", "dtls", "tls", "quic"):
        ev.append(f"{proto} requests/responses name the roles")
    if not _service(sport) and not _service(cport) and proto is None:
        return "peer-to-peer", "; ".join(ev + ["no service port and no request/response "
                                                  "protocol: no server role seen"])
    return "client-server", "; ".join(ev)


def _connection(conn: _Conn, recs: _Recs, proto, exchanges=0):
    dur = conn.duration_s or 0.0
    if proto in (None, "tls") and conn.proto == "tcp" and exchanges > 1:
        what = "encrypted " if proto == "tls" else ""
        return "persistent", f"{exchanges} {what}request/response exchanges (client burst, " \
                             "server burst) on one connection"
    if proto == "websocket":
        return "persistent", "HTTP Upgrade to WebSocket: one long-lived message channel"
    if proto in ("grpc", "http2"):
        return "persistent", f"HTTP/2 connection multiplexing {recs.n_h2} stream record(s)"
    if proto == "http":
        n = recs.n_http
        if n > 1:
            return "persistent", f"keep-alive: {n} requests on one connection"
        if dur > LONG_LIVED_S:
            return "persistent", f"one request, connection open {dur:.0f} s"
        return "stateless request-response", "one request/response on the connection"
    if proto == "dns":
        return "stateless request-response", f"{recs.n_dns} independent query/response pair(s)"
    if proto == "ftp-data":
        return "stateless request-response", "one transfer per data connection (opened, " \
                                             "sent, closed)"
    if proto == "rtp":
        return "persistent", "continuous media stream (RTP sequence)"
    if proto in ("smtp", "imap", "pop3", "ftp"):
        n = (recs.commands or {}).get(proto, 0)
        return "persistent", f"stateful {proto.upper()} session: {n} commands on one connection"
    if proto in ("stun",):
        return "stateless request-response", "STUN binding transactions"
    pc, ps = conn.pk_client, conn.pk_server
    np_ = (pc or 0) + (ps or 0)
    if conn.proto == "udp":
        if pc and ps and abs(pc - ps) <= 1:
            return "stateless request-response", \
                f"{pc} datagrams answered by {ps}: one reply per request"
        return "persistent" if dur > LONG_LIVED_S else "stateless request-response", \
            f"{np_} datagrams over {dur:.1f} s"
    if dur > LONG_LIVED_S:
        return "persistent", f"open {dur:.0f} s"
    return "stateless request-response", f"{np_} packets over {dur:.1f} s, no protocol " \
                                         "showing more than one exchange"


def _reliability(conn: _Conn, recs: _Recs):
    parts = []
    if conn.proto == "tcp":
        n = conn.retransmissions or 0
        parts.append(f"{n} TCP retransmission(s)" if n else "no TCP retransmissions")
        if conn.missed_bytes:
            parts.append(f"{conn.missed_bytes} bytes missed by the capture")
        summary = "retransmissions" if n else "clean"
        return summary, "; ".join(parts)
    summary = "no recovery at transport (UDP)"
    if recs.n_rtp:
        lost = recs.lost
        parts.append(f"RTP: {lost} of {recs.expected} packets lost, {recs.dups} duplicate(s) "
                     f"over {recs.n_rtp} SSRC(s) (sequence numbers)")
        summary = "loss seen" if lost else "no loss seen"
    if recs.dns_rx:
        parts.append(f"{recs.dns_rx} DNS query retransmission(s) (application-level retry)")
        summary = "application retries"
    if not parts:
        parts.append("UDP: no sequence numbers or acknowledgements to recover loss")
    return summary, "; ".join(parts)


def _use(conn: _Conn, recs: _Recs, proto):
    server_port = conn.sport
    if proto == "http":
        ctypes = " ".join(recs.ctypes).lower() if recs.ctypes is not None \
            else " " * max(0, 2 * recs.n_http - 1)
        if any(x in ctypes for x in ("json", "xml", "protobuf", "grpc")) and "html" not in ctypes:
            return "API", f"response content types: {ctypes.strip() or '?'}"
        return "browsing", "HTTP requests" + (f" ({ctypes.strip()})" if ctypes.strip() else "")
    if proto in USE_BY_PROTOCOL:
        ev = f"{proto} records"
        if proto == "tls":
            sni = recs.sni or None
            alpn = recs.alpn or None
            if server_port in PORT_USE:
                return PORT_USE[server_port][0], \
                    f"TLS to port {server_port}" + (f", SNI {sni}" if sni else "")
            return "encrypted (TLS)", "TLS" + (f", SNI {sni}" if sni else "") + \
                (f", ALPN {alpn}" if alpn else "")
        if proto == "stun":
            ev = f"STUN {', '.join(sorted(recs.methods or ()))} transactions"
        if proto in ("rtp",):
            enc = sorted(recs.encodings or ())
            ev = "RTP payload " + (", ".join(enc) if enc else "types " + ", ".join(
                sorted(recs.payload_types or ())))
        return USE_BY_PROTOCOL[proto], ev
    for port in (server_port, conn.cport):
        if port in PORT_USE:
            return PORT_USE[port][0], f"port {port} ({PORT_USE[port][1]}); no parser confirmed it"
    return "unknown", "no application protocol recognised"


def _conversation(conn: _Conn, recs: _Recs, frames, exchanges: int) -> dict:
    proto = _protocol(conn, recs)
    if proto is None and conn.proto == "tcp" and looks_like_tls(frames, conn.id):
        proto = "tls"      # ClientHello record header seen, no TLS parser record
    model, mev = _model(conn, recs, proto)
    ctype, cev = _connection(conn, recs, proto, exchanges)
    rel, rev = _reliability(conn, recs)
    use, uev = _use(conn, recs, proto)
    transport = "QUIC" if proto == "quic" else str(conn.proto).upper()
    if proto == "quic":
        tev = "QUIC long/short headers on UDP"
    elif transport == "TCP":
        tev = f"TCP ({'SYN handshake' if conn.syn else 'no handshake seen'})"
    else:
        tev = "UDP datagrams"
    if conn.extra is None:
        client, server = {"ip": conn.cip, "port": conn.cport}, {"ip": conn.sip, "port": conn.sport}
    else:
        client, server = _endpoints(conn)
    return {"type": "conversation", "conn": conn.id,
            "client": client, "server": server, "protocol": proto,
            "model": model, "connection": ctype, "transport": transport,
            "reliability": rel, "use": use,
            "start_ts": conn.start_ts, "duration_s": conn.duration_s,
            "evidence": {"model": mev, "connection": cev, "transport": tev,
                         "reliability": rev, "use": uev}}


class _Run:
    """The part of a Result timing reads: some connection and application records."""

    def __init__(self, connections: list, records: list):
        self.connections = connections
        self.records = records


class ConversationObserver(Observer):
    """The conversation table (:func:`conversation_records`) from one pass.

    ``frames`` (a FrameTable) lets encrypted or unparsed TCP connections count their
    exchanges; ``limit`` keeps only the first ``limit`` conversations, and then only those
    connections (the first ``limit`` connection records, as the table is in connection
    order) and their application records are kept. ``count`` is the number of
    conversations there are, kept or not."""

    def __init__(self, frames=None, limit: int | None = None):
        self.frames = frames
        self.limit = limit
        self.count = 0
        self._room = limit          # connections still to keep (None: all)
        self._with_frames = frames is not None
        self._tx_types = None
        if frames is not None:
            from dissect.analysis.findings.timing import TRANSACTION_TYPES
            self._tx_types = TRANSACTION_TYPES
        self._conns: list = []      # projections of the kept connections, in order
        # kept connection id -> None (no record yet), the number of plain HTTP records
        # (_plain_http) while there are only such, or a _Recs
        self._recs: dict = {}
        self._shared = False        # two connection records with the same id

    def conn(self, c: dict) -> None:
        if c.get("type", "connection") != "connection":
            return
        self.count += 1
        room = self._room
        if room is not None:
            if room <= 0:
                return
            self._room = room - 1
        conn = _project(c, self._with_frames)
        self._conns.append(conn)
        if conn.id in self._recs:
            self._shared = True
        else:
            self._recs[conn.id] = None

    def record(self, r: dict) -> None:
        recs = self._recs
        cid = r.get("conn")
        s = recs.get(cid, _SKIP)
        if s is _SKIP:
            return
        if type(s) is not _Recs:
            tx_types = self._tx_types
            if tx_types is None:
                if _plain_http(r):
                    recs[cid] = (s or 0) + 1
                    return
                if r.get("type") not in _BIT and not (r.get("sni") or r.get("alpn")):
                    return      # nothing any column reads
            s = recs[cid] = _recs_of(s) if s is not None else _Recs()
        s.add(r, self._tx_types)

    def finish(self, res) -> list[dict]:
        frames = self.frames
        exchanges = self._exchanges() if frames is not None else {}
        out = []
        # each projection is let go once its row is made, so that the rows do not add to
        # them (fewer live objects: fewer garbage collections while a big result is held)
        conns, self._conns = self._conns, []
        recs = self._recs
        take = recs.get if self._shared else recs.pop
        scratch = _Recs()
        for i, conn in enumerate(conns):
            conns[i] = None
            out.append(_conversation(conn, _recs_of(take(conn.id, None), scratch), frames,
                                     exchanges.get(conn.id, 0)))
        return out

    def _exchanges(self) -> dict:
        """Answered client-burst/server-burst exchanges per kept TCP connection without a
        transaction record (timing's exchange records), from the projections."""
        from dissect.analysis.findings.timing import timing_records
        conns, tls = [], []
        for c in self._conns:
            s = _recs_of(self._recs.get(c.id))
            if c.proto != "tcp" or s.tx:
                continue        # timing counts no exchanges there
            client, server = _endpoints(c)
            conns.append({"type": "connection", "id": c.id, "proto": c.proto, "app": c.app,
                          "client": client, "server": server,
                          "handshake": _unflat(c.handshake) if c.handshake else {},
                          "start_ts": c.start_ts, "duration_s": c.duration_s,
                          "state": c.state})
            for t, version, ch, end, fin, sni in s.tls or ():
                tls.append({"type": t, "conn": c.id, "version": version,
                            "client_hello_frame": ch, "handshake_end_frame": end,
                            "server_finished_frame": fin, "sni": sni})
        out: dict = {}
        for t in timing_records(_Run(conns, tls), self.frames):
            if "exchange" in t["transaction"] and not t["transaction"].get("outcome"):
                out[t["conn"]] = out.get(t["conn"], 0) + 1
        return out


def conversation_records(result, frames=None, limit: int | None = None) -> list[dict]:
    """One record per connection, in connection order (the first ``limit`` only, when
    given)."""
    return run(result, ConversationObserver(frames, limit))
