"""DNS (RFC 1035, 3596, 2782, 6891, 9460) over UDP and over TCP (2-byte length prefix).

Sans-I/O. :func:`parse_message` decodes one message (header, questions, answer/authority/
additional records with name compression and named limits); :class:`DnsUdpParser` and
:class:`DnsTcpParser` pair queries with responses and flag retransmissions the way
Wireshark's DNS dissector does (``dns.retransmission``, 4.0):

* transactions live per conversation (the client/server address-port pair, or the TCP
  connection) and are looked up by DNS ID;
* a query whose ID matches the latest transaction of that conversation that has no response
  yet, sent within ``RETRANSMISSION_TIMER_S`` of that transaction's first query, is a
  retransmitted query; otherwise it opens a new transaction;
* a response to a transaction that already has a (different) response is a retransmitted
  response; a response matching no transaction is unsolicited.

Records: one ``{"type": "dns", ...}`` per query message (the first and any retransmission)
with the response paired when there is one, and one per retransmitted or unsolicited
response.
"""

from __future__ import annotations

import ipaddress
import struct

from dissect.analysis.app.base import CLIENT, DatagramParser, StreamParser, anomaly
from dissect.errors import MalformedError
from dissect.protocols.base import Layer

MAX_NAME_LENGTH = 255      # RFC 1035 2.3.4: a name's wire form is at most 255 octets
MAX_LABELS = 127           # 255 octets hold at most 127 one-character labels
MAX_POINTER_HOPS = 64      # more compression pointers than this in one name is a loop/attack
MAX_RECORDS = 4096         # records decoded per message; a 64 KiB message holds ~5400 minimum
MAX_TCP_MESSAGE = 65535    # the TCP length prefix is 16 bits; nothing above that exists
RETRANSMISSION_TIMER_S = 5.0   # Wireshark's dns.retransmission_timer default (seconds)
# NetBIOS name/datagram services borrow DNS's wire format for another protocol (tshark: nbns)
NETBIOS_PORTS = (137, 138)
MAX_TRANSACTIONS = 65536   # transactions kept per parser before the oldest answered are dropped

TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 12: "PTR", 13: "HINFO", 15: "MX",
         16: "TXT", 28: "AAAA", 33: "SRV", 35: "NAPTR", 41: "OPT", 43: "DS", 44: "SSHFP",
         46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 50: "NSEC3", 52: "TLSA", 64: "SVCB",
         65: "HTTPS", 99: "SPF", 252: "AXFR", 255: "ANY", 257: "CAA", 32: "NB", 33_000: "?"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
          6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}


class DnsNameError(MalformedError):
    """A name that cannot be decoded; ``name`` is the anomaly name."""

    def __init__(self, name: str, reason: str, offset: int):
        super().__init__(reason, protocol="dns", offset=offset)
        self.name = name


def read_name(msg: bytes, pos: int) -> tuple[str, int]:
    """Decode a (possibly compressed) name at ``pos``; returns (name, position after it)."""
    labels: list[str] = []
    end = None
    hops = 0
    seen: set[int] = set()
    length = 0
    while True:
        if pos >= len(msg):
            raise DnsNameError("dns-truncated-name", "name runs past the message", pos)
        b = msg[pos]
        kind = b & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(msg):
                raise DnsNameError("dns-truncated-name", "pointer cut short", pos)
            target = ((b & 0x3F) << 8) | msg[pos + 1]
            if end is None:
                end = pos + 2
            hops += 1
            if target in seen:
                raise DnsNameError("dns-name-pointer-loop", f"pointer to {target} revisited", pos)
            if hops > MAX_POINTER_HOPS:
                raise DnsNameError("dns-name-pointer-limit",
                                   f"more than {MAX_POINTER_HOPS} pointers", pos)
            seen.add(target)
            pos = target
            continue
        if kind != 0:
            raise DnsNameError("dns-bad-label-type", f"label type 0x{kind:02x}", pos)
        if b == 0:
            pos += 1
            break
        if pos + 1 + b > len(msg):
            raise DnsNameError("dns-truncated-name", "label runs past the message", pos)
        labels.append(msg[pos + 1: pos + 1 + b].decode("utf-8", "replace"))
        length += b + 1
        if len(labels) > MAX_LABELS:
            raise DnsNameError("dns-too-many-labels", f"more than {MAX_LABELS} labels", pos)
        if length + 1 > MAX_NAME_LENGTH:
            raise DnsNameError("dns-name-too-long", f"over {MAX_NAME_LENGTH} octets", pos)
        pos += 1 + b
    return ".".join(labels) if labels else "<Root>", (end if end is not None else pos)


