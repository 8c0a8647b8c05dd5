"""QUIC packet headers (RFC 8999 invariants, RFC 9000 v1, RFC 9369 v2, drafts, gQUIC Q046).

Sans-I/O, headers only (payloads are encrypted; no keys are derived here). For each UDP
datagram :class:`QuicParser` walks the coalesced packets (RFC 9000 12.2): long headers
(version, type, DCID/SCID, token, length), Version Negotiation (version 0, the list of
supported versions), Retry, and a trailing short-header packet whose DCID length is known
from the SCID the receiving endpoint chose in its own long-header packets. Google QUIC is
recognised by version (``Q046`` and the older ``Q0xx`` public header) and counted.

Record per connection (per parser instance, i.e. per UDP flow), at close:
``{"type": "quic", "versions": [...], "packets": {type: count}, "dcids", "scids",
"supported_versions", "first_frame", "last_frame", "frames", ...}``.
"""

from __future__ import annotations

import struct

from dissect.analysis.app.base import DatagramParser, anomaly
from dissect.protocols.base import Layer

MAX_CID_LEN_V1 = 20        # RFC 9000 17.2: v1 connection IDs are at most 20 bytes
MAX_CIDS_KEPT = 64         # distinct CIDs listed per connection record
MAX_FRAMES_KEPT = 100000   # frame numbers kept in one connection record
MAX_COALESCED = 16         # packets walked in one datagram; more is garbage

V1, V2 = 0x00000001, 0x6B3343CF

# packet type bits -> name, per version family (RFC 9000 17.2, RFC 9369 3.2)
TYPES_V1 = {0: "initial", 1: "0rtt", 2: "handshake", 3: "retry"}
TYPES_V2 = {1: "initial", 2: "0rtt", 3: "handshake", 0: "retry"}


def version_name(v: int) -> str:
    if v == 0:
        return "version-negotiation"
    if v == V1:
        return "1"
    if v == V2:
        return "2"
    if v >> 8 == 0xFF0000:
        return f"draft-{v & 0xFF}"
    b = v.to_bytes(4, "big")
    if b[:1] == b"Q" and b[1:].isdigit():
        return b.decode()
    if v & 0x0F0F0F0F == 0x0A0A0A0A:
        return f"grease-0x{v:08x}"
    return f"0x{v:08x}"


def is_gquic(v: int) -> bool:
    b = v.to_bytes(4, "big")
    return b[:1] == b"Q" and b[1:].isdigit()


def varint(data: bytes, pos: int) -> tuple[int, int]:
    """RFC 9000 16 variable-length integer at ``pos``; (value, new position). IndexError if short."""
    b = data[pos]
    n = 1 << (b >> 6)
    if pos + n > len(data):
        raise IndexError("varint cut short")
    v = b & 0x3F
    for i in range(1, n):
        v = (v << 8) | data[pos + i]
    return v, pos + n


def _types(v: int) -> dict:
    return TYPES_V2 if v == V2 else TYPES_V1


def parse_long(data: bytes, pos: int) -> dict:
    """One long-header packet at ``pos``. Raises IndexError/ValueError when it does not fit."""
    b0 = data[pos]
    v = struct.unpack_from("!I", data, pos + 1)[0]
    p = {"offset": pos, "form": "long", "version": v, "version_name": version_name(v),
         "fixed_bit": bool(b0 & 0x40)}
    if is_gquic(v):
        p["type"] = "gquic"
        p["end"] = len(data)
        return p
    q = pos + 5
    dl = data[q]
    if v in (V1, V2) and dl > MAX_CID_LEN_V1:
        raise ValueError(f"DCID length {dl} over {MAX_CID_LEN_V1}")
    dcid = data[q + 1: q + 1 + dl]
    q += 1 + dl
    sl = data[q]
    if v in (V1, V2) and sl > MAX_CID_LEN_V1:
        raise ValueError(f"SCID length {sl} over {MAX_CID_LEN_V1}")
    scid = data[q + 1: q + 1 + sl]
    q += 1 + sl
    if q > len(data) or len(dcid) != dl or len(scid) != sl:
        raise IndexError("connection IDs cut short")
    p["dcid"], p["scid"] = dcid.hex(), scid.hex()
    if v == 0:
        vers = [struct.unpack_from("!I", data, i)[0] for i in range(q, len(data) - 3, 4)]
        p["type"] = "version_negotiation"
        p["supported_versions"] = [f"0x{x:08x}" for x in vers]
        p["end"] = len(data)
        return p
    ptype = _types(v)[(b0 >> 4) & 3]
    p["type"] = ptype
    if ptype == "retry":
        p["token_length"] = len(data) - q - 16
        p["end"] = len(data)
        return p
    if ptype == "initial":
        tl, q = varint(data, q)
        if q + tl > len(data):
            raise IndexError("token cut short")
        p["token_length"] = tl
        q += tl
    length, q = varint(data, q)
    if q + length > len(data):
        raise IndexError(f"length {length} runs past the datagram")
    p["length"] = length
    p["end"] = q + length
    return p


