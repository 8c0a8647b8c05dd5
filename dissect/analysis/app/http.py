"""HTTP/1.0 and HTTP/1.1 (RFC 9110, RFC 9112) over one TCP connection.

Sans-I/O. :class:`HttpParser` reads the client stream as requests and the server stream as
responses and pairs them in order (pipelining and keep-alive included). Message bodies are
delimited as RFC 9112 section 6.3 says: none for HEAD responses, 1xx, 204 and 304; a tunnel
after a 2xx to CONNECT; chunked transfer coding (with trailers); Content-Length; otherwise,
for a response, the end of the connection. Interim 1xx responses (``100 Continue``) are kept
in the transaction's ``informational`` list. Headers are kept in order as ``[name, value]``
pairs.

Upgrades: ``101 Switching Protocols`` to ``websocket`` hands the rest of both streams to a
:class:`dissect.analysis.app.websocket.WsSession` inside this same parser (records of type
``websocket``); to ``h2c`` it hands them to :mod:`dissect.analysis.app.http2` when that module
exists, and otherwise stops after the upgrade record. The client's bytes after a request that
asks for an upgrade (or a CONNECT) are held until the answer arrives, since they belong to the
new protocol only if the server agrees.

Records: ``{"type": "http", ...}`` per request/response pair (see :func:`HttpParser._record`),
emitted when both messages are complete (or at the end of the connection). Bad input: named
anomalies; a malformed start line is followed by a resynchronisation at the next line that
looks like a start line; over-size header data stops the connection's parsing (memory and
time stay bounded); a gap inside a body is counted and skipped.
"""

from __future__ import annotations

import email.utils
import hashlib
import importlib
import re
from collections import deque

from dissect.analysis.app.base import CLIENT, SERVER, StreamParser, anomaly
from dissect.analysis.app.ftp import TextStream
from dissect.analysis.app.websocket import WsSession
from dissect.protocols.base import Layer

# Request and status lines: Apache's LimitRequestLine is 8190 and nginx's large header buffer
# 8 KiB; twice that is no longer a URL anyone sends but a stream that is not HTTP.
MAX_START_LINE = 16384
# One header block (all field lines of one message): h11 and Node.js stop at 16-80 KiB,
# Apache at 100 fields x 8 KiB. 256 KiB keeps every real message and bounds a runaway one.
MAX_HEADER_BLOCK = 256 * 1024
# Field lines per message: Apache's LimitRequestFields is 100; 512 leaves room for the
# cookie-heavy browsers while stopping a header flood.
MAX_HEADERS = 512
# Hex digits of a chunk size (leading zeros aside): 16 digits are 64 bits; more overflow.
MAX_CHUNK_SIZE_DIGITS = 16
# A chunk-size line with extensions; nothing legitimate comes close.
MAX_CHUNK_LINE = 4096
# Requests waiting for their responses (pipelined or unanswered); beyond this the oldest is
# flushed as unanswered so memory stays bounded on a one-sided capture.
MAX_PENDING = 10000
# Bytes skipped while looking for the next start line before giving up on the connection.
MAX_RESYNC_BYTES = 8 * 1024 * 1024
# Client bytes held after an Upgrade/CONNECT request while its answer is awaited: a real
# client sends little before the 101/200 (a WebSocket frame or an h2 preface); more than this
# with no answer means the answer was not captured, and holding more would be unbounded.
MAX_HELD_BYTES = 1 << 20

# RFC 9110 5.6.2 token characters, for methods and field names
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"^(" + _TOKEN + rb") +(\S+) +(HTTP/[01]\.\d) *$")
_STATUS_LINE = re.compile(rb"^(HTTP/[01]\.\d) +(\d{3})(?: (.*))?$")
# greedy value, stripped afterwards: a lazy value before optional trailing blanks is
# quadratic on a long run of blanks
_HEADER = re.compile(rb"^(" + _TOKEN + rb")[ \t]*:(.*)$")
_CHUNK = re.compile(rb"^[ \t]*([0-9A-Fa-f]+)[ \t]*(;.*)?$")

# Methods known without a well-formed request line: the list Wireshark's HTTP dissector
# recognises (RFC 9110, WebDAV, CalDAV, DeltaV, SSDP, Cisco CCM, MS RPC over HTTP). A line
# starting with one of them and a space is read as a request even when the rest is irregular
# (no version, a bad version), with an anomaly, as Wireshark does.
METHODS = frozenset(b"""GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH PROPFIND PROPPATCH
    MKCOL COPY MOVE LOCK UNLOCK SEARCH REPORT CHECKIN CHECKOUT MERGE LABEL UPDATE
    VERSION-CONTROL MKWORKSPACE MKACTIVITY BASELINE-CONTROL UNCHECKOUT ORDERPATCH ACL BIND
    UNBIND REBIND MKCALENDAR SUBSCRIBE UNSUBSCRIBE NOTIFY POLL BPROPFIND BPROPPATCH BCOPY
    BDELETE BMOVE M-SEARCH CCM_POST CCM_GET RPC_CONNECT RPC_IN_DATA RPC_OUT_DATA PURGE""".split())
