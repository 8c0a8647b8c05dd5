"""TLS (RFC 5246, RFC 8446) record layer and the cleartext part of the handshake.

Sans-I/O. :class:`TlsParser` reads each direction's records (content type, version, length),
reassembles handshake messages across records (a message may span several records, and one
record may hold several messages), and reads what travels in the clear: ClientHello,
ServerHello (HelloRetryRequest recognised), Certificate (TLS <= 1.2), alerts and
ChangeCipherSpec. After a side's ChangeCipherSpec its handshake records are encrypted
(TLS <= 1.2 Finished; TLS 1.3 sends its encrypted flight as application-data records) and
only their sizes and frames are used.

One record per connection, ``{"type": "tls", ...}`` (keys in ``notes/app_parsers.md``),
emitted when the handshake has ended (see ``handshake_end_frame``), when a fatal alert
arrives, or at close - whichever is first - so the end-of-handshake frame and the server's
certificates are in it. ``handshake_end_frame`` is, for TLS <= 1.2, the frame of the first
handshake record after the ChangeCipherSpec of the side that finishes last (the server for a
full handshake, the client for an abbreviated/resumed one); for TLS 1.3, the frame of the
client's first application-data record after the ServerHello (its encrypted Finished).
Frames are those of the segment completing the record, as Wireshark shows reassembled PDUs.

Versions are strings ``"TLS 1.2"``, ``"SSL 3.0"``; GREASE values (RFC 8701) are dropped from
lists. Cipher suites: IANA names for the common ones (:data:`CIPHER_SUITES`), else
``"0x%04X"``; ``cipher_code`` keeps the number.

SSLv2-compatible ClientHellos (a 2-byte header with the high bit set) are read for their
version and cipher specs; an SSLv2 ServerHello for its version.
"""

from __future__ import annotations

import struct

from dissect.analysis.app.base import CLIENT, SERVER, StreamParser, anomaly
from dissect.protocols.base import Layer

# RFC 8446 5.1/5.2: a record's payload is at most 2^14 bytes (+256 compressed, +2048
# ciphertext expansion in TLS <= 1.2); anything longer is not a TLS record.
MAX_RECORD = (1 << 14) + 2048
# A handshake message may span records (certificate chains of a few tens of KiB are common);
# 1 MiB is far beyond any real chain and bounds what we buffer for one message.
MAX_HANDSHAKE = 1 << 20
# Certificates kept per connection (a chain rarely exceeds 5; more is a misbehaving peer).
MAX_CERTIFICATES = 10
# Alerts kept per connection (after a fatal alert the connection ends; more is noise).
MAX_ALERTS = 16

HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


class ContentType:
    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23
    HEARTBEAT = 24


CONTENT_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake",
                 23: "application_data", 24: "heartbeat"}

HANDSHAKE_TYPES = {0: "hello_request", 1: "client_hello", 2: "server_hello",
                   4: "new_session_ticket", 5: "end_of_early_data", 8: "encrypted_extensions",
                   11: "certificate", 12: "server_key_exchange", 13: "certificate_request",
                   14: "server_hello_done", 15: "certificate_verify", 16: "client_key_exchange",
                   20: "finished", 22: "certificate_status", 24: "key_update"}

VERSIONS = {0x0002: "SSL 2.0", 0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1",
            0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}

ALERT_LEVELS = {1: "warning", 2: "fatal"}
ALERT_DESCRIPTIONS = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
    21: "decryption_failed", 22: "record_overflow", 30: "decompression_failure",
    40: "handshake_failure", 41: "no_certificate", 42: "bad_certificate",
    43: "unsupported_certificate", 44: "certificate_revoked", 45: "certificate_expired",
    46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied",
    50: "decode_error", 51: "decrypt_error", 60: "export_restriction", 70: "protocol_version",
    71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
    90: "user_canceled", 100: "no_renegotiation", 109: "missing_extension",
    110: "unsupported_extension", 111: "certificate_unobtainable", 112: "unrecognized_name",
    113: "bad_certificate_status_response", 114: "bad_certificate_hash_value",
    115: "unknown_psk_identity", 116: "certificate_required", 120: "no_application_protocol"}


