"""WebRTC-style UDP: STUN (RFC 5389/8489, classic RFC 3489), DTLS record headers (RFC 6347,
9147), RTP and RTCP (RFC 3550), demultiplexed on one port by the first byte (RFC 7983 7):

==========  ==================================
first byte  protocol
==========  ==================================
0-3         STUN
16-19       ZRTP (counted, not parsed)
20-63       DTLS (20-25 classic records, 32-63 the DTLS 1.3 unified header)
64-79       TURN ChannelData (counted)
128-191     RTP, or RTCP when the packet type is 192-223 (RFC 5761 4)
==========  ==================================

Sans-I/O. Records:

* ``{"type": "stun", ...}`` per transaction: the request paired with its success/error
  response by transaction ID (retransmitted requests counted), indications on their own.
* ``{"type": "dtls", ...}`` per handshake flight (consecutive epoch-0 datagrams from one
  sender), and one ``{"type": "dtls-session", ...}`` summary at close counting the rest.
* ``{"type": "rtp", ...}`` per SSRC at close, with RFC 3550 statistics: extended highest
  sequence and cycles (A.1), expected/received/lost (A.3), interarrival jitter (A.8).
* ``{"type": "rtcp", ...}`` per compound RTCP datagram (SR/RR report blocks, SDES, BYE, APP,
  feedback).

Jitter needs the payload type's RTP clock rate. Static payload types use RFC 3551's table
(8000 Hz for PCMU/PCMA/G722/G729..., 90000 Hz for the video types). Dynamic types (96-127)
carry no rate on the wire: a rate passed in ``meta["clock_rates"]`` (from SDP) is used;
otherwise PT 111 is taken as Opus at 48000 Hz (WebRTC's customary mapping) and any other
dynamic type is **guessed** to be video at 90000 Hz; the record then says
``"clock_rate_guessed": true`` and its jitter is only as good as that guess.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib

from dissect.analysis.app.base import DatagramParser, anomaly
from dissect.protocols.base import Layer

STUN_COOKIE = 0x2112A442
FINGERPRINT_XOR = 0x5354554E
MAX_DROPOUT = 3000        # RFC 3550 A.1: a forward jump under this is loss, not a restart
MAX_MISORDER = 100        # RFC 3550 A.1: a backward step under this is reordering
MAX_STUN_TRANSACTIONS = 4096  # unanswered STUN transactions kept before the oldest are flushed
MAX_SSRCS = 1024          # RTP streams tracked per parser; more is a scan or garbage (anomaly)
MAX_STUN_ATTRIBUTES = 64  # attributes decoded per STUN message

STUN_METHODS = {1: "Binding", 2: "SharedSecret", 3: "Allocate", 4: "Refresh", 6: "Send",
                7: "Data", 8: "CreatePermission", 9: "ChannelBind", 0xA: "Connect",
                0xB: "ConnectionBind", 0xC: "ConnectionAttempt"}
STUN_CLASSES = {0: "request", 1: "indication", 2: "success", 3: "error"}
STUN_ATTRS = {0x0001: "MAPPED-ADDRESS", 0x0006: "USERNAME", 0x0008: "MESSAGE-INTEGRITY",
              0x0009: "ERROR-CODE", 0x000A: "UNKNOWN-ATTRIBUTES", 0x000C: "CHANNEL-NUMBER",
              0x000D: "LIFETIME", 0x0012: "XOR-PEER-ADDRESS", 0x0013: "DATA", 0x0014: "REALM",
              0x0015: "NONCE", 0x0016: "XOR-RELAYED-ADDRESS", 0x0019: "REQUESTED-TRANSPORT",
              0x0020: "XOR-MAPPED-ADDRESS", 0x0024: "PRIORITY", 0x0025: "USE-CANDIDATE",
              0x8022: "SOFTWARE", 0x8023: "ALTERNATE-SERVER", 0x8028: "FINGERPRINT",
              0x8029: "ICE-CONTROLLED", 0x802A: "ICE-CONTROLLING",
              0x001C: "MESSAGE-INTEGRITY-SHA256", 0x0004: "SOURCE-ADDRESS",
              0x0005: "CHANGED-ADDRESS", 0x0003: "CHANGE-REQUEST"}
DTLS_CONTENT = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data",
                24: "heartbeat", 25: "tls12_cid", 26: "ack"}
DTLS_VERSIONS = {0xFEFF: "DTLS 1.0", 0xFEFD: "DTLS 1.2", 0xFEFC: "DTLS 1.3", 0x0100: "DTLS 1.0 (OpenSSL pre-0.9.8f)"}
HANDSHAKE_TYPES = {0: "hello_request", 1: "client_hello", 2: "server_hello",
                   3: "hello_verify_request", 4: "new_session_ticket", 6: "hello_retry_request",
                   8: "encrypted_extensions", 11: "certificate", 12: "server_key_exchange",
                   13: "certificate_request", 14: "server_hello_done", 15: "certificate_verify",
                   16: "client_key_exchange", 20: "finished", 24: "key_update"}
RTCP_TYPES = {200: "SR", 201: "RR", 202: "SDES", 203: "BYE", 204: "APP", 205: "RTPFB",
              206: "PSFB", 207: "XR"}
SDES_ITEMS = {1: "CNAME", 2: "NAME", 3: "EMAIL", 4: "PHONE", 5: "LOC", 6: "TOOL", 7: "NOTE",
              8: "PRIV"}
# RFC 3551 table 4/5: static payload type -> (encoding, clock rate)
STATIC_PT = {0: ("PCMU", 8000), 3: ("GSM", 8000), 4: ("G723", 8000), 5: ("DVI4", 8000),
             6: ("DVI4", 16000), 7: ("LPC", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000),
             10: ("L16", 44100), 11: ("L16", 44100), 12: ("QCELP", 8000), 13: ("CN", 8000),
             14: ("MPA", 90000), 15: ("G728", 8000), 16: ("DVI4", 11025), 17: ("DVI4", 22050),
             18: ("G729", 8000), 25: ("CelB", 90000), 26: ("JPEG", 90000), 28: ("nv", 90000),
             31: ("H261", 90000), 32: ("MPV", 90000), 33: ("MP2T", 90000), 34: ("H263", 90000)}


def demux(payload: bytes) -> str | None:
    """RFC 7983 section 7: which protocol a datagram on a multiplexed port carries."""
    if not payload:
        return None
    b = payload[0]
    if b <= 3:
        return "stun"
    if 16 <= b <= 19:
        return "zrtp"
    if 20 <= b <= 63:
        return "dtls"
    if 64 <= b <= 79:
        return "turn-channel"
    if 128 <= b <= 191:
        if len(payload) >= 2 and 64 <= (payload[1] & 0x7F) <= 95:   # PT 192-223
            return "rtcp"
        return "rtp"
    return None


# -- STUN --------------------------------------------------------------------------------

def parse_stun(data: bytes) -> dict | None:
    """One STUN message, or None if these bytes are not STUN (classic RFC 3489 accepted)."""
    if len(data) < 20 or data[0] > 3:
        return None
    mtype, length, cookie = struct.unpack_from("!HHI", data, 0)
    if length % 4 or 20 + length > len(data):
        return None
    classic = cookie != STUN_COOKIE
    txid = data[8:20] if not classic else data[4:20]
    cls = ((mtype >> 4) & 1) | ((mtype >> 7) & 2)
    method = (mtype & 0xF) | ((mtype >> 1) & 0x70) | ((mtype >> 2) & 0xF80)
    msg = {"msg_type": mtype, "class": STUN_CLASSES[cls], "method": method,
           "method_name": STUN_METHODS.get(method, f"0x{method:03x}"), "length": length,
           "classic": classic, "transaction_id": txid.hex(), "attributes": [],
           "fingerprint_ok": None}
    pos = 20
    end = 20 + length
    while pos + 4 <= end and len(msg["attributes"]) < MAX_STUN_ATTRIBUTES:
        at, al = struct.unpack_from("!HH", data, pos)
        val = data[pos + 4: pos + 4 + al]
        if pos + 4 + al > end:
            msg["truncated_attribute"] = at
            break
        attr = {"type": at, "name": STUN_ATTRS.get(at, f"0x{at:04x}"), "length": al}
        if at in (0x0020, 0x0016, 0x0012) and len(val) >= 8:
            attr["value"] = _xor_address(val, data[4:20])
        elif at in (0x0001, 0x0004, 0x0005, 0x8023) and len(val) >= 8:
            attr["value"] = _address(val)
        elif at in (0x0006, 0x8022, 0x0014, 0x0015):
            attr["value"] = val.decode("utf-8", "replace")
        elif at == 0x0009 and len(val) >= 4:
            attr["value"] = {"code": (val[2] & 7) * 100 + val[3],
                             "reason": val[4:].decode("utf-8", "replace")}
        elif at == 0x8028 and al == 4:
            got = struct.unpack("!I", val)[0]
            # CRC-32 of the message up to the attribute, with the length covering it
            head = bytearray(data[:pos])
            struct.pack_into("!H", head, 2, pos + 8 - 20)
            msg["fingerprint_ok"] = (zlib.crc32(bytes(head)) ^ FINGERPRINT_XOR) == got
            attr["value"] = f"0x{got:08x}"
        elif at in (0x0024, 0x000D) and al == 4:
            attr["value"] = struct.unpack("!I", val)[0]
        else:
            attr["value"] = val.hex()
        msg["attributes"].append(attr)
        pos += 4 + al + (-al % 4)
    return msg


def _address(val: bytes):
    fam, port = val[1], struct.unpack_from("!H", val, 2)[0]
    if fam == 1:
        return {"ip": str(ipaddress.IPv4Address(val[4:8])), "port": port}
    if fam == 2 and len(val) >= 20:
        return {"ip": str(ipaddress.IPv6Address(val[4:20])), "port": port}
    return {"raw": val.hex()}


def _xor_address(val: bytes, cookie_txid: bytes):
    fam = val[1]
    port = struct.unpack_from("!H", val, 2)[0] ^ (STUN_COOKIE >> 16)
    if fam == 1:
        ip = bytes(a ^ b for a, b in zip(val[4:8], cookie_txid[:4]))
        return {"ip": str(ipaddress.IPv4Address(ip)), "port": port}
    if fam == 2 and len(val) >= 20:
        ip = bytes(a ^ b for a, b in zip(val[4:20], cookie_txid[:16]))
        return {"ip": str(ipaddress.IPv6Address(ip)), "port": port}
    return {"raw": val.hex()}


# -- DTLS --------------------------------------------------------------------------------

def parse_dtls(data: bytes) -> tuple[list[dict], str | None]:
    """The DTLS records of one datagram; (records, anomaly name or None)."""
    recs = []
    pos = 0
    while pos < len(data):
        b = data[pos]
        if 20 <= b <= 26:
            if pos + 13 > len(data):
                return recs, "dtls-truncated-header"
            ctype, ver, epoch = struct.unpack_from("!BHH", data, pos)
            seq = int.from_bytes(data[pos + 5: pos + 11], "big")
            length = struct.unpack_from("!H", data, pos + 11)[0]
            if pos + 13 + length > len(data):
                return recs, "dtls-truncated-record"
            r = {"content_type": ctype, "content": DTLS_CONTENT.get(ctype, str(ctype)),
                 "version": DTLS_VERSIONS.get(ver, f"0x{ver:04x}"), "epoch": epoch,
                 "sequence": seq, "length": length, "offset": pos}
            if ctype == 22 and epoch == 0 and length >= 1:
                ht = data[pos + 13]
                r["handshake_type"] = HANDSHAKE_TYPES.get(ht, str(ht))
            recs.append(r)
            pos += 13 + length
        elif 32 <= b <= 63:          # DTLS 1.3 unified header (RFC 9147 4)
            c, s, ln, ee = b & 0x10, b & 0x08, b & 0x04, b & 0x03
            r = {"content_type": None, "content": "dtls13_ciphertext", "version": "DTLS 1.3",
                 "epoch": ee, "cid": bool(c), "offset": pos}
            if c:                    # CID length is only known from the handshake
                r["length"] = len(data) - pos
                recs.append(r)
                return recs, None
            hl = 1 + (2 if s else 1) + (2 if ln else 0)
            if pos + hl > len(data):
                return recs, "dtls-truncated-header"
            r["sequence"] = int.from_bytes(data[pos + 1: pos + (3 if s else 2)], "big")
            length = struct.unpack_from("!H", data, pos + hl - 2)[0] if ln else len(data) - pos - hl
            if pos + hl + length > len(data):
                return recs, "dtls-truncated-record"
            r["length"] = length
            recs.append(r)
            pos += hl + length
        else:
            return recs, "dtls-bad-content-type"
    return recs, None


# -- RTP / RTCP --------------------------------------------------------------------------

def parse_rtp(data: bytes) -> dict | None:
    """RTP fixed header (RFC 3550 5.1) or None when it cannot be RTP version 2."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data, 0)
    cc = b0 & 0x0F
    hl = 12 + 4 * cc
    if hl > len(data):
        return None
    ext = bool(b0 & 0x10)
    if ext:
        if hl + 4 > len(data):
            return None
        hl += 4 + 4 * struct.unpack_from("!H", data, hl + 2)[0]
        if hl > len(data):
            return None
    pad = 0
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or hl + pad > len(data):
            return None
    return {"version": 2, "padding": bool(b0 & 0x20), "extension": ext, "csrc_count": cc,
            "marker": bool(b1 & 0x80), "payload_type": b1 & 0x7F, "sequence": seq,
            "timestamp": ts, "ssrc": ssrc, "header_length": hl,
            "payload_length": len(data) - hl - pad}