def _rdata(msg: bytes, rtype: int, pos: int, rdlen: int):
    rd = msg[pos: pos + rdlen]
    try:
        if rtype == 1 and rdlen == 4:
            return str(ipaddress.IPv4Address(rd))
        if rtype == 28 and rdlen == 16:
            return str(ipaddress.IPv6Address(rd))
        if rtype in (2, 5, 12):
            return read_name(msg, pos)[0]
        if rtype == 15:
            return {"preference": struct.unpack_from("!H", msg, pos)[0],
                    "exchange": read_name(msg, pos + 2)[0]}
        if rtype == 16:
            out, i = [], 0
            while i < rdlen:
                n = rd[i]
                out.append(rd[i + 1: i + 1 + n].decode("utf-8", "replace"))
                i += 1 + n
            return out
        if rtype == 6:
            mname, p = read_name(msg, pos)
            rname, p = read_name(msg, p)
            serial, refresh, retry, expire, minimum = struct.unpack_from("!IIIII", msg, p)
            return {"mname": mname, "rname": rname, "serial": serial, "refresh": refresh,
                    "retry": retry, "expire": expire, "minimum": minimum}
        if rtype == 33:
            prio, weight, port = struct.unpack_from("!HHH", msg, pos)
            return {"priority": prio, "weight": weight, "port": port,
                    "target": read_name(msg, pos + 6)[0]}
        if rtype in (64, 65):
            prio = struct.unpack_from("!H", msg, pos)[0]
            target, p = read_name(msg, pos + 2)
            return {"priority": prio, "target": target, "params": msg[p: pos + rdlen].hex()}
    except (struct.error, IndexError, DnsNameError):
        return {"raw": rd.hex(), "malformed": True}
    return rd.hex()


def parse_message(msg: bytes) -> tuple[dict, list[tuple[str, str, int]]]:
    """Decode one DNS message. Returns (message, anomalies as (name, detail, offset)).

    Raises :class:`MalformedError` when not even the header and the questions can be read;
    a damaged record section ends decoding there with an anomaly.
    """
    if len(msg) < 12:
        raise MalformedError(f"{len(msg)} bytes, the header needs 12", protocol="dns", offset=0)
    ident, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", msg, 0)
    m = {"id": ident, "flags": flags, "qr": flags >> 15, "opcode": (flags >> 11) & 0xF,
         "aa": bool(flags & 0x400), "tc": bool(flags & 0x200), "rd": bool(flags & 0x100),
         "ra": bool(flags & 0x80), "rcode": flags & 0xF, "counts": (qd, an, ns, ar),
         "questions": [], "answers": [], "authority": [], "additional": [], "edns": None}
    notes: list[tuple[str, str, int]] = []
    pos = 12
    for _ in range(qd):
        try:
            name, pos = read_name(msg, pos)
        except DnsNameError as e:
            raise MalformedError(f"question name: {e.reason}", protocol="dns",
                                 offset=e.offset) from None
        if pos + 4 > len(msg):
            raise MalformedError("question cut short", protocol="dns", offset=pos)
        qtype, qclass = struct.unpack_from("!HH", msg, pos)
        pos += 4
        m["questions"].append({"name": name, "type": qtype, "class": qclass})
    decoded = 0
    for section, count in (("answers", an), ("authority", ns), ("additional", ar)):
        for _ in range(count):
            if decoded >= MAX_RECORDS:
                notes.append(("dns-too-many-records", f"over {MAX_RECORDS} records", pos))
                return m, notes
            start = pos
            try:
                name, pos = read_name(msg, pos)
            except DnsNameError as e:
                notes.append((e.name, f"{section}: {e.reason}", e.offset))
                return m, notes
            if pos + 10 > len(msg):
                notes.append(("dns-truncated-record", f"{section} record cut short", pos))
                return m, notes
            rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", msg, pos)
            pos += 10
            if pos + rdlen > len(msg):
                notes.append(("dns-truncated-record", f"{section} rdata cut short", pos))
                return m, notes
            rr = {"name": name, "type": rtype, "class": rclass, "ttl": ttl,
                  "offset": start, "rdata_offset": pos, "rdlength": rdlen}
            if rtype == 41:
                rr["ttl"] = None
                opts, i, rd = [], 0, msg[pos: pos + rdlen]
                while i + 4 <= len(rd):
                    code, olen = struct.unpack_from("!HH", rd, i)
                    opts.append({"code": code, "length": olen, "data": rd[i + 4: i + 4 + olen].hex()})
                    i += 4 + olen
                rr["data"] = {"udp_payload_size": rclass, "ext_rcode": ttl >> 24,
                              "version": (ttl >> 16) & 0xFF, "do": bool(ttl & 0x8000),
                              "options": opts}
                m["edns"] = rr["data"]
            else:
                rr["data"] = _rdata(msg, rtype, pos, rdlen)
            pos += rdlen
            m[section].append(rr)
            decoded += 1
    if pos < len(msg):
        notes.append(("dns-trailing-bytes", f"{len(msg) - pos} bytes after the records", pos))
    return m, notes


