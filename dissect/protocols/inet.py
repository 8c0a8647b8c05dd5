"""Network and transport headers: IPv4 (options, fragments), IPv6 (extension headers),
ICMP, ICMPv6, TCP (options), UDP, GRE."""

from __future__ import annotations

import struct

from dissect.columns.decode import MAX_IPV6_EXT_HEADERS
from dissect.protocols.base import Layer
from dissect.protocols.spec import F, read

IPV4 = (
    F("version", 0, "B", 0xF0, "IP version (4)"),
    F("hdr_len", 0, "B", 0x0F, "header length (bytes; the wire holds 32-bit words)"),
    F("dsfield.dscp", 1, "B", 0xFC, "differentiated services code point"),
    F("dsfield.ecn", 1, "B", 0x03, "explicit congestion notification"),
    F("len", 2, "H", doc="total length (header + payload)"),
    F("id", 4, "H", doc="identification"),
    F("flags.rb", 6, "H", 0x8000, "reserved flag"),
    F("flags.df", 6, "H", 0x4000, "don't fragment"),
    F("flags.mf", 6, "H", 0x2000, "more fragments"),
    F("frag_offset", 6, "H", 0x1FFF, "fragment offset in 8-byte units"),
    F("ttl", 8, "B", doc="time to live"),
    F("proto", 9, "B", doc="protocol of the payload"),
    F("checksum", 10, "H", doc="header checksum"),
    F("src", 12, "ip4", doc="source address"),
    F("dst", 16, "ip4", doc="destination address"),
)
IPV6 = (
    F("version", 0, "I", 0xF0000000, "IP version (6)"),
    F("tclass", 0, "I", 0x0FF00000, "traffic class"),
    F("flow", 0, "I", 0x000FFFFF, "flow label"),
    F("plen", 4, "H", doc="payload length"),
    F("nxt", 6, "B", doc="next header"),
    F("hlim", 7, "B", doc="hop limit"),
    F("src", 8, "ip6", doc="source address"),
    F("dst", 24, "ip6", doc="destination address"),
)
IPV6_EXT = (
    F("nxt", 0, "B", doc="next header"),
    F("len", 1, "B", doc="header length in 8-byte units, minus one"),
)
IPV6_FRAG = (
    F("nxt", 0, "B", doc="next header"),
    F("fragment.offset", 2, "H", 0xFFF8, "fragment offset in 8-byte units"),
    F("fragment.more", 2, "H", 0x0001, "more fragments"),
    F("fragment.id", 4, "I", doc="identification"),
)
ICMP = (
    F("type", 0, "B", doc="message type"),
    F("code", 1, "B", doc="message code"),
    F("checksum", 2, "H", doc="checksum"),
)
ICMP_ECHO = (
    F("ident", 4, "H", doc="echo identifier"),
    F("seq", 6, "H", doc="echo sequence number"),
)
TCP = (
    F("srcport", 0, "H", doc="source port"),
    F("dstport", 2, "H", doc="destination port"),
    F("seq_raw", 4, "I", doc="sequence number (absolute)"),
    F("ack_raw", 8, "I", doc="acknowledgement number (absolute)"),
    F("hdr_len", 12, "B", 0xF0, "header length (bytes; the wire holds 32-bit words)"),
    F("flags", 12, "H", 0x0FFF, "flags (NS CWR ECE URG ACK PSH RST SYN FIN)"),
    F("flags.cwr", 13, "B", 0x80, "congestion window reduced"),
    F("flags.ece", 13, "B", 0x40, "ECN echo"),
    F("flags.urg", 13, "B", 0x20, "urgent pointer valid"),
    F("flags.ack", 13, "B", 0x10, "acknowledgement valid"),
    F("flags.push", 13, "B", 0x08, "push"),
    F("flags.reset", 13, "B", 0x04, "reset"),
    F("flags.syn", 13, "B", 0x02, "synchronise sequence numbers"),
    F("flags.fin", 13, "B", 0x01, "no more data from sender"),
    F("window_size_value", 14, "H", doc="receive window (unscaled)"),
    F("checksum", 16, "H", doc="checksum"),
    F("urgent_pointer", 18, "H", doc="urgent pointer"),
)
UDP = (
    F("srcport", 0, "H", doc="source port"),
    F("dstport", 2, "H", doc="destination port"),
    F("length", 4, "H", doc="length (header + payload)"),
    F("checksum", 6, "H", doc="checksum"),
)
GRE = (
    F("flags_and_version", 0, "H", doc="flags and version"),
    F("proto", 2, "H", doc="protocol type of the payload"),
)
IPV6_EXT_NAMES = {0: "hop-by-hop", 43: "routing", 44: "fragment", 60: "destination-options",
                  51: "ah", 135: "mobility", 139: "hip", 140: "shim6"}