_OTHER_VERSION = re.compile(rb"^[A-Za-z][A-Za-z0-9-]*/\d+\.\d+$")
_LOOSE_REQUEST_LINE = re.compile(rb"^(" + _TOKEN + rb")(?: (\S*)(?: +(.*))?)?$")


def _request_line(line: bytes):
    """(method, target, version, strict) of a request line, or None."""
    m = _REQUEST_LINE.match(line)
    if m:
        return m.group(1), m.group(2), m.group(3), True
    m = _LOOSE_REQUEST_LINE.match(line)
    if m and m.group(1) in METHODS:
        rest = (m.group(3) or b"").rstrip(b" ")
        last = rest.rsplit(b" ", 1)[-1]
        if _OTHER_VERSION.match(last) and not last.startswith(b"HTTP/"):
            return None          # RTSP/1.0, SIP/2.0...: another protocol's request line
        return m.group(1), m.group(2) or b"", last if last.startswith(b"HTTP/") else None, False
    return None


# client/server reader states
START, HEADERS, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, UNTIL_CLOSE, RESYNC, \
    HELD, DONE = ("start", "headers", "body", "chunk-size", "chunk-data", "chunk-end",
                  "trailers", "until-close", "resync", "held", "done")


def _fields(m) -> dict:
    """``m``'s headers as lower-case name -> its values in order, made once per message, on
    the first question (every question is asked once its header block is complete)."""
    hm = m.hmap
    if hm is None:
        hm = {}
        for k, v in m.headers:
            lk = k.lower()
            vals = hm.get(lk)
            if vals is None:
                hm[lk] = [v]
            else:
                vals.append(v)
        m.hmap = hm
    return hm


def _mh(m, name: str):
    """The last value of ``m``'s header ``name`` (lower case), or None."""
    vals = _fields(m).get(name)
    return vals[-1] if vals else None


def retry_after_seconds(value: str | None, date: str | None, ts: float | None):
    """Retry-After (RFC 9110 10.2.3) in seconds: delta-seconds, or an HTTP-date minus the
    response's Date (or minus the capture time when the response has no Date)."""
    if value is None:
        return None
    v = value.strip()
    if v.isdigit():
        return int(v)
    try:
        when = email.utils.parsedate_to_datetime(v).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    base = None
    if date:
        try:
            base = email.utils.parsedate_to_datetime(date.strip()).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            base = None
    if base is None:
        base = ts
    if base is None:
        return None
    return round(when - base, 3)


# Short strings that repeat from message to message (methods, versions, reasons, header
# names and common values) are one object each: a capture has tens of thousands of
# transactions and the same few dozen strings in all of them. Bounded, for traffic where
# they do not repeat.
_TEXTS: dict = {}
MAX_TEXTS = 8192
MAX_TEXT_LEN = 64


def _text(b: bytes) -> str:
    s = _TEXTS.get(b)
    if s is None:
        s = b.decode("latin-1")
        if len(b) <= MAX_TEXT_LEN and len(_TEXTS) < MAX_TEXTS:
            _TEXTS[bytes(b)] = s
    return s


# The digest of an empty body (most requests): one string for all of them; other digests
# are unique and kept as they come.
_EMPTY_SHA256 = hashlib.sha256().hexdigest()


# The keys of an HTTP record, in their order, all None. A record is a copy of this dict
# with its values put in: a copy keeps this dict's compact table of string keys (16-byte
# entries, 832 bytes for a record), where a dict display in a compiled module is made with
# a general one (24-byte entries, 1168 bytes); tests/analysis/app/test_http.py checks the
# size. (From a tuple: dict.fromkeys of a dict or set would also make the general kind.)
_RECORD = dict.fromkeys((
    "type", "conn", "frames", "method", "target", "host", "version", "status", "reason",
    "request_headers", "response_headers", "request_trailers", "response_trailers",
    "request_body_len", "response_body_len", "request_body_sha256",
    "request_transfer_encoding", "response_transfer_encoding", "idempotency_key",
    "retry_after", "content_encoding", "content_type", "request_content_type",
    "informational", "request_ts", "response_ts", "response_time_s", "request_frame",
    "response_frame", "request_gaps", "response_gaps", "incomplete",
))