def type_name(t: int) -> str:
    return TYPES.get(t, str(t))


class _Transactions:
    """Wireshark's request/response matching and retransmission rule, per conversation."""

    def __init__(self):
        self.latest: dict = {}      # (conversation, id) -> transaction
        self.order: list = []

    def query(self, key, m, frame, ts, src, dst):
        t = self.latest.get(key)
        if t is not None and t["response"] is None and ts - t["ts"] <= RETRANSMISSION_TIMER_S:
            t["retrans"].append((frame, ts))
            return t, True
        t = {"query": m, "frame": frame, "ts": ts, "response": None, "resp_frame": None,
             "resp_ts": None, "retrans": [], "client": src, "server": dst, "emitted": False}
        self.latest[key] = t
        self.order.append(t)
        if len(self.order) > MAX_TRANSACTIONS:
            self.order = [x for x in self.order if not x["emitted"]]
        return t, False

    def response(self, key, m, frame, ts):
        t = self.latest.get(key)
        if t is None:
            return None, "unsolicited"
        if t["response"] is None:
            t["response"], t["resp_frame"], t["resp_ts"] = m, frame, ts
            return t, "answer"
        return t, "retransmitted"


class _DnsCore:
    transport = "udp"

    def _init_core(self):
        self.tx = _Transactions()

    def _record(self, conn, q, r, qframe, qts, rframe, rts, retrans, client, server):
        src = q if q is not None else r
        question = src["questions"][0] if src and src["questions"] else {}
        answers = []
        if r is not None:
            answers = [{"name": a["name"], "type": type_name(a["type"]), "ttl": a["ttl"],
                        "data": a["data"]} for a in r["answers"]]
        frames = sorted({f for f in (qframe, rframe) if f is not None})
        return {"type": "dns", "conn": conn, "frames": frames, "transport": self.transport,
                "id": src["id"] if src else None, "qname": question.get("name"),
                "qtype": type_name(question["type"]) if question else None,
                "opcode": src["opcode"] if src else None,
                "rcode": RCODES.get(r["rcode"], r["rcode"]) if r is not None else None,
                "answers": answers, "authority": len(r["authority"]) if r else None,
                "additional": len(r["additional"]) if r else None,
                "tc": r["tc"] if r else None,
                "query_frame": qframe, "response_frame": rframe, "query_ts": qts,
                "response_time_s": round(rts - qts, 6) if rts is not None and qts is not None
                else None, "retransmission": retrans,
                "client": list(client) if client else None,
                "server": list(server) if server else None}

    def _message(self, data, frame, ts, src, dst, conv, conn):
        out = []
        try:
            m, notes = parse_message(data)
        except MalformedError as e:
            return [anomaly("dns", "dns-malformed", frame, str(e), conn)]
        for name, detail, _off in notes:
            out.append(anomaly("dns", name, frame, detail, conn))
        q = m["questions"][0] if m["questions"] else None
        key = (conv, m["id"])
        if not m["qr"]:
            t, retrans = self.tx.query(key, m, frame, ts, src, dst)
            if retrans:
                t.setdefault("retrans_records", []).append(
                    self._record(conn, m, None, frame, ts, None, None, True, src, dst))
            return out
        t, kind = self.tx.response(key, m, frame, ts)
        if kind == "answer":
            out += self._emit(t, conn)
        elif kind == "retransmitted":
            out.append(self._record(conn, t["query"], m, t["frame"], t["ts"], frame, ts, True,
                                    t["client"], t["server"]))
        else:
            rec = self._record(conn, None, m, None, None, frame, ts, False, dst, src)
            rec["unsolicited"] = True
            out.append(rec)
        _ = q
        return out

    def _emit(self, t, conn):
        if t["emitted"]:
            return []
        t["emitted"] = True
        out = [self._record(conn, t["query"], t["response"], t["frame"], t["ts"],
                            t["resp_frame"], t["resp_ts"], False, t["client"], t["server"])]
        for rr in t.get("retrans_records", []):
            if t["response"] is not None:
                rr["response_frame"] = t["resp_frame"]
                rr["rcode"] = RCODES.get(t["response"]["rcode"], t["response"]["rcode"])
                rr["frames"] = sorted(set(rr["frames"]) | {t["resp_frame"]})
            rr["original_frame"] = t["frame"]
            out.append(rr)
        return out

    def _flush(self, conn):
        out = []
        for t in self.tx.order:
            out += self._emit(t, conn)
        return out


