"""HTTP/2 (RFC 9113) in cleartext (h2c) with HPACK (RFC 7541), and gRPC over it.

Sans-I/O. :class:`Http2Parser` reads the client connection preface, then each direction's
frames (9-byte header: length, type, flags, stream id). HEADERS/PUSH_PROMISE + CONTINUATION
header blocks are decoded with the ``hpack`` package, one decoder per direction (the dynamic
table of each direction is only consistent if every block is decoded in order, so a
decoding error is a named anomaly and stops that direction). SETTINGS, DATA sizes,
RST_STREAM, GOAWAY, PING, PRIORITY and WINDOW_UPDATE are counted.

Records:

* ``{"type": "http2", ...}`` per stream, when both sides have ended it (END_STREAM or
  RST_STREAM) or at close: method, path, authority, scheme, status, headers, trailers, DATA
  bytes each way, timestamps and frames.
* ``{"type": "grpc", ...}`` as well for a stream whose request content-type is
  ``application/grpc[+proto|...]``: service/method from ``:path``, grpc-status/grpc-message
  (trailers, or a trailers-only response), the length-prefixed messages each way (count,
  bytes, and up to :data:`MAX_GRPC_MESSAGES` messages with up to :data:`MAX_GRPC_MESSAGE_DATA`
  bytes of each as hex, for protobuf decoding elsewhere), grpc-previous-rpc-attempts and
  grpc-timeout.
* ``{"type": "http2-connection", ...}`` at close: frame counts by type and direction,
  SETTINGS each side sent, GOAWAY, WINDOW_UPDATE count.

Hand-over from HTTP/1.1 (``Upgrade: h2c``, RFC 7540 3.2): the HTTP/1.x parser creates
``p = Http2Parser(conn, meta)`` and calls ``p.start_after_upgrade(method=..., path=...,
authority=..., frame=..., ts=...)`` once the server has answered ``101 Switching Protocols``;
then it feeds ``p.feed(direction, data, frame, ts)`` with every byte after the upgrade
request (client: the connection preface and frames; server: everything after the 101
response) and forwards ``gap``/``close``. The upgraded request becomes stream 1, half-closed
by the client; its response arrives on stream 1 in HTTP/2.
"""

from __future__ import annotations

import struct
from urllib.parse import unquote

from dissect.analysis.app.base import CLIENT, SERVER, StreamParser, anomaly
from dissect.protocols.base import Layer

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PREFIX_101 = b"HTTP/1.1 101"

# RFC 9113 4.2: SETTINGS_MAX_FRAME_SIZE starts at 2^14 and may be raised to 2^24-1; a frame
# longer than the receiver advertised is a FRAME_SIZE_ERROR (we note it and carry on).
DEFAULT_MAX_FRAME_SIZE = 1 << 14
# The largest length the 24-bit field can carry: we buffer at most one such frame.
MAX_FRAME_SIZE_LIMIT = (1 << 24) - 1
# A header block (HEADERS + CONTINUATIONs) beyond 256 KiB is a CONTINUATION flood, not
# headers (servers reject far smaller; nghttp2 defaults to 64 KiB of header list).
MAX_HEADER_BLOCK = 256 * 1024
# Decoded header list size the HPACK decoder accepts (RFC 7541 leaves it to us).
MAX_HEADER_LIST = 256 * 1024
# gRPC messages kept (as hex) per call and direction-mixed order: enough for a unary call and
# a modest stream; the counts and byte totals cover all messages.
MAX_GRPC_MESSAGES = 64
# Bytes of each kept gRPC message (hex doubles it in the record).
MAX_GRPC_MESSAGE_DATA = 64 * 1024
# HTTP/2 frames listed one by one (pcap frame, direction, type) in the connection record; the
# counts cover every frame, the list is for tests and drill-down and must stay bounded.
MAX_FRAME_LOG = 4096
# Streams tracked at once; more than this open streams is a flood (RFC 9113 default
# SETTINGS_MAX_CONCURRENT_STREAMS is unlimited, servers use 100-1000).
MAX_OPEN_STREAMS = 10000


