"""Terminal output of crafted exchanges and live captures (rendering only).

* :func:`packet_line` - one line per packet: number, time, the protocol chain with each
  protocol's OSI layer, addresses and ports, TCP flags/seq/ack/len.
* :func:`ladder` - the exchange as ``client → server  SYN seq=…`` lines with absolute
  sequence numbers, and where an ACK acknowledges the peer's ISN + 1 it says so.
* :func:`frame_reports` - every frame's layer-annotated field tree
  (:func:`dissect.report.terminal.render_packet`, as ``dissect show`` prints it).

Payload text from a capture is shown through :func:`dissect.report.text.safe` (control
characters escaped) and never interpreted.
"""

from __future__ import annotations

from dissect.columns.decode import decode_frame
from dissect.io.capture import Frame
from dissect.report.text import paint, safe, table

FLAG_NAMES = ((0x02, "SYN"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"),
              (0x20, "URG"), (0x40, "ECE"), (0x80, "CWR"))
# Payload shown in a ladder line: the first line, cut to this many characters.
PAYLOAD_PREVIEW_CHARS = 48


def flag_text(bits: int) -> str:
    return ",".join(n for b, n in FLAG_NAMES if bits & b) or "none"


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def preview(payload: bytes) -> str:
    line = payload.split(b"\n", 1)[0].rstrip(b"\r")
    text = line.decode("utf-8", "replace")
    if len(text) > PAYLOAD_PREVIEW_CHARS:
        text = text[:PAYLOAD_PREVIEW_CHARS] + "…"
    return safe(text)


def packet_line(fr: Frame, layers, t0: float | None = None, colour: bool = False) -> str:
    """One line: ``#  time  L2 eth · L3 ip · L4 tcp · L7 ftp  a:p → b:q  [SYN] seq=…``."""
    rel = fr.ts - (t0 if t0 is not None else fr.ts)
    chain = " · ".join(paint(f"L{int(l.osi)} {l.protocol}", int(l.osi), colour)
                       for l in layers if l.protocol != "frame")
    d = decode_frame(fr)
    t = d.transport
    where = ""
    detail = ""
    if t is not None:
        where = f"{safe(_endpoint(t.src, t.sport))} → {safe(_endpoint(t.dst, t.dport))}"
        if hasattr(t, "seq"):
            detail = f"[{flag_text(t.flags)}] seq={t.seq}"
            if t.flags & 0x10:
                detail += f" ack={t.ack}"
            detail += f" win={t.win} len={t.plen}"
        else:
            detail = f"len={t.plen}"
    else:
        ip = next((l for l in layers if l.protocol in ("ip", "ipv6")), None)
        if ip is not None:
            where = f"{safe(ip.get('src', '?'))} → {safe(ip.get('dst', '?'))}"
    return f"{fr.number:>5} {rel:10.6f}  {chain}  {where}  {detail}".rstrip()


def ladder(frames: list[Frame], client: tuple[str, int]) -> str:
    """The exchange, one arrow per packet, absolute sequence numbers."""
    isn: dict[str, int] = {}
    rows = []
    t0 = frames[0].ts if frames else 0.0
    for fr in frames:
        t = decode_frame(fr).transport
        if t is None:
            rows.append([fr.number, f"{fr.ts - t0:.6f}", "(not TCP/UDP)", "", ""])
            continue
        side = "client" if (t.src, t.sport) == client else "server"
        arrow = "client → server" if side == "client" else "server → client"
        if not hasattr(t, "seq"):
            rows.append([fr.number, f"{fr.ts - t0:.6f}", arrow, "UDP",
                         f"len={t.plen}" + (f'  "{preview(t.payload)}"' if t.payload else "")])
            continue
        if t.flags & 0x02:
            isn[side] = t.seq
        peer = "server" if side == "client" else "client"
        text = f"seq={t.seq}"
        if t.flags & 0x10:
            text += f" ack={t.ack}"
            if peer in isn and t.ack == (isn[peer] + 1) & 0xFFFFFFFF:
                text += f" (= {peer} ISN+1)"
        if t.plen:
            text += f" len={t.plen}"
            if t.payload:
                text += f'  "{preview(t.payload)}"'
        rows.append([fr.number, f"{fr.ts - t0:.6f}", arrow, flag_text(t.flags), text])
    return table(rows, ["#", "time (s)", "direction", "flags", "sequence / payload"])


def frame_reports(path: str, colour: bool = False) -> list[str]:
    """``dissect show`` output for every frame of ``path`` (with TCP analysis flags)."""
    from dissect.engine import Engine
    from dissect.protocols.frame import dissect_frame
    from dissect.report.terminal import render_packet
    out: list[str] = []

    def on_frame(fr, d, v):
        out.append(render_packet(fr, dissect_frame(fr), v.flags, v.conn, None, colour))

    res = Engine(path, on_frame=on_frame).run()
    if res.error is not None:
        out.append(f"error: {safe(res.error)}")
    return out
