"""WebSocket framing (RFC 6455 section 5) after the opening handshake.

Sans-I/O. :class:`WsSession` reads both directions of an upgraded connection frame by frame:
FIN/RSV/opcode, the mask bit and key, the 7/16/64-bit payload length; it unmasks the start of
text payloads for a preview, reads close codes and reasons, and reassembles fragmented
messages (a data frame with FIN clear, then continuation frames, control frames allowed in
between). The HTTP parser (:mod:`dissect.analysis.app.http`) hands an upgraded stream to a
``WsSession``; :class:`WebSocketParser` is the stand-alone stream parser for connections whose
handshake was not captured (a low-confidence probe on a masked client frame header).

Records: ``{"type": "websocket", ...}`` per frame and ``{"type": "websocket-message", ...}``
per complete data message. Payload bytes are streamed: a frame's payload is never held in
memory beyond the preview and control-frame bodies (at most 125 bytes, RFC 6455 5.5).

Three tiers: need more data (a partial header is kept), oddities that do not break framing
(unmasked client frame, masked server frame, bad control frame, orphan continuation) become
named anomalies and reading goes on; a length that cannot be (64-bit with the top bit set, or
over :data:`MAX_FRAME_PAYLOAD`) or a gap inside a frame header stops that direction.
"""

from __future__ import annotations

from dissect.analysis.app.base import CLIENT, SERVER, StreamParser, anomaly
from dissect.analysis.app.ftp import TextStream
from dissect.protocols.base import Layer

# A single frame's payload beyond this is taken as corruption, not data: browsers cap whole
# messages far lower (Chromium ~2 GiB, Firefox 2 GiB, websockets 1 MiB by default), so a
# header claiming more than 4 GiB has lost framing.
MAX_FRAME_PAYLOAD = 1 << 32
# Control frames carry at most 125 payload bytes (RFC 6455 5.5).
MAX_CONTROL_PAYLOAD = 125
# Text preview: characters kept (renderers escape them); bytes unmasked to find them (UTF-8
# needs at most 4 bytes per character).
PREVIEW_CHARS = 64
PREVIEW_BYTES = PREVIEW_CHARS * 4
# Capture frame numbers kept per message record: a message spread over more TCP segments
# than this lists the first ones only (``frames_truncated``), bounding memory per message.
MAX_MESSAGE_FRAMES = 4096

OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
CONTROL = frozenset((8, 9, 10))
DIRECTION = {CLIENT: "client", SERVER: "server"}


def parse_header(buf) -> tuple | None | str:
    """``(fin, rsv, opcode, masked, payload_len, mask_key, header_len)`` from the start of
    ``buf``; None when more bytes are needed; ``"bad-length"`` when the 64-bit length has its
    most significant bit set (RFC 6455 5.2 forbids it)."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    fin = bool(b0 & 0x80)
    rsv = (b0 >> 4) & 0x7
    opcode = b0 & 0x0F
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = int.from_bytes(buf[2:4], "big")
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = int.from_bytes(buf[2:10], "big")
        if n >> 63:
            return "bad-length"
        pos = 10
    key = None
    if masked:
        if len(buf) < pos + 4:
            return None
        key = bytes(buf[pos:pos + 4])
        pos += 4
    return fin, rsv, opcode, masked, n, key, pos


def unmask(data: bytes, key: bytes | None, start: int = 0) -> bytes:
    """XOR ``data`` (which begins ``start`` bytes into the payload) with the masking key."""
    if not key:
        return bytes(data)
    k = (key * ((len(data) + start) // 4 + 2))[start:start + len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(len(data), "big")


class _Direction:
    """One direction's frame reader state."""

    __slots__ = ("frame", "gaps", "head", "left", "message", "read", "stopped", "stream")

    def __init__(self):
        self.stream = TextStream()
        self.frame: dict | None = None     # the frame whose payload is being read
        self.left = 0                      # its payload bytes still to come
        self.read = 0                      # its payload bytes seen so far
        self.head = bytearray()            # unmasked start of payload (preview / control)
        self.stopped = False
        self.message: dict | None = None   # a fragmented data message in progress
        self.gaps = 0