def _digest(h: str) -> str:
    return _EMPTY_SHA256 if h == _EMPTY_SHA256 else h


# A request's body hash before its first body byte: most requests have no body, and a
# hash object is made only for those that do. (None: no hash, after a gap.)
_UNHASHED = object()


def _hash_body(m, data) -> None:
    sha = m.sha
    if sha is _UNHASHED:
        sha = m.sha = hashlib.sha256()
    sha.update(data)


class _Msg:
    """One request or response being read."""

    __slots__ = (
        "body_len",
        "broken",
        "complete",
        "frames",
        "gaps",
        "header_bytes",
        "headers",
        "hmap",
        "informational",
        "method",
        "queued",
        "reason",
        "sha",
        "start",
        "status",
        "target",
        "te",
        "trailers",
        "ts",
        "version",
    )

    def __init__(self, frames, ts):
        self.start = None
        self.method = self.target = self.version = self.status = self.reason = None
        self.headers: list[list[str]] = []
        self.trailers: list[list[str]] = []
        self.frames = list(frames)
        self.ts = ts
        self.body_len = 0
        self.sha = None
        self.gaps = 0
        self.header_bytes = 0
        self.complete = False
        self.te = None
        self.informational: list[int] = []
        self.broken = False
        self.queued = False          # already in the transaction queue
        self.hmap = None             # lower-case name -> values (_fields), once asked for

    def add_frames(self, frames):
        fr = self.frames
        for f in frames:
            if f not in fr[-8:]:
                fr.append(f)


class _Side:
    __slots__ = ("left", "msg", "resync_bytes", "state", "stream")

    def __init__(self):
        self.stream = TextStream(MAX_START_LINE)
        self.state = START
        self.msg: _Msg | None = None
        self.left = 0
        self.resync_bytes = 0


