"""An AF_PACKET tap (Scapy's Linux listen socket) that sees each packet once.

On a loopback interface every packet passes the tap twice: once leaving
(``PACKET_OUTGOING``) and once arriving. libpcap - and so tcpdump - keeps only the
arriving copy there, and so does :class:`Tap`; on other interfaces outgoing packets are
real and kept. Frames come out as ``(timestamp, bytes)`` with the kernel's receive time
(SO_TIMESTAMPNS), ready for a pcap writer; nothing is parsed here.
"""

from __future__ import annotations

import logging
import select
import socket
import time

from dissect.craft.safety import CraftError

PACKET_OUTGOING = 4
IFF_LOOPBACK = 0x8
# Largest frame read: the pcap snap length Wireshark uses; loopback GSO frames reach
# 64 KB, so anything smaller would cut them.
SNAPLEN = 262144
# Socket receive buffer: loopback bursts of thousands of packets must not be dropped.
RCVBUF_BYTES = 16 * 1024 * 1024


def _iface_flags(iface: str) -> int:
    try:
        with open(f"/sys/class/net/{iface}/flags") as f:
            return int(f.read().strip(), 16)
    except (OSError, ValueError):
        return 0


class Tap:
    """Listen on ``iface`` (optionally with a BPF filter compiled by libpcap)."""

    def __init__(self, iface: str, bpf: str | None = None):
        from scapy.arch.linux import L2ListenSocket
        from scapy.data import ARPHRD_TO_DLT
        from scapy.error import Scapy_Exception

        if "/" in iface or iface in ("", ".", ".."):
            raise CraftError(f"{iface!r} is not an interface name", protocol="capture")
        if not _iface_flags(iface) and not _exists(iface):
            raise CraftError(f"no interface named {iface!r}", protocol="capture")
        # Scapy warns that it cannot guess a class for ARPHRD_LOOPBACK; we never build
        # Scapy packets from this socket (raw bytes only), so the warning is noise.
        logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
        try:
            self.sock = L2ListenSocket(iface=iface, filter=bpf, promisc=False)
        except Scapy_Exception as e:
            raise CraftError(f"cannot listen on {iface}: {e}", protocol="capture") from None
        except ImportError as e:
            raise CraftError(f"cannot compile the capture filter ({e}); install libpcap "
                             "(apt-get install libpcap0.8)", protocol="capture") from None
        except PermissionError:
            raise CraftError(f"the kernel refused a raw socket on {iface} "
                             "(needs CAP_NET_RAW)", protocol="capture") from None
        self.iface = iface
        self.loopback = bool(_iface_flags(iface) & IFF_LOOPBACK)
        try:
            self.sock.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        except OSError:
            pass
        hatype = self.sock.ins.getsockname()[3]
        self.linktype = ARPHRD_TO_DLT.get(hatype, -1)
        if self.linktype is None or self.linktype < 0:
            self.close()
            raise CraftError(f"{iface} has hardware type {hatype}, which has no pcap link type",
                             protocol="capture")
        self.duplicates_skipped = 0

    def fileno(self) -> int:
        return self.sock.ins.fileno()

    def read(self, timeout: float) -> tuple[float, bytes] | None:
        """The next frame, or None when ``timeout`` seconds pass without one."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left < 0:
                return None
            r, _w, _x = select.select([self.sock.ins], [], [], left)
            if not r:
                return None
            data, sa_ll, ts = self.sock._recv_raw(self.sock.ins, SNAPLEN)
            if not data:
                continue
            if self.loopback and sa_ll[2] == PACKET_OUTGOING:
                self.duplicates_skipped += 1
                continue
            return (ts if ts is not None else time.time()), data

    def drain(self, quiet: float) -> list[tuple[float, bytes]]:
        """Every frame until ``quiet`` seconds pass without one."""
        out = []
        while (item := self.read(quiet)) is not None:
            out.append(item)
        return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _exists(iface: str) -> bool:
    try:
        socket.if_nametoindex(iface)
        return True
    except OSError:
        return False