class Ext:
    SERVER_NAME = 0
    SUPPORTED_GROUPS = 10
    ALPN = 16
    SESSION_TICKET = 35
    PRE_SHARED_KEY = 41
    SUPPORTED_VERSIONS = 43
    KEY_SHARE = 51


# IANA TLS Cipher Suites registry, the ones seen in practice.
CIPHER_SUITES = {
    0x0000: "TLS_NULL_WITH_NULL_NULL", 0x0001: "TLS_RSA_WITH_NULL_MD5",
    0x0002: "TLS_RSA_WITH_NULL_SHA", 0x0003: "TLS_RSA_EXPORT_WITH_RC4_40_MD5",
    0x0004: "TLS_RSA_WITH_RC4_128_MD5", 0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x0009: "TLS_RSA_WITH_DES_CBC_SHA", 0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x0016: "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA", 0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0032: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA", 0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA", 0x0038: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA",
    0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA", 0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256", 0x0041: "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",
    0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", 0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x0084: "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA", 0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384", 0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", 0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256", 0x1304: "TLS_AES_128_CCM_SHA256",
    0x5600: "TLS_FALLBACK_SCSV",
    0xC007: "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", 0xC008: "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC011: "TLS_ECDHE_RSA_WITH_RC4_128_SHA", 0xC012: "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", 0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}


def is_grease(v: int) -> bool:
    """RFC 8701 reserved values 0x?A?A."""
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def version_name(v: int | None) -> str | None:
    if v is None:
        return None
    return VERSIONS.get(v, f"0x{v:04X}")


def suite_name(c: int) -> str:
    return CIPHER_SUITES.get(c, f"0x{c:04X}")


class TlsParseError(ValueError):
    """A handshake message that does not parse (becomes a named anomaly)."""


class _Reader:
    __slots__ = ("b", "end", "i")

    def __init__(self, b: bytes, i: int = 0, end: int | None = None):
        self.b, self.i, self.end = b, i, len(b) if end is None else end

    def left(self) -> int:
        return self.end - self.i

    def take(self, n: int) -> bytes:
        if n < 0 or self.i + n > self.end:
            raise TlsParseError(f"need {n} bytes at {self.i}, {self.left()} left")
        v = self.b[self.i:self.i + n]
        self.i += n
        return v

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "big")

    def vec(self, width: int) -> bytes:
        n = int.from_bytes(self.take(width), "big")
        return self.take(n)


# -- handshake message bodies ----------------------------------------------------------------

def _extensions(r: _Reader) -> list[tuple[int, bytes, int]]:
    """(type, data, offset of the data in r.b) for each extension; [] when absent."""
    out = []
    if r.left() == 0:
        return out
    total = r.u16()
    end = r.i + total
    if end > r.end:
        raise TlsParseError("extensions run past the message")
    while r.i < end:
        t = r.u16()
        n = r.u16()
        off = r.i
        if off + n > end:
            raise TlsParseError(f"extension {t} runs past the extension block")
        out.append((t, r.b[off:off + n], off))
        r.i = off + n
    return out


def _sni(data: bytes) -> str | None:
    r = _Reader(data)
    lst = _Reader(r.vec(2))
    while lst.left():
        kind = lst.u8()
        name = lst.vec(2)
        if kind == 0:
            return name.decode("utf-8", "replace")
    return None


def _alpn(data: bytes) -> list[str]:
    r = _Reader(data)
    lst = _Reader(r.vec(2))
    out = []
    while lst.left():
        out.append(lst.vec(1).decode("utf-8", "replace"))
    return out


