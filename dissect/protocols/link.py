"""Capture metadata (physical) and data-link headers: Ethernet, 802.1Q/QinQ, PPPoE/PPP,
MPLS, Linux cooked SLL and SLL2, BSD null/loopback, PPI, ARP."""

from __future__ import annotations

import struct
from datetime import datetime, timezone

from dissect.protocols.base import Layer
from dissect.protocols.spec import F, read

ETH = (
    F("dst", 0, "mac", doc="destination MAC address"),
    F("src", 6, "mac", doc="source MAC address"),
    F("type", 12, "H", doc="EtherType of the payload"),
)
VLAN = (
    F("priority", 0, "H", 0xE000, "802.1p priority code point"),
    F("dei", 0, "H", 0x1000, "drop eligible indicator"),
    F("id", 0, "H", 0x0FFF, "VLAN identifier"),
    F("etype", 2, "H", doc="EtherType of the payload"),
)
PPPOE = (
    F("version", 0, "B", 0xF0, "PPPoE version"),
    F("type", 0, "B", 0x0F, "PPPoE type"),
    F("code", 1, "B", doc="PPPoE code (0 = session data)"),
    F("session_id", 2, "H", doc="PPPoE session id"),
    F("payload_length", 4, "H", doc="PPPoE payload length"),
)
PPP = (F("protocol", 0, "H", doc="PPP protocol number"),)
MPLS = (
    F("label", 0, "I", 0xFFFFF000, "MPLS label"),
    F("exp", 0, "I", 0x00000E00, "traffic class"),
    F("bottom", 0, "I", 0x00000100, "bottom of label stack"),
    F("ttl", 0, "I", 0x000000FF, "time to live"),
)
SLL = (
    F("pkttype", 0, "H", doc="packet type (0 to us, 4 outgoing, ...)"),
    F("hatype", 2, "H", doc="ARPHRD link-layer address type"),
    F("halen", 4, "H", doc="link-layer address length"),
    F("src.eth", 6, "hex:8", doc="link-layer source address (padded to 8 bytes)"),
    F("etype", 14, "H", doc="protocol (EtherType)"),
)
SLL2 = (
    F("etype", 0, "H", doc="protocol (EtherType)"),
    F("ifindex", 4, "I", doc="interface index"),
    F("hatype", 8, "H", doc="ARPHRD link-layer address type"),
    F("pkttype", 10, "B", doc="packet type"),
    F("halen", 11, "B", doc="link-layer address length"),
    F("src.eth", 12, "hex:8", doc="link-layer source address (padded to 8 bytes)"),
)
ARP = (
    F("hw.type", 0, "H", doc="hardware type"),
    F("proto.type", 2, "H", doc="protocol type"),
    F("hw.size", 4, "B", doc="hardware address size"),
    F("proto.size", 5, "B", doc="protocol address size"),
    F("opcode", 6, "H", doc="1 request, 2 reply"),
    F("src.hw_mac", 8, "mac", doc="sender MAC address"),
    F("src.proto_ipv4", 14, "ip4", doc="sender IPv4 address"),
    F("dst.hw_mac", 18, "mac", doc="target MAC address"),
    F("dst.proto_ipv4", 24, "ip4", doc="target IPv4 address"),
)

LINKTYPE_NAMES = {0: "BSD null/loopback", 1: "Ethernet", 12: "raw IP", 14: "raw IP",
                  101: "raw IP", 108: "OpenBSD loopback", 113: "Linux cooked (SLL)",
                  192: "PPI", 228: "raw IPv4", 229: "raw IPv6", 276: "Linux cooked v2 (SLL2)"}


