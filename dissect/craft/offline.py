"""Complete exchanges built without sending anything (no privileges needed).

Same conversation as a live run (:mod:`dissect.craft.dialogue`): the TCP handshake, the
server's banner (ftp/smtp), the request, the server's ACK and answer, the client's ACK,
then a FIN teardown (the side that closes first sends FIN, the other ACKs and closes) or
an RST. Sequence and acknowledgement numbers follow each byte and flag; Scapy computes
lengths and IP/TCP/UDP checksums. Everything random comes from ``seed`` (ISNs, client port,
IP IDs, small timing jitter) and times start at :data:`BASE_TIME`, so the same arguments
give the same bytes.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from dissect.craft.dialogue import answer, banner, closes_after

BASE_TIME = 1_700_000_000.0        # 2023-11-14 22:13:20 UTC: fixed, so output is reproducible
LOOPBACK_ONE_WAY_S = 0.000040      # a loopback hop as measured on Linux (tens of µs)
SERVER_THINK_S = 0.000350          # application time between a request and its answer
CLIENT_THINK_S = 0.000300          # our client between steps
WINDOW = {"client": 64240, "server": 65160}   # what Linux advertises at MSS 1460
MSS = 1460
DEFAULT_PORTS = {"http": 80, "ftp": 21, "smtp": 25, "raw": 9000, "udp": 7}
DOC_SOURCE = {4: "192.0.2.10", 6: "2001:db8::10"}   # RFC 5737 / 3849 documentation addresses

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


@dataclass(frozen=True)
class Crafted:
    frames: list            # [(ts, bytes)] Ethernet frames
    src: str
    dst: str
    sport: int
    dport: int
    isn_client: int | None = None
    isn_server: int | None = None


def source_for(dst: str) -> str:
    addr = ipaddress.ip_address(dst)
    return dst if addr.is_loopback else DOC_SOURCE[addr.version]


class _Builder:
    def __init__(self, src: str, dst: str, seed: int):
        self.rng = random.Random(seed)
        self.src, self.dst = src, dst
        self.v6 = ":" in dst
        self.t = BASE_TIME
        self.frames: list = []
        self.ip_id = {"client": self.rng.randrange(1, 0xFFFF), "server": self.rng.randrange(1, 0xFFFF)}

    def step(self, base: float) -> None:
        # jitter within +-25 %: a real trace is never perfectly regular
        self.t += base * (0.75 + 0.5 * self.rng.random())

    def emit(self, side: str, l4) -> None:
        from scapy.layers.inet import IP
        from scapy.layers.inet6 import IPv6
        from scapy.layers.l2 import Ether
        a, b = (self.src, self.dst) if side == "client" else (self.dst, self.src)
        if self.v6:
            ip = IPv6(src=a, dst=b, hlim=64)
        else:
            self.ip_id[side] = (self.ip_id[side] + 1) & 0xFFFF
            ip = IP(src=a, dst=b, id=self.ip_id[side], flags="DF", ttl=64)
        frame = Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00") / ip / l4
        self.frames.append((round(self.t, 6), bytes(frame)))


def tcp_exchange(*, app: str, request: bytes, dst: str = "127.0.0.1", dport: int | None = None,
                 sport: int | None = None, teardown: str = "fin", seed: int = 0) -> Crafted:
    from scapy.layers.inet import TCP
    src = source_for(dst)
    b = _Builder(src, dst, seed)
    rng = b.rng
    dport = dport or DEFAULT_PORTS[app]
    sport = sport or rng.randint(32768, 60999)
    isn = {"client": rng.randrange(2**32), "server": rng.randrange(2**32)}
    nxt = dict(isn)

    def seg(side, flags, payload=b"", options=None):
        peer = "server" if side == "client" else "client"
        ports = (sport, dport) if side == "client" else (dport, sport)
        t = TCP(sport=ports[0], dport=ports[1], seq=nxt[side], flags=flags,
                ack=nxt[peer] if flags & ACK else 0, window=WINDOW[side],
                options=options or [])
        b.emit(side, t / payload if payload else t)
        nxt[side] = (nxt[side] + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF

    opts = [("MSS", MSS), ("SAckOK", b"")]
    seg("client", SYN, options=opts)
    b.step(LOOPBACK_ONE_WAY_S)
    # the SYN-ACK acknowledges isn+1; nxt["client"] already counts the SYN
    seg("server", SYN | ACK, options=opts)
    b.step(LOOPBACK_ONE_WAY_S)
    seg("client", ACK)
    greet = banner(app) if request or app != "raw" else None
    if greet:
        b.step(SERVER_THINK_S)
        seg("server", PSH | ACK, greet)
        b.step(LOOPBACK_ONE_WAY_S)
        seg("client", ACK)
    server_closed = False
    if request:
        b.step(CLIENT_THINK_S)
        seg("client", PSH | ACK, request)
        b.step(LOOPBACK_ONE_WAY_S / 4)
        seg("server", ACK)
        b.step(SERVER_THINK_S)
        seg("server", PSH | ACK, answer(app, request, BASE_TIME))
        b.step(LOOPBACK_ONE_WAY_S)
        seg("client", ACK)
        if closes_after(app, request):      # QUIT: the server closes first
            b.step(LOOPBACK_ONE_WAY_S)
            seg("server", FIN | ACK)
            b.step(LOOPBACK_ONE_WAY_S)
            seg("client", ACK)
            server_closed = True
    b.step(CLIENT_THINK_S)
    if teardown == "rst":
        seg("client", RST | ACK)
    elif server_closed:
        seg("client", FIN | ACK)
        b.step(LOOPBACK_ONE_WAY_S)
        seg("server", ACK)
    else:
        seg("client", FIN | ACK)
        b.step(LOOPBACK_ONE_WAY_S)
        seg("server", FIN | ACK)
        b.step(LOOPBACK_ONE_WAY_S)
        seg("client", ACK)
    return Crafted(b.frames, src, dst, sport, dport, isn["client"], isn["server"])


def udp_exchange(*, payload: bytes, dst: str = "127.0.0.1", dport: int | None = None,
                 sport: int | None = None, seed: int = 0) -> Crafted:
    from scapy.layers.inet import UDP
    src = source_for(dst)
    b = _Builder(src, dst, seed)
    dport = dport or DEFAULT_PORTS["udp"]
    sport = sport or b.rng.randint(32768, 60999)
    b.emit("client", UDP(sport=sport, dport=dport) / payload)
    b.step(SERVER_THINK_S)
    b.emit("server", UDP(sport=dport, dport=sport) / payload)
    return Crafted(b.frames, src, dst, sport, dport)
