"""Dissect one frame into its full OSI field tree (display path).

Walks link -> network -> transport -> application, each step a protocol module's
table-driven header; bindings (link type, EtherType, IP protocol) are tables, not
if-ladders. A header that cannot be parsed stops the walk there: the rest of the frame is
kept as a raw ``data`` layer and the layer carries a named anomaly.
"""

from __future__ import annotations

from dissect.io.capture import Frame
from dissect.protocols import inet, link
from dissect.protocols.app import application_layers
from dissect.protocols.base import Layer

# a frame nested deeper than this (tunnels in tunnels) is hostile; stop unwrapping
MAX_DEPTH = 12

LINK_BINDINGS = {
    1: lambda d, o, L: link.ethernet(d, o, L),
    113: lambda d, o, L: link.sll(d, o, L),
    276: lambda d, o, L: link.sll2(d, o, L),
    0: lambda d, o, L: link.null(d, o, L, False),
    108: lambda d, o, L: link.null(d, o, L, True),
    101: lambda d, o, L: (o, -1),
    12: lambda d, o, L: (o, -1),
    14: lambda d, o, L: (o, -1),
    228: lambda d, o, L: (o, 0x0800),
    229: lambda d, o, L: (o, 0x86DD),
}
ETHERTYPE_BINDINGS = {
    0x8100: link.vlan, 0x88A8: link.vlan, 0x9100: link.vlan,
    0x8864: link.pppoe, 0x8847: link.mpls, 0x8848: link.mpls,
}


def dissect_frame(fr: Frame) -> list[Layer]:
    data = fr.data
    layers: list[Layer] = [link.frame_layer(fr)]
    lt = fr.linktype
    off = 0
    if lt == 192 and len(data) >= 8:   # PPI wraps another link type
        import struct
        hlen = struct.unpack_from("<H", data, 2)[0]
        dlt = struct.unpack_from("<I", data, 4)[0]
        ppi = Layer("ppi", 0, hlen)
        ppi.add("dlt", dlt, 4, 4, "link type of the wrapped frame")
        layers.append(ppi)
        lt, off = dlt, hlen
    bind = LINK_BINDINGS.get(lt)
    if bind is None:
        layers[0].anomalies.append(f"unsupported-linktype-{lt}")
        _rest(data, off, layers)
        return layers
    r = bind(data, off, layers)
    _network(fr, data, r, layers, fr.wirelen, 0)
    return layers


def _network(fr, data, r, layers, limit, depth):
    if r is None:
        _rest(data, layers[-1].offset + layers[-1].length, layers)
        return
    off, etype = r
    while etype in ETHERTYPE_BINDINGS:
        depth += 1
        if depth > MAX_DEPTH:
            layers[-1].anomalies.append("encapsulation-too-deep")
            return _rest(data, off, layers)
        if etype == 0x8864 and off + 6 <= len(data):
            limit = min(limit, off + 6 + int.from_bytes(data[off + 4:off + 6], "big"))
        r = ETHERTYPE_BINDINGS[etype](data, off, layers)
        if r is None:
            return _rest(data, off, layers)
        off, etype = r
    if etype == -1:
        if off >= len(data):
            return
        v = data[off] >> 4
        etype = 0x0800 if v == 4 else 0x86DD if v == 6 else None
    if etype == 0x0806:
        link.arp(data, off, layers)
        return _rest(data, off + 28, layers)
    if etype not in (0x0800, 0x86DD):
        return _rest(data, off, layers)
    while True:
        depth += 1
        if depth > MAX_DEPTH:
            layers[-1].anomalies.append("encapsulation-too-deep")
            return _rest(data, off, layers)
        ip = (inet.ipv4 if etype == 0x0800 else inet.ipv6)(data, off, layers, limit)
        if ip is None:
            return _rest(data, off + layers[-1].length, layers)
        p, plen, proto, frag = ip
        if frag:
            return _rest(data, p, layers, p + plen)
        if proto in (4, 41):
            etype, off, limit = (0x0800 if proto == 4 else 0x86DD), p, p + plen
            continue
        if proto == 47:
            g = inet.gre(data, p, layers)
            if g is None:
                return _rest(data, p, layers, p + plen)
            ioff, inner = g
            if inner == "eth":
                return _network(fr, data, link.ethernet(data, ioff, layers), layers, p + plen,
                                depth)
            etype, off, limit = inner, ioff, p + plen
            continue
        break
    if proto == 6:
        t = inet.tcp(data, p, layers, plen)
        if t is None:
            return _rest(data, p, layers, p + plen)
        poff, l, sport, dport = t
        return _payload(data, poff, l, layers, "tcp", sport, dport)
    if proto == 17:
        u = inet.udp(data, p, layers, plen)
        if u is None:
            return _rest(data, p, layers, p + plen)
        poff, l, sport, dport = u
        return _payload(data, poff, l, layers, "udp", sport, dport)
    if proto in (1, 58):
        inet.icmp(data, p, layers, plen, proto == 58)
        return
    _rest(data, p, layers, p + plen)


def _payload(data, off, length, layers, transport, sport, dport):
    end = min(len(data), off + length)
    if end <= off:
        return
    payload = data[off:end]
    app = application_layers(payload, off, transport, sport, dport)
    if app:
        layers.extend(app)
    else:
        _rest(data, off, layers, end)


def _rest(data, off, layers, end=None):
    """Keep whatever follows as raw bytes (never silently dropped)."""
    end = len(data) if end is None else min(end, len(data))
    if end > off:
        lay = Layer("data", off, end - off)
        lay.add("data", data[off:end].hex(), off, end - off, "undissected bytes")
        lay.add("len", end - off, off, 0, "length of the undissected bytes")
        layers.append(lay)