def parse_rtcp(data: bytes) -> tuple[list[dict], str | None]:
    """The packets of one compound RTCP datagram; (packets, anomaly name or None)."""
    pkts = []
    pos = 0
    while pos + 4 <= len(data):
        b0, pt, words = struct.unpack_from("!BBH", data, pos)
        if b0 >> 6 != 2:
            # after the first packet an SRTCP trailer (index + auth tag) is normal
            return pkts, None if pkts else "rtcp-bad-version"
        n = 4 * (words + 1)
        if pos + n > len(data):
            return pkts, None if pkts else "rtcp-truncated"
        body = data[pos + 4: pos + n]
        count = b0 & 0x1F
        p = {"packet_type": pt, "name": RTCP_TYPES.get(pt, str(pt)), "count": count,
             "length": n, "offset": pos}
        if len(body) >= 4:
            p["ssrc"] = struct.unpack_from("!I", body, 0)[0]
        blocks_at = None
        if pt == 200 and len(body) >= 24:
            ntp_s, ntp_f, rts, pc, oc = struct.unpack_from("!IIIII", body, 4)
            p.update(ntp_timestamp=ntp_s + ntp_f / 2 ** 32, rtp_timestamp=rts,
                     sender_packets=pc, sender_octets=oc)
            blocks_at = 24
        elif pt == 201:
            blocks_at = 4
        elif pt == 202:
            p["chunks"] = _sdes(body, count)
            p.pop("ssrc", None)
        elif pt == 203:
            p["ssrcs"] = [struct.unpack_from("!I", body, 4 * i)[0] for i in range(count)
                          if 4 * i + 4 <= len(body)]
            p.pop("ssrc", None)
            rp = 4 * count
            if rp < len(body):
                rl = body[rp]
                p["reason"] = body[rp + 1: rp + 1 + rl].decode("utf-8", "replace")
        elif pt == 204 and len(body) >= 8:
            p["app_name"] = body[4:8].decode("latin-1")
            p["subtype"] = count
        elif pt in (205, 206) and len(body) >= 8:
            p["fmt"] = count
            p["media_ssrc"] = struct.unpack_from("!I", body, 4)[0]
        if blocks_at is not None:
            blocks = []
            for i in range(count):
                o = blocks_at + 24 * i
                if o + 24 > len(body):
                    break
                ssrc, fl, cum_hi, cum_lo, ext, jit, lsr, dlsr = struct.unpack_from(
                    "!IBBHIIII", body, o)
                cum = (cum_hi << 16) | cum_lo
                if cum & 0x800000:
                    cum -= 1 << 24       # 24-bit signed (RFC 3550 6.4.1)
                blocks.append({"ssrc": ssrc, "fraction_lost": fl / 256, "cumulative_lost": cum,
                               "highest_seq": ext, "jitter": jit, "lsr": lsr, "dlsr": dlsr})
            p["report_blocks"] = blocks
        pkts.append(p)
        pos += n
    return pkts, None