def parse_client_hello(body: bytes) -> dict:
    r = _Reader(body)
    legacy = r.u16()
    r.take(32)
    sid = r.vec(1)
    cs = r.vec(2)
    if len(cs) % 2:
        raise TlsParseError("odd cipher suite list length")
    r.vec(1)   # compression methods
    exts = _extensions(r)
    suites = [c for (c,) in struct.iter_unpack(">H", cs)]
    out = {"legacy_version": legacy, "session_id": sid, "session_id_len": len(sid),
           "suites": suites, "sni": None,
           "alpn": None, "versions": None, "session_ticket": None, "psk": False,
           "extensions": [t for t, _, _ in exts]}
    for t, data, _off in exts:
        if t == Ext.SERVER_NAME and data:
            out["sni"] = _sni(data)
        elif t == Ext.ALPN:
            out["alpn"] = _alpn(data)
        elif t == Ext.SUPPORTED_VERSIONS:
            vr = _Reader(data)
            lst = vr.vec(1)
            out["versions"] = [v for (v,) in struct.iter_unpack(">H", lst[:len(lst) // 2 * 2])]
        elif t == Ext.SESSION_TICKET:
            out["session_ticket"] = len(data)
        elif t == Ext.PRE_SHARED_KEY:
            out["psk"] = True
    return out


def parse_server_hello(body: bytes) -> dict:
    r = _Reader(body)
    legacy = r.u16()
    random = r.take(32)
    sid = r.vec(1)
    suite = r.u16()
    r.u8()    # compression method
    exts = _extensions(r)
    out = {"legacy_version": legacy, "session_id": sid, "suite": suite, "alpn": None,
           "selected_version": None, "psk": False, "hrr": random == HRR_RANDOM,
           "extensions": [t for t, _, _ in exts]}
    for t, data, _off in exts:
        if t == Ext.ALPN:
            names = _alpn(data)
            out["alpn"] = names[0] if names else None
        elif t == Ext.SUPPORTED_VERSIONS and len(data) >= 2:
            out["selected_version"] = struct.unpack(">H", data[:2])[0]
        elif t == Ext.PRE_SHARED_KEY:
            out["psk"] = True
    return out


def _cn(name) -> str | None:
    try:
        from cryptography.x509.oid import NameOID
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else None
    except (ValueError, TypeError, AttributeError):   # malformed name inside a parsed cert
        return None


def describe_certificate(der: bytes) -> dict:
    """Subject/issuer CN via ``cryptography`` when installed, else only the DER length."""
    out = {"der_len": len(der), "subject_cn": None, "issuer_cn": None}
    try:
        from cryptography import x509
    except ImportError:
        return out
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:      # what cryptography raises for DER it cannot parse
        out["parse_error"] = True
        return out
    out["subject_cn"] = _cn(cert.subject)
    out["issuer_cn"] = _cn(cert.issuer)
    return out


def parse_certificate(body: bytes) -> list[bytes]:
    r = _Reader(body)
    lst = _Reader(r.vec(3))
    out = []
    while lst.left():
        out.append(lst.vec(3))
    return out


# -- the stream parser ----------------------------------------------------------------------

class _Side:
    """One direction: unread record bytes with the frames that delivered them."""

    __slots__ = (
        "appdata_frames",
        "base",
        "buf",
        "ccs_frame",
        "chunks",
        "encrypted",
        "finished_frame",
        "hs",
        "hs_frames",
        "sslv2",
        "stopped",
    )

    def __init__(self):
        self.buf = bytearray()
        self.base = 0              # stream offset of buf[0]
        self.chunks: list = []     # (stream end offset, frame, ts) of each fed piece
        self.hs = bytearray()      # cleartext handshake bytes not yet made into messages
        self.hs_frames: list = []
        self.encrypted = False     # after this side's ChangeCipherSpec
        self.stopped = False
        self.ccs_frame = None
        self.finished_frame = None  # first handshake record after CCS (encrypted Finished)
        self.appdata_frames: list = []
        self.sslv2 = False

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


def _record_header_ok(b: bytes) -> bool:
    return (len(b) >= 5 and b[0] in CONTENT_TYPES and b[1] == 3 and b[2] <= 4
            and struct.unpack(">H", b[3:5])[0] <= MAX_RECORD)


def _sslv2_hello(b: bytes) -> bool:
    """An SSLv2(-compatible) CLIENT-HELLO: 2-byte length with the high bit, type 1, version."""
    return (len(b) >= 5 and b[0] & 0x80 and b[2] == 1 and b[3] in (0, 3)
            and ((b[0] & 0x7F) << 8 | b[1]) >= 9)


class TlsParser(StreamParser):
    name = "tls"
    ports = (443, 8443, 993, 995, 465, 636, 853, 990, 992, 994, 5061, 5223, 8883)
    probe_max = 0.9

    @classmethod
    def probe(cls, client_head: bytes, server_head: bytes, sport: int, dport: int) -> float:
        score = 0.0
        for head, want in ((client_head, 1), (server_head, 2)):
            if _record_header_ok(head) and head[0] == ContentType.HANDSHAKE:
                if len(head) >= 6 and head[5] == want:
                    score = max(score, 0.9)
                else:
                    score = max(score, 0.5)
            elif want == 1 and _sslv2_hello(head):
                score = max(score, 0.7)
        return score

    def __init__(self, conn=None, meta=None):
        super().__init__(conn, meta)
        self.sides = [_Side(), _Side()]
        self.ch = None
        self.sh = None
        self.ch_frame = None
        self.sh_frame = None
        self.sh_ts = None
        self.frames: list = []
        self.certificates: list = []
        self.alerts: list = []
        self.emitted = False
        self.fatal = False
        self.hrr = False
        self.hs_types = [[], []]

    # -- feeding ------------------------------------------------------------------------
    def feed(self, direction: int, data: bytes, frame: int, ts: float) -> list[dict]:
        s = self.sides[direction]
        if s.stopped or not data:
            return []
        s.buf += data
        s.chunks.append((s.base + len(s.buf), frame, ts))
        out: list[dict] = []
        while not s.stopped:
            got = self._one_record(direction, s, out)
            if not got:
                break
        out += self._maybe_emit()
        return out

    def _note_frame(self, frame) -> None:
        if frame is not None and frame not in self.frames:
            self.frames.append(frame)

    def _one_record(self, d: int, s: _Side, out: list) -> bool:
        b = s.buf
        if len(b) < 5:
            if (len(b) >= 2 and s.base == 0 and d == CLIENT and b[0] & 0x80
                    and len(b) >= ((b[0] & 0x7F) << 8 | b[1]) + 2):
                return self._sslv2(d, s, out)
            return False
        if s.base == 0 and b[0] & 0x80 and not _record_header_ok(b):
            return self._sslv2(d, s, out)
        if s.sslv2:
            return self._sslv2(d, s, out)
        ctype, major, minor, length = b[0], b[1], b[2], struct.unpack(">H", b[3:5])[0]
        frame0, _ = s.frame_at(s.base)
        if ctype not in CONTENT_TYPES or major != 3:
            out.append(anomaly(self.name, "tls-bad-record-header", frame0,
                               f"{bytes(b[:5]).hex()} ({'client' if d == CLIENT else 'server'})",
                               self.conn))
            s.stopped = True
            return False
        if length > MAX_RECORD:
            out.append(anomaly(self.name, "tls-record-too-long", frame0,
                               f"record length {length} > {MAX_RECORD}", self.conn))
            s.stopped = True
            return False
        if len(b) < 5 + length:
            return False      # the rest of the record has not arrived
        payload = bytes(b[5:5 + length])
        frame, ts = s.frame_at(s.base + 4 + length)
        s.consume(5 + length)
        self._record(d, s, ctype, (major << 8) | minor, payload, frame, ts, out)
        return True

    def _sslv2(self, d: int, s: _Side, out: list) -> bool:
        b = s.buf
        # SSLv2 record header: 2 bytes (high bit set) or 3 bytes (with a padding count)
        hlen = 2 if b and b[0] & 0x80 else 3
        if len(b) < hlen:
            return False
        n = (b[0] & 0x7F) << 8 | b[1] if hlen == 2 else (b[0] & 0x3F) << 8 | b[1]
        if len(b) < hlen + n:
            return False
        body = bytes(b[hlen:hlen + n])
        frame, ts = s.frame_at(s.base + hlen - 1 + n)
        s.consume(hlen + n)
        if s.sslv2 and (d == CLIENT and self.ch is not None or d == SERVER and self.sh
                        is not None):
            return True     # after the hellos SSLv2 records are encrypted
        s.sslv2 = True
        self._note_frame(frame)
        if not body:
            return True
        mtype = body[0]
        try:
            if mtype == 1 and d == CLIENT and self.ch is None and len(body) >= 9:
                ver, cs_len, sid_len, _ch_len = struct.unpack(">HHHH", body[1:9])
                specs = body[9:9 + cs_len]
                suites = [int.from_bytes(specs[i:i + 3], "big")
                          for i in range(0, len(specs) - 2, 3)]
                # SSLv2 cipher specs are 3 bytes; TLS suites appear as 0x00XXXX
                self.ch = {"legacy_version": ver, "session_id_len": sid_len,
                           "suites": [c for c in suites if c <= 0xFFFF], "sni": None,
                           "alpn": None, "versions": None, "session_ticket": None,
                           "psk": False, "extensions": [], "sslv2": True}
                self.ch_frame = frame
            elif mtype == 4 and d == SERVER and self.sh is None and len(body) >= 11:
                ver = struct.unpack(">H", body[3:5])[0]
                self.sh = {"legacy_version": ver, "session_id": b"", "suite": None,
                           "alpn": None, "selected_version": None, "psk": False, "hrr": False,
                           "extensions": [], "sslv2": True, "session_id_hit": bool(body[1])}
                self.sh_frame, self.sh_ts = frame, ts
        except struct.error:
            out.append(anomaly(self.name, "sslv2-bad-message", frame, "", self.conn))
        return True

    def _record(self, d, s, ctype, version, payload, frame, ts, out) -> None:
        if ctype == ContentType.CHANGE_CIPHER_SPEC:
            self._note_frame(frame)
            if not s.encrypted:
                s.encrypted = True
                s.ccs_frame = frame
                # leftover cleartext handshake bytes can no longer complete
                if s.hs:
                    out.append(anomaly(self.name, "tls-handshake-truncated", frame,
                                       f"{len(s.hs)} bytes before ChangeCipherSpec", self.conn))
                    s.hs.clear()
            return
        if ctype == ContentType.ALERT:
            self._note_frame(frame)
            if len(self.alerts) < MAX_ALERTS:
                if s.encrypted or self._tls13_encrypted(d) or len(payload) != 2:
                    self.alerts.append({"direction": "client" if d == CLIENT else "server",
                                        "frame": frame, "encrypted": True,
                                        "length": len(payload)})
                else:
                    lvl, desc = payload[0], payload[1]
                    self.alerts.append({"direction": "client" if d == CLIENT else "server",
                                        "frame": frame, "encrypted": False,
                                        "level": ALERT_LEVELS.get(lvl, lvl),
                                        "description": ALERT_DESCRIPTIONS.get(desc, desc)})
                    if lvl == 2:
                        self.fatal = True
            return
        if ctype == ContentType.APPLICATION_DATA:
            if len(s.appdata_frames) < 4:
                s.appdata_frames.append(frame)
            if d == CLIENT and self._tls13() and s.finished_frame is None \
                    and self.sh is not None:
                s.finished_frame = frame
                self._note_frame(frame)
            elif d == SERVER and self._tls13() and not self.emitted:
                self._note_frame(frame)
            return
        if ctype != ContentType.HANDSHAKE:
            return
        self._note_frame(frame)
        if s.encrypted or self._tls13_encrypted(d):
            if s.finished_frame is None:
                s.finished_frame = frame
            return
        if len(s.hs) + len(payload) > MAX_HANDSHAKE:
            out.append(anomaly(self.name, "tls-handshake-too-long", frame,
                               f"handshake message over {MAX_HANDSHAKE} bytes", self.conn))
            s.stopped = True
            return
        s.hs += payload
        while len(s.hs) >= 4:
            mtype = s.hs[0]
            mlen = int.from_bytes(s.hs[1:4], "big")
            if mlen > MAX_HANDSHAKE:
                out.append(anomaly(self.name, "tls-handshake-too-long", frame,
                                   f"handshake message length {mlen}", self.conn))
                s.stopped = True
                return
            if len(s.hs) < 4 + mlen:
                break
            body = bytes(s.hs[4:4 + mlen])
            del s.hs[:4 + mlen]
            self._handshake(d, mtype, body, frame, ts, out)

    def _tls13(self) -> bool:
        return self.sh is not None and self.sh.get("selected_version") == 0x0304 \
            and not self.sh.get("hrr")

    def _tls13_encrypted(self, d) -> bool:
        """TLS 1.3: the server's records after its ServerHello are encrypted."""
        return d == SERVER and self._tls13()

    def _handshake(self, d, mtype, body, frame, ts, out) -> None:
        self.hs_types[d].append(mtype)
        try:
            if mtype == 1 and d == CLIENT:
                ch = parse_client_hello(body)
                if self.ch is None or self.hrr:
                    self.ch = ch
                    self.ch_frame = frame
            elif mtype == 2 and d == SERVER:
                sh = parse_server_hello(body)
                if sh["hrr"]:
                    self.hrr = True
                    self.hrr_sh = sh
                else:
                    self.sh = sh
                    self.sh_frame, self.sh_ts = frame, ts
            elif mtype == 11 and not self._tls13():
                for der in parse_certificate(body)[:MAX_CERTIFICATES]:
                    c = describe_certificate(der)
                    c["direction"] = "client" if d == CLIENT else "server"
                    c["frame"] = frame
                    self.certificates.append(c)
        except TlsParseError as e:
            out.append(anomaly(self.name, f"tls-bad-{HANDSHAKE_TYPES.get(mtype, 'handshake')}"
                               .replace("_", "-"), frame, str(e)[:200], self.conn))

    # -- output ---------------------------------------------------------------------------
    def _resumed(self) -> bool | None:
        ch, sh = self.ch, self.sh
        if sh is None:
            return None
        if sh.get("sslv2"):
            return sh.get("session_id_hit", False)
        if sh["selected_version"] == 0x0304:
            return bool(sh["psk"])
        return bool(ch is not None and sh["session_id"] and ch.get("session_id")
                    == sh["session_id"]) or bool(sh["psk"])

    def _handshake_end(self):
        c, s = self.sides
        if self.sh is None:
            return None
        if self._tls13():
            return c.finished_frame
        if self._resumed():
            return c.finished_frame
        return s.finished_frame

    def _maybe_emit(self) -> list[dict]:
        if self.emitted:
            return []
        if self.fatal or (self.ch is not None and self.sh is not None
                          and self._handshake_end() is not None):
            return self._emit()
        return []

    def _emit(self) -> list[dict]:
        self.emitted = True
        ch, sh = self.ch or {}, self.sh or {}
        version = None
        if self.sh is not None:
            version = version_name(sh["selected_version"] or sh["legacy_version"])
        server = self.meta.get("server") or ("", 0)
        alpn = sh.get("alpn")
        suite = sh.get("suite")
        offered = ch.get("suites") or []
        rec = {"type": "tls", "conn": self.conn, "frames": sorted(self.frames),
               "sni": ch.get("sni"), "alpn_offered": ch.get("alpn"), "alpn": alpn,
               "client_legacy_version": version_name(ch.get("legacy_version")),
               "client_versions": [version_name(v) for v in (ch.get("versions") or [])
                                   if not is_grease(v)] or (
                   [version_name(ch["legacy_version"])] if self.ch is not None else []),
               "version": version,
               "cipher_suites_offered": [suite_name(c) for c in offered if not is_grease(c)],
               "cipher": suite_name(suite) if suite is not None else None,
               "cipher_suite": suite_name(suite) if suite is not None else None,
               "cipher_code": suite,
               "session_id_len": ch.get("session_id_len"),
               "resumption_attempted": bool(ch.get("psk") or ch.get("session_ticket")),
               "resumed": self._resumed(),
               "hello_retry": self.hrr,
               "certificates": list(self.certificates),
               "alerts": list(self.alerts),
               "client_hello_frame": self.ch_frame, "server_hello_frame": self.sh_frame,
               "handshake_end_frame": self._handshake_end(),
               "is_https": alpn in ("http/1.1", "h2") or (alpn is None and server[1] == 443),
               "ts": self.sh_ts}
        return [rec]

    def gap(self, direction, size, frame, ts):
        s = self.sides[direction]
        out = [anomaly(self.name, "stream-gap", frame, f"{size} bytes missing", self.conn)]
        # record boundaries are lost with the bytes: stop reading this direction
        s.stopped = True
        s.buf.clear()
        return out

    def close(self, ts=None) -> list[dict]:
        out: list[dict] = []
        for d, s in enumerate(self.sides):
            if s.buf and not s.stopped:
                frame, _ = s.frame_at(s.base)
                out.append(anomaly(self.name, "tls-record-incomplete", frame,
                                   f"{len(s.buf)} bytes of an unfinished record at close "
                                   f"({'client' if d == CLIENT else 'server'})", self.conn))
        if not self.emitted and (self.ch is not None or self.sh is not None):
            out += self._emit()
        return out


# -- display path ------------------------------------------------------------------------

def _hello_layer(data: bytes, start: int, end: int, offset: int) -> Layer | None:
    """The ClientHello/ServerHello at data[start:end] (a handshake message) as a Layer."""
    mtype = data[start]
    if mtype not in (1, 2):
        return None
    mlen = int.from_bytes(data[start + 1:start + 4], "big")
    body_end = min(start + 4 + mlen, end)
    lay = Layer("tls.handshake", offset + start, body_end - start)
    lay.add("tls.handshake.type", mtype, offset + start, 1, HANDSHAKE_TYPES[mtype])
    lay.add("tls.handshake.length", mlen, offset + start + 1, 3)
    r = _Reader(data, start + 4, body_end)
    try:
        v = r.u16()
        lay.add("tls.handshake.version", version_name(v), offset + r.i - 2, 2)
        lay.add("tls.handshake.random", data[r.i:r.i + 32], offset + r.i, 32)
        r.take(32)
        sid = r.vec(1)
        lay.add("tls.handshake.session_id_length", len(sid), offset + r.i - len(sid) - 1, 1)
        if mtype == 1:
            n_at = r.i
            cs = r.vec(2)
            lay.add("tls.handshake.cipher_suites_length", len(cs), offset + n_at, 2)
            for i in range(0, len(cs) - 1, 2):
                c = struct.unpack(">H", cs[i:i + 2])[0]
                lay.add("tls.handshake.ciphersuite", suite_name(c), offset + n_at + 2 + i, 2)
            r.vec(1)
        else:
            c = r.u16()
            lay.add("tls.handshake.ciphersuite", suite_name(c), offset + r.i - 2, 2)
            r.u8()
        for t, ext, off in _extensions(r):
            if t == Ext.SERVER_NAME and mtype == 1 and len(ext) >= 5:
                name_len = struct.unpack(">H", ext[3:5])[0]
                lay.add("tls.handshake.extensions_server_name",
                        ext[5:5 + name_len].decode("utf-8", "replace"), offset + off + 5,
                        name_len)
            elif t == Ext.ALPN and len(ext) >= 2:
                j = 2
                while j < len(ext):
                    n = ext[j]
                    lay.add("tls.handshake.extensions_alpn_str",
                            ext[j + 1:j + 1 + n].decode("utf-8", "replace"), offset + off + j + 1,
                            n)
                    j += 1 + n
            elif t == Ext.SUPPORTED_VERSIONS:
                if mtype == 1 and ext:
                    for j in range(1, 1 + ext[0] - 1, 2):
                        sv = struct.unpack(">H", ext[j:j + 2])[0]
                        lay.add("tls.handshake.extensions.supported_version",
                                version_name(sv), offset + off + j, 2)
                elif mtype == 2 and len(ext) >= 2:
                    sv = struct.unpack(">H", ext[:2])[0]
                    lay.add("tls.handshake.extensions.supported_version", version_name(sv),
                            offset + off, 2)
    except TlsParseError as e:
        lay.anomalies.append(f"tls-bad-hello: {e}")
    return lay


def dissect_payload(data: bytes, offset: int) -> list[Layer]:
    """TLS records starting at the segment start (frame offsets); [] if not TLS."""
    if not _record_header_ok(data):
        return []
    layers: list[Layer] = []
    pos = 0
    while pos + 5 <= len(data) and _record_header_ok(data[pos:pos + 5]):
        ctype, ver, length = data[pos], struct.unpack(">H", data[pos + 1:pos + 3])[0], \
            struct.unpack(">H", data[pos + 3:pos + 5])[0]
        end = min(pos + 5 + length, len(data))
        lay = Layer("tls", offset + pos, end - pos)
        lay.add("tls.record.content_type", ctype, offset + pos, 1, CONTENT_TYPES[ctype])
        lay.add("tls.record.version", version_name(ver), offset + pos + 1, 2)
        lay.add("tls.record.length", length, offset + pos + 3, 2)
        if end < pos + 5 + length:
            lay.anomalies.append("tls-record-continues-in-later-segments")
        layers.append(lay)
        if ctype == ContentType.HANDSHAKE and end - pos >= 9:
            hello = _hello_layer(data, pos + 5, end, offset)
            if hello is not None:
                layers.append(hello)
        pos = end
    return layers


PARSERS = [TlsParser]
