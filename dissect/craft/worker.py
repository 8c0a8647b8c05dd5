"""The Scapy client that drives a real exchange against the kernel
(``python -m dissect.craft.worker --spec JSON --pcap PATH``).

It runs where the packets flow (inside the private namespace, or in the current one
behind the temporary nftables table, see :mod:`dissect.craft.live`). One tap records
every frame on the interface and also feeds the client: TCP as a small sequence of
steps - SYN, wait for the kernel's SYN-ACK, ACK, wait for a banner (ftp/smtp), send the
request with the right seq/ack, ACK every data segment the server sends, then a FIN
teardown (FIN, wait for the peer's FIN, ACK it) or an RST. UDP: one datagram out, the
echo back; a real UDP socket holds the client port so the kernel does not answer the
echo with ICMP port unreachable.

The last stdout line is ``RESULT {json}``; the capture goes to ``--pcap``.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

from dissect.columns.decode import decode_frame
from dissect.craft.dialogue import answer_complete, banner, closes_after
from dissect.craft.tap import Tap
from dissect.io.capture import Frame
from dissect.io.writer import PcapWriter

# Named limits (seconds). Loopback answers in microseconds; these only bound failures.
CONNECT_TIMEOUT_S = 3.0   # SYN -> SYN-ACK or RST (no SYN retransmission: lo does not lose)
ANSWER_TIMEOUT_S = 3.0    # request -> complete answer (banner included)
TEARDOWN_TIMEOUT_S = 3.0  # our FIN -> the peer's FIN and the ACK of ours
SETTLE_S = 0.2            # after the last step: catch stragglers for the capture
CLIENT_WINDOW = 64240     # what Linux advertises with a 1460-byte MSS
CLIENT_MSS = 1460         # the namespace's lo has MTU 1500

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


@dataclass
class Conn:
    src: str
    dst: str
    sport: int
    dport: int
    isn_c: int
    snd_nxt: int = 0
    isn_s: int | None = None
    rcv_nxt: int | None = None
    acked: int = 0             # highest ack the server sent
    received: bytearray = field(default_factory=bytearray)
    peer_fin: bool = False
    reset: bool = False
    synack_ack: int | None = None


class Client:
    def __init__(self, spec: dict, tap: Tap):
        self.spec = spec
        self.tap = tap
        self.frames: list[tuple[float, bytes]] = []
        self.notes: list[str] = []
        self.v6 = ":" in spec["dst"]
        self.rng = random.Random(spec["seed"]) if spec.get("seed") is not None else random.SystemRandom()
        self.ip_id = self.rng.randrange(1, 0xFFFF)
        self._open_sender()

    # -- sending ---------------------------------------------------------------------
    def _open_sender(self) -> None:
        # A raw IP socket with the header included: the kernel routes the packet (no
        # link-layer guessing; loopback-sourced packets stay legal) and sends it as is.
        if self.v6:
            self.out = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        else:
            self.out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.out.setsockopt(socket.SOL_IP, socket.IP_HDRINCL, 1)

    def send(self, l4) -> None:
        from scapy.layers.inet import IP
        from scapy.layers.inet6 import IPv6
        if self.v6:
            pkt = IPv6(src=self.spec["src"], dst=self.spec["dst"], hlim=64) / l4
        else:
            self.ip_id = (self.ip_id + 1) & 0xFFFF
            pkt = IP(src=self.spec["src"], dst=self.spec["dst"], id=self.ip_id, flags="DF",
                     ttl=64) / l4
        self.out.sendto(bytes(pkt), (self.spec["dst"], 0))

    # -- receiving -------------------------------------------------------------------
    def _segments(self, timeout: float):
        """Yield decoded transport units of every frame read within ``timeout``."""
        item = self.tap.read(timeout)
        if item is None:
            return None
        ts, data = item
        self.frames.append(item)
        fr = Frame(len(self.frames), ts, len(data), len(data), self.tap.linktype, 0, data)
        return decode_frame(fr).transport

    def close(self) -> None:
        try:
            self.out.close()
        except OSError:
            pass


class TcpClient(Client):
    def __init__(self, spec: dict, tap: Tap):
        super().__init__(spec, tap)
        isn = spec.get("isn")
        if isn is None:
            isn = self.rng.randrange(0, 2**32)
        self.c = Conn(spec["src"], spec["dst"], spec["sport"], spec["dport"], isn, isn,
                      acked=isn)
        self.request = bytes.fromhex(spec.get("request_hex") or "")
        self.app = spec.get("app") or "raw"

    def tcp(self, flags: int, payload: bytes = b"", options=None):
        from scapy.layers.inet import TCP
        c = self.c
        seg = TCP(sport=c.sport, dport=c.dport, seq=c.snd_nxt & 0xFFFFFFFF,
                  ack=(c.rcv_nxt or 0) & 0xFFFFFFFF if flags & ACK else 0,
                  flags=flags, window=CLIENT_WINDOW, options=options or [])
        self.send(seg / payload if payload else seg)
        c.snd_nxt = (c.snd_nxt + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF

    def _ours(self, t) -> bool:
        c = self.c
        return (t is not None and hasattr(t, "seq") and t.src == c.dst and t.dst == c.src
                and t.sport == c.dport and t.dport == c.sport)

    def _absorb(self, t) -> None:
        """Update state from one server segment and ACK what needs it."""
        c = self.c
        if t.flags & RST:
            c.reset = True
            return
        if t.flags & SYN:
            if t.flags & ACK and c.isn_s is None:
                c.isn_s = t.seq
                c.rcv_nxt = (t.seq + 1) & 0xFFFFFFFF
                c.synack_ack = t.ack
            elif c.isn_s is not None:      # SYN-ACK retransmitted: our ACK was late or lost
                self.tcp(ACK)
            return
        if c.rcv_nxt is None:
            return
        if t.flags & ACK and ((t.ack - c.acked) & 0xFFFFFFFF) < 2**31:
            c.acked = t.ack
        need_ack = False
        if t.plen:
            if t.seq == c.rcv_nxt:
                c.received += t.payload[:t.plen]
                c.rcv_nxt = (c.rcv_nxt + t.plen) & 0xFFFFFFFF
            need_ack = True                # in order, or a retransmission to re-ACK
        if t.flags & FIN and (t.seq + t.plen) & 0xFFFFFFFF == c.rcv_nxt and not c.peer_fin:
            c.peer_fin = True
            c.rcv_nxt = (c.rcv_nxt + 1) & 0xFFFFFFFF
            need_ack = True
        if need_ack:
            self.tcp(ACK)

    def pump(self, done, timeout: float) -> bool:
        """Read and absorb until ``done()`` or the timeout; True when done."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            t = self._segments(left)
            if t is not None and self._ours(t):
                self._absorb(t)
        return True

    def _acked_all(self) -> bool:
        return self.c.acked == self.c.snd_nxt

    def run(self) -> dict:
        c = self.c
        res = {"isn_client": c.isn_c, "outcome": None}
        self.tcp(SYN, options=[("MSS", CLIENT_MSS), ("SAckOK", b"")])
        self.pump(lambda: c.isn_s is not None or c.reset, CONNECT_TIMEOUT_S)
        if c.reset:
            res["outcome"] = "refused"
            self.notes.append(f"{c.dst} port {c.dport} answered the SYN with RST: nothing "
                              "listens there")
            return res
        if c.isn_s is None:
            res["outcome"] = "no-answer"
            self.notes.append(f"no SYN-ACK from {c.dst} port {c.dport} within "
                              f"{CONNECT_TIMEOUT_S:.0f} s")
            return res
        res["isn_server"] = c.isn_s
        res["synack_ack"] = c.synack_ack
        self.tcp(ACK)
        res["established"] = True
        greet = banner(self.app) if self.request or self.app != "raw" else None
        if greet is not None:
            ok = self.pump(lambda: answer_complete(self.app, bytes(c.received)) or c.peer_fin
                           or c.reset, ANSWER_TIMEOUT_S)
            res["banner"] = bytes(c.received).decode("utf-8", "replace")
            if not ok:
                self.notes.append("the server sent no complete greeting")
        if self.request and not c.reset and not c.peer_fin:
            start = len(c.received)
            self.tcp(PSH | ACK, self.request)
            quits = closes_after(self.app, self.request)

            def answered():
                if c.reset or c.peer_fin:      # nothing more will come
                    return True
                got = bytes(c.received[start:])
                # after QUIT the server closes: wait for its FIN as well
                return (not quits and self._acked_all()
                        and answer_complete(self.app, got, len(self.request), self.request))
            if not self.pump(answered, ANSWER_TIMEOUT_S):
                self.notes.append("the server's answer was incomplete when the wait ended")
            res["answer"] = bytes(c.received[start:]).decode("utf-8", "replace")
        if c.reset:
            res["outcome"] = "reset-by-peer"
            return res
        if self.spec.get("teardown", "fin") == "rst":
            self.tcp(RST | ACK)
            res["outcome"] = "reset"
        else:
            passive = c.peer_fin
            self.tcp(FIN | ACK)
            ok = self.pump(lambda: (c.peer_fin and self._acked_all()) or c.reset,
                           TEARDOWN_TIMEOUT_S)
            res["outcome"] = "closed" if ok and not c.reset else (
                "reset-by-peer" if c.reset else "teardown-incomplete")
            res["closed_by"] = "server" if passive else "client"
        return res