def _sdes(body: bytes, count: int) -> list[dict]:
    chunks, pos = [], 0
    for _ in range(count):
        if pos + 4 > len(body):
            break
        ch = {"ssrc": struct.unpack_from("!I", body, pos)[0], "items": {}}
        pos += 4
        while pos < len(body) and body[pos] != 0:
            if pos + 2 > len(body):
                break
            it, il = body[pos], body[pos + 1]
            ch["items"][SDES_ITEMS.get(it, str(it))] = body[pos + 2: pos + 2 + il].decode(
                "utf-8", "replace")
            pos += 2 + il
        pos += 1
        pos += -pos % 4
        chunks.append(ch)
    return chunks


class RtpStream:
    """RFC 3550 A.1/A.3/A.8 receiver statistics for one SSRC."""

    def __init__(self, ssrc, pt, frame, clock, guessed):
        self.ssrc, self.pt = ssrc, pt
        self.first_frame = self.last_frame = frame
        self.clock, self.guessed = clock, guessed
        self.base_seq = self.max_seq = None
        self.cycles = 0
        self.received = 0
        self.jitter = 0.0
        self.max_jitter = 0.0
        self.transit = None
        self.seq_jumps = 0
        self.expected_prior = 0
        self.duplicates = 0
        self.payload_types: set[int] = set()
        self.marker_count = 0
        self.octets = 0
        self.src = self.dst = None

    def add(self, h, frame, ts):
        self.last_frame = frame
        self.received += 1
        self.payload_types.add(h["payload_type"])
        self.marker_count += h["marker"]
        self.octets += h["payload_length"]
        seq = h["sequence"]
        if self.base_seq is None:
            self.base_seq = self.max_seq = seq
        else:
            udelta = (seq - self.max_seq) & 0xFFFF
            if 0 < udelta < MAX_DROPOUT:
                if seq < self.max_seq:
                    self.cycles += 1 << 16
                self.max_seq = seq
            elif udelta == 0:
                self.duplicates += 1
            elif udelta <= 0x10000 - MAX_MISORDER:
                # a large jump: the sender restarted its sequence (or interleaves another
                # numbering). The packets before it stay counted; expected restarts here.
                self.seq_jumps += 1
                self.expected_prior += self.cycles + self.max_seq - self.base_seq + 1
                self.base_seq, self.max_seq, self.cycles = seq, seq, 0
            # else: reordered or duplicate within MAX_MISORDER: received counted, no change
        if self.clock:
            arrival = ts * self.clock
            transit = arrival - h["timestamp"]
            if self.transit is not None:
                d = abs(transit - self.transit)
                # a jump of the RTP timestamp (wrap, new talkspurt base) is not jitter
                if d < self.clock * 60:
                    self.jitter += (d - self.jitter) / 16
                    self.max_jitter = max(self.max_jitter, self.jitter)
            self.transit = transit

    def record(self, conn):
        expected = self.expected_prior + (self.cycles + self.max_seq - self.base_seq + 1
                                          if self.base_seq is not None else 0)
        lost = expected - self.received
        return {"type": "rtp", "conn": conn, "frames": [self.first_frame, self.last_frame],
                "ssrc": self.ssrc, "ssrc_hex": f"0x{self.ssrc:08x}", "payload_type": self.pt,
                "payload_types": sorted(self.payload_types),
                "encoding": STATIC_PT.get(self.pt, (None,))[0],
                "packets": self.received, "expected": expected, "lost": lost,
                "loss_fraction": round(lost / expected, 6) if expected > 0 else None,
                "extended_max_seq": self.cycles + (self.max_seq or 0),
                "duplicates": self.duplicates, "seq_restarts": self.seq_jumps,
                "jitter": round(self.jitter, 3) if self.clock else None,
                "jitter_ms": round(self.jitter / self.clock * 1000, 3) if self.clock else None,
                "max_jitter_ms": round(self.max_jitter / self.clock * 1000, 3)
                if self.clock else None,
                "clock_rate": self.clock, "clock_rate_guessed": self.guessed,
                "markers": self.marker_count, "octets": self.octets,
                "first_frame": self.first_frame, "last_frame": self.last_frame,
                "src": list(self.src) if self.src else None,
                "dst": list(self.dst) if self.dst else None}


