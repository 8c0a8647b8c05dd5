"""Ladder (sequence) diagram of one TCP connection for the terminal.

Rendering only: it takes the connection record and the (segment, flags) pairs of that
connection, already analysed, and draws client and server as two rails with one arrow
per segment, relative times and relative sequence numbers, analysis flags marked.
"""

from __future__ import annotations

import shutil

from dissect.report.text import safe

FLAG_BITS = ((0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"),
             (0x20, "URG"), (0x40, "ECE"), (0x80, "CWR"))

UNICODE = {"rail": "│", "line": "─", "right": "▶", "left": "◀", "mark": "✖"}
ASCII = {"rail": "|", "line": "-", "right": ">", "left": "<", "mark": "!"}


def flag_text(bits: int) -> str:
    return ",".join(name for bit, name in FLAG_BITS if bits & bit) or "none"


def render_ladder(conn: dict, items: list, *, unicode: bool = True, width: int | None = None,
                  colour: bool = False) -> str:
    """``items``: (segment, flags) in frame order for this connection."""
    g = UNICODE if unicode else ASCII
    width = width or shutil.get_terminal_size((100, 24)).columns
    width = max(60, min(width, 160))
    c, s = conn["client"], conn["server"]
    cname = f"{c['ip']}:{c['port']}"
    sname = f"{s['ip']}:{s['port']}"
    out = [f"Connection {conn['id']}: {safe(cname)} (client) to {safe(sname)} (server)  "
           f"state {conn.get('state')}  history {conn.get('history')}"]
    hs = conn.get("handshake")
    if hs and hs.get("rtt_s") is not None:
        out.append(f"  handshake frames {hs.get('syn')}/{hs.get('syn_ack')}/{hs.get('ack')}, "
                   f"RTT {hs['rtt_s'] * 1000:.3f} ms")
    if not items:
        out.append("  (no segments)")
        return "\n".join(out)
    t0 = items[0][0].ts
    # relative sequence numbers: from each side's SYN, else its first segment
    isn: dict[tuple, int] = {}
    for seg, _f in items:
        key = (seg.src, seg.sport)
        if key not in isn or (seg.flags & 0x02 and not seg.flags & 0x10 and key not in isn):
            isn.setdefault(key, seg.seq)
    for seg, _f in items:
        if seg.flags & 0x02:
            isn[(seg.src, seg.sport)] = seg.seq
    left_w = 20
    lane = width - left_w - 4
    out.append(f"{'time (s)':>10} {'frame':>7}  {safe(cname)[:lane // 2]:<{lane // 2}}"
               f"{safe(sname)[:lane - lane // 2]:>{lane - lane // 2}}")
    for seg, flags in items:
        to_server = (seg.src, seg.sport) == (c["ip"], c["port"])
        own = isn.get((seg.src, seg.sport), seg.seq)
        peer = isn.get((seg.dst, seg.dport))
        label = f"{flag_text(seg.flags)} seq={(seg.seq - own) & 0xFFFFFFFF}"
        if seg.flags & 0x10 and peer is not None:
            label += f" ack={(seg.ack - peer) & 0xFFFFFFFF}"
        if seg.plen:
            label += f" len={seg.plen}"
        if seg.flags & 0x02 and seg.options and seg.options.mss:
            label += f" mss={seg.options.mss}"
        if flags:   # first, so a narrow terminal cuts the sequence numbers, not the verdict
            label = f"{g['mark']} [" + ",".join(flags) + "] " + label
        body = lane - 4
        label = label[:body - 4]
        fill = body - len(label) - 2
        if to_server:
            arrow = f"{g['line']} {label} " + g["line"] * max(fill - 1, 1) + g["right"]
        else:
            arrow = g["left"] + g["line"] * max(fill - 1, 1) + f" {label} {g['line']}"
        out.append(f"{seg.ts - t0:10.6f} {seg.frame:>7}  {g['rail']}{arrow}{g['rail']}")
    return "\n".join(out)