TCP_OPTION_NAMES = {0: "eol", 1: "nop", 2: "mss", 3: "wscale", 4: "sack_perm", 5: "sack",
                    8: "timestamp", 30: "mptcp", 34: "tfo"}


def _words_to_bytes(lay: Layer, name: str) -> int:
    """Header-length fields are shown in bytes, as Wireshark does."""
    for f in lay.fields:
        if f.name == name:
            f.value *= 4
            return f.value
    return 0


def ipv4(data: bytes, off: int, layers: list, limit: int) -> tuple | None:
    """Returns (payload offset, payload length, proto, fragment?) or None."""
    lay = Layer("ip", off, 20)
    layers.append(lay)
    if not read(IPV4, data, off, lay):
        return None
    ihl = _words_to_bytes(lay, "hdr_len")
    if lay.get("version") != 4:
        lay.anomalies.append("ip-bad-version")
        return None
    if ihl < 20:
        lay.anomalies.append("ip-bad-header-length")
        return None
    lay.length = ihl
    if ihl > 20:
        if off + ihl > len(data):
            lay.anomalies.append("ip-options-truncated")
            return None
        lay.add("options", data[off + 20:off + ihl].hex(), off + 20, ihl - 20, "IP options")
    total = lay.get("len")
    reported = limit - off
    if total == 0:   # TSO: the NIC fills the length in; show what was on the wire
        total = reported
        lay.anomalies.append("ip-length-zero-tso")
        for f in lay.fields:
            if f.name == "len":
                f.value = reported
    elif total < ihl:
        lay.anomalies.append("ip-bad-total-length")
        return None
    if total > reported:
        lay.anomalies.append("ip-total-length-exceeds-packet")
        total = reported
    frag = lay.get("flags.mf") or lay.get("frag_offset")
    if frag:
        lay.anomalies.append("ip-fragment")
    return off + ihl, total - ihl, lay.get("proto"), bool(frag)


def ipv6(data: bytes, off: int, layers: list, limit: int) -> tuple | None:
    lay = Layer("ipv6", off, 40)
    layers.append(lay)
    if not read(IPV6, data, off, lay):
        return None
    if lay.get("version") != 6:
        lay.anomalies.append("ipv6-bad-version")
        return None
    plen = lay.get("plen") or (limit - off - 40)
    if plen + 40 > limit - off:
        lay.anomalies.append("ipv6-payload-length-exceeds-packet")
        plen = limit - off - 40
    end = off + 40 + plen
    proto = lay.get("nxt")
    p = off + 40
    frag = False
    hops = 0
    while proto in (0, 43, 44, 60, 51):
        hops += 1
        if hops > MAX_IPV6_EXT_HEADERS:
            lay.anomalies.append("ipv6-too-many-extension-headers")
            return None
        ext = Layer("ipv6.ext", p, 8)
        layers.append(ext)
        ext.add("type", IPV6_EXT_NAMES.get(proto, proto), p, 0, "extension header type")
        if proto == 44:
            if not read(IPV6_FRAG, data, p, ext):
                return None
            if ext.get("fragment.offset") or ext.get("fragment.more"):
                frag = True
            hlen = 8
        else:
            if not read(IPV6_EXT, data, p, ext):
                return None
            hlen = (data[p + 1] + 2) * 4 if proto == 51 else (data[p + 1] + 1) * 8
        ext.length = hlen
        proto = data[p]
        p += hlen
    if p > end:
        lay.anomalies.append("ipv6-extension-exceeds-payload")
        return None
    return p, end - p, proto, frag


def icmp(data: bytes, off: int, layers: list, length: int, v6: bool) -> None:
    lay = Layer("icmpv6" if v6 else "icmp", off, length)
    layers.append(lay)
    if not read(ICMP, data, off, lay):
        return
    t = lay.get("type")
    if (not v6 and t in (0, 8)) or (v6 and t in (128, 129)):
        read(ICMP_ECHO, data, off, lay)


