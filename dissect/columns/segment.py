"""What the fast decoder hands to transport analysis, one tuple per TCP segment / UDP datagram.

Produced by :func:`dissect.columns.decode.iter_transport` (the fast path); consumed by
:mod:`dissect.analysis.tcp` and the application dispatcher. NamedTuples keep this cheap.
"""

from __future__ import annotations

from typing import NamedTuple


class TcpOptions(NamedTuple):
    mss: int | None = None
    wscale: int | None = None          # shift count from the window-scale option
    sack_perm: bool = False
    tsval: int | None = None
    tsecr: int | None = None
    sack: tuple[tuple[int, int], ...] = ()   # SACK blocks (left, right), absolute sequence numbers


class TcpSegment(NamedTuple):
    frame: int        # 1-based frame number, as tshark's frame.number
    ts: float         # epoch seconds
    src: str          # source IP address, text form ("127.0.0.1", "::1")
    dst: str
    sport: int
    dport: int
    seq: int          # absolute sequence number
    ack: int          # absolute acknowledgement number (meaningful when ACK flag set)
    flags: int        # TCP flags, 12 bits: FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80 NS=0x100
    win: int          # raw (unscaled) window field
    plen: int         # payload length as the IP header reports it (tshark's tcp.len), even if the capture was cut
    options: TcpOptions | None   # None when the header had no options
    payload: bytes    # the payload bytes actually captured (may be shorter than plen)
    payload_off: int  # offset of the payload in the frame
    vlan: tuple = ()  # VLAN ids, outermost first (informational; tshark 4.0 does not key connections on VLAN)
    iface: int = 0


class UdpDatagram(NamedTuple):
    frame: int
    ts: float
    src: str
    dst: str
    sport: int
    dport: int
    plen: int         # payload length from the UDP header
    payload: bytes    # captured payload
    payload_off: int
    iface: int = 0


class TcpFlag:
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80
    NS = 0x100