class WsSession:
    """Both directions of a WebSocket connection, from the first byte after the handshake."""

    def __init__(self, conn=None, protocol: str = "websocket"):
        self.conn = conn
        self.name = protocol
        self.dirs = [_Direction(), _Direction()]

    # -- input ---------------------------------------------------------------------------
    def feed(self, direction: int, data: bytes, frame: int, ts: float) -> list[dict]:
        d = self.dirs[direction]
        if d.stopped:
            return []
        d.stream.push(data, frame, ts)
        return self._run(direction)

    def gap(self, direction: int, size: int, frame: int, ts: float) -> list[dict]:
        d = self.dirs[direction]
        if d.stopped:
            return []
        out = self._run(direction)
        if d.frame is not None and not len(d.stream) and size <= d.left:
            # the hole lies inside a payload: count it, framing survives
            d.left -= size
            d.read += size
            d.gaps += 1
            d.frame["gap_bytes"] = d.frame.get("gap_bytes", 0) + size
            if d.left == 0:
                out += self._frame_done(direction)
            return out + self._run(direction)
        d.stopped = True
        return out + [anomaly(self.name, "websocket-gap-in-header", frame,
                              f"{size} bytes missing where a frame header was due; "
                              f"{DIRECTION[direction]} side no longer read", self.conn)]

    def close(self, ts=None) -> list[dict]:
        out: list[dict] = []
        for direction, d in enumerate(self.dirs):
            if d.stopped:
                continue
            if d.frame is not None:
                out.append(anomaly(self.name, "websocket-truncated-frame", d.frame["frames"][0],
                                   f"{d.left} payload bytes of a {d.frame['opcode_name']} frame "
                                   f"never arrived", self.conn))
            elif len(d.stream):
                out.append(anomaly(self.name, "websocket-truncated-header", None,
                                   f"{len(d.stream)} bytes of an incomplete frame header",
                                   self.conn))
            if d.message is not None:
                out.append(anomaly(self.name, "websocket-unfinished-message",
                                   d.message["frames"][0],
                                   f"{d.message['opcode_name']} message without its final "
                                   f"fragment", self.conn))
        return out

    # -- framing -------------------------------------------------------------------------
    def _run(self, direction: int) -> list[dict]:
        d = self.dirs[direction]
        out: list[dict] = []
        while not d.stopped:
            if d.frame is None:
                h = parse_header(d.stream.buf)
                if h is None:
                    break
                if h == "bad-length" or h[4] > MAX_FRAME_PAYLOAD:
                    d.stopped = True
                    frames = d.stream.take(len(d.stream))[1]
                    what = ("64-bit payload length with the most significant bit set"
                            if h == "bad-length" else
                            f"payload length {h[4]} over MAX_FRAME_PAYLOAD {MAX_FRAME_PAYLOAD}")
                    out.append(anomaly(self.name, "websocket-bad-length",
                                       frames[0] if frames else None,
                                       what + f"; {DIRECTION[direction]} side no longer read",
                                       self.conn))
                    break
                out += self._frame_start(direction, h)
                if d.left == 0:
                    out += self._frame_done(direction)
                continue
            if not len(d.stream):
                break
            raw, frames, _t0, _t1 = d.stream.take(d.left)
            f = d.frame
            f["frames"] += [x for x in frames if x not in f["frames"]]
            want = (MAX_CONTROL_PAYLOAD if f["opcode"] in CONTROL else PREVIEW_BYTES)
            if d.read < want:
                d.head += unmask(raw[:want - d.read], f.get("_key"), d.read)
            d.read += len(raw)
            d.left -= len(raw)
            if d.left == 0:
                out += self._frame_done(direction)
        return out

    def _frame_start(self, direction: int, h) -> list[dict]:
        fin, rsv, opcode, masked, n, key, hlen = h
        d = self.dirs[direction]
        _raw, frames, t0, _t1 = d.stream.take(hlen)
        out: list[dict] = []
        f = {"type": "websocket", "conn": self.conn, "frames": list(frames),
             "direction": DIRECTION[direction], "opcode": opcode,
             "opcode_name": OPCODES.get(opcode, f"reserved-{opcode}"), "fin": fin,
             "masked": masked, "payload_len": n, "ts": t0, "_key": key}
        if rsv:
            f["rsv"] = rsv
        where = frames[0] if frames else None
        if opcode not in OPCODES:
            out.append(anomaly(self.name, "websocket-reserved-opcode", where,
                               f"opcode {opcode}", self.conn))
        if opcode in CONTROL and (not fin or n > MAX_CONTROL_PAYLOAD):
            out.append(anomaly(self.name, "websocket-bad-control-frame", where,
                               f"{f['opcode_name']} frame fin={fin} payload {n} bytes "
                               f"(control frames: FIN set, at most 125 bytes)", self.conn))
        if direction == CLIENT and not masked:
            out.append(anomaly(self.name, "websocket-unmasked-client-frame", where,
                               "RFC 6455 5.1: a client masks every frame", self.conn))
        elif direction == SERVER and masked:
            out.append(anomaly(self.name, "websocket-masked-server-frame", where,
                               "RFC 6455 5.1: a server never masks", self.conn))
        d.frame, d.left, d.read, d.head = f, n, 0, bytearray()
        return out

    def _frame_done(self, direction: int) -> list[dict]:
        d = self.dirs[direction]
        f, d.frame = d.frame, None
        f.pop("_key", None)
        op = f["opcode"]
        head = bytes(d.head)
        out: list[dict] = []
        if op == 8 and len(head) >= 2 and "gap_bytes" not in f:
            f["close_code"] = int.from_bytes(head[:2], "big")
            f["close_reason"] = head[2:].decode("utf-8", "replace")
        elif op == 8:
            f["close_code"] = None
        elif op in (9, 10) and head:
            f["preview"] = head[:PREVIEW_CHARS].decode("utf-8", "replace")
        if op == 1 or (op == 0 and d.message is not None and d.message["opcode"] == 1):
            f["preview"] = head.decode("utf-8", "ignore")[:PREVIEW_CHARS]
        out.append(f)
        if op in CONTROL or op not in OPCODES:
            return out
        where = f["frames"][0] if f["frames"] else None
        if op == 0:
            m = d.message
            if m is None:
                out.append(anomaly(self.name, "websocket-orphan-continuation", where,
                                   "continuation frame without a message in progress",
                                   self.conn))
                return out
        else:
            if d.message is not None:
                out.append(anomaly(self.name, "websocket-interleaved-message", where,
                                   f"new {f['opcode_name']} message before the previous "
                                   f"{d.message['opcode_name']} message ended", self.conn))
            m = d.message = {"type": "websocket-message", "conn": self.conn,
                             "direction": f["direction"], "opcode": op,
                             "opcode_name": f["opcode_name"], "length": 0, "fragments": 0,
                             "frames": [], "ts": f["ts"]}
        m["length"] += f["payload_len"]
        m["fragments"] += 1
        if "gap_bytes" in f:
            m["gap_bytes"] = m.get("gap_bytes", 0) + f["gap_bytes"]
        for x in f["frames"]:
            if x not in m["frames"][-4:]:
                if len(m["frames"]) >= MAX_MESSAGE_FRAMES:
                    m["frames_truncated"] = True
                    break
                m["frames"].append(x)
        if f["fin"]:
            d.message = None
            m["message_len"] = m["length"]
            out.append(m)
        return out


