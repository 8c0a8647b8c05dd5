"""The fast decoder: one frame in, the few facts analysis needs out - no field trees.

For each frame it finds the protocol chain (``("eth", "vlan", "ip", "tcp")``), the network
addresses, and for TCP/UDP a :class:`~dissect.columns.segment.TcpSegment` /
:class:`~dissect.columns.segment.UdpDatagram`. Malformed headers end the chain at the last
good layer and add a named anomaly; nothing raises.

The display path (:mod:`dissect.protocols`) decodes the same bytes into full OSI field trees;
a test keeps the two in agreement.
"""

from __future__ import annotations

import socket
import struct
from typing import Iterator, NamedTuple

import dissect.tuples as _tuples

from dissect.columns.segment import TcpOptions, TcpSegment, UdpDatagram
from dissect.io.capture import CaptureReader, Frame

# IPv6 extension headers followed before giving up: real packets carry a handful;
# a chain longer than this is hostile (or garbage) and would cost time per packet.
MAX_IPV6_EXT_HEADERS = 16
# Tunnels (IP-in-IP, 6in4, PPPoE, MPLS, VLAN) unwrapped before giving up.
MAX_ENCAP_DEPTH = 8

ETH_VLAN = (0x8100, 0x88A8, 0x9100)
ETH_IPV4, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
ETH_PPPOE_SESSION, ETH_MPLS, ETH_MPLS_MC = 0x8864, 0x8847, 0x8848

IPPROTO_NAMES = {1: "icmp", 2: "igmp", 4: "ip", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre",
                 50: "esp", 51: "ah", 58: "icmpv6", 89: "ospf", 132: "sctp"}
IPV6_EXT = {0, 43, 44, 60}   # mobility (135) etc. are shown as the payload, as tshark does

_u16 = struct.Struct("!H").unpack_from
_u32 = struct.Struct("!I").unpack_from
_tcp_hdr = struct.Struct("!HHIIBBHHH").unpack_from
_udp_hdr = struct.Struct("!HHHH").unpack_from
_NOP_NOP_TS = b"\x01\x01\x08\x0a"
_ts_pair = struct.Struct("!II").unpack_from

_addr4_cache: dict[bytes, str] = {}
_addr6_cache: dict[bytes, str] = {}


def ip4(b: bytes) -> str:
    s = _addr4_cache.get(b)
    if s is None:
        s = socket.inet_ntop(socket.AF_INET, b)
        if len(_addr4_cache) < 65536:
            _addr4_cache[b] = s
    return s


def ip6(b: bytes) -> str:
    s = _addr6_cache.get(b)
    if s is None:
        s = socket.inet_ntop(socket.AF_INET6, b)
        if len(_addr6_cache) < 65536:
            _addr6_cache[b] = s
    return s


class OtherFrame(NamedTuple):
    """A frame that carries neither TCP nor UDP (or whose transport header is broken)."""
    frame: int
    ts: float


class Decoded(NamedTuple):
    chain: tuple          # protocol names, outermost first
    src: str | None       # innermost network-layer source address
    dst: str | None
    transport: TcpSegment | UdpDatagram | None
    anomalies: tuple      # named anomalies (strings)
    vlan: tuple = ()