class HttpParser(StreamParser):
    name = "http"
    ports = (80, 8080, 8000, 8008, 8081, 8888, 3128, 591, 81)
    probe_max = 0.95

    @classmethod
    def probe(cls, client_head: bytes, server_head: bytes, sport: int, dport: int) -> float:
        score = 0.0
        if client_head:
            line = client_head.split(b"\n", 1)[0].rstrip(b"\r")
            rl = _request_line(line)
            if rl:
                score = 0.95 if rl[3] else 0.85
            else:
                method = line.split(b" ", 1)[0]
                if method in METHODS and b" " in line and len(line) >= len(client_head) - 1:
                    score = 0.6     # a request line still being received
                else:
                    return 0.0 if not server_head.startswith(b"HTTP/1.") else 0.5
        if server_head:
            line = server_head.split(b"\n", 1)[0].rstrip(b"\r")
            if _STATUS_LINE.match(line):
                score = max(score, 0.9)
            elif server_head.startswith(b"HTTP/1."):
                score = max(score, 0.6)
            elif score:
                score = min(score, 0.85)   # HTTP/0.9 answers, or something else entirely
        return score

    # bodies bypass the stream buffer when nothing else is buffered (feed); the tests turn
    # it off to compare
    body_fast_path = True

    def __init__(self, conn=None, meta=None):
        super().__init__(conn, meta)
        self.sides = [_Side(), _Side()]
        self.txns: deque = deque()      # [request _Msg | None, response _Msg | None]
        self.answered = 0               # txns[:answered] have a (started) final response
        self.stopped = False
        self.upgraded = None            # WsSession / http2 parser after 101
        self.upgraded_name = None

    # ---------------------------------------------------------------- driving
    def feed(self, direction: int, data: bytes, frame: int, ts: float) -> list[dict]:
        if self.upgraded is not None:
            return self._sub("feed", direction, data, frame, ts)
        if self.stopped or not data:
            return []
        s = self.sides[direction]
        st = s.state
        if self.body_fast_path and not s.stream.buf and (
                st == UNTIL_CLOSE or ((st == BODY or st == CHUNK_DATA) and len(data) < s.left)):
            # a piece of a body that does not end the message (bulk transfers are mostly
            # this): what push, take and the body step below do with it, without them.
            # No state changes, so the other direction has nothing new to do either.
            m = s.msg
            m.add_frames((frame,))
            m.body_len += len(data)
            if m.sha is not None:
                _hash_body(m, data)
            if st != UNTIL_CLOSE:
                s.left -= len(data)
            return []
        s.stream.push(data, frame, ts)
        if s.state == HELD and len(s.stream) > MAX_HELD_BYTES:
            return self._stop("http-upgrade-answer-not-seen", frame,
                              f"over MAX_HELD_BYTES ({MAX_HELD_BYTES}) client bytes after an "
                              f"Upgrade/CONNECT request without its answer")
        return self._run()

    def gap(self, direction: int, size: int, frame: int, ts: float) -> list[dict]:
        if self.upgraded is not None:
            return self._sub("gap", direction, size, frame, ts)
        if self.stopped:
            return []
        out = self._run()
        if self.stopped:
            return out
        s = self.sides[direction]
        if s.state in (BODY, CHUNK_DATA, UNTIL_CLOSE) and not len(s.stream):
            m = s.msg
            m.gaps += 1
            m.sha = None
            if s.state == UNTIL_CLOSE:
                m.body_len += size
                return out
            take = min(size, s.left)
            m.body_len += take
            s.left -= take
            size -= take
            if s.left == 0:
                if s.state == BODY:
                    out += self._msg_done(direction)
                else:
                    s.state = CHUNK_END
            if size == 0:
                return out + self._run()
        if s.state == HELD:
            s.stream.take(len(s.stream))
            return out + [anomaly(self.name, "http-gap-after-upgrade-request", frame,
                                  f"{size} bytes missing", self.conn)]
        # the hole hides framing: what was being read is lost, look for the next start line
        out.append(anomaly(self.name, "http-gap-in-headers", frame,
                           f"{size} bytes missing in "
                           f"{'request' if direction == CLIENT else 'response'} "
                           f"framing ({s.state})", self.conn))
        s.stream.take(len(s.stream))
        s.stream.skipping = True
        if (s.msg is None or s.msg.start is None) and (
                direction == CLIENT or self.answered < len(self.txns)):
            # the hole begins a message (at least one is lost): keep its place in the
            # request/response pairing, or every later response would answer the wrong request
            s.msg = _Msg([frame], ts)
        if s.msg is not None:
            s.msg.broken = True
            s.msg.gaps += 1
            out += self._msg_done(direction)
        s.msg = None
        s.state = RESYNC
        return out

    def close(self, ts=None) -> list[dict]:
        if self.upgraded is not None:
            return self._sub("close", ts)
        out: list[dict] = []
        if not self.stopped:
            out += self._run()
            srv = self.sides[SERVER]
            if srv.state == UNTIL_CLOSE and srv.msg is not None:
                out += self._msg_done(SERVER)
            for direction, s in enumerate(self.sides):
                if s.msg is not None and s.msg.start is not None and s.state != DONE:
                    out.append(anomaly(self.name, "http-truncated-message", s.msg.frames[0]
                                       if s.msg.frames else None,
                                       f"{'request' if direction == CLIENT else 'response'} "
                                       f"incomplete at the end of the connection ({s.state})",
                                       self.conn))
                    s.msg.broken = True
                    out += self._msg_done(direction)
                    s.msg = None
        out += self._flush(final=True)
        return out

    def _sub(self, method, *args) -> list[dict]:
        try:
            return getattr(self.upgraded, method)(*args) or []
        except Exception as e:  # noqa: BLE001 - the handed-over parser's failure stays its own
            self.upgraded = _Stopped()
            return [anomaly(self.upgraded_name or "?", "parser-error", None,
                            f"{type(e).__name__}: {e}"[:300], self.conn)]

    def _run(self) -> list[dict]:
        out: list[dict] = []
        progressed = True
        while progressed and not self.stopped and self.upgraded is None:
            progressed = False
            for direction in (CLIENT, SERVER):
                while not self.stopped and self.upgraded is None:
                    step = self._step(direction)
                    if step is None:
                        break
                    out += step
                    progressed = True
        return out

    def _stop(self, name: str, frame, detail: str) -> list[dict]:
        self.stopped = True
        return [anomaly(self.name, name, frame, detail + "; parsing of this connection stopped",
                        self.conn)]

    # ---------------------------------------------------------------- one step
    def _step(self, direction: int):
        s = self.sides[direction]
        st = s.state
        if st in (HELD, DONE):
            return None
        if st in (BODY, CHUNK_DATA, UNTIL_CLOSE):
            if not len(s.stream):
                return None
            n = len(s.stream) if st == UNTIL_CLOSE else s.left
            raw, frames, _t0, _t1 = s.stream.take(n)
            m = s.msg
            m.add_frames(frames)
            m.body_len += len(raw)
            if m.sha is not None:
                _hash_body(m, raw)
            if st == UNTIL_CLOSE:
                return []
            s.left -= len(raw)
            if s.left:
                return []
            if st == CHUNK_DATA:
                s.state = CHUNK_END
                return []
            return self._msg_done(direction)
        # line-oriented states
        s.stream.max_line = (MAX_CHUNK_LINE if st in (CHUNK_SIZE, CHUNK_END) else
                             MAX_HEADER_BLOCK if st in (HEADERS, TRAILERS) else MAX_START_LINE)
        item = s.stream.line()
        if item is None:
            return None
        line, frames, t0, _t1, too_long = item
        if st == RESYNC:
            s.resync_bytes += len(line) + 1
            if not too_long and (_request_line(line) if direction == CLIENT
                                 else _STATUS_LINE.match(line)):
                s.state = START
                s.resync_bytes = 0
                return self._start_line(direction, line, frames, t0)
            if s.resync_bytes > MAX_RESYNC_BYTES:
                return self._stop("http-resync-failed", frames[0],
                                  f"no start line in {MAX_RESYNC_BYTES} bytes")
            return []
        if st == START:
            if too_long:
                return self._stop("http-start-line-too-long", frames[0],
                                  f"start line over MAX_START_LINE ({MAX_START_LINE}) bytes")
            if not line:
                return []       # RFC 9112 2.2: empty lines before a request line are ignored
            return self._start_line(direction, line, frames, t0)
        m = s.msg
        m.add_frames(frames)
        if st in (HEADERS, TRAILERS):
            m.header_bytes += len(line) + 2
            if too_long or m.header_bytes > MAX_HEADER_BLOCK:
                return self._stop("http-header-block-too-large", frames[0],
                                  f"header block over MAX_HEADER_BLOCK ({MAX_HEADER_BLOCK}) "
                                  f"bytes")
            if not line:
                return self._headers_done(direction) if st == HEADERS else self._msg_done(direction)
            return self._header_line(direction, line, frames)
        if st == CHUNK_END:
            s.state = CHUNK_SIZE
            if line:
                return [anomaly(self.name, "http-bad-chunk-terminator", frames[0],
                                repr(line[:32]), self.conn)] + self._chunk_size(direction, line,
                                                                                frames)
            return []
        if st == CHUNK_SIZE:
            if too_long:
                return self._stop("http-chunk-line-too-long", frames[0],
                                  f"chunk-size line over MAX_CHUNK_LINE ({MAX_CHUNK_LINE})")
            return self._chunk_size(direction, line, frames)
        return None

    def _chunk_size(self, direction, line, frames) -> list[dict]:
        s = self.sides[direction]
        if not line:
            return []          # tolerate a stray empty line before a chunk size
        mm = _CHUNK.match(line)
        if not mm:
            out = [anomaly(self.name, "http-bad-chunk-size", frames[0], repr(line[:32]),
                           self.conn)]
            s.msg.broken = True
            out += self._msg_done(direction)
            s.state, s.msg = RESYNC, None
            return out
        digits = mm.group(1).lstrip(b"0") or b"0"
        if len(digits) > MAX_CHUNK_SIZE_DIGITS:
            return self._stop("http-chunk-size-overflow", frames[0],
                              f"chunk size with {len(digits)} hex digits (over "
                              f"MAX_CHUNK_SIZE_DIGITS {MAX_CHUNK_SIZE_DIGITS})")
        size = int(digits, 16)
        if size == 0:
            s.state = TRAILERS
            return []
        s.state, s.left = CHUNK_DATA, size
        return []

    # ---------------------------------------------------------------- start lines, headers
    def _start_line(self, direction, line, frames, ts) -> list[dict]:
        s = self.sides[direction]
        if direction == CLIENT:
            rl = _request_line(line)
            if rl is None:
                s.state = RESYNC
                s.resync_bytes = len(line) + 1
                return [anomaly(self.name, "http-bad-request-line", frames[0],
                                repr(line[:64]), self.conn)]
            out = [] if rl[3] else [anomaly(self.name, "http-irregular-request-line", frames[0],
                                            repr(line[:64]), self.conn)]
            m = _Msg(frames, ts)
            m.start = line
            m.method = _text(rl[0])
            m.target = _text(rl[1])
            m.version = _text(rl[2]) if rl[2] else None
            m.sha = _UNHASHED      # hashed from its first body byte (_hash_body)
        else:
            mm = _STATUS_LINE.match(line)
            if not mm:
                s.state = RESYNC
                s.resync_bytes = len(line) + 1
                return [anomaly(self.name, "http-bad-status-line", frames[0],
                                repr(line[:64]), self.conn)]
            m = _Msg(frames, ts)
            m.start = line
            m.version = _text(mm.group(1))
            m.status = int(mm.group(2))
            m.reason = _text(mm.group(3) or b"")
            out = []
        m.header_bytes = len(line) + 2
        s.msg = m
        s.state = HEADERS
        return out

    def _header_line(self, direction, line, frames) -> list[dict]:
        m = self.sides[direction].msg
        target = m.trailers if self.sides[direction].state == TRAILERS else m.headers
        if line[:1] in (b" ", b"\t") and target:
            # obsolete line folding (RFC 9112 5.2): a continuation of the previous value
            target[-1][1] += " " + line.strip().decode("latin-1")
            return []
        mm = _HEADER.match(line)
        if not mm:
            return [anomaly(self.name, "http-bad-header-line", frames[0], repr(line[:64]),
                            self.conn)]
        if len(m.headers) + len(m.trailers) >= MAX_HEADERS:
            return self._stop("http-too-many-headers", frames[0],
                              f"over MAX_HEADERS ({MAX_HEADERS}) field lines")
        target.append([_text(mm.group(1)), _text(mm.group(2).strip(b" \t"))])
        return []

    def _headers_done(self, direction) -> list[dict]:
        s = self.sides[direction]
        m = s.msg
        out: list[dict] = []
        frame = m.frames[0] if m.frames else None
        te = _fields(m).get("transfer-encoding")
        cl = _fields(m).get("content-length")
        if direction == SERVER:
            req = self._request_for_response()
            method = req.method if req is not None else None
            if 100 <= m.status < 200 and m.status != 101:
                # interim response: remember it on the transaction, read the next response
                self._interim(m)
                s.msg, s.state = None, START
                return out
            no_body = (method == "HEAD" or m.status in (101, 204, 304))
            if method == "CONNECT" and 200 <= m.status < 300:
                self._attach_response(m)
                m.complete = True
                s.state, s.msg = DONE, None
                out += self._flush()
                self.stopped = True      # a tunnel: the rest is not HTTP
                return out
        else:
            no_body = False
        if te and not no_body:
            codings = [c.strip().lower() for v in te for c in v.split(",") if c.strip()]
            m.te = ", ".join(codings)
            if cl:
                out.append(anomaly(self.name, "http-te-and-content-length", frame,
                                   "both Transfer-Encoding and Content-Length (RFC 9112 6.3: "
                                   "Transfer-Encoding wins; a request smuggling sign)", self.conn))
            if codings and codings[-1] == "chunked":
                s.state = CHUNK_SIZE
            elif direction == SERVER:
                s.state = UNTIL_CLOSE
            else:
                out.append(anomaly(self.name, "http-bad-transfer-encoding", frame,
                                   f"request Transfer-Encoding {m.te!r} without chunked last",
                                   self.conn))
                s.state = UNTIL_CLOSE
        elif cl and not no_body:
            vals = {v.strip() for c in cl for v in c.split(",")}
            if len(vals) != 1 or not next(iter(vals)).isdigit():
                out.append(anomaly(self.name, "http-bad-content-length", frame,
                                   repr(sorted(vals))[:64], self.conn))
                s.state = UNTIL_CLOSE if direction == SERVER else START
            else:
                s.left = int(next(iter(vals)))
                s.state = BODY if s.left else START
        elif direction == SERVER and not no_body:
            s.state = UNTIL_CLOSE
        else:
            s.state = START
        if direction == SERVER:
            self._attach_response(m)
        else:
            self._add_request(m, out)
        if s.state == START:
            out += self._msg_done(direction)
        return out

    # ---------------------------------------------------------------- transactions
    def _add_request(self, m, out) -> None:
        if len(self.txns) - self.answered >= MAX_PENDING:
            out.append(anomaly(self.name, "http-too-many-pending", m.frames[0],
                               f"over MAX_PENDING ({MAX_PENDING}) unanswered requests; the "
                               f"oldest is reported unanswered", self.conn))
            # force the oldest unanswered out
            t = self.txns[self.answered]
            t[1] = _Msg([], None)
            t[1].complete = True
            t[1].broken = True
            self.answered += 1
        m.queued = True
        self.txns.append([m, None])

    def _request_for_response(self):
        if self.answered < len(self.txns):
            return self.txns[self.answered][0]
        return None

    def _interim(self, m) -> None:
        if self.answered < len(self.txns):
            self.txns[self.answered][0].informational.append(m.status)
            self.txns[self.answered][0].add_frames(m.frames)
        else:
            req = _Msg([], None)
            req.complete = True
            req.informational.append(m.status)
            req.add_frames(m.frames)
            self.txns.append([req, None])
            req.method = None
            req.broken = True

    def _attach_response(self, m) -> None:
        m.queued = True
        if self.answered < len(self.txns):
            self.txns[self.answered][1] = m
        else:
            req = _Msg([], None)
            req.complete = True
            req.broken = True       # placeholder: the request was never seen
            req.start = None
            self.txns.append([req, m])
        self.answered += 1

    def _msg_done(self, direction) -> list[dict]:
        s = self.sides[direction]
        m = s.msg
        out: list[dict] = []
        if m is None:
            return out
        m.complete = True
        if not m.queued:
            if direction == CLIENT:
                self._add_request(m, out)
            else:
                self._attach_response(m)
        s.msg = None
        if s.state not in (RESYNC, DONE):
            s.state = START
        answered = (self.txns and self.txns[-1][0] is m and self.txns[-1][1] is not None
                    and self.txns[-1][1].complete)
        if direction == CLIENT and not m.broken and not answered and (
                m.method == "CONNECT" or _mh(m, "upgrade") is not None):
            s.state = HELD      # what follows belongs to the new protocol if the server agrees
        if direction == SERVER and m.status == 101 and not m.broken:
            req = next((t[0] for t in self.txns if t[1] is m), None)
            out += self._flush()
            out += self._switch(m, req)
            return out
        if direction == SERVER:
            self._release_client(m)
        out += self._flush()
        return out

    def _release_client(self, resp) -> None:
        c = self.sides[CLIENT]
        # the answer to the held request (the newest one) ends the wait
        if c.state == HELD and ((self.txns and self.txns[-1][1] is resp)
                                or self.answered >= len(self.txns)):
            c.state = START

    def _flush(self, final: bool = False) -> list[dict]:
        out = []
        while self.txns:
            req, resp = self.txns[0]
            if not final and not (req is not None and req.complete and resp is not None
                                  and resp.complete):
                break
            self.txns.popleft()
            self.answered = max(0, self.answered - 1)
            out.append(self._record(req, resp))
        return out

    def _record(self, req: _Msg | None, resp: _Msg | None) -> dict:
        rq = req if req is not None and req.start is not None else None
        rs = resp if resp is not None and resp.start is not None else None
        frames = sorted(set((req.frames if req else []) + (resp.frames if resp else [])))
        # a copy of _RECORD (see there; its values are None) with the values put in
        rec: dict = _RECORD.copy()
        rec["type"] = "http"
        rec["conn"] = self.conn
        rec["frames"] = frames
        rec["version"] = (rq.version if rq else None) or (rs.version if rs else None)
        rec["request_headers"] = rq.headers if rq else []
        rec["request_trailers"] = rq.trailers if rq else []
        rec["informational"] = req.informational if req else []
        rec["request_gaps"] = req.gaps if req else 0
        rec["response_gaps"] = resp.gaps if resp else 0
        rec["incomplete"] = bool((req is not None and req.broken and (rq is not None or req.gaps))
                                 or (resp is not None and resp.broken))
        if rq:
            rec["method"] = rq.method
            rec["target"] = rq.target
            rec["host"] = _mh(rq, "host")
            rec["request_body_len"] = rq.body_len
            sha = rq.sha
            if sha is not None:
                rec["request_body_sha256"] = (_EMPTY_SHA256 if sha is _UNHASHED
                                              else _digest(sha.hexdigest()))
            rec["request_transfer_encoding"] = rq.te
            rec["request_content_type"] = _mh(rq, "content-type")
            rec["request_ts"] = rq.ts
            if rq.frames:
                rec["request_frame"] = rq.frames[0]
            rec["idempotency_key"] = (_mh(rq, "idempotency-key")
                                      or _mh(rq, "x-idempotency-key"))
            if not rs:
                rec["content_encoding"] = _mh(rq, "content-encoding")
        if rs:
            rec["status"] = rs.status
            rec["reason"] = rs.reason
            rec["response_headers"] = rs.headers
            rec["response_trailers"] = rs.trailers
            rec["response_body_len"] = rs.body_len
            rec["response_transfer_encoding"] = rs.te
            rec["response_ts"] = rs.ts
            if rs.frames:
                rec["response_frame"] = rs.frames[0]
            if rq and rq.ts is not None and rs.ts is not None:
                rec["response_time_s"] = round(rs.ts - rq.ts, 6)
            rec["retry_after"] = retry_after_seconds(_mh(rs, "retry-after"),
                                                     _mh(rs, "date"), rs.ts)
            rec["content_encoding"] = _mh(rs, "content-encoding")
            rec["content_type"] = _mh(rs, "content-type")
            up = _mh(rs, "upgrade")
            if rs.status == 101 and up:
                rec["upgrade"] = up.strip().lower()
            if rq and rq.method == "CONNECT" and 200 <= rs.status < 300:
                rec["tunnel"] = True
        return rec

    # ---------------------------------------------------------------- upgrades
    def _switch(self, resp: _Msg, req: _Msg | None) -> list[dict]:
        proto = (_mh(resp, "upgrade") or "").strip().lower()
        out: list[dict] = []
        sub = None
        if proto == "websocket":
            sub, self.upgraded_name = WsSession(self.conn), "websocket"
        elif proto == "h2c":
            try:
                mod = importlib.import_module("dissect.analysis.app.http2")
                cls = next(c for c in getattr(mod, "PARSERS", ()) if c.name == "http2")
                sub = cls(conn=self.conn, meta=self.meta)
                self.upgraded_name = "http2"
                start = getattr(sub, "start_after_upgrade", None)
                if start is not None:
                    # RFC 9113 3.2 (RFC 7540 3.2): the upgraded request is stream 1
                    rq = req if req is not None and req.start is not None else None
                    start(method=rq.method if rq else None, path=rq.target if rq else None,
                          authority=_mh(rq, "host") if rq else None,
                          headers=[[k.lower(), v] for k, v in rq.headers] if rq else None,
                          frame=rq.frames[0] if rq and rq.frames else None,
                          ts=rq.ts if rq else None)
            except (ImportError, StopIteration):
                sub = None
            except Exception as e:  # noqa: BLE001 - its constructor failing stays contained
                out.append(anomaly("http2", "parser-error", resp.frames[0],
                                   f"{type(e).__name__}: {e}"[:300], self.conn))
                sub = None
        self.stopped = True
        out += self._flush(final=True)
        if sub is None:
            return out
        self.upgraded = sub
        # the bytes already received after the handshake belong to the new protocol
        for direction in (CLIENT, SERVER):
            st = self.sides[direction].stream
            chunks = st.pieces()
            st.take(len(st))
            for data, frame, ts in chunks:
                out += self._sub("feed", direction, data, frame, ts)
        return out


