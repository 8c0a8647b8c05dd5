"""The one place that decides which OSI layer each protocol's fields sit at.

The README's OSI table is generated from ``PROTOCOL_LAYER`` and a test pins it.

Choices (explained in the README):

* capture metadata (timestamp, lengths, interface) -> 1 physical: it is what the wire/NIC saw.
* Ethernet, 802.1Q, SLL/SLL2, BSD loopback, ARP, PPPoE -> 2 data link.
* IPv4/IPv6 (+extension headers), ICMP, ICMPv6 -> 3 network.
* TCP, UDP, SCTP -> 4 transport.
* connection/session facts: TCP connection state, keep-alive, WebSocket upgrade,
  FTP data-channel linkage, TLS handshake/session, STUN, HTTP/2 streams -> 5 session.
* encodings and encryption: TLS/DTLS records, content/transfer encodings,
  base64, protobuf/gRPC framing, HPACK -> 6 presentation.
* application messages: HTTP, FTP, SMTP, IMAP, POP3, DNS, WebSocket messages,
  gRPC calls, RTP/RTCP media -> 7 application.
"""

from __future__ import annotations

from enum import IntEnum


class Osi(IntEnum):
    PHYSICAL = 1
    DATALINK = 2
    NETWORK = 3
    TRANSPORT = 4
    SESSION = 5
    PRESENTATION = 6
    APPLICATION = 7

    @property
    def label(self) -> str:
        return LAYER_NAMES[self]


LAYER_NAMES = {
    Osi.PHYSICAL: "physical",
    Osi.DATALINK: "datalink",
    Osi.NETWORK: "network",
    Osi.TRANSPORT: "transport",
    Osi.SESSION: "session",
    Osi.PRESENTATION: "presentation",
    Osi.APPLICATION: "application",
}

# protocol name (as used in field trees and JSONL) -> OSI layer
PROTOCOL_LAYER: dict[str, Osi] = {
    "frame": Osi.PHYSICAL,
    "ppi": Osi.PHYSICAL,
    "eth": Osi.DATALINK,
    "vlan": Osi.DATALINK,
    "sll": Osi.DATALINK,
    "sll2": Osi.DATALINK,
    "null": Osi.DATALINK,
    "arp": Osi.DATALINK,
    "pppoe": Osi.DATALINK,
    "ppp": Osi.DATALINK,
    "mpls": Osi.DATALINK,
    "ip": Osi.NETWORK,
    "ipv6": Osi.NETWORK,
    "icmp": Osi.NETWORK,
    "icmpv6": Osi.NETWORK,
    "igmp": Osi.NETWORK,
    "gre": Osi.NETWORK,
    "erspan": Osi.NETWORK,
    "ah": Osi.NETWORK,
    "esp": Osi.NETWORK,
    "tcp": Osi.TRANSPORT,
    "udp": Osi.TRANSPORT,
    "sctp": Osi.TRANSPORT,
    "tcp.session": Osi.SESSION,
    "tls.handshake": Osi.SESSION,
    "websocket.handshake": Osi.SESSION,
    "ftp.data-link": Osi.SESSION,
    "stun": Osi.SESSION,
    "http2": Osi.SESSION,
    "tls": Osi.PRESENTATION,
    "dtls": Osi.PRESENTATION,
    "quic": Osi.PRESENTATION,
    "content-encoding": Osi.PRESENTATION,
    "grpc.framing": Osi.PRESENTATION,
    "hpack": Osi.PRESENTATION,
    "http": Osi.APPLICATION,
    "websocket": Osi.APPLICATION,
    "ftp": Osi.APPLICATION,
    "ftp-data": Osi.APPLICATION,
    "smtp": Osi.APPLICATION,
    "imap": Osi.APPLICATION,
    "pop3": Osi.APPLICATION,
    "dns": Osi.APPLICATION,
    "grpc": Osi.APPLICATION,
    "rtp": Osi.APPLICATION,
    "rtcp": Osi.APPLICATION,
    "data": Osi.APPLICATION,
}


def layer_of(protocol: str) -> Osi:
    """OSI layer of a protocol; unknown protocols carried as payload count as application data."""
    try:
        return PROTOCOL_LAYER[protocol]
    except KeyError:
        base = protocol.split(".", 1)[0]
        return PROTOCOL_LAYER.get(base, Osi.APPLICATION)