class DnsUdpParser(_DnsCore, DatagramParser):
    name = "dns"
    ports = (53, 5353, 5355)
    transport = "udp"

    @classmethod
    def probe(cls, payload: bytes, sport: int, dport: int) -> float:
        if len(payload) < 12 or sport in NETBIOS_PORTS or dport in NETBIOS_PORTS:
            return 0.0
        try:
            m, notes = parse_message(payload)
        except MalformedError:
            return 0.0
        qd = m["counts"][0]
        if qd == 0 and not m["qr"] or qd > 4 or m["opcode"] > 6:
            return 0.1
        score = 0.6 if not notes else 0.3
        if sport in cls.ports or dport in cls.ports:
            score += 0.3
        return min(score, 1.0)

    def __init__(self, conn=None, meta=None):
        self.conn = conn
        self.meta = meta or {}
        self._init_core()

    def datagram(self, payload, frame, ts, src, dst):
        conv = frozenset((tuple(src), tuple(dst)))
        return self._message(payload, frame, ts, tuple(src), tuple(dst), conv, self.conn)

    def close(self):
        return self._flush(self.conn)


class DnsTcpParser(_DnsCore, StreamParser):
    name = "dns"
    ports = (53,)
    probe_max = 0.5 + 0.4

    @classmethod
    def probe_bound(cls, sport: int, dport: int) -> float:
        return 0.5 + 0.4 if 53 in (sport, dport) else 0.5
    transport = "tcp"

    @classmethod
    def probe(cls, client_head: bytes, server_head: bytes, sport: int, dport: int) -> float:
        head = client_head or server_head
        if len(head) < 14:
            return 0.0
        n = struct.unpack_from("!H", head, 0)[0]
        if n < 12:
            return 0.0
        try:
            m, notes = parse_message(head[2: 2 + n]) if len(head) >= 2 + n else (None, [])
        except MalformedError:
            return 0.0
        score = 0.5 if m is not None and not notes else 0.2
        if 53 in (sport, dport):
            score += 0.4
        return score

    def __init__(self, conn=None, meta=None):
        super().__init__(conn, meta)
        self._init_core()
        self.bufs = [bytearray(), bytearray()]
        self.first = [None, None]
        client = tuple(self.meta.get("client", (None, None)))
        server = tuple(self.meta.get("server", (None, None)))
        self.ends = (client, server)

    def feed(self, direction, data, frame, ts):
        buf = self.bufs[direction]
        out = []
        if not buf:
            self.first[direction] = (frame, ts)
        buf += data
        while len(buf) >= 2:
            n = struct.unpack_from("!H", buf, 0)[0]
            if len(buf) < 2 + n:
                break
            msg = bytes(buf[2: 2 + n])
            del buf[: 2 + n]
            f0, t0 = self.first[direction]
            # a message's frame is the one that completed it (as Wireshark reports it)
            src, dst = (self.ends if direction == CLIENT else self.ends[::-1])
            out += self._message(msg, frame, ts, src, dst, "tcp", self.conn)
            self.first[direction] = (frame, ts)
            _ = (f0, t0)
        return out

    def gap(self, direction, size, frame, ts):
        self.bufs[direction].clear()     # framing lost: the rest of this direction is unusable
        self.lost = True
        return [anomaly("dns", "stream-gap", frame, f"{size} bytes missing", self.conn)]

    def close(self, ts=None):
        out = []
        for d in (0, 1):
            if self.bufs[d]:
                out.append(anomaly("dns", "dns-tcp-incomplete", None,
                                   f"{len(self.bufs[d])} bytes of an unfinished message",
                                   self.conn))
        return out + self._flush(self.conn)