def scan_frames(data: bytes, masked: bool) -> tuple[int, bool]:
    """How many well-formed frame headers (RSV clear, known opcode, mask bit as expected,
    control frames FIN with <= 125 bytes) follow each other from the start of ``data``, and
    whether a malformed one was met."""
    pos, count = 0, 0
    while pos < len(data):
        h = parse_header(data[pos:pos + 14])
        if h is None:
            return count, False
        if h == "bad-length":
            return count, True
        fin, rsv, opcode, m, n, _key, hlen = h
        if rsv or opcode not in OPCODES or m != masked or n > MAX_FRAME_PAYLOAD or \
                (opcode in CONTROL and (not fin or n > MAX_CONTROL_PAYLOAD)):
            return count, True
        count += 1
        pos += hlen + n
    return count, False


class WebSocketParser(StreamParser):
    """WebSocket frames on a connection whose HTTP handshake was not captured."""

    name = "websocket"
    ports = ()
    probe_max = 0.6

    @classmethod
    def probe(cls, client_head: bytes, server_head: bytes, sport: int, dport: int) -> float:
        if not client_head and not server_head:
            return 0.0
        score = 0.0
        if client_head:
            n, bad = scan_frames(client_head, masked=True)
            if bad or n == 0:
                return 0.0
            score = 0.3 if n == 1 else 0.4
        if server_head:
            n, bad = scan_frames(server_head, masked=False)
            if bad or n == 0:
                return 0.0
            score = score + 0.2 if score else 0.0   # unmasked frames alone prove nothing
        return min(score, 0.6)

    def __init__(self, conn=None, meta=None):
        super().__init__(conn, meta)
        self.session = WsSession(conn)

    def feed(self, direction, data, frame, ts):
        return self.session.feed(direction, data, frame, ts)

    def gap(self, direction, size, frame, ts):
        return self.session.gap(direction, size, frame, ts)

    def close(self, ts=None):
        return self.session.close(ts)