class FrameType:
    DATA = 0
    HEADERS = 1
    PRIORITY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PUSH_PROMISE = 5
    PING = 6
    GOAWAY = 7
    WINDOW_UPDATE = 8
    CONTINUATION = 9


FRAME_TYPES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS",
               5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE",
               9: "CONTINUATION"}


class Flag:
    END_STREAM = 0x1
    ACK = 0x1
    END_HEADERS = 0x4
    PADDED = 0x8
    PRIORITY = 0x20


SETTINGS_NAMES = {1: "HEADER_TABLE_SIZE", 2: "ENABLE_PUSH", 3: "MAX_CONCURRENT_STREAMS",
                  4: "INITIAL_WINDOW_SIZE", 5: "MAX_FRAME_SIZE", 6: "MAX_HEADER_LIST_SIZE",
                  8: "ENABLE_CONNECT_PROTOCOL", 9: "NO_RFC7540_PRIORITIES"}

ERROR_CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
               4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR",
               7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR",
               11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}

GRPC_STATUS = {0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT",
               4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND", 6: "ALREADY_EXISTS",
               7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
               10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL",
               14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED"}


def _dir_name(d: int) -> str:
    return "request" if d == CLIENT else "response"


class _Buf:
    """One direction's unread bytes with the frames that delivered them."""

    __slots__ = ("base", "buf", "chunks")

    def __init__(self):
        self.buf = bytearray()
        self.base = 0
        self.chunks: list = []

    def push(self, data: bytes, frame, ts) -> None:
        self.buf += data
        self.chunks.append((self.base + len(self.buf), frame, ts))

    def frame_at(self, offset: int):
        for end, frame, ts in self.chunks:
            if offset < end:
                return frame, ts
        return self.chunks[-1][1:] if self.chunks else (None, None)

    def consume(self, n: int) -> None:
        del self.buf[:n]
        self.base += n
        while self.chunks and self.chunks[0][0] <= self.base:
            self.chunks.pop(0)


class _GrpcReader:
    """Length-prefixed gRPC messages (1 byte compressed flag, 4 bytes length) in DATA."""

    __slots__ = ("bytes", "count", "cur", "head", "left")

    def __init__(self):
        self.head = bytearray()
        self.left = 0
        self.cur = None
        self.count = 0
        self.bytes = 0

    def push(self, data: bytes, direction: str, kept: list) -> None:
        i = 0
        n = len(data)
        while i < n:
            if self.cur is None:
                need = 5 - len(self.head)
                self.head += data[i:i + need]
                i += min(need, n - i)
                if len(self.head) < 5:
                    return
                comp, length = self.head[0], struct.unpack(">I", self.head[1:5])[0]
                self.head.clear()
                self.count += 1
                self.bytes += length
                self.cur = {"direction": direction, "compressed": bool(comp & 1),
                            "length": length, "data": bytearray()}
                self.left = length
                if len(kept) < MAX_GRPC_MESSAGES:
                    kept.append(self.cur)
                else:
                    self.cur["dropped"] = True
            take = min(self.left, n - i)
            room = MAX_GRPC_MESSAGE_DATA - len(self.cur["data"])
            if room > 0 and not self.cur.get("dropped"):
                self.cur["data"] += data[i:i + min(take, room)]
            i += take
            self.left -= take
            if self.left == 0:
                self.cur = None

    def partial(self) -> bool:
        return self.cur is not None or bool(self.head)


class _Stream:
    def __init__(self, sid: int):
        self.sid = sid
        self.req = None          # request headers [[k, v], ...]
        self.resp = None         # first (final) response headers
        self.informational: list = []
        self.trailers = None
        self.ended = [False, False]
        self.reset = None
        self.data = [0, 0]
        self.frames: list = []
        self.ts = [None, None]
        self.end_ts = [None, None]   # when each side ended the stream (END_STREAM)
        self.first_frame = [None, None]
        self.grpc = None          # [_GrpcReader, _GrpcReader] when gRPC
        self.messages: list = []
        self.pushed = False
        self.done = False

    def note(self, frame) -> None:
        if frame is not None and frame not in self.frames:
            self.frames.append(frame)


def _hget(headers, name):
    if not headers:
        return None
    for k, v in headers:
        if k == name:
            return v
    return None


class Http2Parser(StreamParser):
    name = "http2"
    ports = (80, 8080, 50051, 3000)
    probe_max = 0.95

    @classmethod
    def probe(cls, client_head: bytes, server_head: bytes, sport: int, dport: int) -> float:
        if client_head:
            n = min(len(client_head), len(PREFACE))
            if n >= 4 and client_head[:n] == PREFACE[:n]:
                return 0.95 if n >= 16 else 0.6
            return 0.0
        # one-sided (server only) capture: a SETTINGS frame on stream 0 first
        if len(server_head) >= 9 and server_head[3] == FrameType.SETTINGS \
                and server_head[5:9] == b"\0\0\0\0" and server_head[:3] != b"\0\0\0" \
                and int.from_bytes(server_head[:3], "big") % 6 == 0:
            return 0.4
        return 0.0

    def __init__(self, conn=None, meta=None):
        super().__init__(conn, meta)
        self.bufs = [_Buf(), _Buf()]
        self.preface_left = len(PREFACE)      # client preface bytes still expected
        self.stopped = [False, False]
        self.decoders = [None, None]
        self.block = [None, None]             # header block being assembled
        self.streams: dict[int, _Stream] = {}
        self.counts = [{}, {}]
        self.settings: list = [[], []]
        self.max_frame = [DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE]  # advertised by d
        self.goaway: list = []
        self.window_updates = 0
        self.frames_seen: list = []
        self.closed = False
        self.frame_log: list = []
        self.server_http1 = None   # server began with an HTTP/1.1 101 (upgrade, request unseen)

    # -- hand-over ------------------------------------------------------------------------
    def start_after_upgrade(self, method=None, path=None, authority=None, scheme="http",
                            headers=None, frame=None, ts=None) -> None:
        """Continue an HTTP/1.1 connection upgraded to h2c: stream 1 is the upgraded
        request (already sent in HTTP/1.1, so half-closed by the client)."""
        st = self._stream(1)
        req = [[":method", method], [":path", path], [":scheme", scheme]]
        if authority is not None:
            req.append([":authority", authority])
        st.req = ([[k, v] for k, v in req if v is not None] + [list(h) for h in headers or []]
                  if method is not None or path is not None or headers else None)
        st.ended[CLIENT] = True
        st.ts[CLIENT] = ts
        st.first_frame[CLIENT] = frame
        st.note(frame)
        ct = _hget(st.req, "content-type") or ""
        if ct.startswith("application/grpc"):
            st.grpc = [_GrpcReader(), _GrpcReader()]

    def _decoder(self, d):
        if self.decoders[d] is None:
            import hpack
            dec = hpack.Decoder()
            dec.max_header_list_size = MAX_HEADER_LIST
            self.decoders[d] = dec
        return self.decoders[d]

    # -- feeding ------------------------------------------------------------------------
    def feed(self, direction: int, data: bytes, frame: int, ts: float) -> list[dict]:
        if self.stopped[direction] or not data:
            return []
        b = self.bufs[direction]
        b.push(data, frame, ts)
        out: list[dict] = []
        if direction == CLIENT and self.preface_left:
            got = bytes(b.buf[:self.preface_left])
            start = len(PREFACE) - self.preface_left
            if got != PREFACE[start:start + len(got)]:
                out.append(anomaly(self.name, "http2-bad-preface", frame,
                                   bytes(b.buf[:24]).hex(), self.conn))
                self.stopped[CLIENT] = True
                return out
            b.consume(len(got))
            self.preface_left -= len(got)
            if self.preface_left:
                return out
        if direction == SERVER and self.server_http1 is not False:
            # the 101 response of an h2c upgrade whose request we did not see
            if self.server_http1 is None:
                if len(b.buf) < len(PREFIX_101) and PREFIX_101.startswith(bytes(b.buf)):
                    return out
                self.server_http1 = bool(b.buf.startswith(PREFIX_101))
            if self.server_http1:
                end = b.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(b.buf) > MAX_HEADER_BLOCK:
                        out.append(anomaly(self.name, "http2-bad-upgrade-response", frame,
                                           "no end of the 101 headers", self.conn))
                        self.stopped[SERVER] = True
                    return out
                b.consume(end + 4)
                self.server_http1 = False
                if 1 not in self.streams:
                    self.start_after_upgrade(frame=None, ts=None)
        while not self.stopped[direction] and len(b.buf) >= 9:
            length = int.from_bytes(b.buf[:3], "big")
            if len(b.buf) < 9 + length:
                break
            ftype, flags = b.buf[3], b.buf[4]
            sid = struct.unpack(">I", b.buf[5:9])[0] & 0x7FFFFFFF
            payload = bytes(b.buf[9:9 + length])
            fno, fts = b.frame_at(b.base + 8 + length)
            b.consume(9 + length)
            self._frame(direction, ftype, flags, sid, payload, fno, fts, out)
        return out

    def _count(self, d, ftype) -> None:
        key = FRAME_TYPES.get(ftype, f"UNKNOWN_{ftype}")
        self.counts[d][key] = self.counts[d].get(key, 0) + 1

    def _stream(self, sid) -> _Stream:
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = _Stream(sid)
        return st

    def _frame(self, d, ftype, flags, sid, payload, frame, ts, out) -> None:
        self._count(d, ftype)
        if len(self.frame_log) < MAX_FRAME_LOG:
            self.frame_log.append([frame, "client" if d == CLIENT else "server",
                                   FRAME_TYPES.get(ftype, f"UNKNOWN_{ftype}"), sid])
        if frame is not None and frame not in self.frames_seen:
            self.frames_seen.append(frame)
        limit = self.max_frame[1 - d]
        if len(payload) > limit:
            out.append(anomaly(self.name, "http2-frame-too-large", frame,
                               f"{FRAME_TYPES.get(ftype, ftype)} length {len(payload)} > "
                               f"SETTINGS_MAX_FRAME_SIZE {limit}", self.conn))
        blk = self.block[d]
        if blk is not None and ftype != FrameType.CONTINUATION:
            out.append(anomaly(self.name, "http2-continuation-expected", frame,
                               f"{FRAME_TYPES.get(ftype, ftype)} inside a header block",
                               self.conn))
            self.block[d] = None
            self.stopped[d] = True       # the HPACK state is lost with the block
            return
        if ftype == FrameType.DATA:
            self._data(d, flags, sid, payload, frame, ts, out)
        elif ftype in (FrameType.HEADERS, FrameType.PUSH_PROMISE):
            self._headers_start(d, ftype, flags, sid, payload, frame, ts, out)
        elif ftype == FrameType.CONTINUATION:
            if blk is None or blk["sid"] != sid:
                out.append(anomaly(self.name, "http2-unexpected-continuation", frame,
                                   f"stream {sid}", self.conn))
                self.stopped[d] = True
                return
            blk["data"] += payload
            blk["frames"].append(frame)
            if len(blk["data"]) > MAX_HEADER_BLOCK:
                out.append(anomaly(self.name, "http2-header-block-too-large", frame,
                                   f"> {MAX_HEADER_BLOCK} bytes", self.conn))
                self.stopped[d] = True
                return
            if flags & Flag.END_HEADERS:
                self.block[d] = None
                self._headers_done(d, blk, out)
        elif ftype == FrameType.SETTINGS:
            if not flags & Flag.ACK:
                vals = []
                for i in range(0, len(payload) - 5, 6):
                    ident, val = struct.unpack(">HI", payload[i:i + 6])
                    vals.append([SETTINGS_NAMES.get(ident, str(ident)), val])
                    if ident == 5 and (1 << 14) <= val <= MAX_FRAME_SIZE_LIMIT:
                        self.max_frame[d] = val
                    elif ident == 1:
                        # the peer's encoder may use a table this large
                        self._decoder(1 - d).max_allowed_table_size = val
                if len(payload) % 6:
                    out.append(anomaly(self.name, "http2-bad-settings", frame,
                                       f"length {len(payload)} not a multiple of 6", self.conn))
                self.settings[d].append(vals)
        elif ftype == FrameType.RST_STREAM:
            st = self.streams.get(sid)
            code = struct.unpack(">I", payload[:4])[0] if len(payload) >= 4 else None
            if st is not None and not st.done:
                st.reset = {"by": "client" if d == CLIENT else "server",
                            "error": ERROR_CODES.get(code, code), "frame": frame}
                st.note(frame)
                self._finish(st, out)
        elif ftype == FrameType.GOAWAY:
            if len(payload) >= 8:
                last, code = struct.unpack(">II", payload[:8])
                self.goaway.append({"by": "client" if d == CLIENT else "server",
                                    "last_stream_id": last & 0x7FFFFFFF,
                                    "error": ERROR_CODES.get(code, code), "frame": frame,
                                    "debug": payload[8:72].decode("utf-8", "replace")})
        elif ftype == FrameType.WINDOW_UPDATE:
            self.window_updates += 1

    def _data(self, d, flags, sid, payload, frame, ts, out) -> None:
        st = self.streams.get(sid)
        if st is None or st.done:
            if sid == 0:
                out.append(anomaly(self.name, "http2-data-on-stream-0", frame, "", self.conn))
            return
        body = self._unpad(flags, payload, frame, out)
        if body is None:
            return
        st.note(frame)
        st.data[d] += len(body)
        if st.ts[d] is None:
            st.ts[d], st.first_frame[d] = ts, frame
        if st.grpc is not None:
            st.grpc[d].push(body, _dir_name(d), st.messages)
        if flags & Flag.END_STREAM:
            st.ended[d] = True
            st.end_ts[d] = ts
            self._maybe_finish(st, out)

    def _unpad(self, flags, payload, frame, out):
        if not flags & Flag.PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            out.append(anomaly(self.name, "http2-bad-padding", frame, "", self.conn))
            return None
        return payload[1:len(payload) - payload[0]]

    def _headers_start(self, d, ftype, flags, sid, payload, frame, ts, out) -> None:
        body = self._unpad(flags, payload, frame, out)
        if body is None:
            self.stopped[d] = True     # the HPACK block cannot be found: state lost
            return
        promised = None
        if ftype == FrameType.HEADERS and flags & Flag.PRIORITY:
            body = body[5:]
        elif ftype == FrameType.PUSH_PROMISE:
            if len(body) < 4:
                out.append(anomaly(self.name, "http2-bad-push-promise", frame, "", self.conn))
                self.stopped[d] = True
                return
            promised = struct.unpack(">I", body[:4])[0] & 0x7FFFFFFF
            body = body[4:]
        blk = {"sid": sid, "type": ftype, "flags": flags, "data": bytearray(body),
               "frames": [frame], "ts": ts, "promised": promised}
        if flags & Flag.END_HEADERS:
            self._headers_done(d, blk, out)
        else:
            self.block[d] = blk

    def _headers_done(self, d, blk, out) -> None:
        import hpack
        frame = blk["frames"][-1]
        try:
            hdrs = self._decoder(d).decode(bytes(blk["data"]), raw=False)
        except (hpack.HPACKError, ValueError, IndexError, UnicodeDecodeError) as e:
            out.append(anomaly(self.name, "http2-hpack-error", frame,
                               f"{type(e).__name__}: {e}"[:200], self.conn))
            self.stopped[d] = True
            return
        hdrs = [[str(k), str(v)] for k, v in hdrs]
        sid = blk["sid"]
        if blk["type"] == FrameType.PUSH_PROMISE:
            st = self._stream(blk["promised"])
            st.req, st.pushed = hdrs, True
            st.ended[CLIENT] = True
            st.ts[CLIENT], st.first_frame[CLIENT] = blk["ts"], blk["frames"][0]
            for f in blk["frames"]:
                st.note(f)
            return
        if sid == 0:
            out.append(anomaly(self.name, "http2-headers-on-stream-0", frame, "", self.conn))
            return
        st = self.streams.get(sid)
        if st is None:
            if len(self.streams) >= MAX_OPEN_STREAMS:
                out.append(anomaly(self.name, "http2-too-many-streams", frame,
                                   f"> {MAX_OPEN_STREAMS} streams", self.conn))
                self.stopped[d] = True
                return
            st = self._stream(sid)
        if st.done:
            return
        for f in blk["frames"]:
            st.note(f)
        if d == CLIENT:
            if st.req is None:
                st.req = hdrs
                st.ts[CLIENT], st.first_frame[CLIENT] = blk["ts"], blk["frames"][0]
                ct = _hget(hdrs, "content-type") or ""
                if ct.startswith("application/grpc"):
                    st.grpc = [_GrpcReader(), _GrpcReader()]
            else:
                st.trailers_req = hdrs
        else:
            status = _hget(hdrs, ":status")
            if st.resp is None and status is not None and status.startswith("1") \
                    and status != "101":
                st.informational.append(hdrs)
            elif st.resp is None:
                st.resp = hdrs
                if st.ts[SERVER] is None:
                    st.ts[SERVER], st.first_frame[SERVER] = blk["ts"], blk["frames"][0]
            else:
                st.trailers = hdrs
        if blk["flags"] & Flag.END_STREAM:
            st.ended[d] = True
            st.end_ts[d] = blk["ts"]
            self._maybe_finish(st, out)

    # -- records ------------------------------------------------------------------------
    def _maybe_finish(self, st, out) -> None:
        if st.ended[CLIENT] and st.ended[SERVER]:
            self._finish(st, out)

    def _finish(self, st, out) -> None:
        if st.done:
            return
        st.done = True
        out += self._records(st)
        del self.streams[st.sid]

    def _records(self, st) -> list[dict]:
        req, resp = st.req or [], st.resp or []
        status = _hget(resp, ":status")
        t0, t1 = st.ts
        rec = {"type": "http2", "conn": self.conn, "frames": sorted(st.frames),
               "stream_id": st.sid, "method": _hget(req, ":method"), "path": _hget(req, ":path"),
               "authority": _hget(req, ":authority"), "scheme": _hget(req, ":scheme"),
               "status": int(status) if status and status.isdigit() else status,
               "request_headers": req, "response_headers": resp,
               "trailers": st.trailers, "content_type": _hget(resp, "content-type")
               or _hget(req, "content-type"),
               "request_body_len": st.data[CLIENT], "response_body_len": st.data[SERVER],
               "request_ts": t0, "response_ts": t1, "response_end_ts": st.end_ts[SERVER],
               "response_time_s": round(t1 - t0, 6) if t0 is not None and t1 is not None
               else None,
               "request_frame": st.first_frame[CLIENT], "response_frame": st.first_frame[SERVER],
               "ended": {"client": st.ended[CLIENT], "server": st.ended[SERVER]},
               "reset": st.reset, "pushed": st.pushed}
        out = [rec]
        if st.grpc is not None:
            out.append(self._grpc_record(st, rec))
        return out

    def _grpc_record(self, st, rec) -> dict:
        path = rec["path"] or ""
        service = method = None
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "":
            service, method = parts[1] or None, parts[2] or None
        # grpc-status/-message: in the trailers, or a trailers-only response's headers
        src = st.trailers if st.trailers is not None else st.resp
        gs = _hget(src, "grpc-status")
        gm = _hget(src, "grpc-message")
        try:
            code = int(gs) if gs is not None else None
        except ValueError:
            code = gs
        req = st.req or []
        cli, srv = st.grpc
        out = {"type": "grpc", "conn": self.conn, "frames": rec["frames"],
               "stream_id": st.sid, "service": service, "method": method, "path": rec["path"],
               "grpc_status": code,
               "grpc_status_name": GRPC_STATUS.get(code) if isinstance(code, int) else None,
               "grpc_message": unquote(gm) if gm is not None else None,
               "requests": cli.count, "responses": srv.count,
               "request_bytes": cli.bytes, "response_bytes": srv.bytes,
               "previous_rpc_attempts": _hget(req, "grpc-previous-rpc-attempts"),
               "grpc_timeout": _hget(req, "grpc-timeout"),
               "grpc_encoding": _hget(req, "grpc-encoding"),
               "content_type": _hget(req, "content-type"),
               "messages": [{"direction": m["direction"], "compressed": m["compressed"],
                             "length": m["length"], "data": bytes(m["data"]).hex(),
                             "truncated": len(m["data"]) < m["length"]}
                            for m in st.messages],
               "messages_dropped": max(0, cli.count + srv.count - len(st.messages)),
               "http_status": rec["status"], "reset": st.reset,
               "request_ts": rec["request_ts"], "response_ts": rec["response_ts"],
               "response_end_ts": rec["response_end_ts"]}
        if cli.partial() or srv.partial():
            out["incomplete_message"] = True
        return out

    def gap(self, direction, size, frame, ts):
        self.stopped[direction] = True
        self.bufs[direction].buf.clear()
        return [anomaly(self.name, "stream-gap", frame,
                        f"{size} bytes missing; frame boundaries and HPACK state lost",
                        self.conn)]

    def close(self, ts=None) -> list[dict]:
        if self.closed:
            return []
        self.closed = True
        out: list[dict] = []
        for sid in sorted(self.streams):
            st = self.streams[sid]
            if not st.done and (st.req is not None or st.resp is not None):
                st.done = True
                out += self._records(st)
        self.streams.clear()
        for d in (CLIENT, SERVER):
            if self.bufs[d].buf and not self.stopped[d]:
                frame, _ = self.bufs[d].frame_at(self.bufs[d].base)
                out.append(anomaly(self.name, "http2-frame-incomplete", frame,
                                   f"{len(self.bufs[d].buf)} bytes of an unfinished frame at "
                                   f"close", self.conn))
        out.append({"type": "http2-connection", "conn": self.conn,
                    "frames": sorted(self.frames_seen),
                    "frame_counts": {"client": dict(self.counts[CLIENT]),
                                     "server": dict(self.counts[SERVER])},
                    "settings": {"client": self.settings[CLIENT],
                                 "server": self.settings[SERVER]},
                    "frame_log": self.frame_log,
                    "goaway": self.goaway, "window_updates": self.window_updates,
                    "preface_seen": self.preface_left == 0})
        return out


# -- display path ------------------------------------------------------------------------

def dissect_payload(data: bytes, offset: int) -> list[Layer]:
    """The client preface and/or whole HTTP/2 frame headers at the segment start; [] if the
    segment does not start with the preface (frame headers alone are too weak a signal)."""
    pos = 0
    layers: list[Layer] = []
    if data.startswith(PREFACE):
        lay = Layer("http2", offset, len(PREFACE))
        lay.add("http2.magic", PREFACE.decode(), offset, len(PREFACE), "connection preface")
        layers.append(lay)
        pos = len(PREFACE)
    else:
        return []
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        ftype, flags = data[pos + 3], data[pos + 4]
        sid = struct.unpack(">I", data[pos + 5:pos + 9])[0] & 0x7FFFFFFF
        lay = Layer("http2", offset + pos, min(9 + length, len(data) - pos))
        lay.add("http2.length", length, offset + pos, 3)
        lay.add("http2.type", FRAME_TYPES.get(ftype, ftype), offset + pos + 3, 1)
        lay.add("http2.flags", flags, offset + pos + 4, 1)
        lay.add("http2.streamid", sid, offset + pos + 5, 4)
        if length > MAX_FRAME_SIZE_LIMIT or ftype not in FRAME_TYPES:
            lay.anomalies.append("http2-unknown-frame-type" if ftype not in FRAME_TYPES
                                 else "http2-frame-too-large")
        if pos + 9 + length > len(data):
            lay.anomalies.append("http2-frame-continues-in-later-segments")
        layers.append(lay)
        pos += 9 + length
    return layers


PARSERS = [Http2Parser]
