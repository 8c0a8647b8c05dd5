"""Terminal reports for ``analyze`` and ``show`` (rendering only: data comes from the engine)."""

from __future__ import annotations

from datetime import datetime, timezone

from dissect.osi import Osi
from dissect.report.text import human_bytes, layer_label, paint, safe, table


def _when(ts):
    if ts is None:
        return "-"
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    except (OverflowError, OSError, ValueError):
        return str(ts)


def render_analyze(res, colour: bool = False, sections: list | None = None) -> str:
    s = res.summary
    rec = s.to_record()
    out = []
    info = res.info
    out.append(f"Capture {safe(res.path)}")
    if info is not None:
        lts = ", ".join(f"{lt}" for lt in info.linktypes)
        out.append(f"  format {info.format}{' (gzip)' if info.compressed else ''}, "
                   f"{'little' if info.byte_order == '<' else 'big'}-endian, "
                   f"{len(info.interfaces)} interface(s), link type(s) {lts}")
    out.append(f"  {s.frames} frames, {human_bytes(s.bytes_wire)} on the wire "
               f"({human_bytes(s.bytes_captured)} captured"
               f"{f', {s.truncated_frames} frames cut by snaplen' if s.truncated_frames else ''})")
    out.append(f"  from {_when(s.first_ts)} to {_when(s.last_ts)} ({rec['duration_s']:.3f} s)")
    out.append("")
    out.append("Traffic by OSI layer (application at the top)")
    rows = []
    for r in rec["layers"]:
        rows.append([paint(layer_label(r["osi"]), r["osi"], colour), r["packets"],
                     human_bytes(r["bytes"]), ", ".join(r["protocols"])])
    out.append(table(rows, ["layer", "packets", "bytes", "protocols"]))
    out.append("")
    out.append("Protocol hierarchy")
    rows = []
    for r in rec["hierarchy"]:
        depth = r["path"].count("/")
        pct = 100.0 * r["packets"] / s.frames if s.frames else 0
        rows.append(["  " * depth + r["protocol"], paint(f"L{r['osi']}", r["osi"], colour),
                     r["packets"], f"{pct:.1f}%", human_bytes(r["bytes"])])
    out.append(table(rows, ["protocol", "osi", "packets", "% frames", "bytes"]))
    out.append("")
    if rec["top_conversations"]:
        out.append("Top conversations (network layer, by bytes)")
        rows = [[safe(c["a"]), safe(c["b"]), c["packets"], human_bytes(c["bytes"]),
                 f"{c['duration_s']:.3f}", ",".join(c["protocols"])]
                for c in rec["top_conversations"]]
        out.append(table(rows, ["address A", "address B", "packets", "bytes", "duration s",
                                "carried"]))
        out.append("")
    if rec["tcp_analysis"]:
        out.append("TCP analysis (Wireshark's tcp.analysis flags)")
        out.append(table(sorted(rec["tcp_analysis"].items(), key=lambda kv: -kv[1]),
                         ["flag", "frames"]))
        out.append("")
    for sec in sections or ():
        if sec:
            out.append(sec)
            out.append("")
    out.append("Anomalies")
    if rec["anomalies"]:
        rows = [[safe(k), v["count"], ", ".join(map(str, v["frames"]))]
                for k, v in rec["anomalies"].items()]
        out.append(table(rows, ["anomaly", "count", "first frames"]))
    else:
        out.append("  none")
    if res.error is not None:
        out.append("")
        out.append(f"Error: {safe(res.error)}")
    return "\n".join(out)


def render_packet(fr, layers, flags=(), conn=None, only_layer: int | None = None,
                  colour: bool = False) -> str:
    head = (f"Frame {fr.number}  ts {fr.ts:.6f}  {fr.caplen} bytes captured, "
            f"{fr.wirelen} on the wire")
    if conn is not None:
        head += f"  conn {conn}"
    if flags:
        head += "  [" + ", ".join(flags) + "]"
    lines = [head]
    by_osi: dict[int, list] = {}
    for lay in layers:
        by_osi.setdefault(int(lay.osi), []).append(lay)
    for osi in sorted(by_osi, reverse=True):
        if only_layer is not None and osi != only_layer:
            continue
        lines.append("  " + paint(f"{layer_label(osi)}", osi, colour))
        for lay in by_osi[osi]:
            lines.append(f"    {paint(lay.protocol, osi, colour)}  (bytes {lay.offset}"
                         f"-{lay.offset + max(lay.length, 0)})")
            for f in lay.fields:
                v = f.value
                if isinstance(v, (bytes, bytearray, memoryview)):
                    v = bytes(v).hex()
                if isinstance(v, str) and len(v) > 96:
                    v = v[:96] + "..."
                base = lay.protocol.split(".")[0] + "."
                full = f.name if f.name.startswith(base) else f"{lay.protocol}.{f.name}"
                lines.append(f"      {full} = {safe(v)}"
                             f"    @{f.offset}+{f.length}")
            for a in lay.anomalies:
                lines.append(f"      ! anomaly: {safe(a)}")
    return "\n".join(lines)