class UdpClient(Client):
    def run(self) -> dict:
        from scapy.layers.inet import UDP
        s = self.spec
        payload = bytes.fromhex(s.get("request_hex") or "")
        fam = socket.AF_INET6 if self.v6 else socket.AF_INET
        holder = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            holder.bind((s["src"], s["sport"]))
            self.send(UDP(sport=s["sport"], dport=s["dport"]) / payload)
            got = None
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            while got is None and time.monotonic() < deadline:
                t = self._segments(deadline - time.monotonic())
                if (t is not None and not hasattr(t, "seq") and t.src == s["dst"]
                        and t.sport == s["dport"] and t.dport == s["sport"]):
                    got = t.payload
            if got is None:
                self.notes.append(f"no datagram back from {s['dst']} port {s['dport']} within "
                                  f"{ANSWER_TIMEOUT_S:.0f} s")
                return {"outcome": "no-answer"}
            return {"outcome": "answered", "answer": got.decode("utf-8", "replace"),
                    "echoed": got == payload}
        finally:
            holder.close()


def keep(spec: dict, linktype: int, frames):
    """Frames to write: all of them in a private namespace; only the crafted flow's
    otherwise (the current namespace carries other traffic)."""
    if spec.get("keep_all"):
        return frames
    ends = {(spec["src"], spec["sport"]), (spec["dst"], spec["dport"])}
    out = []
    for i, (ts, data) in enumerate(frames, 1):
        t = decode_frame(Frame(i, ts, len(data), len(data), linktype, 0, data)).transport
        if t is not None and {(t.src, t.sport), (t.dst, t.dport)} == ends:
            out.append((ts, data))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dissect.craft.worker")
    ap.add_argument("--spec", required=True)
    ap.add_argument("--pcap", required=True)
    args = ap.parse_args(argv)
    spec = json.loads(args.spec)

    def stop(_s, _f):
        raise SystemExit(130)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tap = Tap(spec["iface"])
    client = (TcpClient if spec["proto"] == "tcp" else UdpClient)(spec, tap)
    res: dict = {"outcome": "interrupted"}
    code = 0
    try:
        res = client.run()
        client.frames.extend(tap.drain(SETTLE_S))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        client.close()
        frames = keep(spec, tap.linktype, client.frames)
        tap.close()
        with PcapWriter(args.pcap, tap.linktype, force=True) as w:
            for ts, data in frames:
                w.write(ts, data)
        res["notes"] = client.notes
        res["frames"] = len(frames)
        print("RESULT " + json.dumps(res), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
