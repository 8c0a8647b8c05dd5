"""syn-backoff: the kernel's SYN retransmission schedule, seen from the connecting client.

nftables in the namespace drops every SYN to port 9 on the input hook, so each SYN is in
the capture but none is answered. The client starts a non-blocking connect and polls
``TCP_INFO`` on the socket every few milliseconds: each rise of ``tcpi_total_retrans``
is one SYN retransmission, recorded with the client's time of observation (at most one
poll interval late) and the retransmission timeout (``tcpi_rto``) the kernel armed next.
The client gives up after ``give_up_s`` (closing the socket), or earlier if the kernel
gives up itself (``net.ipv4.tcp_syn_retries``). Run with tcp_syn_linear_timeouts=4
(this kernel's default; observed here: five retransmissions 1 s apart, then 2, 4, 8 s)
or 0 (classic doubling from 1 s: 1, 2, 4, 8 s).
"""

from __future__ import annotations

import errno
import select
import socket
import struct
from pathlib import Path

POLL_S = 0.002  # TCP_INFO poll interval: bounds how late an attempt is observed
TCP_INFO = getattr(socket, "TCP_INFO", 11)
TCP_INFO_LEN = 104  # up to and including tcpi_total_retrans (offset 100)


def _sysctl(name: str) -> int | None:
    try:
        return int(Path("/proc/sys/net/ipv4", name).read_text())
    except (OSError, ValueError):
        return None


def tcp_info(sock: socket.socket) -> dict:
    raw = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, TCP_INFO_LEN)
    state, _ca, retransmits, _probes, backoff = struct.unpack_from("5B", raw, 0)
    rto_us = struct.unpack_from("I", raw, 8)[0]
    total_retrans = struct.unpack_from("I", raw, 100)[0]
    return {"state": state, "retransmits": retransmits, "backoff": backoff, "rto_us": rto_us,
            "total_retrans": total_retrans}


def client(params, rec):
    port, give_up = params["port"], float(params["give_up_s"])
    rec.policy = {"who_retries": "kernel (SYN retransmission)",
                  "tcp_syn_linear_timeouts": _sysctl("tcp_syn_linear_timeouts"),
                  "tcp_syn_retries": _sysctl("tcp_syn_retries"), "give_up_s": give_up,
                  "observation": f"TCP_INFO polled every {POLL_S * 1000:.0f} ms"}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    start = rec.now()
    err = sock.connect_ex(("127.0.0.1", port))
    info = tcp_info(sock)
    local_port = sock.getsockname()[1]
    rec.info["local_port"] = local_port
    rec.record("attempt", start, chain="syn", attempt=1, what="SYN",
               rto_armed_s=info["rto_us"] / 1e6)
    if err not in (errno.EINPROGRESS, 0):
        rec.outcome = f"connect failed at once: {errno.errorcode.get(err, err)}"
        return
    seen = info["total_retrans"]
    deadline = start + give_up
    outcome = None
    while outcome is None:
        _, writable, _ = select.select([], [sock], [], POLL_S)
        now = rec.now()
        if writable:
            so_error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            outcome = ("connected" if so_error == 0 else
                       f"kernel gave up: {errno.errorcode.get(so_error, so_error)}")
            break
        info = tcp_info(sock)
        while info["total_retrans"] > seen:
            seen += 1
            rec.record("attempt", now, chain="syn", attempt=seen + 1, what="SYN retransmission",
                       rto_armed_s=info["rto_us"] / 1e6, tcpi_backoff=info["backoff"])
        if now >= deadline:
            outcome = f"client gave up after {give_up:g} s"
    end = rec.now()
    sock.close()
    rec.record("give-up" if "gave up" in outcome else "result", end, outcome=outcome,
               elapsed_s=round(end - start, 6), syns_sent=seen + 1)
    rec.outcome = outcome