class _Stopped:
    """What a failed hand-over leaves behind: nothing more is read."""

    def feed(self, *a):
        return []

    gap = feed
    close = feed


def dissect_payload(data: bytes, offset: int) -> list[Layer]:
    """An HTTP/1.x request or response whose start line begins the segment: start-line
    fields and each header with exact frame offsets, the body (what the segment holds of it)
    raw. [] when the segment does not start with a request or status line."""
    nl = data.find(b"\n")
    first = data[:nl if nl >= 0 else len(data)].rstrip(b"\r")
    req = _REQUEST_LINE.match(first)
    rsp = None if req else _STATUS_LINE.match(first)
    if not req and not rsp:
        return []
    layer = Layer("http", offset, len(data))
    if req:
        layer.add("http.request.method", req.group(1).decode("latin-1"), offset + req.start(1),
                  req.end(1) - req.start(1), "request method (RFC 9110 9)")
        layer.add("http.request.uri", req.group(2).decode("latin-1"), offset + req.start(2),
                  req.end(2) - req.start(2), "request target (RFC 9112 3.2)")
        layer.add("http.request.version", req.group(3).decode("latin-1"),
                  offset + req.start(3), req.end(3) - req.start(3))
    else:
        layer.add("http.response.version", rsp.group(1).decode("latin-1"),
                  offset + rsp.start(1), rsp.end(1) - rsp.start(1))
        layer.add("http.response.code", int(rsp.group(2)), offset + rsp.start(2), 3,
                  "status code (RFC 9110 15)")
        if rsp.group(3) is not None:
            layer.add("http.response.phrase", rsp.group(3).decode("latin-1"),
                      offset + rsp.start(3), rsp.end(3) - rsp.start(3))
    if nl < 0:
        return [layer]
    pos = nl + 1
    ended = False
    while pos < len(data):
        e = data.find(b"\n", pos)
        if e < 0:
            break
        line = data[pos:e]
        ln = len(line) - 1 if line.endswith(b"\r") else len(line)
        line = line[:ln]
        whole = e + 1 - pos          # a header field spans its line terminator (as Wireshark)
        if not line:
            ended = True
            pos = e + 1
            if pos < len(data):
                layer.add("http.file_data", data[pos:], offset + pos, len(data) - pos,
                          "message body (as far as this segment holds it)")
            break
        mm = _HEADER.match(line)
        if mm:
            name = mm.group(1).decode("latin-1")
            layer.add(f"http.header.{name.lower()}", mm.group(2).strip(b" \t").decode("latin-1"),
                      offset + pos, whole, name)
        else:
            layer.add("http.header_line", line.decode("latin-1"), offset + pos, whole)
            layer.anomalies.append("http-bad-header-line")
        pos = e + 1
    if not ended:
        layer.anomalies.append("http-headers-continue-in-next-segment")
    return [layer]


PARSERS = [HttpParser]