def frame_layer(fr) -> Layer:
    """Capture metadata: what the capturing interface saw (OSI layer 1)."""
    lay = Layer("frame", 0, fr.caplen)
    lay.add("number", fr.number, 0, 0, "frame number, 1-based in file order")
    lay.add("time_epoch", fr.ts, 0, 0, "capture timestamp, seconds since the epoch")
    try:
        iso = datetime.fromtimestamp(fr.ts, tz=timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        iso = None
    lay.add("time_utc", iso, 0, 0, "capture timestamp, ISO 8601 UTC")
    lay.add("cap_len", fr.caplen, 0, 0, "bytes captured")
    lay.add("len", fr.wirelen, 0, 0, "bytes on the wire")
    lay.add("interface_id", fr.iface, 0, 0, "capture interface (pcapng)")
    lay.add("linktype", fr.linktype, 0, 0,
            LINKTYPE_NAMES.get(fr.linktype, "link-layer header type"))
    if fr.caplen < fr.wirelen:
        lay.anomalies.append("frame-truncated-by-snaplen")
    return lay


def ethernet(data: bytes, off: int, layers: list) -> tuple[int, int] | None:
    lay = Layer("eth", off, 14)
    layers.append(lay)
    if not read(ETH, data, off, lay):
        return None
    t = lay.get("type")
    if t <= 1500:   # IEEE 802.3: a length, and an LLC header follows
        lay.fields[-1].name = "len"
        lay.fields[-1].doc = "802.3 length of the payload"
        return off + 14, None
    return off + 14, t


def vlan(data: bytes, off: int, layers: list) -> tuple[int, int] | None:
    lay = Layer("vlan", off, 4)
    layers.append(lay)
    if not read(VLAN, data, off, lay):
        return None
    return off + 4, lay.get("etype")


def pppoe(data: bytes, off: int, layers: list) -> tuple[int, int] | None:
    lay = Layer("pppoe", off, 6)
    layers.append(lay)
    if not read(PPPOE, data, off, lay):
        return None
    ppp = Layer("ppp", off + 6, 2)
    layers.append(ppp)
    if not read(PPP, data, off + 6, ppp):
        return None
    proto = ppp.get("protocol")
    return off + 8, {0x0021: 0x0800, 0x0057: 0x86DD}.get(proto, -2)


def mpls(data: bytes, off: int, layers: list) -> tuple[int, int] | None:
    for _ in range(16):
        lay = Layer("mpls", off, 4)
        layers.append(lay)
        if not read(MPLS, data, off, lay):
            return None
        off += 4
        if lay.get("bottom"):
            return off, -1
    lay.anomalies.append("mpls-label-stack-too-deep")
    return None


def sll(data: bytes, off: int, layers: list) -> tuple[int, int] | None:
    lay = Layer("sll", off, 16)
    layers.append(lay)
    if not read(SLL, data, off, lay):
        return None
    return off + 16, lay.get("etype")


def sll2(data: bytes, off: int, layers: list) -> tuple[int, int] | None:
    lay = Layer("sll2", off, 20)
    layers.append(lay)
    if not read(SLL2, data, off, lay):
        return None
    return off + 20, lay.get("etype")


def null(data: bytes, off: int, layers: list, network_order: bool) -> tuple[int, int] | None:
    lay = Layer("null", off, 4)
    layers.append(lay)
    if len(data) < off + 4:
        lay.anomalies.append("null-truncated")
        return None
    if network_order:
        af = struct.unpack_from("!I", data, off)[0]
    else:
        af = struct.unpack_from("<I", data, off)[0]
        if af > 0xFFFF:
            af = struct.unpack_from("!I", data, off)[0]
    lay.add("family", af, off, 4, "address family of the payload (2 IPv4; 10/24/28/30 IPv6)")
    etype = 0x0800 if af == 2 else 0x86DD if af in (10, 24, 28, 30) else None
    if etype is None:
        lay.anomalies.append(f"null-unknown-family-{af}")
        return None
    return off + 4, etype


def arp(data: bytes, off: int, layers: list) -> None:
    lay = Layer("arp", off, 8)
    layers.append(lay)
    if not read(ARP[:5], data, off, lay):
        return
    if (lay.get("hw.size"), lay.get("proto.size"), lay.get("proto.type")) == (6, 4, 0x0800):
        lay.length = 28
        read(ARP[5:], data, off, lay)
    else:   # other hardware/protocol address sizes: keep the addresses raw
        lay.anomalies.append("arp-not-ethernet-ipv4")
