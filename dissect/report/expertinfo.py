"""Expert view: anomalies and analysis flags grouped by severity, as Wireshark's Expert
Info does (Error, Warning, Note, Chat). Rendering only."""

from __future__ import annotations

from dissect.report.text import safe, table

# Wireshark's own severities for its tcp.analysis experts, and ours for the rest
SEVERITY = {
    "lost-segment": "Warning", "ack-lost-segment": "Warning", "zero-window": "Warning",
    "window-full": "Warning", "reused-ports": "Note", "retransmission": "Note",
    "fast-retransmission": "Note", "spurious-retransmission": "Note", "out-of-order": "Warning",
    "duplicate-ack": "Note", "keep-alive": "Note", "keep-alive-ack": "Note",
    "zero-window-probe": "Note", "zero-window-probe-ack": "Note", "window-update": "Chat",
}
ORDER = ("Error", "Warning", "Note", "Chat")


class ExpertTable:
    """Fed per frame (flags) and at the end (anomalies, connections)."""

    def __init__(self):
        self.rows: dict = {}     # (severity, group, protocol, summary) -> [count, frames]

    def add(self, severity, group, protocol, summary, frame):
        r = self.rows.setdefault((severity, group, protocol, summary), [0, []])
        r[0] += 1
        if frame is not None and len(r[1]) < 5:
            r[1].append(frame)

    def on_frame(self, fr, d, v):
        for f in v.flags:
            self.add(SEVERITY.get(f, "Note"), "Sequence", "tcp", f, fr.number)
        for a in d.anomalies:
            self.add("Error", "Malformed", d.chain[-1] if d.chain else "frame", a, fr.number)

    def finish(self, res):
        for r in res.records:
            if r.get("type") == "anomaly":
                self.add("Error" if "error" in str(r.get("name")) else "Warning", "Protocol",
                         r.get("protocol"), r.get("name"), r.get("frame"))
        for c in res.connections:
            if c.get("proto") != "tcp":
                continue
            hs = c.get("handshake") or {}
            if hs.get("syn") is not None:
                self.add("Chat", "Sequence", "tcp", "connection establish request (SYN)",
                         hs["syn"])
            rst = (c.get("rst") or {})
            if rst.get("by"):
                self.add("Warning", "Sequence", "tcp", f"connection reset (RST) by {rst['by']}",
                         rst.get(rst["by"]))
            fin = c.get("fin") or {}
            for side in ("client", "server"):
                if fin.get(side) is not None:
                    self.add("Chat", "Sequence", "tcp", "connection finish (FIN)", fin[side])
        return self

    def render(self) -> str:
        if not self.rows:
            return "no expert information"
        out = []
        for sev in ORDER:
            rows = [(k, v) for k, v in self.rows.items() if k[0] == sev]
            if not rows:
                continue
            total = sum(v[0] for _, v in rows)
            out.append(f"{sev} ({total})")
            rows.sort(key=lambda kv: (-kv[1][0], kv[0]))
            out.append(table([[safe(k[1]), safe(k[2]), safe(k[3]), v[0],
                               ", ".join(map(str, v[1]))] for k, v in rows],
                             ["group", "protocol", "summary", "count", "first frames"]))
            out.append("")
        return "\n".join(out).rstrip()

    def records(self) -> list[dict]:
        return [{"type": "expert", "severity": k[0], "group": k[1], "protocol": k[2],
                 "summary": k[3], "count": v[0], "frames": v[1]}
                for k, v in sorted(self.rows.items(), key=lambda kv: ORDER.index(kv[0][0]))]


def follow(items, hexdump: bool = False, width: int = 16) -> str:
    """``items``: (direction, kind, value) of one connection's reassembled streams in order
    (kind "data" with bytes, "gap" with a size, "anomaly" with a name)."""
    out = []
    for direction, kind, value in items:
        who = "client >" if direction == 0 else "server <"
        if kind == "gap":
            out.append(f"{who} [{value} bytes not captured]")
            continue
        if kind != "data":
            out.append(f"{who} [{safe(value)}]")
            continue
        if hexdump:
            for i in range(0, len(value), width):
                chunk = value[i:i + width]
                hx = " ".join(f"{b:02x}" for b in chunk)
                tx = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
                out.append(f"{who} {i:08x}  {hx:<{width * 3}} {tx}")
        else:
            for line in bytes(value).decode("utf-8", "replace").splitlines() or [""]:
                out.append(f"{who} {safe(line)}")
    return "\n".join(out)