def parse_tcp_options(data: bytes, start: int, end: int) -> tuple[TcpOptions | None, str | None]:
    mss = wscale = tsval = tsecr = None
    sack_perm = False
    sack: list = []
    i = start
    bad = None
    while i < end:
        kind = data[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end:
            bad = "tcp-option-truncated"
            break
        olen = data[i + 1]
        if olen < 2 or i + olen > end:
            bad = "tcp-option-bad-length"
            break
        if kind == 2 and olen == 4:
            mss = _u16(data, i + 2)[0]
        elif kind == 3 and olen == 3:
            wscale = data[i + 2]
        elif kind == 4 and olen == 2:
            sack_perm = True
        elif kind == 5:
            for j in range(i + 2, i + olen - 7, 8):
                sack.append((_u32(data, j)[0], _u32(data, j + 4)[0]))
        elif kind == 8 and olen == 10:
            tsval = _u32(data, i + 2)[0]
            tsecr = _u32(data, i + 6)[0]
        i += olen
    return _tuples.make(TcpOptions, (mss, wscale, sack_perm, tsval, tsecr, tuple(sack))), bad


_CHAIN_ETH_IP_TCP = ("eth", "ip", "tcp")
_CHAIN_ETH_IP_UDP = ("eth", "ip", "udp")
_eth_ip4 = struct.Struct("!12xHBxHHHxBH4s4s").unpack_from   # type, vihl, total, id, frag, proto, ck, src, dst


def decode_frame(fr: Frame) -> Decoded:
    data = fr.data
    n = len(data)
    # Common case first (Ethernet, IPv4 without options, not a fragment, TCP or UDP):
    # same results as the general path below, in a fraction of the time.
    if fr.linktype == 1 and n >= 42:
        etype, vihl, total, _id, frag, proto, _ck, s4, d4 = _eth_ip4(data, 0)
        if etype == 0x0800 and vihl == 0x45 and not frag & 0x3FFF and 20 < total <= fr.wirelen - 14:
            src = _addr4_cache.get(s4) or ip4(s4)
            dst = _addr4_cache.get(d4) or ip4(d4)
            if proto == 6 and n >= 54:
                sport, dport, seq, ack, offb, flagb, win, _c, _u = _tcp_hdr(data, 34)
                thl = (offb >> 4) * 4
                if 20 <= thl <= total - 20 and 34 + thl <= n:
                    opts = None
                    anomalies = ()
                    if thl == 32 and data[54:58] == _NOP_NOP_TS:
                        # what Linux puts on every segment after the handshake: two NOPs
                        # and timestamps (the same TcpOptions the general parser gives)
                        tsval, tsecr = _ts_pair(data, 58)
                        opts = _tuples.make(TcpOptions, (None, None, False, tsval, tsecr, ()))
                    elif thl > 20:
                        opts, bad = parse_tcp_options(data, 54, 34 + thl)
                        if bad:
                            anomalies = (bad,)
                    poff = 34 + thl
                    plen = total - 20 - thl
                    pend = poff + plen
                    payload = data[poff:pend] if plen and poff < n else b""
                    # dissect.tuples.make builds the same NamedTuples without their
                    # Python-level __new__ (a third of this path's time)
                    seg = _tuples.make(TcpSegment, (
                        fr.number, fr.ts, src, dst, sport, dport, seq, ack,
                        flagb | ((offb & 1) << 8), win, plen, opts, payload, poff, (),
                        fr.iface))
                    return _tuples.make(Decoded, (_CHAIN_ETH_IP_TCP, src, dst, seg, anomalies,
                                                  ()))
            elif proto == 17:
                sport, dport, ulen, _c = _udp_hdr(data, 34)
                if 8 <= ulen <= total - 20:
                    plen = ulen - 8
                    payload = data[42:42 + plen] if plen else b""
                    dgram = _tuples.make(UdpDatagram, (
                        fr.number, fr.ts, src, dst, sport, dport, plen, payload, 42,
                        fr.iface))
                    return _tuples.make(Decoded, (_CHAIN_ETH_IP_UDP, src, dst, dgram, (), ()))
    chain: list[str] = []
    anomalies: list[str] = []
    vlans: list[int] = []
    lt = fr.linktype
    off = 0
    etype = None
    # ---- link layer -> ethertype (or direct IP version)
    if lt == 1:
        if n < 14:
            return Decoded(("eth",), None, None, None, ("eth-truncated",))
        chain.append("eth")
        etype = _u16(data, 12)[0]
        off = 14
    elif lt == 113:
        if n < 16:
            return Decoded(("sll",), None, None, None, ("sll-truncated",))
        chain.append("sll")
        etype = _u16(data, 14)[0]
        off = 16
    elif lt == 276:
        if n < 20:
            return Decoded(("sll2",), None, None, None, ("sll2-truncated",))
        chain.append("sll2")
        etype = _u16(data, 0)[0]
        off = 20
    elif lt in (101, 12, 14):
        etype = -1
    elif lt == 228:
        etype = ETH_IPV4
    elif lt == 229:
        etype = ETH_IPV6
    elif lt == 0 or lt == 108:
        if n < 4:
            return Decoded(("null",), None, None, None, ("null-truncated",))
        chain.append("null")
        if lt == 108:
            af = _u32(data, 0)[0]
        else:
            af = struct.unpack_from("<I", data, 0)[0]
            if af > 0xFFFF:
                af = _u32(data, 0)[0]
        off = 4
        etype = ETH_IPV4 if af == 2 else ETH_IPV6 if af in (10, 24, 28, 30) else None
        if etype is None:
            return Decoded(tuple(chain), None, None, None, (f"null-unknown-family-{af}",))
    elif lt == 192:  # PPI: little-endian header length and inner DLT
        if n < 8:
            return Decoded(("ppi",), None, None, None, ("ppi-truncated",))
        hlen = struct.unpack_from("<H", data, 2)[0]
        dlt = struct.unpack_from("<I", data, 4)[0]
        inner = Frame(fr.number, fr.ts, fr.caplen - hlen, fr.wirelen - hlen, dlt, fr.iface,
                      data[hlen:])
        d = decode_frame(inner)
        return d._replace(chain=("ppi",) + d.chain)
    else:
        return Decoded(("frame",), None, None, None, (f"unsupported-linktype-{lt}",))
    return _network(fr, data, n, off, etype, chain, anomalies, vlans)


def _network(fr, data, n, off, etype, chain, anomalies, vlans, limit=None) -> Decoded:
    depth = 0
    if limit is None:
        limit = fr.wirelen   # frame offset where the reported (on-the-wire) data ends
    # ---- layer-2.5 unwrapping
    while True:
        depth += 1
        if depth > MAX_ENCAP_DEPTH:
            anomalies.append("encapsulation-too-deep")
            return Decoded(tuple(chain), None, None, None, tuple(anomalies), tuple(vlans))
        if etype in ETH_VLAN:
            if off + 4 > n:
                anomalies.append("vlan-truncated")
                return Decoded(tuple(chain), None, None, None, tuple(anomalies), tuple(vlans))
            chain.append("vlan")
            vlans.append(_u16(data, off)[0] & 0x0FFF)
            etype = _u16(data, off + 2)[0]
            off += 4
            continue
        if etype == ETH_PPPOE_SESSION:
            if off + 8 > n:
                anomalies.append("pppoe-truncated")
                return Decoded(tuple(chain), None, None, None, tuple(anomalies), tuple(vlans))
            chain.append("pppoe")
            chain.append("ppp")
            proto = _u16(data, off + 6)[0]
            limit = min(limit, off + 6 + _u16(data, off + 4)[0])  # PPPoE length bounds the payload
            off += 8
            etype = ETH_IPV4 if proto == 0x0021 else ETH_IPV6 if proto == 0x0057 else None
            if etype is None:
                return Decoded(tuple(chain), None, None, None, tuple(anomalies), tuple(vlans))
            continue
        if etype in (ETH_MPLS, ETH_MPLS_MC):
            chain.append("mpls")
            while True:
                if off + 4 > n:
                    anomalies.append("mpls-truncated")
                    return Decoded(tuple(chain), None, None, None, tuple(anomalies), tuple(vlans))
                bos = data[off + 2] & 1
                off += 4
                if bos:
                    break
            etype = -1
            continue
        break
    if etype == -1:
        if off >= n:
            anomalies.append("ip-truncated")
            return Decoded(tuple(chain), None, None, None, tuple(anomalies), tuple(vlans))
        v = data[off] >> 4
        etype = ETH_IPV4 if v == 4 else ETH_IPV6 if v == 6 else None
        if etype is None:
            anomalies.append(f"ip-bad-version-{v}")
            return Decoded(tuple(chain), None, None, None, tuple(anomalies), tuple(vlans))
    if etype == ETH_ARP:
        chain.append("arp")
        return Decoded(tuple(chain), None, None, None, tuple(anomalies), tuple(vlans))
    # reported length of what follows the link layer (wire length minus link headers)
    reported = limit - off
    src = dst = None
    proto = None
    l4 = None
    tunnel = 0
    while etype in (ETH_IPV4, ETH_IPV6):
        if etype == ETH_IPV4:
            if off + 20 > n:
                chain.append("ip")
                anomalies.append("ip-truncated")
                return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
            vihl = data[off]
            ihl = (vihl & 0x0F) * 4
            chain.append("ip")
            if vihl >> 4 != 4:
                anomalies.append("ip-bad-version")
                return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
            if ihl < 20:
                anomalies.append("ip-bad-header-length")
                return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
            total = _u16(data, off + 2)[0]
            src = ip4(data[off + 12:off + 16])
            dst = ip4(data[off + 16:off + 20])
            if total == 0:   # TSO: the length is left for the NIC; use what we have
                total = reported
            elif total < ihl:
                anomalies.append("ip-bad-total-length")
                return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
            if total > reported:
                anomalies.append("ip-total-length-exceeds-packet")
                total = reported
            fragw = _u16(data, off + 6)[0]
            proto = data[off + 9]
            if fragw & 0x3FFF:   # MF set or non-zero offset: a fragment
                chain.append("ip.fragment")
                return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
            if off + ihl > n:
                anomalies.append("ip-options-truncated")
                return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
            l4 = off + ihl
            l4len = total - ihl
        else:
            if off + 40 > n:
                chain.append("ipv6")
                anomalies.append("ipv6-truncated")
                return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
            chain.append("ipv6")
            if data[off] >> 4 != 6:
                anomalies.append("ipv6-bad-version")
                return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
            plen = _u16(data, off + 4)[0]
            proto = data[off + 6]
            src = ip6(data[off + 8:off + 24])
            dst = ip6(data[off + 24:off + 40])
            if plen == 0:
                plen = reported - 40
            if plen + 40 > reported:
                anomalies.append("ipv6-payload-length-exceeds-packet")
                plen = reported - 40
            l4 = off + 40
            end = l4 + plen
            hops = 0
            fragment = False
            while proto in IPV6_EXT:
                hops += 1
                if hops > MAX_IPV6_EXT_HEADERS:
                    anomalies.append("ipv6-too-many-extension-headers")
                    return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
                if l4 + 8 > n:
                    anomalies.append("ipv6-extension-truncated")
                    return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
                nxt = data[l4]
                if proto == 44:
                    fo = _u16(data, l4 + 2)[0]
                    if fo & 0xFFF9:
                        fragment = True
                    hlen = 8
                else:
                    hlen = (data[l4 + 1] + 1) * 8
                chain.append("ipv6.ext")
                proto = nxt
                l4 += hlen
            if proto == 51:  # AH: length in 4-byte units, minus 2
                if l4 + 8 <= n:
                    nxt = data[l4]
                    l4 += (data[l4 + 1] + 2) * 4
                    chain.append("ah")
                    proto = nxt
            if fragment:
                chain.append("ipv6.fragment")
                return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
            l4len = end - l4
            if l4len < 0:
                anomalies.append("ipv6-extension-exceeds-payload")
                return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
        if proto == 47:   # GRE: IP, or Ethernet bridged / mirrored (ERSPAN)
            inner = _gre(data, n, l4, chain, anomalies)
            if inner is None:
                return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
            ioff, ietype = inner
            tunnel += 1
            if tunnel > MAX_ENCAP_DEPTH:
                anomalies.append("encapsulation-too-deep")
                return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
            if ietype == "eth":
                if ioff + 14 > n:
                    anomalies.append("eth-truncated")
                    return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
                chain.append("eth")
                return _network(fr, data, n, ioff + 14, _u16(data, ioff + 12)[0], chain,
                                anomalies, vlans, l4 + l4len)
            etype = ietype
            reported = l4 + l4len - ioff
            off = ioff
            continue
        if proto == 4 or proto == 41:   # IP-in-IP / 6in4 tunnel
            tunnel += 1
            if tunnel > MAX_ENCAP_DEPTH:
                anomalies.append("encapsulation-too-deep")
                return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
            etype = ETH_IPV4 if proto == 4 else ETH_IPV6
            reported = l4len
            off = l4
            continue
        break
    # ---- transport
    if proto == 6:
        chain.append("tcp")
        if l4 + 20 > n:
            anomalies.append("tcp-truncated")
            return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
        sport, dport, seq, ack, offb, flagb, win, _ck, _urg = _tcp_hdr(data, l4)
        thl = (offb >> 4) * 4
        if thl < 20:
            anomalies.append("tcp-bad-header-length")
            return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
        if thl > l4len:
            anomalies.append("tcp-header-exceeds-packet")
            return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
        opts = None
        if thl > 20:
            if l4 + thl > n:
                anomalies.append("tcp-options-truncated")
            else:
                opts, bad = parse_tcp_options(data, l4 + 20, l4 + thl)
                if bad:
                    anomalies.append(bad)
        poff = l4 + thl
        plen = l4len - thl
        pend = min(n, poff + plen)
        payload = data[poff:pend] if pend > poff else b""
        seg = TcpSegment(fr.number, fr.ts, src, dst, sport, dport, seq, ack,
                         flagb | ((offb & 1) << 8), win, plen, opts, payload, poff,
                         tuple(vlans), fr.iface)
        return Decoded(tuple(chain), src, dst, seg, tuple(anomalies), tuple(vlans))
    if proto == 17:
        chain.append("udp")
        if l4 + 8 > n:
            anomalies.append("udp-truncated")
            return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))
        sport, dport, ulen, _ck = _udp_hdr(data, l4)
        if ulen < 8:
            anomalies.append("udp-bad-length")
            plen = max(0, l4len - 8)
        else:
            plen = ulen - 8
            if ulen > l4len:
                anomalies.append("udp-length-exceeds-packet")
                plen = max(0, l4len - 8)
        poff = l4 + 8
        pend = min(n, poff + plen)
        payload = data[poff:pend] if pend > poff else b""
        dg = UdpDatagram(fr.number, fr.ts, src, dst, sport, dport, plen, payload, poff, fr.iface)
        return Decoded(tuple(chain), src, dst, dg, tuple(anomalies), tuple(vlans))
    name = IPPROTO_NAMES.get(proto)
    if name:
        chain.append(name)
    else:
        chain.append(f"ipproto-{proto}")
    return Decoded(tuple(chain), src, dst, None, tuple(anomalies), tuple(vlans))