def dissect_payload(data: bytes, offset: int) -> list[Layer]:
    """WebSocket frame headers that tile one segment exactly (frame offsets); [] otherwise.

    Strict on purpose: the display path tries this on any TCP payload, so the frames must be
    well formed (RSV clear, known opcode, consistent control frames) and end exactly at the
    end of the segment, or be a single masked frame whose payload runs on past it.
    """
    layers: list[Layer] = []
    pos = 0
    while pos < len(data):
        h = parse_header(data[pos:pos + 14])
        if h is None or h == "bad-length":
            return []
        fin, rsv, opcode, masked, n, key, hlen = h
        if rsv or opcode not in OPCODES or n > MAX_FRAME_PAYLOAD or \
                (opcode in CONTROL and (not fin or n > MAX_CONTROL_PAYLOAD)):
            return []
        if opcode == 0 and not fin and not masked:
            # b"\x00" + a length byte is exactly a DNS-over-TCP, NetBIOS or RPC record
            # (16-bit length prefix) under 126 bytes: too common to claim
            return []
        end = pos + hlen + n
        if end > len(data) and not (pos == 0 and masked and opcode != 0
                                    and n > len(data) - hlen):
            return []
        layer = Layer("websocket", offset + pos, min(end, len(data)) - pos)
        layer.add("websocket.fin", fin, offset + pos, 1, "final fragment (RFC 6455 5.2)")
        layer.add("websocket.opcode", opcode, offset + pos, 1, OPCODES[opcode])
        layer.add("websocket.mask", masked, offset + pos + 1, 1, "payload masked")
        plen_bytes = hlen - 2 - (4 if masked else 0)
        layer.add("websocket.payload_length", n, offset + pos + 1, 1 + plen_bytes,
                  "payload length (7, 7+16 or 7+64 bits)")
        if masked:
            layer.add("websocket.masking_key", key, offset + pos + hlen - 4, 4)
        pay = data[pos + hlen:min(end, len(data))]
        if pay:
            plain = unmask(pay, key)
            if opcode == 8 and len(plain) >= 2:
                layer.add("websocket.close.code", int.from_bytes(plain[:2], "big"),
                          offset + pos + hlen, 2, "close status code (RFC 6455 7.4)")
                if len(plain) > 2:
                    layer.add("websocket.close.reason", plain[2:].decode("utf-8", "replace"),
                              offset + pos + hlen + 2, len(plain) - 2)
            else:
                layer.add("websocket.payload", plain, offset + pos + hlen, len(pay),
                          "payload (unmasked)")
        layers.append(layer)
        pos = end
    return layers


PARSERS = [WebSocketParser]