class RtcParser(DatagramParser):
    """STUN + DTLS + RTP/RTCP on one UDP flow (RFC 7983 demultiplexing)."""

    name = "rtc"
    ports = (3478, 3479, 5349, 19302, 19305, 8801, 3480)

    @classmethod
    def probe(cls, payload: bytes, sport: int, dport: int) -> float:
        kind = demux(payload)
        hinted = sport in cls.ports or dport in cls.ports
        if kind == "stun":
            m = parse_stun(payload)
            if m is None:
                return 0.0
            return 0.95 if not m["classic"] else (0.7 if hinted else 0.5)
        if kind == "dtls":
            recs, bad = parse_dtls(payload)
            if bad or not recs or recs[0].get("content_type") is None:
                return 0.0
            return 0.8 if recs[0]["version"].startswith("DTLS") else 0.0
        if kind == "rtcp":
            pkts, bad = parse_rtcp(payload)
            return 0.5 if pkts and not bad and pkts[0]["packet_type"] in RTCP_TYPES else 0.0
        if kind == "rtp":
            return 0.4 if parse_rtp(payload) else 0.0   # weak: many protocols start 0x80
        return 0.0

    def __init__(self, conn=None, meta=None):
        self.conn = conn
        self.meta = meta or {}
        self.clock_rates = dict(self.meta.get("clock_rates", {}))
        self.stun: dict = {}
        self.streams: dict = {}
        self.flight = None
        self.dtls_counts: dict = {}
        self.dtls_versions: set = set()
        self.dtls_frames = [None, None]
        self.counts = {"zrtp": 0, "turn-channel": 0, "unknown": 0}

    def _clock(self, pt):
        if pt in self.clock_rates:
            return self.clock_rates[pt], False
        if pt in STATIC_PT:
            return STATIC_PT[pt][1], False
        if pt == 111:
            return 48000, True
        if 96 <= pt <= 127:
            return 90000, True
        return None, False

    def datagram(self, payload, frame, ts, src, dst):
        kind = demux(payload)
        out: list[dict] = []
        if kind != "dtls" or not payload:
            out += self._flush_flight()
        if kind == "stun":
            return out + self._stun(payload, frame, ts, src, dst)
        if kind == "dtls":
            return out + self._dtls(payload, frame, ts, src, dst)
        if kind == "rtcp":
            pkts, bad = parse_rtcp(payload)
            if bad:
                out.append(anomaly("rtcp", bad, frame, "", self.conn))
            if pkts:
                out.append({"type": "rtcp", "conn": self.conn, "frames": [frame], "ts": ts,
                            "src": list(src), "dst": list(dst), "packets": pkts})
            return out
        if kind == "rtp":
            h = parse_rtp(payload)
            if h is None:
                return out + [anomaly("rtp", "rtp-malformed", frame,
                                      "version 2 header does not fit the datagram", self.conn)]
            st = self.streams.get(h["ssrc"])
            if st is None:
                if len(self.streams) >= MAX_SSRCS:
                    return out + [anomaly("rtp", "rtp-too-many-ssrcs", frame,
                                          f"over {MAX_SSRCS} SSRCs", self.conn)]
                clock, guessed = self._clock(h["payload_type"])
                st = self.streams[h["ssrc"]] = RtpStream(h["ssrc"], h["payload_type"], frame,
                                                         clock, guessed)
                st.src, st.dst = tuple(src), tuple(dst)
            st.add(h, frame, ts)
            return out
        key = kind or "unknown"
        self.counts[key] = self.counts.get(key, 0) + 1
        if kind is None and self.counts[key] == 1:    # once per flow; the rest are counted
            out.append(anomaly("rtc", "rtc-unknown-first-byte", frame,
                               f"0x{payload[0]:02x}" if payload else "empty", self.conn))
        return out

    # -- STUN --
    def _stun(self, payload, frame, ts, src, dst):
        m = parse_stun(payload)
        if m is None:
            return [anomaly("stun", "stun-malformed", frame, "header or length invalid", self.conn)]
        out = []
        if m.get("truncated_attribute") is not None:
            out.append(anomaly("stun", "stun-truncated-attribute", frame,
                               f"0x{m['truncated_attribute']:04x}", self.conn))
        if m["fingerprint_ok"] is False:
            out.append(anomaly("stun", "stun-bad-fingerprint", frame, "", self.conn))
        tid = m["transaction_id"]
        if m["class"] == "request":
            t = self.stun.get(tid)
            if t is not None and t["response"] is None:
                t["retransmissions"] += 1
                t["frames"].append(frame)
                t["types"].append(m["msg_type"])
                return out
            if len(self.stun) >= MAX_STUN_TRANSACTIONS:
                out += self._flush_stun(keep_recent=MAX_STUN_TRANSACTIONS // 2)
            self.stun[tid] = {"request": m, "frame": frame, "ts": ts, "response": None,
                              "resp_frame": None, "resp_ts": None, "retransmissions": 0,
                              "frames": [frame], "types": [m["msg_type"]], "src": src,
                              "dst": dst}
            return out
        if m["class"] == "indication":
            return out + [self._stun_record(None, m, frame, ts, [frame], [m["msg_type"]], src, dst)]
        t = self.stun.pop(tid, None)
        if t is None:
            rec = self._stun_record(None, m, frame, ts, [frame], [m["msg_type"]], dst, src)
            rec["unsolicited"] = True
            return out + [rec]
        t["frames"].append(frame)
        t["types"].append(m["msg_type"])
        rec = self._stun_record(t["request"], m, t["frame"], t["ts"], t["frames"], t["types"],
                                t["src"], t["dst"], resp_frame=frame, resp_ts=ts)
        rec["retransmissions"] = t["retransmissions"]
        return out + [rec]

    def _stun_record(self, req, resp, frame, ts, frames, types, client, server,
                     resp_frame=None, resp_ts=None):
        first = req or resp

        def attrs(m):
            return {a["name"]: a.get("value") for a in m["attributes"]} if m else {}
        ra, sa = attrs(req), attrs(resp if req else None)
        if req is None:
            ra = attrs(resp)
        rec = {"type": "stun", "conn": self.conn, "frames": frames,
               "method": first["method_name"], "class": first["class"],
               "classic": first["classic"], "transaction_id": first["transaction_id"],
               "message_types": types,
               "request_frame": frame if req else None,
               "response_frame": resp_frame if req else (frame if resp else None),
               "response_class": resp["class"] if resp and req else None,
               "response_time_s": round(resp_ts - ts, 6) if req and resp_ts is not None else None,
               "username": ra.get("USERNAME"), "software": ra.get("SOFTWARE") or sa.get("SOFTWARE"),
               "xor_mapped_address": sa.get("XOR-MAPPED-ADDRESS") or
               (ra.get("XOR-MAPPED-ADDRESS") if not req else None),
               "mapped_address": sa.get("MAPPED-ADDRESS"),
               "error": sa.get("ERROR-CODE"),
               "fingerprint": any(a["name"] == "FINGERPRINT" for a in first["attributes"]),
               "client": list(client), "server": list(server)}
        rec["attributes"] = [a["name"] for a in first["attributes"]]
        return rec

    def _flush_stun(self, keep_recent=0):
        out = []
        items = list(self.stun.items())
        drop = items[: max(0, len(items) - keep_recent)]
        for tid, t in drop:
            del self.stun[tid]
            rec = self._stun_record(t["request"], None, t["frame"], t["ts"], t["frames"],
                                    t["types"], t["src"], t["dst"])
            rec["retransmissions"] = t["retransmissions"]
            out.append(rec)
        return out

    # -- DTLS --
    def _dtls(self, payload, frame, ts, src, dst):
        recs, bad = parse_dtls(payload)
        out = []
        if bad:
            out.append(anomaly("dtls", bad, frame, "", self.conn))
        hs = [r for r in recs if r.get("epoch") == 0 and r["content_type"] in (22, 20, 21)]
        for r in recs:
            self.dtls_counts[r["content"]] = self.dtls_counts.get(r["content"], 0) + 1
            self.dtls_versions.add(r["version"])
        if self.dtls_frames[0] is None:
            self.dtls_frames[0] = frame
        self.dtls_frames[1] = frame
        if hs:
            if self.flight is not None and self.flight["src"] != list(src):
                out += self._flush_flight()
            if self.flight is None:
                self.flight = {"type": "dtls", "conn": self.conn, "frames": [], "src": list(src),
                               "dst": list(dst), "records": 0, "versions": [],
                               "handshake_types": [], "content_types": []}
            f = self.flight
            f["frames"].append(frame)
            for r in recs:
                f["records"] += 1
                if r["version"] not in f["versions"]:
                    f["versions"].append(r["version"])
                f["content_types"].append(r["content"])
                if "handshake_type" in r:
                    f["handshake_types"].append(r["handshake_type"])
        else:
            out += self._flush_flight()
        return out

    def _flush_flight(self):
        if self.flight is None:
            return []
        f, self.flight = self.flight, None
        return [f]

    def close(self):
        out = self._flush_flight() + self._flush_stun()
        for st in self.streams.values():
            out.append(st.record(self.conn))
        if any(self.counts.values()):
            out.append({"type": "rtc-unclassified", "conn": self.conn, "frames": [],
                        "counts": {k: v for k, v in self.counts.items() if v}})
        if self.dtls_counts:
            out.append({"type": "dtls-session", "conn": self.conn,
                        "frames": [f for f in self.dtls_frames if f is not None],
                        "records_by_content": dict(self.dtls_counts),
                        "versions": sorted(self.dtls_versions)})
        return out


# -- display path ------------------------------------------------------------------------

def dissect_payload(data: bytes, offset: int) -> list[Layer]:
    """One STUN message, DTLS record headers, or an RTP/RTCP header; [] if none fits."""
    kind = demux(data)
    if kind == "stun":
        m = parse_stun(data)
        if m is None:
            return []
        layer = Layer("stun", offset, 20 + m["length"])
        layer.add("stun.type", f"0x{m['msg_type']:04x}", offset, 2,
                  f"{m['method_name']} {m['class']}")
        layer.add("stun.length", m["length"], offset + 2, 2)
        if not m["classic"]:
            layer.add("stun.cookie", f"0x{STUN_COOKIE:08x}", offset + 4, 4, "magic cookie")
        layer.add("stun.id", m["transaction_id"], offset + (8 if not m["classic"] else 4),
                  12 if not m["classic"] else 16)
        pos = 20
        for a in m["attributes"]:
            layer.add(f"stun.att.{a['name'].lower()}", a.get("value"), offset + pos,
                      4 + a["length"])
            pos += 4 + a["length"] + (-a["length"] % 4)
        return [layer]
    if kind == "dtls":
        recs, bad = parse_dtls(data)
        if not recs or recs[0].get("content_type") is None and not recs[0].get("version"):
            return []
        if recs[0].get("content_type") is not None and not recs[0]["version"].startswith("DTLS"):
            return []
        layers = []
        for r in recs:
            o = offset + r["offset"]
            layer = Layer("dtls", o, 13 + r.get("length", 0))
            if r["content_type"] is not None:
                layer.add("dtls.record.content_type", r["content"], o, 1)
                layer.add("dtls.record.version", r["version"], o + 1, 2)
                layer.add("dtls.record.epoch", r["epoch"], o + 3, 2)
                layer.add("dtls.record.sequence_number", r["sequence"], o + 5, 6)
                layer.add("dtls.record.length", r["length"], o + 11, 2)
                if "handshake_type" in r:
                    layer.add("dtls.handshake.type", r["handshake_type"], o + 13, 1)
            else:
                layer.add("dtls.unified_header", r["content"], o, 1, "DTLS 1.3 unified header")
            if bad:
                layer.anomalies.append(bad)
            layers.append(layer)
        return layers
    if kind == "rtcp":
        pkts, bad = parse_rtcp(data)
        if not pkts or bad:
            return []
        layers = []
        for p in pkts:
            o = offset + p["offset"]
            layer = Layer("rtcp", o, p["length"])
            layer.add("rtcp.pt", p["name"], o + 1, 1)
            layer.add("rtcp.length", p["length"] // 4 - 1, o + 2, 2)
            if "ssrc" in p:
                layer.add("rtcp.senderssrc", f"0x{p['ssrc']:08x}", o + 4, 4)
            layers.append(layer)
        return layers
    if kind == "rtp":
        h = parse_rtp(data)
        if h is None:
            return []
        layer = Layer("rtp", offset, len(data))
        layer.add("rtp.version", 2, offset, 1)
        layer.add("rtp.padding", h["padding"], offset, 1)
        layer.add("rtp.ext", h["extension"], offset, 1)
        layer.add("rtp.cc", h["csrc_count"], offset, 1)
        layer.add("rtp.marker", h["marker"], offset + 1, 1)
        layer.add("rtp.p_type", h["payload_type"], offset + 1, 1)
        layer.add("rtp.seq", h["sequence"], offset + 2, 2)
        layer.add("rtp.timestamp", h["timestamp"], offset + 4, 4)
        layer.add("rtp.ssrc", f"0x{h['ssrc']:08x}", offset + 8, 4)
        layer.add("rtp.payload", h["payload_length"], offset + h["header_length"],
                  h["payload_length"])
        return [layer]
    return []


PARSERS = [RtcParser]