def tcp(data: bytes, off: int, layers: list, length: int) -> tuple | None:
    lay = Layer("tcp", off, 20)
    layers.append(lay)
    if not read(TCP, data, off, lay):
        return None
    thl = _words_to_bytes(lay, "hdr_len")
    if thl < 20:
        lay.anomalies.append("tcp-bad-header-length")
        return None
    if thl > length:
        lay.anomalies.append("tcp-header-exceeds-packet")
        return None
    lay.length = thl
    lay.add("len", length - thl, off + 12, 0, "payload length (from the IP length)")
    if thl > 20:
        if off + thl > len(data):
            lay.anomalies.append("tcp-options-truncated")
        else:
            _tcp_options(data, off + 20, off + thl, lay)
    return off + thl, length - thl, lay.get("srcport"), lay.get("dstport")


def _tcp_options(data: bytes, i: int, end: int, lay: Layer) -> None:
    while i < end:
        kind = data[i]
        if kind == 0:
            lay.add("option_kind", 0, i, 1, "end of option list")
            return
        if kind == 1:
            lay.add("options.nop", 1, i, 1, "no-operation (padding)")
            i += 1
            continue
        if i + 1 >= end or data[i + 1] < 2 or i + data[i + 1] > end:
            lay.anomalies.append("tcp-option-bad-length")
            return
        olen = data[i + 1]
        if kind == 2 and olen == 4:
            lay.add("options.mss_val", struct.unpack_from("!H", data, i + 2)[0], i + 2, 2,
                    "maximum segment size")
        elif kind == 3 and olen == 3:
            lay.add("options.wscale.shift", data[i + 2], i + 2, 1, "window scale shift count")
        elif kind == 4:
            lay.add("options.sack_perm", True, i, olen, "SACK permitted")
        elif kind == 5:
            for j in range(i + 2, i + olen - 7, 8):
                le, re = struct.unpack_from("!II", data, j)
                lay.add("options.sack_le", le, j, 4, "SACK block left edge (absolute)")
                lay.add("options.sack_re", re, j + 4, 4, "SACK block right edge (absolute)")
        elif kind == 8 and olen == 10:
            tsval, tsecr = struct.unpack_from("!II", data, i + 2)
            lay.add("options.timestamp.tsval", tsval, i + 2, 4, "timestamp value")
            lay.add("options.timestamp.tsecr", tsecr, i + 6, 4, "timestamp echo reply")
        else:
            lay.add(f"options.{TCP_OPTION_NAMES.get(kind, 'kind_' + str(kind))}",
                    data[i + 2:i + olen].hex(), i, olen, f"TCP option kind {kind}")
        i += olen


def udp(data: bytes, off: int, layers: list, length: int) -> tuple | None:
    lay = Layer("udp", off, 8)
    layers.append(lay)
    if not read(UDP, data, off, lay):
        return None
    ulen = lay.get("length")
    if ulen < 8:
        lay.anomalies.append("udp-bad-length")
        plen = max(0, length - 8)
    elif ulen > length:
        lay.anomalies.append("udp-length-exceeds-packet")
        plen = max(0, length - 8)
    else:
        plen = ulen - 8
    return off + 8, plen, lay.get("srcport"), lay.get("dstport")


def gre(data: bytes, off: int, layers: list) -> tuple | None:
    lay = Layer("gre", off, 4)
    layers.append(lay)
    if not read(GRE, data, off, lay):
        return None
    fl = lay.get("flags_and_version")
    hl = 4 + (4 if fl & 0x8000 else 0) + (4 if fl & 0x2000 else 0) + (4 if fl & 0x1000 else 0)
    lay.length = hl
    proto = lay.get("proto")
    p = off + hl
    if proto == 0x6558:
        return p, "eth"
    if proto == 0x88BE:
        return p + (8 if fl & 0x1000 else 0), "eth"
    if proto == 0x22EB:
        if p + 12 > len(data):
            return None
        return p + 12 + (8 if data[p + 11] & 1 else 0), "eth"
    if proto in (0x0800, 0x86DD):
        return p, proto
    return None