class QuicParser(DatagramParser):
    name = "quic"
    ports = (443, 4433, 784, 853, 8853)

    @classmethod
    def probe(cls, payload: bytes, sport: int, dport: int) -> float:
        if len(payload) < 7:
            return 0.0
        hinted = sport in cls.ports or dport in cls.ports
        if payload[0] & 0x80:
            v = struct.unpack_from("!I", payload, 1)[0]
            if is_gquic(v):
                return 0.9
            try:
                parse_long(payload, 0)
            except (IndexError, ValueError, struct.error):
                return 0.0
            if v in (0, V1, V2) or v >> 8 == 0xFF0000:
                return 0.9
            return 0.5 if hinted else 0.3
        if (payload[0] & 0x40) and hinted:
            return 0.3        # a short header alone proves little
        return 0.0

    def __init__(self, conn=None, meta=None):
        self.conn = conn
        self.meta = meta or {}
        self.versions: list[str] = []
        self.packets: dict[str, int] = {}
        self.frames: list[int] = []
        self.dcids: list[str] = []
        self.scids: list[str] = []
        self.cid_len: dict = {}          # endpoint -> length of the CID it chose (its SCID)
        self.chosen: dict = {}           # endpoint -> the SCIDs it chose
        self.supported: list[str] = []
        self.client = None
        self.anomalies = 0

    def _count(self, t):
        self.packets[t] = self.packets.get(t, 0) + 1

    def _cid(self, lst, cid):
        if cid and cid not in lst and len(lst) < MAX_CIDS_KEPT:
            lst.append(cid)

    def datagram(self, payload, frame, ts, src, dst):
        out: list[dict] = []
        if len(self.frames) < MAX_FRAMES_KEPT:
            self.frames.append(frame)
        src, dst = tuple(src), tuple(dst)
        pos = 0
        for _ in range(MAX_COALESCED):
            if pos >= len(payload):
                break
            b0 = payload[pos]
            if b0 & 0x80:
                try:
                    p = parse_long(payload, pos)
                except (IndexError, ValueError, struct.error) as e:
                    out.append(anomaly("quic", "quic-bad-long-header", frame, str(e), self.conn))
                    break
                if self.client is None and p["type"] in ("initial", "0rtt", "gquic"):
                    self.client = src
                if p["version_name"] not in self.versions:
                    self.versions.append(p["version_name"])
                self._count(p["type"])
                if "scid" in p:
                    self._cid(self.dcids, p["dcid"])
                    self._cid(self.scids, p["scid"])
                    self.cid_len[src] = len(p["scid"]) // 2
                    self.chosen.setdefault(src, set()).add(p["scid"])
                if p["type"] == "version_negotiation":
                    for v in p["supported_versions"]:
                        if v not in self.supported:
                            self.supported.append(v)
                if not p["fixed_bit"] and p["type"] not in ("version_negotiation", "gquic"):
                    out.append(anomaly("quic", "quic-fixed-bit-clear", frame,
                                       "long header with the fixed bit 0 (RFC 9287 greasing?)",
                                       self.conn))
                pos = p["end"]
                continue
            if pos and not any(payload[pos:]):
                self._count("datagram_padding")   # zeros after coalesced packets
                break
            if "gquic" in self.packets:
                self._count("gquic")              # gQUIC packets after the handshake
                break
            # short header: the rest of the datagram (RFC 9000 17.3)
            if not b0 & 0x40:
                if pos == 0 and self.client is None and len(payload) > 9 and payload[9:10] == b"Q":
                    self._count("gquic")     # gQUIC public header with version (Q043 and older)
                    break
                out.append(anomaly("quic", "quic-fixed-bit-clear", frame,
                                   "short header with the fixed bit 0", self.conn))
            n = self.cid_len.get(dst)
            dcid = payload[pos + 1: pos + 1 + n].hex() if n is not None else None
            if pos and dcid is not None and dcid not in self.chosen.get(dst, ()):
                # after coalesced long packets, bytes whose "DCID" is no CID the receiver
                # chose are padding (Wireshark: "padding data appended to the datagram");
                # a standalone short packet may carry a CID issued in encrypted frames
                self._count("datagram_padding")
                break
            if dcid is not None:
                self._cid(self.dcids, dcid)
            self._count("short")
            break
        return out

    def close(self):
        if not self.frames:
            return []
        return [{"type": "quic", "conn": self.conn, "frames": self.frames,
                 "versions": self.versions, "packets": dict(self.packets),
                 "dcids": self.dcids, "scids": self.scids,
                 "supported_versions": self.supported,
                 "client": list(self.client) if self.client else None,
                 "first_frame": self.frames[0], "last_frame": self.frames[-1]}]


def dissect_payload(data: bytes, offset: int) -> list[Layer]:
    """QUIC packet headers of one datagram (long headers, coalesced); [] if not QUIC."""
    if len(data) < 7 or not data[0] & 0x80:
        return []
    layers = []
    pos = 0
    for _ in range(MAX_COALESCED):
        if pos >= len(data) or not data[pos] & 0x80:
            break
        try:
            p = parse_long(data, pos)
        except (IndexError, ValueError, struct.error):
            break
        if not layers and not (p["version"] in (0, V1, V2) or p["version"] >> 8 == 0xFF0000
                               or is_gquic(p["version"])):
            return []
        o = offset + pos
        layer = Layer("quic", o, p["end"] - pos)
        layer.add("quic.header_form", "long", o, 1)
        layer.add("quic.long.packet_type", p["type"], o, 1)
        layer.add("quic.version", f"0x{p['version']:08x}", o + 1, 4, p["version_name"])
        if "dcid" in p:
            dl = len(p["dcid"]) // 2
            layer.add("quic.dcil", dl, o + 5, 1)
            layer.add("quic.dcid", p["dcid"], o + 6, dl)
            layer.add("quic.scil", len(p["scid"]) // 2, o + 6 + dl, 1)
            layer.add("quic.scid", p["scid"], o + 7 + dl, len(p["scid"]) // 2)
        if "length" in p:
            layer.add("quic.length", p["length"], o, 0, "protected payload length")
        layers.append(layer)
        pos = p["end"]
    if layers and pos < len(data):
        layers.append(Layer("quic", offset + pos, len(data) - pos,
                            [], []))
        layers[-1].add("quic.header_form", "short", offset + pos, 1)
    return layers


PARSERS = [QuicParser]