# -- display path ------------------------------------------------------------------------

def dissect_payload(data: bytes, offset: int) -> list[Layer]:
    """One DNS message (UDP payload, or TCP payload with its length prefix); [] if not DNS."""
    base = 0
    if len(data) >= 14 and struct.unpack_from("!H", data, 0)[0] == len(data) - 2:
        base = 2
    msg = data[base:]
    try:
        m, notes = parse_message(msg)
    except MalformedError:
        return []
    qd = m["counts"][0]
    if notes or qd > 4 or (qd == 0 and not m["qr"]) or m["opcode"] > 6:
        return []
    o = offset + base
    layer = Layer("dns", offset, len(data))
    if base:
        layer.add("dns.length", len(msg), offset, 2, "TCP length prefix (RFC 1035 4.2.2)")
    layer.add("dns.id", m["id"], o, 2, "transaction ID")
    layer.add("dns.flags", m["flags"], o + 2, 2, "flags")
    layer.add("dns.flags.response", m["qr"], o + 2, 1, "QR: 1 for a response")
    layer.add("dns.flags.opcode", m["opcode"], o + 2, 1)
    layer.add("dns.flags.rcode", m["rcode"], o + 3, 1, RCODES.get(m["rcode"], ""))
    for i, n in enumerate(("dns.count.queries", "dns.count.answers", "dns.count.auth_rr",
                           "dns.count.add_rr")):
        layer.add(n, m["counts"][i], o + 4 + 2 * i, 2)
    pos = 12
    for q in m["questions"]:
        _, end = read_name(msg, pos)
        layer.add("dns.qry.name", q["name"], o + pos, end - pos)
        layer.add("dns.qry.type", type_name(q["type"]), o + end, 2)
        layer.add("dns.qry.class", q["class"], o + end + 2, 2)
        pos = end + 4
    for section in ("answers", "authority", "additional"):
        for rr in m[section]:
            layer.add("dns.resp.name", rr["name"], o + rr["offset"],
                      rr["rdata_offset"] - 10 - rr["offset"])
            layer.add("dns.resp.type", type_name(rr["type"]), o + rr["rdata_offset"] - 10, 2)
            if rr["ttl"] is not None:
                layer.add("dns.resp.ttl", rr["ttl"], o + rr["rdata_offset"] - 6, 4)
            layer.add("dns.resp.data", rr["data"], o + rr["rdata_offset"], rr["rdlength"])
    return [layer]


PARSERS = [DnsUdpParser, DnsTcpParser]
