"""Real kernel TCP under packet loss: precision and recall of retransmission detection.

Inside a namespace the test creates: lo with MTU 1500 and no GSO, nftables dropping ~3% of
packets to port 8080 on the input hook (the dropped packet is still in the loopback capture,
followed by the kernel's real retransmission), several bulk uploads, tcpdump recording.

Ground truth per frame: a client->server segment carrying SYN, FIN or payload whose sequence
range was already captured earlier (an independent interval check written here). The
kernel's own count (TCP_INFO tcpi_total_retrans of each sending socket) bounds it.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from dissect.analysis.tcp import TcpAnalyzer
from dissect.columns.decode import iter_transport
from dissect.columns.segment import TcpSegment

_here = Path(__file__).resolve().parent


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tcp_lab = _load("tcp_lab", _here / "tcp_lab.py")

import os  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                       reason="needs root and iproute2 for a network namespace"),
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nft (nftables) is not installed"),
]

DROP_PERCENT = 3
TRANSFERS = 4
TRANSFER_BYTES = 1_048_576

TRAFFIC = r'''
import socket, struct, threading, json, time
N, SIZE = %d, %d
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 8080)); srv.listen(16)
def serve():
    for _ in range(N):
        c, _a = srv.accept()
        got = 0
        while got < SIZE // 8192 * 8192:
            b = c.recv(65536)
            if not b: break
            got += len(b)
        c.sendall(b"ok"); c.close()
t = threading.Thread(target=serve, daemon=True); t.start()
retrans = []
for i in range(N):
    s = socket.create_connection(("127.0.0.1", 8080), timeout=20)
    chunk = bytes([65 + i]) * 8192
    for _k in range(SIZE // 8192):     # paced, so tcpdump keeps up on 2 cores
        s.sendall(chunk); time.sleep(0.0005)
    s.recv(2)
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    retrans.append(struct.unpack_from("I", info, 100)[0])   # tcpi_total_retrans
    s.close()
t.join(20)
print(json.dumps(retrans))
''' % (TRANSFERS, TRANSFER_BYTES)


def _truth(segs):
    """Frames client->server (dport 8080) whose sequence range was captured before."""
    seen: dict = {}
    truth = set()
    for s in segs:
        if s.dport != 8080:
            continue
        n = s.plen + (1 if s.flags & 0x03 else 0)
        if not n:
            continue
        key = (s.src, s.sport)
        iv = seen.setdefault(key, [])
        a, b = s.seq, s.seq + n            # no wrap: the kernel picks ISNs < 2^32 - SIZE rarely
        if any(x < b and a < y for x, y in iv):
            truth.add(s.frame)
        iv.append((a, b))
    return truth


def test_retransmissions_under_real_loss(tmp_path):
    nc = _load("netns_capture", _here.parent / "netns_capture.py")
    pcap = str(tmp_path / "loss.pcap")
    out = nc.record(pcap, TRAFFIC, mtu=1500, nft=(
        "add table inet t",
        "add chain inet t in { type filter hook input priority 0 ; }",
        f"add rule inet t in tcp dport 8080 numgen random mod 100 < {DROP_PERCENT} drop",
    ))
    kernel_retrans = json.loads(out.strip().splitlines()[-1])
    segs = [x for x in iter_transport(pcap) if type(x) is TcpSegment]
    truth = _truth(segs)
    an = TcpAnalyzer()
    verdicts = {s.frame: an.feed(s) for s in segs}
    # the truth covers the client -> server direction (the one the rule drops on): compare
    # predictions on that direction only (a server that resends its FIN or SYN-ACK because
    # the client's ACK was dropped retransmits for real, but is outside the truth)
    upstream = {s.frame for s in segs if s.dport == 8080}
    ws = {f for f, v in verdicts.items() if "retransmission" in v.flags and f in upstream}
    bm = {f for f, v in verdicts.items() if f in upstream and
          {"retransmission", "spurious-retransmission", "duplicate-frame"} & set(v.bytemap)}

    def pr(pred):
        tp = len(pred & truth)
        return (tp / len(pred) if pred else 1.0), (tp / len(truth) if truth else 1.0)

    ws_p, ws_r = pr(ws)
    bm_p, bm_r = pr(bm)
    print(f"\nframes={len(segs)} truth={len(truth)} kernel_total_retrans={sum(kernel_retrans)} "
          f"wireshark-compatible P={ws_p:.4f} R={ws_r:.4f}  byte-map P={bm_p:.4f} R={bm_r:.4f}")
    assert len(truth) >= 10, "the drop rule produced too few retransmissions to measure"
    # the kernel's count and the capture agree (SYN/FIN retransmissions are counted by both)
    assert abs(sum(kernel_retrans) - len(truth)) <= max(3, 0.05 * len(truth))
    assert bm_p >= 0.99 and bm_r >= 0.99
    # Wireshark's own heuristics (reproduced exactly: see the tshark comparison
    # below) never call a first transmission a retransmission here, but on loopback they
    # call a retransmission that follows the newest segment within the iRTT "out-of-order":
    # its recall is what the byte-map verdict is for. Measured ~0.8; pinned loosely.
    assert ws_p >= 0.9 and ws_r >= 0.5     # measured P 0.95-1.0, R 0.66-0.88
    assert all(v.reason for f, v in verdicts.items() if f in truth and f not in ws)
    # and on this capture we agree with tshark frame by frame
    if shutil.which("tshark"):
        assert tcp_lab.compare(pcap) == []