def _gre(data: bytes, n: int, off: int, chain: list, anomalies: list):
    """Parse a GRE header at ``off``; returns (inner offset, ethertype or "eth") or None."""
    chain.append("gre")
    if off + 4 > n:
        anomalies.append("gre-truncated")
        return None
    fl, proto = struct.unpack_from("!HH", data, off)
    hl = 4 + (4 if fl & 0x8000 else 0) + (4 if fl & 0x2000 else 0) + (4 if fl & 0x1000 else 0)
    ioff = off + hl
    if proto == 0x6558:
        return ioff, "eth"
    if proto == 0x88BE:           # ERSPAN type II (type I when no sequence number)
        if fl & 0x1000:
            ioff += 8
        chain.append("erspan")
        return ioff, "eth"
    if proto == 0x22EB:           # ERSPAN type III: 12 bytes, +8 with the O flag
        if ioff + 12 > n:
            anomalies.append("erspan-truncated")
            return None
        ioff += 12 + (8 if data[ioff + 11] & 1 else 0)
        chain.append("erspan")
        return ioff, "eth"
    if proto in (ETH_IPV4, ETH_IPV6):
        return ioff, proto
    return None


def iter_decoded(path: str) -> Iterator[tuple[Frame, Decoded]]:
    """Every frame of ``path`` with its fast decode (raises capture damage after earlier frames)."""
    with CaptureReader(path) as r:
        for fr in r:
            yield fr, decode_frame(fr)


def iter_transport(path: str) -> Iterator[TcpSegment | UdpDatagram | OtherFrame]:
    """One tuple per frame, in file order: the TCP segment, UDP datagram, or an OtherFrame."""
    for fr, d in iter_decoded(path):
        t = d.transport
        yield t if t is not None else OtherFrame(fr.number, fr.ts)
