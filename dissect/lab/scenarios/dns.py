"""dns: a dnslib UDP server and a dnslib client that resends unanswered queries.

The server answers A/AAAA for a few dissect.test names with loopback addresses and
NXDOMAIN for anything else. It deliberately ignores the first query it sees for
``slow.dissect.test``, so the client's resend (same ID, same question, after its
timeout) is in the capture, followed by the answer to the second try.
"""

from __future__ import annotations

import random
import socket

ZONE = {
    ("www.dissect.test.", "A"): ["127.0.0.1"],
    ("www.dissect.test.", "AAAA"): ["::1"],
    ("mail.dissect.test.", "A"): ["127.0.0.25"],
    ("slow.dissect.test.", "A"): ["127.0.0.53"],
}
IGNORE_FIRST = {"slow.dissect.test."}
QUERIES = (("www.dissect.test", "A"), ("www.dissect.test", "AAAA"), ("mail.dissect.test", "A"),
           ("slow.dissect.test", "A"), ("missing.dissect.test", "A"))
TTL = 300
MAX_DATAGRAM = 4096  # our answers are far below this


def serve(params, ctx):
    from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord

    rec = ctx.rec
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", params["port"]))
    ctx.ready(port=params["port"])
    seen: set[str] = set()
    while True:
        data, peer = sock.recvfrom(MAX_DATAGRAM)
        now = rec.now()
        try:
            query = DNSRecord.parse(data)
        except Exception as exc:  # dnslib raises its own DNSError and others; ignore junk
            rec.record("unparsable", now, peer_port=peer[1], error=str(exc))
            continue
        qname, qtype = str(query.q.qname), QTYPE[query.q.qtype]
        if qname in IGNORE_FIRST and qname not in seen:
            seen.add(qname)
            rec.record("query", now, id=query.header.id, qname=qname, qtype=qtype, action="ignored")
            continue
        seen.add(qname)
        reply = query.reply()
        addrs = ZONE.get((qname, qtype))
        if addrs:
            for addr in addrs:
                rdata = A(addr) if qtype == "A" else AAAA(addr)
                reply.add_answer(RR(qname, query.q.qtype, rdata=rdata, ttl=TTL))
        elif not any(name == qname for name, _ in ZONE):
            reply.header.rcode = RCODE.NXDOMAIN
        sock.sendto(reply.pack(), peer)
        rec.record("query", now, id=query.header.id, qname=qname, qtype=qtype, action="answered",
                   rcode=RCODE[reply.header.rcode], answers=addrs or [])


def client(params, rec):
    from dnslib import QTYPE, RCODE, DNSRecord

    rng = random.Random(f"dns:{params.get('seed', 0)}")
    timeout, tries = float(params["resend_timeout_s"]), int(params["max_tries"])
    rec.policy = {"resend_timeout_s": timeout, "max_tries": tries, "resend": "same ID and question",
                  "backoff": "none (fixed timeout)"}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", params["port"]))
    for name, qtype in QUERIES:
        query = DNSRecord.question(name, qtype)
        query.header.id = rng.randrange(1, 65536)
        wire = query.pack()
        chain = f"{name} {qtype}"
        for attempt in range(1, tries + 1):
            start = rec.now()
            sock.send(wire)
            sock.settimeout(timeout)
            try:
                while True:
                    reply = DNSRecord.parse(sock.recv(MAX_DATAGRAM))
                    if reply.header.id == query.header.id:
                        break
            except socket.timeout:
                rec.record("attempt", start, rec.now(), chain=chain, attempt=attempt,
                           id=query.header.id, outcome="timeout")
                continue
            rec.record("attempt", start, rec.now(), chain=chain, attempt=attempt,
                       id=query.header.id, outcome="answered", rcode=RCODE[reply.header.rcode],
                       answers=[str(rr.rdata) for rr in reply.rr
                                if QTYPE[rr.rtype] in ("A", "AAAA")])
            break
