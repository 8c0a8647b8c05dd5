"""udp: a plain UDP echo server (port 7, RFC 862) and a client sending datagrams.

The client sends alternating text and binary datagrams of growing size (binary bytes
drawn from the seed), waits for each echo and records the round trip. A missing echo
(possible with --loss) is recorded as a timeout and the client moves on: echo has no
retransmission of its own.
"""

from __future__ import annotations

import random
import socket

MAX_DATAGRAM = 65535
ECHO_TIMEOUT_S = 1.0  # a loopback echo returns in well under a millisecond


def serve(params, ctx):
    rec = ctx.rec
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", params["port"]))
    ctx.ready(port=params["port"])
    while True:
        data, peer = sock.recvfrom(MAX_DATAGRAM)
        sock.sendto(data, peer)
        rec.record("echoed", rec.now(), bytes=len(data), peer_port=peer[1])


def payloads(count: int, seed: int) -> list[bytes]:
    rng = random.Random(f"udp:{seed}")
    out = []
    for i in range(count):
        if i % 2 == 0:
            out.append(f"dissect lab datagram {i + 1}: hello, echo".encode())
        else:
            out.append(rng.randbytes(64 * (i + 1)))
    return out


def client(params, rec):
    rec.policy = {"echo_timeout_s": ECHO_TIMEOUT_S, "retries": 0}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", params["port"]))
    sock.settimeout(ECHO_TIMEOUT_S)
    for i, data in enumerate(payloads(int(params["count"]), params.get("seed", 0)), 1):
        start = rec.now()
        sock.send(data)
        try:
            back = sock.recv(MAX_DATAGRAM)
            outcome = "echoed" if back == data else "mismatch"
        except socket.timeout:
            outcome = "timeout"
        rec.record("datagram", start, rec.now(), index=i, bytes=len(data),
                   kind_of_payload="text" if i % 2 else "binary", outcome=outcome)
